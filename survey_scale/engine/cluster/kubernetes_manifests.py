"""The resources ``cluster.kind: kubernetes`` creates, as plain dicts (SPEC §11): no Kubernetes, no Dask.

:func:`cluster_spec` builds the ``DaskCluster`` (``kubernetes.dask.org/v1``) that the dask-kubernetes operator
turns into a scheduler Deployment and Service and worker Deployments; :func:`autoscaler_spec` its
``DaskAutoscaler``, :func:`tls_secret_spec` the Secret with the cluster's certificates, :func:`preview` the
DaskCluster as YAML (``survey-scale config cluster``). Each is a pure function of its arguments: the tests
validate them offline against the operator's CRD and as core pods (kubernetes-validate), and
``deploy/kubernetes/examples/daskcluster.yaml`` is what :func:`cluster_spec` gives for the configuration of
``deploy/kubernetes/manifests/configmap.yaml``. Creating them, connecting and deleting them is
:mod:`.kubernetes`; why the pods look as they do (TLS, no ServiceAccount token, the scheduler's HTTP routes) is
explained there.

The operator's template (its ``make_cluster_spec``) is reproduced by :func:`operator_cluster_spec`, so this
module imports neither dask-kubernetes nor kr8s; ``tests/engine/test_kubernetes_manifests.py`` keeps the two
equal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from survey_scale.core.settings import ConfigError
from survey_scale.engine.settings import KubernetesClusterConfig

if TYPE_CHECKING:
    from distributed.security import Security

SCHEDULER_PORT = 8786
DASHBOARD_PORT = 8787
WORKER_DASHBOARD_PORT = 8788
TLS_DIR = "/etc/survey-scale/tls"
"""Where scheduler and worker pods mount the TLS Secret (``ca.pem``, ``cert.pem``, ``key.pem``)."""
TLS_FILES = ("ca.pem", "cert.pem", "key.pem")
LABELS = {"app.kubernetes.io/name": "survey-scale", "app.kubernetes.io/part-of": "survey-scale"}
"""Labels of every resource made here; the operator copies the DaskCluster's to its pods (NetworkPolicy)."""
FS_GROUP = 10001
"""Group of the pods' processes and volumes: the group of the image's user (deploy/container/)."""
SCHEDULER_HTTP_ROUTES = (
    "distributed.http.scheduler.prometheus",
    "distributed.http.scheduler.info",
    "distributed.http.scheduler.json",
    "distributed.http.health",
    "distributed.http.statics",
    "distributed.http.scheduler.api",
)
"""The scheduler's HTTP routes: Dask's defaults without the proxy, with the API the operator needs."""


def tls_secret_name(config: KubernetesClusterConfig) -> str:
    """Name of the Secret with the cluster's certificates."""
    return f"{config.name}-tls"


def scheduler_service_name(config: KubernetesClusterConfig) -> str:
    """Name of the scheduler's Service (made by the operator)."""
    return f"{config.name}-scheduler"


