"""``cluster.kind: kubernetes``: a ``DaskCluster`` of the dask-kubernetes operator (SPEC §11).

``survey-scale run`` runs in a pod (the Job of ``deploy/kubernetes/manifests/job.yaml``) and is the Dask
client. It creates a ``DaskCluster`` resource, which the operator (installed once per Kubernetes cluster with
its Helm chart) turns into a scheduler Deployment and Service and worker Deployments. This module is that
lifecycle: :func:`start` creates the resources, waits for them and connects, :class:`KubernetesCluster` deletes
them. The resources themselves are built by :mod:`.kubernetes_manifests` — pure functions, re-exported here
(:func:`cluster_spec`, :func:`autoscaler_spec`, :func:`tls_secret_spec`, :func:`preview`);
``deploy/kubernetes/examples/daskcluster.yaml`` is what :func:`cluster_spec` gives for the configuration of
``deploy/kubernetes/manifests/configmap.yaml``, and ``tests/deploy/test_manifests.py`` keeps the two equal.
Scheduler and workers run the image of the pod ``survey-scale`` runs in (``cluster.kubernetes.image: null``)
and mount the cube's PersistentVolumeClaim at the same path, so the client's paths are theirs.

Security
    A Dask scheduler runs whatever it is sent. With ``tls.enabled`` (the default) :func:`start` makes
    temporary certificates (or reads ``tls.ca_file``/``cert``/``key``) and stores them in a Secret
    ``<name>-tls`` that scheduler and worker pods mount at :data:`TLS_DIR`; both listen on ``tls://`` only
    and take connections only from holders of a certificate of that authority, this client included. (The
    operator's ``KubeCluster`` cannot do this: it connects with a plain ``rpc(address)`` and no
    ``Security``.) Scheduler and worker pods get no ServiceAccount token, so code sent to them cannot reach
    the Kubernetes API, and run as a non-root user without privilege escalation. The NetworkPolicy of
    ``deploy/kubernetes/manifests/networkpolicy.yaml`` lets only survey-scale's pods reach them, and the
    operator reach the dashboard port.

Dashboard
    The scheduler's dashboard (HTTP, port 8787) is a port of the ClusterIP Service ``<name>-scheduler``;
    reach it from a workstation with ``kubectl port-forward svc/<name>-scheduler 8787:8787`` and open
    http://localhost:8787 (the link is logged at start). Unlike the other kinds' it is not bound to loopback
    inside the pod: the kubelet's readiness probe (``/health``) and the operator's controller reach it
    through the pod's address. The controller asks the scheduler's HTTP API how many workers it wants
    (``/api/v1/adaptive_target``) and which to retire (``/api/v1/retire_workers``); its fallback, a plain
    ``rpc`` on the comm port, cannot speak TLS. So the API is turned on (:data:`SCHEDULER_HTTP_ROUTES`,
    without Dask's proxy route); it reports the scheduler's state and retires workers but runs no code, and
    the NetworkPolicy keeps everyone but survey-scale's pods and the operator away from it.

Lifetime
    The DaskCluster is owned by the pod that created it (named by :data:`POD_NAME_ENV`, from the Job's
    downward API) and owns the Secret and the DaskAutoscaler, so deleting the Job removes everything even
    after a crash; the returned :class:`KubernetesCluster` deletes them on ``close()``. A DaskCluster of the
    same name left by an ended pod (or an earlier attempt in this pod) is replaced; one of a running pod, or
    one made by hand, is left alone and the error says so.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import kr8s
from distributed import Client
from kr8s.objects import Pod, Secret, Service, new_class

from survey_scale.core.errors import SurveyScaleError
from survey_scale.core.settings import ConfigError
from survey_scale.engine.cluster.kubernetes_manifests import (
    DASHBOARD_PORT,
    FS_GROUP,
    LABELS,
    SCHEDULER_HTTP_ROUTES,
    SCHEDULER_PORT,
    TLS_DIR,
    TLS_FILES,
    WORKER_DASHBOARD_PORT,
    autoscaler_spec,
    cluster_spec,
    preview,
    scheduler_service_name,
    tls_secret_name,
    tls_secret_spec,
)
from survey_scale.engine.settings import KubernetesClusterConfig

__all__ = [
    "CONTROLLER_WAIT_S",
    "DASHBOARD_PORT",
    "FS_GROUP",
    "LABELS",
    "POD_NAMESPACE_ENV",
    "POD_NAME_ENV",
    "POLL_S",
    "SCHEDULER_HTTP_ROUTES",
    "SCHEDULER_PORT",
    "TLS_DIR",
    "TLS_FILES",
    "WORKER_DASHBOARD_PORT",
    "DaskAutoscaler",
    "DaskCluster",
    "KubernetesCluster",
    "KubernetesError",
    "KubernetesTimeoutError",
    "autoscaler_spec",
    "cluster_spec",
    "kube_namespace",
    "preview",
    "scheduler_address",
    "scheduler_service_name",
    "start",
    "tls_secret_name",
    "tls_secret_spec",
]

log = logging.getLogger(__name__)


class KubernetesError(SurveyScaleError, RuntimeError):
    """The cluster could not be made or reached on Kubernetes; the message names the resource and what to do."""


class KubernetesTimeoutError(KubernetesError, TimeoutError):
    """The operator, the scheduler or a first worker did not come in time; the message gives the pods' states."""


