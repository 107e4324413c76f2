"""deploy/kubernetes and deploy/container, checked offline (no cluster, no image build).

(Their security — Pod Security, read-only root filesystems, NetworkPolicies, RBAC, image digests, the
dashboard — is checked by tests/deploy/test_hardening.py.)

Every manifest validates as the API server would (tests/deploy/kube_schemas.py: kubernetes-validate --strict
for core kinds, the dask-kubernetes CRDs' schemas for DaskCluster); the pieces agree with each other (the
ConfigMap's configuration loads and names the claim, mount and Secret the other manifests use); the example
DaskCluster is what ``survey-scale run`` creates for that configuration; the operator's Helm values use the
chart's keys; the Dockerfiles install torch before the package.
"""

from __future__ import annotations

import re
from pathlib import Path

import dask_kubernetes
import pytest
import yaml

from survey_scale.config import Config, load_config
from survey_scale.engine.cluster.kubernetes import LABELS, cluster_spec, scheduler_service_name, tls_secret_name
from survey_scale.engine.cluster.kubernetes_manifests import SCRATCH_DIR, SCRATCH_ENV
from tests.deploy.kube_schemas import CRD_DIR, validate

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
CONTAINER = ROOT / "deploy" / "container"
MANIFEST_FILES = sorted((KUBE / "manifests").glob("*.yaml")) + sorted((KUBE / "examples").glob("*.yaml"))
CHART_VALUES = CRD_DIR.parent / "values.yaml"
TORCH_PIN = "torch==2.13.0"  # README.md and .ci/run install this version first


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def manifests() -> dict[str, dict]:
    """Every resource of deploy/kubernetes by ``file:Kind/name``."""
    return {
        f"{path.relative_to(KUBE)}:{doc['kind']}/{doc['metadata']['name']}": doc
        for path in MANIFEST_FILES
        for doc in documents(path)
    }


def find(kind: str) -> dict:
    (doc,) = [doc for doc in manifests().values() if doc["kind"] == kind]
    return doc


def configmap_config(tmp_path: Path) -> Config:
    path = tmp_path / "config.yaml"
    path.write_text(find("ConfigMap")["data"]["config.yaml"])
    return load_config(path)


@pytest.mark.parametrize("name", sorted(manifests()))
def test_every_manifest_validates_offline(name: str) -> None:
    manifest = manifests()[name]
    checked = validate(manifest)
    assert checked
    assert "namespace" not in manifest["metadata"], f"{name}: the set is namespace-agnostic (kubectl -n)"


def test_the_kustomization_applies_every_manifest_and_no_example() -> None:
    (kustomization,) = documents(KUBE / "kustomization.yaml")
    # the one namespace: the Namespace manifest's (with its Pod Security labels: tests/deploy/test_hardening.py)
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["namespace"] == find("Namespace")["metadata"]["name"]
    assert sorted(kustomization["resources"]) == sorted(str(p.relative_to(KUBE)) for p in MANIFEST_FILES
                                                       if p.parent.name == "manifests")  # fmt: skip


