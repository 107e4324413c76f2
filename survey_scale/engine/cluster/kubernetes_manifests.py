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

Hardening (``deploy/kubernetes/README.md``, "Security"; checked by ``tests/deploy/test_hardening.py``)
    Scheduler and worker pods meet the ``restricted`` Pod Security Standard that the namespace enforces
    (non-root, no privilege escalation, no capabilities, the runtime's seccomp profile, no ServiceAccount
    token) and run with a read-only root filesystem: what they write outside the data volume goes to an
    emptyDir at :data:`SCRATCH_DIR` (Dask's local directory with the workers' spilled data, TMPDIR, HOME).
    Workers listen on fixed ports (:data:`WORKER_PORT`, :data:`NANNY_PORT`) so that the NetworkPolicy can name
    them. The scheduler's HTTP API (which retires workers, over plain HTTP) is on only for adaptive clusters,
    whose DaskAutoscaler needs it; a NodePort or LoadBalancer Service carries the TLS comm port only, never the
    dashboard. Images may be pinned by digest (``repo@sha256:...``; :func:`check_image`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from survey_scale.core.settings import ConfigError
from survey_scale.engine.cluster import WORKER_ENV
from survey_scale.engine.settings import KubernetesClusterConfig

if TYPE_CHECKING:
    from distributed.security import Security

SCHEDULER_PORT = 8786
DASHBOARD_PORT = 8787
WORKER_DASHBOARD_PORT = 8788
WORKER_PORT = 8789
"""The worker's comm port (fixed, not random: the NetworkPolicy admits it by number)."""
NANNY_PORT = 8790
"""The worker's nanny, which the scheduler asks to restart or stop the worker."""
SCRATCH_DIR = "/tmp"
"""Where every pod mounts its emptyDir ``scratch``: the one writable place besides the data volume (the root
filesystem is read-only). Dask's local directory (the workers' spilled data), TMPDIR and HOME point there."""
SCRATCH_ENV = {"HOME": SCRATCH_DIR, "TMPDIR": SCRATCH_DIR, "DASK_TEMPORARY_DIRECTORY": SCRATCH_DIR}
"""Environment of every container, unless ``cluster.kubernetes.env`` sets the variable itself."""
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
)
"""The scheduler's HTTP routes: Dask's defaults without the proxy; read-only, with the kubelet's ``/health``."""
SCHEDULER_API_ROUTE = "distributed.http.scheduler.api"
"""Added for adaptive clusters only: the operator's controller asks it how many workers the scheduler wants
and which to retire (its fallback, a plain ``rpc``, cannot speak TLS). It retires workers on a plain-HTTP
request, so a fixed-size cluster goes without it."""
POD_SECURITY_CONTEXT = {"runAsNonRoot": True, "fsGroup": FS_GROUP, "seccompProfile": {"type": "RuntimeDefault"}}
"""Every pod's securityContext (with :data:`CONTAINER_SECURITY_CONTEXT`: the ``restricted`` Pod Security Standard)."""
CONTAINER_SECURITY_CONTEXT = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
}
_DOMAIN_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REFERENCE = re.compile(
    rf"(?P<name>(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*(?::[0-9]+)?/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    r"(?::(?P<tag>\w[\w.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}))?",
    re.ASCII,
)
"""An image reference as the container runtimes read it: ``[registry[:port]/]path[:tag][@digest]``."""


def check_image(image: str) -> str:
    """``image`` if it is a valid image reference (tag, digest or both: ``repo:tag@sha256:...``), else ConfigError.

    A reference with a digest names one image for good: the client, scheduler and workers then run the same
    bytes even if the tag moves (``deploy/kubernetes/README.md``, "Images").
    """
    if not isinstance(image, str) or IMAGE_REFERENCE.fullmatch(image) is None:
        raise ConfigError(
            f"cluster.kubernetes.image: {image!r} is not an image reference "
            "([registry/]repository[:tag][@sha256:<64 hex digits>])"
        )
    return image