DaskCluster = new_class("DaskCluster", "kubernetes.dask.org/v1", namespaced=True)
DaskAutoscaler = new_class("DaskAutoscaler", "kubernetes.dask.org/v1", namespaced=True)

POD_NAME_ENV = "SURVEY_SCALE_POD_NAME"
"""Environment variable with the name of the pod survey-scale runs in (the Job sets it, downward API)."""
POD_NAMESPACE_ENV = "SURVEY_SCALE_POD_NAMESPACE"
CONTROLLER_WAIT_S = 120.0
"""The operator sets a DaskCluster's status within seconds; longer means it is not running."""
POLL_S = 1.0


class KubernetesCluster:
    """The resources :func:`start` created in ``namespace``; :meth:`close` deletes them (newest first).

    Deleting the DaskCluster makes the operator remove its scheduler and worker pods.
    """

    def __init__(self, name: str, namespace: str) -> None:
        self.name = name
        self.namespace = namespace
        self.resources: list[Any] = []

    def __repr__(self) -> str:
        return f"KubernetesCluster({self.namespace}/{self.name}, {len(self.resources)} resources)"

    def close(self) -> None:
        """Delete what was created; a failure is logged (with the kubectl command), never raised."""
        while self.resources:
            resource = self.resources.pop()
            kind = resource.raw.get("kind", type(resource).__name__)
            try:
                resource.delete()
                log.info("Kubernetes: deleted %s %s/%s", kind, self.namespace, resource.name)
            except kr8s.NotFoundError:
                pass
            except Exception as exc:  # cleanup goes on
                log.warning(
                    "Kubernetes: could not delete %s %s/%s (%s); delete it with kubectl delete -n %s %s %s",
                    kind, self.namespace, resource.name, exc, self.namespace, kind.lower(), resource.name,
                )  # fmt: skip


