"""``cluster.kind: kubernetes`` (engine/cluster/kubernetes.py) without Kubernetes.

The DaskCluster that ``cluster_spec`` builds is validated against the operator's CRD and as core pods;
``start`` runs against an in-memory API (tests/engine/fake_kubernetes.py) whose stand-in operator starts the
scheduler and worker "pods" as local processes with the generated commands, arguments, environment and the
Secret's files — so the TLS flags, the worker's scheduler address and the HTTP routes are the ones a real
cluster would run.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from distributed import Client

from survey_scale.config import ConfigError, KubernetesClusterConfig, load_config
from survey_scale.engine.cluster import kubernetes as kube
from survey_scale.engine.cluster.kubernetes_manifests import SCRATCH_DIR
from tests.deploy.kube_schemas import validate
from tests.engine.fake_kubernetes import FakeKubernetes, allowed_by

ROOT = Path(__file__).resolve().parents[2]
RBAC = ROOT / "deploy" / "kubernetes" / "manifests" / "rbac.yaml"


def k8s_config(**keys: object) -> KubernetesClusterConfig:
    overrides = {"cluster.kind": "kubernetes", **{f"cluster.kubernetes.{k}": v for k, v in keys.items()}}
    return load_config(None, overrides).cluster.kubernetes


def containers(spec: dict) -> dict[str, dict]:
    return {role: spec["spec"][role]["spec"]["containers"][0] for role in ("scheduler", "worker")}


def test_the_cluster_spec_validates_against_the_daskcluster_crd_and_as_core_pods() -> None:
    for tls_secret in ("survey-scale-tls", None):
        checked = validate(kube.cluster_spec(k8s_config(), tls_secret, image="registry/survey-scale:cpu"))
        assert any("CRD DaskCluster" in c for c in checked) and any("worker pod" in c for c in checked)
    validate(kube.autoscaler_spec(k8s_config(adaptive=True, n_workers=0, max_workers=50)))
    from distributed.security import Security

    validate(kube.tls_secret_spec("survey-scale-tls", Security.temporary()))
    # the checks are strict: a misspelt field is refused
    spec = kube.cluster_spec(k8s_config(), "survey-scale-tls", image="x")
    spec["spec"]["worker"]["replica"] = 3
    with pytest.raises(Exception, match="replica"):
        validate(spec)


def test_the_cluster_spec_runs_scheduler_and_workers_over_tls_with_the_cube_volume() -> None:
    config = k8s_config(
        threads_per_worker=2,
        env={"OMP_NUM_THREADS": "1"},
        resources={"limits": {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "1"}},
        mount_path="/cubes",
        volume_claim="lamost",
    )
    spec = kube.cluster_spec(config, "survey-scale-tls", image="registry/survey-scale:cuda")
    scheduler, worker = containers(spec).values()
    tls_args = ["--protocol", "tls", "--tls-ca-file", "/etc/survey-scale/tls/ca.pem"]
    tls_args += ["--tls-cert", "/etc/survey-scale/tls/cert.pem", "--tls-key", "/etc/survey-scale/tls/key.pem"]
    assert scheduler["command"] == ["dask", "scheduler"] and scheduler["args"][-8:] == tls_args
    assert worker["command"] == ["dask", "worker"] and worker["args"][-8:] == tls_args
    assert worker["args"][worker["args"].index("--nthreads") + 1] == "2"
    worker_env = {e["name"]: e["value"] for e in worker["env"]}
    assert worker_env["DASK_SCHEDULER_ADDRESS"] == "tls://survey-scale-scheduler:8786"
    assert worker_env["OMP_NUM_THREADS"] == "1" and worker_env["DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION"] == "True"
    # the nanny spawns the worker without Dask's MALLOC_TRIM_THRESHOLD_ (WORKER_DASK_CONFIG)
    assert worker_env["DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON"] == "{'MALLOC_TRIM_THRESHOLD_': None}"
    for role, container in containers(spec).items():
        pod = spec["spec"][role]["spec"]
        assert container["image"] == "registry/survey-scale:cuda"
        assert container["resources"] == {"limits": {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "1"}}
        assert {m["mountPath"]: m["name"] for m in container["volumeMounts"]} == {
            "/etc/survey-scale/tls": "tls",
            "/cubes": "data",
            "/tmp": "scratch",
        }
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["tls"]["secret"]["secretName"] == "survey-scale-tls"
        assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "lamost"
        assert volumes["scratch"] == {"name": "scratch", "emptyDir": {}}
        assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["HOME"] == env["TMPDIR"] == env["DASK_TEMPORARY_DIRECTORY"] == "/tmp"
    assert spec["metadata"]["labels"]["app.kubernetes.io/part-of"] == "survey-scale"
    # no TLS: plain tcp, no Secret
    plain = kube.cluster_spec(KubernetesClusterConfig(volume_claim=None), None, image="x")
    assert "--protocol" not in containers(plain)["worker"]["args"]
    assert [v["name"] for v in plain["spec"]["worker"]["spec"]["volumes"]] == ["scratch"]
    assert {e["name"]: e["value"] for e in containers(plain)["worker"]["env"]}["DASK_SCHEDULER_ADDRESS"] == (
        "tcp://survey-scale-scheduler:8786"
    )


def test_the_configuration_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"cluster\.kubernetes\.image"):
        kube.cluster_spec(k8s_config(), None)
    with pytest.raises(ConfigError, match=r"n_workers"):
        k8s_config(n_workers=0)
    with pytest.raises(ConfigError, match=r"max_workers"):
        k8s_config(adaptive=True, n_workers=8, max_workers=4)
    with pytest.raises(ConfigError, match=r"cluster\.kubernetes\.name"):
        k8s_config(name="Survey_Scale")
    with pytest.raises(ConfigError, match=r"cluster\.kubernetes\.image"):
        kube.cluster_spec(k8s_config(image="registry/survey-scale@sha256:abc"), None)


def test_the_environment_of_the_configuration_wins_over_the_scratch_defaults() -> None:
    spec = kube.cluster_spec(k8s_config(env={"HOME": "/data/home", "OMP_NUM_THREADS": "1"}), None, image="x")
    for container in containers(spec).values():
        env = [(e["name"], e["value"]) for e in container["env"]]
        assert ("HOME", "/data/home") in env and [name for name, _ in env].count("HOME") == 1
        assert ("TMPDIR", "/tmp") in env and ("DASK_TEMPORARY_DIRECTORY", "/tmp") in env


class LocalOperator:
    """Stands in for the dask-kubernetes operator: runs a DaskCluster's pods as processes on this machine.

    The containers' commands, arguments and environment are those of the resource; only what a pod gets from
    Kubernetes is replaced: the Secret's files are written to a folder (the mount), the scratch emptyDir is
    another folder, ``$(DASK_WORKER_NAME)`` is expanded, the service DNS name becomes the scheduler's loopback
    address, and the ports (fixed in a pod) become free ones on loopback.
    """

    def __init__(self, api: FakeKubernetes, tmp: Path) -> None:
        self.api, self.tmp = api, tmp
        self.processes: list[subprocess.Popen] = []
        self.address = ""
        self.dashboard_port = 0
        api.on_create["DaskCluster"] = self.create
        api.on_delete["DaskCluster"] = self.delete

    def create(self, cluster: dict) -> None:
        namespace, name = cluster["metadata"]["namespace"], cluster["metadata"]["name"]
        cluster["status"] = {"phase": "Running"}
        tls_dir = self.tmp / "tls"
        tls_dir.mkdir()
        secret = self.api.objects[("secrets", namespace, f"{name}-tls")]
        for file, text in secret["stringData"].items():
            (tls_dir / file).write_text(text)
        scheduler = cluster["spec"]["scheduler"]["spec"]["containers"][0]
        worker = cluster["spec"]["worker"]["spec"]["containers"][0]
        env = {e["name"]: e["value"] for e in worker["env"]}
        assert env["DASK_SCHEDULER_ADDRESS"] == f"tls://{name}-scheduler:8786"  # the Service, in a pod
        with socket.socket() as free:  # start both at once: the worker waits for its scheduler, as in a pod
            free.bind(("127.0.0.1", 0))
            port = free.getsockname()[1]
        scheduler_file = self.tmp / "scheduler.json"
        self.start(scheduler, tls_dir, {}, ["--host", "127.0.0.1", "--port", str(port), "--dashboard-address",
                                            "127.0.0.1:0", "--scheduler-file", str(scheduler_file)])  # fmt: skip
        self.start(worker, tls_dir, {"DASK_SCHEDULER_ADDRESS": f"tls://127.0.0.1:{port}"},
                   ["--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0", "--worker-port", "0",
                    "--nanny-port", "0"])  # fmt: skip
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert scheduler_file.exists(), (self.tmp / "scheduler.log").read_text()
        info = json.loads(scheduler_file.read_text())
        self.address, self.dashboard_port = info["address"], info["services"]["dashboard"]
        self.api.add({"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"{name}-scheduler"}}, namespace)
        self.api.ready_services.add(f"{name}-scheduler")

    def start(self, container: dict, tls_dir: Path, env: dict[str, str], local_args: list[str]) -> None:
        args = [a.replace(kube.TLS_DIR, str(tls_dir)).replace("$(DASK_WORKER_NAME)", "w0") for a in container["args"]]
        assert container["command"][0] == "dask"
        command = [sys.executable, "-m", "dask", *container["command"][1:], *args, *local_args]
        scratch = self.tmp / f"{container['name']}-scratch"  # the pod's emptyDir
        scratch.mkdir()
        pod_env = {e["name"]: e["value"].replace(SCRATCH_DIR, str(scratch)) for e in container["env"]}
        environment = os.environ | pod_env | env
        log = (self.tmp / f"{container['name']}.log").open("w")
        self.processes.append(subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT))

    def delete(self, cluster: dict) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()


@pytest.mark.parametrize("adaptive", [False, True])
def test_start_creates_a_tls_cluster_that_plain_clients_cannot_use_and_deletes_it_on_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, adaptive: bool
) -> None:
    api = FakeKubernetes()
    api.install(monkeypatch)
    job_pod = api.add(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "survey-scale-run-x7"},
         "spec": {"containers": [{"name": "survey-scale", "image": "registry/survey-scale:1.0"}]},
         "status": {"phase": "Running"}},
        "survey",
    )  # fmt: skip
    monkeypatch.setenv(kube.POD_NAME_ENV, "survey-scale-run-x7")
    monkeypatch.setenv(kube.POD_NAMESPACE_ENV, "survey")
    operator = LocalOperator(api, tmp_path)
    monkeypatch.setattr(kube, "scheduler_address", lambda name, namespace, tls: operator.address)
    config = k8s_config(n_workers=1, wait_timeout_s=120, adaptive=adaptive)
    try:
        client, cluster = kube.start(config)
        try:
            assert client.submit(sum, [1, 2, 3]).result(timeout=30) == 6
            assert len(client.scheduler_info()["workers"]) == 1
            assert operator.address.startswith("tls://")
            with pytest.raises((OSError, TimeoutError)):  # a client without the cluster's certificate
                Client(operator.address.replace("tls://", "tcp://"), timeout="1s")
            # the worker's local directory (spilled data) is on the scratch emptyDir, not the read-only root
            (local_directory,) = client.run(lambda dask_worker: dask_worker.local_directory).values()
            assert Path(local_directory).is_relative_to(tmp_path / "worker-scratch")
            # the kubelet's probe reads /health; the operator's controller the HTTP API (adaptive: scaling,
            # retiring), which a fixed-size cluster does not serve (it retires workers on a plain HTTP request)
            dashboard = f"http://127.0.0.1:{operator.dashboard_port}"
            with urllib.request.urlopen(f"{dashboard}/health", timeout=10) as r:
                assert r.status == 200
            for path, key in (("api/v1/adaptive_target", "workers"), ("api/v1/check_idle", "idle_since")):
                if adaptive:
                    with urllib.request.urlopen(f"{dashboard}/{path}", timeout=10) as r:
                        assert r.status == 200 and key in json.loads(r.read())
                else:
                    with pytest.raises(urllib.error.HTTPError, match="404"):
                        urllib.request.urlopen(f"{dashboard}/{path}", timeout=10)
        finally:
            client.close()
        (daskcluster,) = api.of_kind("DaskCluster")
        (secret,) = api.of_kind("Secret")
        assert len(api.of_kind("DaskAutoscaler")) == int(adaptive)
        assert daskcluster["spec"]["worker"]["spec"]["containers"][0]["image"] == "registry/survey-scale:1.0"
        assert daskcluster["metadata"]["ownerReferences"] == [
            {"apiVersion": "v1", "kind": "Pod", "name": "survey-scale-run-x7", "uid": job_pod["metadata"]["uid"]}
        ]
        assert secret["metadata"]["ownerReferences"][0]["uid"] == daskcluster["metadata"]["uid"]
        assert set(secret["stringData"]) == {"ca.pem", "cert.pem", "key.pem"}
        cluster.close()
        assert api.of_kind("DaskCluster") == [] and api.of_kind("Secret") == [] and operator.processes == []
    finally:
        operator.delete({})
    # every call made is one the Job's Role allows
    role = next(d for d in yaml.safe_load_all(RBAC.read_text()) if d["kind"] == "Role")
    assert api.calls and [call for call in api.calls if not allowed_by(role, call)] == []


def test_start_deletes_what_it_made_when_the_operator_does_not_act(monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeKubernetes()
    api.install(monkeypatch)
    monkeypatch.setattr(kube, "CONTROLLER_WAIT_S", 0.2)
    monkeypatch.setattr(kube, "POLL_S", 0.05)
    config = k8s_config(image="registry/survey-scale:cpu", adaptive=True)
    with pytest.raises(TimeoutError, match=r"survey/survey-scale: the dask-kubernetes operator has not acted"):
        kube.start(config)
    assert api.objects == {}
    created = [call[2] for call in api.calls if call[0] == "create"]
    deleted = [call[2] for call in api.calls if call[0] == "delete"]
    assert created == ["secrets", "daskclusters", "daskautoscalers"] and deleted == created[::-1]


def test_a_cluster_left_by_an_ended_pod_is_replaced_and_anyone_elses_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = FakeKubernetes()
    api.install(monkeypatch)
    config = k8s_config(image="x")

    def left_cluster(owner: dict | None) -> None:
        api.objects.clear()
        metadata: dict = {"name": "survey-scale"}
        if owner is not None:
            metadata["ownerReferences"] = [{"apiVersion": "v1", "kind": "Pod", "name": owner["metadata"]["name"],
                                            "uid": owner["metadata"]["uid"]}]  # fmt: skip
            api.add(owner, "survey")
        cluster = api.add(
            {"apiVersion": "kubernetes.dask.org/v1", "kind": "DaskCluster", "metadata": metadata}, "survey"
        )
        owned = [{"apiVersion": "kubernetes.dask.org/v1", "kind": "DaskCluster", "name": "survey-scale",
                  "uid": cluster["metadata"]["uid"]}]  # fmt: skip
        api.add({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "survey-scale-tls",
                                                                    "ownerReferences": owned}}, "survey")  # fmt: skip

    def pod(phase: str) -> dict:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "run-1", "uid": "pod-1"},
                "status": {"phase": phase}}  # fmt: skip

    left_cluster(pod("Failed"))
    kube._remove_leftovers(config, "survey", None, time.monotonic() + 5, tls=True)
    assert api.of_kind("DaskCluster") == [] and api.of_kind("Secret") == []
    left_cluster(pod("Running"))  # an earlier attempt of this very pod
    kube._remove_leftovers(config, "survey", api.kind("Pod")(pod("Running")), time.monotonic() + 5, tls=True)
    assert api.of_kind("DaskCluster") == []
    for owner in (pod("Running"), None):  # another run's, or one made by hand
        left_cluster(owner)
        with pytest.raises(RuntimeError, match=r"DaskCluster survey/survey-scale already exists"):
            kube._remove_leftovers(config, "survey", None, time.monotonic() + 5, tls=True)
        assert len(api.of_kind("DaskCluster")) == 1
    api.objects.clear()
    api.add({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "survey-scale-tls"}}, "survey")
    with pytest.raises(RuntimeError, match=r"Secret survey/survey-scale-tls exists and was not made by survey-scale"):
        kube._remove_leftovers(config, "survey", None, time.monotonic() + 5, tls=True)


def test_the_scheduler_address_is_the_operators_with_the_tls_scheme_also_in_a_notebook(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    import dask_kubernetes.operator.networking as networking

    async def operator_address(service: str, namespace: str) -> str:  # in a pod: the Service's DNS name
        return f"tcp://{service}.{namespace}:8786"

    monkeypatch.setattr(networking, "get_scheduler_address", operator_address)
    assert kube.scheduler_address("survey-scale", "survey", tls=True) == "tls://survey-scale-scheduler.survey:8786"
    assert kube.scheduler_address("s", "ns", tls=False) == "tcp://s-scheduler.ns:8786"

    async def in_a_running_loop() -> str:  # Jupyter: an event loop runs in the calling thread
        return kube.scheduler_address("survey-scale", "survey", tls=True)

    assert asyncio.run(in_a_running_loop()) == "tls://survey-scale-scheduler.survey:8786"