def image_digest(image: str) -> str | None:
    """The digest (``sha256:...``) ``image`` is pinned by, or None for a reference by tag only."""
    return IMAGE_REFERENCE.fullmatch(check_image(image))["digest"]


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
        Image of scheduler and workers when ``config.image`` is null (the image of the client's pod); a
        reference by tag, by digest (``repo@sha256:...``) or both.

    Raises
    ------
    ConfigError
        If neither ``config.image`` nor ``image`` gives an image, or it is not an image reference; if a
        NodePort or LoadBalancer Service is asked for a cluster without TLS (its scheduler would run code sent
        from outside the cluster) or an adaptive one (the operator reaches the scheduler's API through the
        Service's dashboard port, which such a Service leaves out).
    """
    image = config.image or image
    if image is None:
        raise ConfigError(
            "cluster.kubernetes.image: null means the image of survey-scale's pod, which is not known here"
        )
    check_image(image)
    if config.service_type != "ClusterIP":
        if tls_secret is None:
            raise ConfigError(
                f"cluster.kubernetes.service_type: {config.service_type} puts the scheduler outside the cluster: "
                "keep tls.enabled (without TLS the scheduler runs what anyone sends it), or use ClusterIP"
            )
        if config.adaptive:
            raise ConfigError(
                f"cluster.kubernetes.service_type: {config.service_type} leaves the dashboard port out of the "
                "Service, through which the operator scales an adaptive cluster: use ClusterIP with adaptive"
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
    worker["args"] += ["--worker-port", str(WORKER_PORT), "--nanny-port", str(NANNY_PORT)]
    worker["args"] += ["--dashboard-address", str(WORKER_DASHBOARD_PORT), *tls_args]
    worker["ports"] = [
        {"name": "tcp-worker", "containerPort": WORKER_PORT, "protocol": "TCP"},
        {"name": "tcp-nanny", "containerPort": NANNY_PORT, "protocol": "TCP"},
        *worker["ports"],
    ]
    scheme = "tls" if tls_secret is not None else "tcp"
    # A short Service name: workers share the scheduler's namespace, whatever it and the cluster domain are.
    worker["env"].append(
        {"name": "DASK_SCHEDULER_ADDRESS", "value": f"{scheme}://{scheduler_service_name(config)}:{SCHEDULER_PORT}"}
    )
    worker["env"] += [{"name": k, "value": v} for k, v in WORKER_ENV.items() if k not in config.env]
    routes = [*SCHEDULER_HTTP_ROUTES, *([SCHEDULER_API_ROUTE] if config.adaptive else [])]
    # Dask reads a list from the environment (literal_eval)
    scheduler["env"].append({"name": "DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES", "value": json.dumps(routes)})
    if config.service_type != "ClusterIP":  # the plain-HTTP dashboard stays inside: kubectl port-forward
        service = spec["spec"]["scheduler"]["service"]
        service["ports"] = [port for port in service["ports"] if port["port"] != DASHBOARD_PORT]
    volumes: list[dict] = [{"name": "scratch", "emptyDir": {}}]
    mounts: list[dict] = [{"name": "scratch", "mountPath": SCRATCH_DIR}]
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
        pod["securityContext"] = json.loads(json.dumps(POD_SECURITY_CONTEXT))
        container["securityContext"] = json.loads(json.dumps(CONTAINER_SECURITY_CONTEXT))
        container["env"] += [{"name": k, "value": v} for k, v in SCRATCH_ENV.items() if k not in config.env]
        pod["volumes"] = json.loads(json.dumps(volumes))
        container["volumeMounts"] = json.loads(json.dumps(mounts))
    return spec


def preview(config: KubernetesClusterConfig) -> str:
    """The DaskCluster resource :func:`~.kubernetes.start` would create, as YAML (``survey-scale config cluster``)."""
    import yaml

    secret = tls_secret_name(config) if config.tls.enabled else None
    spec = cluster_spec(config, secret, image=config.image or "survey-scale")
    if config.image is None:
        for role in ("scheduler", "worker"):
            spec["spec"][role]["spec"]["containers"][0]["image"] = "<the image of the pod running survey-scale>"
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