def start(config: KubernetesClusterConfig) -> tuple[Client, KubernetesCluster]:
    """Create the Secret, the DaskCluster (and DaskAutoscaler), wait for the scheduler, connect, wait for a worker.

    Raises
    ------
    ConfigError
        If ``image`` is null outside a pod that names itself (:data:`POD_NAME_ENV`).
    KubernetesError
        If there are no credentials, the DaskCluster CRD is missing, or a DaskCluster of that name belongs to a
        running pod.
    KubernetesTimeoutError
        If the operator does not act, or the scheduler or a first worker is not up within ``wait_timeout_s``
        (the message gives the pods' states, e.g. ImagePullBackOff).
    """
    from survey_scale.engine.cluster import make_security

    security = make_security(config.tls, "cluster.kubernetes.tls")
    if config.image is None and not os.environ.get(POD_NAME_ENV):
        raise ConfigError(
            f"cluster.kubernetes.image: null means the image of survey-scale's own pod, named by {POD_NAME_ENV} "
            "(the Job of deploy/kubernetes sets it); outside that Job, give the image"
        )
    pod_namespace = os.environ.get(POD_NAMESPACE_ENV) or kube_namespace()  # kube_namespace: credentials or error
    own_pod = _own_pod(pod_namespace)
    namespace = config.namespace or pod_namespace
    image = config.image or (_pod_image(own_pod) if own_pod is not None else None)
    body = cluster_spec(config, tls_secret_name(config) if security is not None else None, image=image)
    if own_pod is not None and own_pod.namespace == namespace:  # an owner in another namespace counts as absent
        body["metadata"]["ownerReferences"] = [_owner_reference(own_pod)]
    deadline = time.monotonic() + config.wait_timeout_s
    cluster = KubernetesCluster(config.name, namespace)
    try:
        _remove_leftovers(config, namespace, own_pod, deadline, tls=security is not None)
        secret = None
        if security is not None:
            secret = Secret(tls_secret_spec(tls_secret_name(config), security), namespace=namespace)
            secret.create()
            cluster.resources.append(secret)
        resource = DaskCluster(body, namespace=namespace)
        try:
            resource.create()
        except kr8s.ServerError as exc:
            if exc.response is not None and exc.response.status_code == 404:
                raise KubernetesError(
                    "Kubernetes has no DaskCluster resource type: install the dask-kubernetes operator "
                    "(deploy/kubernetes/README.md)"
                ) from exc
            raise
        cluster.resources.append(resource)
        owned_by_cluster = {"metadata": {"ownerReferences": [_owner_reference(resource)]}}
        if secret is not None:
            secret.patch(owned_by_cluster)
        if config.adaptive:
            autoscaler_body = autoscaler_spec(config)
            autoscaler_body["metadata"].update(owned_by_cluster["metadata"])
            autoscaler = DaskAutoscaler(autoscaler_body, namespace=namespace)
            autoscaler.create()
            cluster.resources.append(autoscaler)
        log.info("Kubernetes: DaskCluster %s/%s created (image %s); waiting for the scheduler", namespace,
                 config.name, body["spec"]["scheduler"]["spec"]["containers"][0]["image"])  # fmt: skip
        _wait_until(
            lambda: _has_status(resource),
            min(deadline, time.monotonic() + CONTROLLER_WAIT_S),
            lambda: (
                f"DaskCluster {namespace}/{config.name}: the dask-kubernetes operator has not acted on it; "
                "is it installed and running (deploy/kubernetes/README.md)?"
            ),
        )
        _wait_until(
            lambda: _service_ready(scheduler_service_name(config), namespace),
            deadline,
            lambda: (
                f"DaskCluster {namespace}/{config.name}: no ready scheduler after {config.wait_timeout_s:.0f} s "
                f"({_pod_states(namespace, config.name, 'scheduler')})"
            ),
        )
        address = scheduler_address(config.name, namespace, tls=security is not None)
        log.info(
            "Kubernetes: scheduler %s; dashboard: kubectl port-forward -n %s svc/%s %d:%d, then http://localhost:%d",
            address, namespace, scheduler_service_name(config), DASHBOARD_PORT, DASHBOARD_PORT, DASHBOARD_PORT,
        )  # fmt: skip
        try:
            client = Client(address, security=security, timeout=max(1.0, deadline - time.monotonic()))
        except OSError as exc:  # includes a refused certificate
            raise KubernetesError(f"DaskCluster {namespace}/{config.name}: cannot reach {address}: {exc}") from exc
        if config.n_workers > 0:
            try:
                client.wait_for_workers(1, timeout=max(1.0, deadline - time.monotonic()))
            except TimeoutError as exc:
                client.close()
                raise KubernetesTimeoutError(
                    f"DaskCluster {namespace}/{config.name}: no worker after {config.wait_timeout_s:.0f} s "
                    f"({_pod_states(namespace, config.name, 'worker')})"
                ) from exc
        else:
            log.info("Kubernetes: adaptive from 0 workers: the operator adds workers when tasks arrive")
    except BaseException:
        cluster.close()
        raise
    return client, cluster


def kube_namespace() -> str:
    """The namespace of the kube context (in a pod: its ServiceAccount's)."""
    try:
        return kr8s.api().namespace
    except (ValueError, OSError) as exc:  # kr8s: "Unable to find valid credentials"
        raise KubernetesError(
            f"cluster.kind kubernetes: no Kubernetes credentials here (no kubeconfig, not in a pod): {exc}"
        ) from exc


def scheduler_address(name: str, namespace: str, *, tls: bool) -> str:
    """The scheduler's address as this process reaches it, with the ``tls://`` scheme when ``tls``.

    The operator's resolution: the Service's DNS name inside the cluster, the node port or load balancer of
    a NodePort or LoadBalancer Service, else a port-forward (outside the cluster; needs ``pods/portforward``).
    """
    from dask_kubernetes.operator.networking import get_scheduler_address

    coroutine = get_scheduler_address(f"{name}-scheduler", namespace)
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # the command line: no event loop here
        address = asyncio.run(coroutine)
    else:  # a notebook's loop is running in this thread: run it in another
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            address = pool.submit(asyncio.run, coroutine).result()
    return "tls://" + address.split("://", 1)[1] if tls else address


def _fetch(kind: type, name: str, namespace: str) -> Any | None:
    """The resource ``kind``/``name`` as it is now (a GET by name, which a Role's resourceNames allow), or None."""
    resource = kind(name, namespace=namespace)
    try:
        resource.refresh()
    except kr8s.NotFoundError:
        return None
    return resource