def test_the_configmap_configuration_loads_and_matches_the_other_manifests(tmp_path: Path) -> None:
    config = configmap_config(tmp_path)
    kube = config.cluster.kubernetes
    assert config.cluster.kind == "kubernetes" and kube.tls.enabled
    assert config == load_config(ROOT / "configs" / "kubernetes.yaml")  # the example configuration is the same
    # every path the run reads or writes is on the shared volume
    for path in (config.cube.path, config.ingest.input, config.ingest.catalog, config.export.out):
        assert Path(path).is_relative_to(kube.mount_path), path
    claim = find("PersistentVolumeClaim")
    assert claim["metadata"]["name"] == kube.volume_claim and claim["spec"]["accessModes"] == ["ReadWriteMany"]
    job_pod = find("Job")["spec"]["template"]["spec"]
    (container,) = job_pod["containers"]
    assert container["args"] == ["run", "--config", "/etc/survey-scale/config.yaml"]
    assert container["name"] == "survey-scale"  # the container whose image the workers run (image: null)
    volumes = {v["name"]: v for v in job_pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    assert mounts[kube.mount_path]["persistentVolumeClaim"]["claimName"] == kube.volume_claim
    assert mounts["/etc/survey-scale"]["configMap"]["name"] == find("ConfigMap")["metadata"]["name"]
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"] if "valueFrom" in e}
    assert env == {"SURVEY_SCALE_POD_NAME": "metadata.name", "SURVEY_SCALE_POD_NAMESPACE": "metadata.namespace"}
    # the client's scratch is where survey-scale puts the scheduler's and workers' (an emptyDir, root read-only)
    assert {e["name"]: e["value"] for e in container["env"] if "value" in e} == SCRATCH_ENV
    assert volumes[next(m["name"] for m in container["volumeMounts"] if m["mountPath"] == SCRATCH_DIR)] == {
        "name": "scratch",
        "emptyDir": {},
    }
    # the Job runs as the ServiceAccount the Role is bound to, and the Role names the run's TLS Secret
    service_account = find("ServiceAccount")["metadata"]["name"]
    binding = find("RoleBinding")
    assert job_pod["serviceAccountName"] == service_account
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": service_account}]
    assert binding["roleRef"]["name"] == find("Role")["metadata"]["name"]
    # the Role names the run's objects: the DaskCluster (and DaskAutoscaler), its TLS Secret and its Service
    named = {(resource, tuple(r["resourceNames"])) for r in find("Role")["rules"] if "resourceNames" in r
             for resource in r["resources"]}  # fmt: skip
    assert named == {("daskclusters", (kube.name,)), ("daskautoscalers", (kube.name,)),
                     ("secrets", (tls_secret_name(kube),)), ("services", (scheduler_service_name(kube),))}  # fmt: skip
    # the NetworkPolicies select the Job's pod and the labels survey-scale gives the DaskCluster, and admit them
    policies = {doc["metadata"]["name"]: doc["spec"] for doc in manifests().values() if doc["kind"] == "NetworkPolicy"}
    dask, client = policies["survey-scale-dask"], policies["survey-scale-client"]
    part_of = dask["podSelector"]["matchLabels"]
    assert part_of.items() <= LABELS.items()
    assert client["podSelector"]["matchLabels"].items() <= find("Job")["spec"]["template"]["metadata"]["labels"].items()
    assert {"podSelector": {"matchLabels": part_of}} in dask["ingress"][0]["from"]


def test_the_example_daskcluster_is_what_survey_scale_creates_for_the_configmap(tmp_path: Path) -> None:
    config = configmap_config(tmp_path).cluster.kubernetes
    job_image = find("Job")["spec"]["template"]["spec"]["containers"][0]["image"]
    expected = cluster_spec(config, tls_secret_name(config), image=job_image)
    example = find("DaskCluster")
    assert example["metadata"] == expected["metadata"]
    assert example["spec"] == expected["spec"], (
        "examples/daskcluster.yaml differs from cluster_spec() for manifests/configmap.yaml: regenerate it"
    )


def test_the_operator_values_use_the_charts_keys() -> None:
    chart = yaml.safe_load(CHART_VALUES.read_text())
    (ours,) = documents(KUBE / "operator-values.yaml")

    def unknown(values: dict, reference: dict, prefix: str = "") -> list[str]:
        found = []
        for key, value in values.items():
            if key not in reference:
                found.append(prefix + key)
            elif isinstance(value, dict) and isinstance(reference[key], dict) and reference[key]:
                found += unknown(value, reference[key], f"{prefix}{key}.")
        return found

    assert unknown(ours, chart) == [], f"not in {CHART_VALUES.name} of dask-kubernetes {dask_kubernetes.__version__}"
    assert ours["image"]["tag"] == dask_kubernetes.__version__  # the operator of the library we test with


@pytest.mark.parametrize("dockerfile", ["Dockerfile.cpu", "Dockerfile.cuda"])
def test_the_dockerfiles_install_torch_before_the_package(dockerfile: str) -> None:
    text = (CONTAINER / dockerfile).read_text()
    args = dict(re.findall(r"^ARG (\w+)=(.*)$", text, flags=re.M))
    runs = [" ".join(run.split()) for run in re.findall(r"^RUN ((?:.*\\\n)*.*)$", text, flags=re.M)]
    torch = [i for i, run in enumerate(runs) if '"torch==${TORCH_VERSION}"' in run]
    package = [i for i, run in enumerate(runs) if re.search(r"pip install \.(\s|$)", run)]
    assert f"torch=={args['TORCH_VERSION']}" == TORCH_PIN
    assert len(torch) == 1 and len(package) == 1 and torch[0] < package[0]
    if dockerfile == "Dockerfile.cpu":
        assert args["TORCH_INDEX_URL"].endswith("/whl/cpu")
    assert re.search(r"^USER 10001", text, flags=re.M) and '"survey-scale"' in text.splitlines()[-2]
    # what the image copies is in the build context .dockerignore lets through
    allowed = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines() if line[:1] == "!"}
    for sources in re.findall(r"^COPY (.*) \S+$", text, flags=re.M):
        assert set(sources.split()) <= allowed and all((ROOT / s).exists() for s in sources.split())
    assert TORCH_PIN in (ROOT / ".ci" / "run").read_text()


def write_example() -> None:
    """Regenerate examples/daskcluster.yaml (keeping its comment): ``python -m tests.deploy.test_manifests``."""
    import tempfile

    path = KUBE / "examples" / "daskcluster.yaml"
    header = "".join(line for line in path.read_text().splitlines(keepends=True) if line.startswith("#"))
    with tempfile.TemporaryDirectory() as tmp:
        config = configmap_config(Path(tmp)).cluster.kubernetes
    job_image = find("Job")["spec"]["template"]["spec"]["containers"][0]["image"]
    spec = cluster_spec(config, tls_secret_name(config), image=job_image)
    path.write_text(header + yaml.safe_dump(spec, sort_keys=False, width=1000))


if __name__ == "__main__":
    write_example()