def operator_cluster_spec(
    name: str,
    image: str,
    n_workers: int,
    resources: Any,
    env: Mapping[str, str],
    worker_command: str,
    scheduler_service_type: str,
) -> dict:
    """What the operator's ``dask_kubernetes.operator.make_cluster_spec`` gives for these arguments (and its
    defaults ``idle_timeout=0``, ``jupyter=False``): the template :func:`cluster_spec` starts from.

    As there, scheduler and worker share ``resources`` (the same object) and each gets its own list of ``env``.
    """

    def env_list() -> list[dict[str, str]]:
        return [{"name": key, "value": value} for key, value in env.items()]

    worker_args = [*worker_command.split(" "), "--name", "$(DASK_WORKER_NAME)", "--dashboard"]
    worker_args += ["--dashboard-address", str(WORKER_DASHBOARD_PORT)]
    health = {"port": "http-dashboard", "path": "/health"}
    worker = {
        "name": "worker",
        "image": image,
        "args": worker_args,
        "env": env_list(),
        "resources": resources,
        "ports": [{"name": "http-dashboard", "containerPort": WORKER_DASHBOARD_PORT, "protocol": "TCP"}],
    }
    scheduler = {
        "name": "scheduler",
        "image": image,
        "args": ["dask-scheduler", "--host", "0.0.0.0"],
        "env": env_list(),
        "resources": resources,
        "ports": [
            {"name": "tcp-comm", "containerPort": SCHEDULER_PORT, "protocol": "TCP"},
            {"name": "http-dashboard", "containerPort": DASHBOARD_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {
            "httpGet": dict(health),
            "initialDelaySeconds": 0,
            "periodSeconds": 1,
            "timeoutSeconds": 300,
        },
        "livenessProbe": {"httpGet": dict(health), "initialDelaySeconds": 15, "periodSeconds": 20},
    }
    service = {
        "type": scheduler_service_type,
        "selector": {"dask.org/cluster-name": name, "dask.org/component": "scheduler"},
        "ports": [
            {"name": "tcp-comm", "protocol": "TCP", "port": SCHEDULER_PORT, "targetPort": "tcp-comm"},
            {"name": "http-dashboard", "protocol": "TCP", "port": DASHBOARD_PORT, "targetPort": "http-dashboard"},
        ],
    }
    return {
        "apiVersion": "kubernetes.dask.org/v1",
        "kind": "DaskCluster",
        "metadata": {"name": name},
        "spec": {
            "idleTimeout": 0,
            "worker": {"replicas": n_workers, "spec": {"containers": [worker]}},
            "scheduler": {"spec": {"containers": [scheduler]}, "service": service},
        },
    }


def cluster_spec(config: KubernetesClusterConfig, tls_secret: str | None, *, image: str | None = None) -> dict:
    """The ``DaskCluster`` resource (``kubernetes.dask.org/v1``) of ``config``, without a namespace.

    Parameters
    ----------
    config
        ``cluster.kubernetes``.
    tls_secret
        Name of the Secret holding ``ca.pem``, ``cert.pem`` and ``key.pem``; scheduler and workers then
        listen on ``tls://`` with those files. None: plain ``tcp://``.
    image
        Image of scheduler and workers when ``config.image`` is null (the image of the client's pod).

    Raises
    ------
    ConfigError
        If neither ``config.image`` nor ``image`` gives an image.
    """
    image = config.image or image
    if image is None:
        raise ConfigError(
            "cluster.kubernetes.image: null means the image of survey-scale's pod, which is not known here"
        )
    spec = operator_cluster_spec(
        name=config.name,
        image=image,
        n_workers=config.n_workers,
        resources=config.resources,
        env=dict(config.env),
        worker_command="dask worker",
        scheduler_service_type=config.service_type,
    )
    spec = json.loads(json.dumps(spec))  # scheduler and worker share the resources dict: make them separate
    spec["metadata"]["labels"] = dict(LABELS)
    scheduler = spec["spec"]["scheduler"]["spec"]["containers"][0]
    worker = spec["spec"]["worker"]["spec"]["containers"][0]
    tls_args: list[str] = []
    if tls_secret is not None:
        tls_args = ["--protocol", "tls"]
        for flag, file in zip(("--tls-ca-file", "--tls-cert", "--tls-key"), TLS_FILES):
            tls_args += [flag, f"{TLS_DIR}/{file}"]
    # The image's entrypoint is survey-scale: give the command, not only arguments.
    scheduler["command"] = ["dask", "scheduler"]
    scheduler["args"] = ["--host", "0.0.0.0", "--port", str(SCHEDULER_PORT)]
    scheduler["args"] += ["--dashboard-address", f":{DASHBOARD_PORT}", *tls_args]
    worker["command"] = ["dask", "worker"]
    worker["args"] = ["--name", "$(DASK_WORKER_NAME)", "--nthreads", str(config.threads_per_worker)]
    worker["args"] += ["--dashboard-address", str(WORKER_DASHBOARD_PORT), *tls_args]
    scheme = "tls" if tls_secret is not None else "tcp"
    # A short Service name: workers share the scheduler's namespace, whatever it and the cluster domain are.
    worker["env"].append(
        {"name": "DASK_SCHEDULER_ADDRESS", "value": f"{scheme}://{scheduler_service_name(config)}:{SCHEDULER_PORT}"}
    )
    routes = json.dumps(list(SCHEDULER_HTTP_ROUTES))  # Dask reads a list from the environment (literal_eval)
    scheduler["env"].append({"name": "DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES", "value": routes})
    volumes, mounts = [], []
    if tls_secret is not None:
        for container in (scheduler, worker):
            container["env"].append({"name": "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION", "value": "True"})
        volumes.append({"name": "tls", "secret": {"secretName": tls_secret, "defaultMode": 0o440}})
        mounts.append({"name": "tls", "mountPath": TLS_DIR, "readOnly": True})
    if config.volume_claim is not None:
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": config.volume_claim}})
        mounts.append({"name": "data", "mountPath": config.mount_path})
    for role, container in (("scheduler", scheduler), ("worker", worker)):
        pod = spec["spec"][role]["spec"]
        pod["automountServiceAccountToken"] = False
        pod["securityContext"] = {
            "runAsNonRoot": True,
            "fsGroup": FS_GROUP,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        container["securityContext"] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
        if volumes:
            pod["volumes"] = json.loads(json.dumps(volumes))
            container["volumeMounts"] = json.loads(json.dumps(mounts))
    return spec


def preview(config: KubernetesClusterConfig) -> str:
    """The DaskCluster resource :func:`~.kubernetes.start` would create, as YAML (``survey-scale config cluster``)."""
    import yaml

    secret = tls_secret_name(config) if config.tls.enabled else None
    spec = cluster_spec(config, secret, image=config.image or "<the image of the pod running survey-scale>")
    return yaml.safe_dump(spec, sort_keys=False)


def autoscaler_spec(config: KubernetesClusterConfig) -> dict:
    """The ``DaskAutoscaler`` resource letting the operator scale between n_workers and max_workers."""
    return {
        "apiVersion": "kubernetes.dask.org/v1",
        "kind": "DaskAutoscaler",
        "metadata": {"name": config.name, "labels": dict(LABELS)},
        "spec": {"cluster": config.name, "minimum": config.n_workers, "maximum": config.max_workers},
    }


def tls_secret_spec(name: str, security: Security) -> dict:
    """The Secret with the CA, certificate and key of ``security`` (PEM text, or the files it names)."""

    def pem(value: str) -> str:
        return value if "-----BEGIN" in value else Path(value).read_text()

    files = (security.tls_ca_file, security.tls_worker_cert, security.tls_worker_key)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": dict(LABELS)},
        "type": "Opaque",
        "stringData": {file: pem(value) for file, value in zip(TLS_FILES, files)},
    }