def _own_pod(namespace: str) -> Any | None:
    name = os.environ.get(POD_NAME_ENV)
    if not name:
        return None
    pod = _fetch(Pod, name, namespace)
    if pod is None:
        raise KubernetesError(f"{POD_NAME_ENV}={name}: no such pod in namespace {namespace}")
    return pod


def _pod_image(pod: Any) -> str:
    containers = pod.raw["spec"]["containers"]
    named = [c for c in containers if c["name"] == "survey-scale"]
    return (named or containers)[0]["image"]


def _owner_reference(resource: Any) -> dict:
    raw = resource.raw
    return {
        "apiVersion": raw["apiVersion"],
        "kind": raw["kind"],
        "name": raw["metadata"]["name"],
        "uid": raw["metadata"]["uid"],
    }


def _remove_leftovers(
    config: KubernetesClusterConfig, namespace: str, own_pod: Any | None, deadline: float, *, tls: bool
) -> None:
    """Delete a DaskCluster (and its Secret) of this name left by an ended pod; refuse anyone else's."""
    existing = _fetch(DaskCluster, config.name, namespace)
    if existing is not None:
        left_by = _left_by(existing, own_pod, namespace)
        if left_by is None:
            raise KubernetesError(
                f"DaskCluster {namespace}/{config.name} already exists and belongs to a running pod or was made by "
                f"hand: set another cluster.kubernetes.name, delete it (kubectl delete -n {namespace} daskcluster "
                f"{config.name}), or use it with cluster.kind: address"
            )
        log.warning("Kubernetes: replacing DaskCluster %s/%s left by %s", namespace, config.name, left_by)
        if not existing.raw["metadata"].get("deletionTimestamp"):
            existing.delete()
        _wait_until(lambda: not existing.exists(), deadline, lambda: f"DaskCluster {namespace}/{config.name}: not gone")
    if not tls:
        return
    secret = _fetch(Secret, tls_secret_name(config), namespace)
    if secret is not None:
        owners = secret.raw["metadata"].get("ownerReferences") or []
        if not any(owner["kind"] == "DaskCluster" for owner in owners):
            raise KubernetesError(
                f"Secret {namespace}/{tls_secret_name(config)} exists and was not made by survey-scale: "
                "set another cluster.kubernetes.name or delete it"
            )
        secret.delete()
        _wait_until(lambda: not secret.exists(), deadline, lambda: f"Secret {namespace}/{secret.name}: not gone")


def _left_by(cluster: Any, own_pod: Any | None, namespace: str) -> str | None:
    """Who left ``cluster`` behind (an ended pod, or an earlier attempt in this one); None if still in use."""
    if cluster.raw["metadata"].get("deletionTimestamp"):
        return "a deletion under way"
    for owner in cluster.raw["metadata"].get("ownerReferences") or []:
        if owner["kind"] != "Pod":
            continue
        if own_pod is not None and owner["uid"] == own_pod.raw["metadata"]["uid"]:
            return f"an earlier attempt in this pod ({owner['name']})"
        pod = _fetch(Pod, owner["name"], namespace)
        if pod is None:
            return f"pod {owner['name']}, which no longer exists"
        if pod.raw["metadata"]["uid"] != owner["uid"]:
            return f"an earlier pod named {owner['name']}"
        phase = pod.raw.get("status", {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            return f"pod {owner['name']}, which has ended ({phase})"
    return None


def _has_status(resource: Any) -> bool:
    resource.refresh()
    return bool(resource.raw.get("status", {}).get("phase"))


def _service_ready(name: str, namespace: str) -> bool:
    service = _fetch(Service, name, namespace)
    return service is not None and bool(service.ready())


def _pod_states(namespace: str, cluster_name: str, component: str) -> str:
    """``pod: phase (reason)`` of the cluster's ``component`` pods, for error messages."""
    try:
        pods = kr8s.get(
            "pods",
            namespace=namespace,
            label_selector={"dask.org/cluster-name": cluster_name, "dask.org/component": component},
        )
        states = []
        for pod in pods:
            status = pod.raw.get("status", {})
            reasons = [
                s["state"]["waiting"].get("reason", "waiting")
                for s in status.get("containerStatuses", [])
                if "waiting" in s.get("state", {})
            ]
            states.append(f"{pod.name}: {status.get('phase', '?')}" + (f" ({', '.join(reasons)})" if reasons else ""))
        return "; ".join(states) or f"no {component} pod"
    except Exception as exc:  # it only decorates an error message
        return f"{component} pods unknown: {exc}"


def _wait_until(ready: Callable[[], bool], deadline: float, message: Callable[[], str]) -> None:
    while not ready():
        if time.monotonic() > deadline:
            raise KubernetesTimeoutError(message())
        time.sleep(POLL_S)
