"""deploy/kubernetes hardened, checked offline: what the API server's admission and a NetworkPolicy plugin would do.

- Pod Security: the Namespace enforces (and audits and warns about) the ``restricted`` Pod Security Standard,
  and every pod that the set runs — the Job's, the examples', and the scheduler and worker pods of the
  DaskClusters ``survey-scale run`` creates — meets it (:func:`restricted_violations`, the checks of the
  Kubernetes documentation's "Pod Security Standards"), with a read-only root filesystem and an emptyDir for
  everything written outside the data volume (Dask's local directory, TMPDIR, HOME).
- Network: every survey-scale pod is under a NetworkPolicy for ingress and egress; :func:`allowed` evaluates
  the policies as a network plugin does (a connection needs the source's egress and the destination's
  ingress), so the tests state who may reach whom: DNS, the scheduler and worker ports between survey-scale's
  pods, the Kubernetes API from the Job's pod only, the dashboard from no pod (the operator only when the
  adaptive example is applied).
- RBAC: the Job's ServiceAccount has a namespaced Role, which names each object it reads or deletes; the
  operator's Helm values watch one namespace with a Role.
- Images: an image reference pinned by digest goes through unchanged; the manifests and READMEs say how.
- Dashboard: only a ClusterIP Service carries it, its HTTP API is on only for adaptive clusters, and the way
  in is ``kubectl port-forward``.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml

from survey_scale.config import ConfigError, KubernetesClusterConfig, load_config
from survey_scale.engine.cluster import kubernetes_manifests as km
from tests.deploy.kube_schemas import validate
from tests.deploy.test_manifests import KUBE, configmap_config, documents, find, manifests

DIGEST = "sha256:" + "0123456789abcdef" * 4
PSA_MODES = ("enforce", "audit", "warn")


def k8s_config(**keys: object) -> KubernetesClusterConfig:
    overrides = {"cluster.kind": "kubernetes", **{f"cluster.kubernetes.{k}": v for k, v in keys.items()}}
    return load_config(None, overrides).cluster.kubernetes


GENERATED = {  # label → (cluster.kubernetes keys, TLS Secret or None, image of the Job's pod)
    "default": ({}, "survey-scale-tls", "registry.example.org/survey/survey-scale:cpu"),
    "plain tcp, no volume": ({"volume_claim": None}, None, "survey-scale:cpu"),
    "adaptive, gpu": (
        {"adaptive": True, "n_workers": 0, "max_workers": 50, "resources": {"limits": {"nvidia.com/gpu": "1"}}},
        "survey-scale-tls",
        "registry.example.org/survey/survey-scale:cuda",
    ),
    "image by digest": ({"image": f"registry.example.org/survey/survey-scale@{DIGEST}"}, "survey-scale-tls", None),
}


def pod_specs() -> dict[str, dict]:
    """Every pod spec the set runs: the static manifests' and those of the DaskClusters survey-scale creates."""
    pods = {}
    for name, doc in manifests().items():
        if doc["kind"] == "Job":
            pods[f"{name} pod"] = doc["spec"]["template"]["spec"]
        elif doc["kind"] == "Pod":
            pods[name] = doc["spec"]
        elif doc["kind"] == "DaskCluster":
            for role in ("scheduler", "worker"):
                pods[f"{name} {role}"] = doc["spec"][role]["spec"]
    for label, (keys, secret, image) in GENERATED.items():
        spec = km.cluster_spec(k8s_config(**keys), secret, image=image)
        for role in ("scheduler", "worker"):
            pods[f"cluster_spec({label}) {role}"] = spec["spec"][role]["spec"]
    return pods


# --- Pod Security Standards ---------------------------------------------------------------------------------

RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}  # fmt: skip
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes"}  # fmt: skip


def restricted_violations(pod: dict) -> list[str]:
    """What keeps ``pod`` (a PodSpec) out of the ``restricted`` Pod Security Standard (baseline included).

    The controls of https://kubernetes.io/docs/concepts/security/pod-security-standards/ for the latest policy
    version, as the PodSecurity admission plugin applies them to a pod's spec.
    """
    found = []
    pod_context = pod.get("securityContext", {})
    containers = [*pod.get("initContainers", []), *pod["containers"], *pod.get("ephemeralContainers", [])]
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            found.append(f"{field}: true")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            found.append(f"volume {volume['name']}: {sorted(kinds)} (only {sorted(RESTRICTED_VOLUMES)})")
    for sysctl in pod_context.get("sysctls", []):
        if sysctl["name"] not in SAFE_SYSCTLS:
            found.append(f"sysctl {sysctl['name']}")
    if pod_context.get("runAsUser") == 0:
        found.append("pod runAsUser: 0")
    if pod_context.get("seLinuxOptions", {}).get("user") or pod_context.get("seLinuxOptions", {}).get("role"):
        found.append("pod seLinuxOptions user/role")
    pod_seccomp = pod_context.get("seccompProfile", {}).get("type")
    if pod_seccomp not in (None, "RuntimeDefault", "Localhost"):
        found.append(f"pod seccompProfile {pod_seccomp}")
    for container in containers:
        name = container["name"]
        context = container.get("securityContext", {})
        if context.get("privileged"):
            found.append(f"{name}: privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation is not false")
        capabilities = context.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            found.append(f"{name}: capabilities do not drop ALL")
        if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: adds capabilities {capabilities['add']}")
        if context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is not True:
            found.append(f"{name}: runAsNonRoot is not true (pod or container)")
        if context.get("runAsUser") == 0:
            found.append(f"{name}: runAsUser: 0")
        seccomp = context.get("seccompProfile", {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name}: seccompProfile {seccomp} (RuntimeDefault or Localhost, pod or container)")
        if context.get("procMount", "Default") != "Default":
            found.append(f"{name}: procMount {context['procMount']}")
        if any(port.get("hostPort") for port in container.get("ports", [])):
            found.append(f"{name}: hostPort")
    return found


def read_only_violations(pod: dict) -> list[str]:
    """A container writing outside its volumes: no read-only root, or scratch (/tmp, TMPDIR, HOME, Dask's
    temporary directory) not on an emptyDir."""
    found = []
    empty_dirs = {volume["name"] for volume in pod.get("volumes", []) if "emptyDir" in volume}
    for container in pod["containers"]:
        name = container["name"]
        if container.get("securityContext", {}).get("readOnlyRootFilesystem") is not True:
            found.append(f"{name}: readOnlyRootFilesystem is not true")
        scratch = [m["mountPath"] for m in container.get("volumeMounts", []) if m["name"] in empty_dirs]
        if "/tmp" not in scratch:
            found.append(f"{name}: no emptyDir at /tmp (Python's and Dask's temporary files)")
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        for variable in ("HOME", "TMPDIR", "DASK_TEMPORARY_DIRECTORY"):
            value = env.get(variable)
            if value is None or not any(Path(value).is_relative_to(path) for path in scratch):
                found.append(f"{name}: {variable}={value} is not on an emptyDir")
        if any(m["mountPath"] in scratch and m.get("readOnly") for m in container.get("volumeMounts", [])):
            found.append(f"{name}: its scratch emptyDir is mounted read-only")
    return found


@pytest.mark.parametrize("name", sorted(pod_specs()))
def test_every_pod_meets_the_restricted_profile_with_a_read_only_root(name: str) -> None:
    pod = pod_specs()[name]
    assert restricted_violations(pod) == []
    assert read_only_violations(pod) == []
    if pod.get("serviceAccountName") != find("ServiceAccount")["metadata"]["name"]:  # only the Job talks to the API
        assert pod.get("automountServiceAccountToken") is False


def test_the_restricted_checks_catch_what_they_should() -> None:
    good = pod_specs()["cluster_spec(default) worker"]
    assert restricted_violations(good) == [] and read_only_violations(good) == []
    bad = yaml.safe_load(yaml.safe_dump(good))
    bad["hostNetwork"] = True
    bad["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    (container,) = bad["containers"]
    container["securityContext"] = {"capabilities": {"add": ["SYS_ADMIN"]}}
    container["volumeMounts"] = [m for m in container["volumeMounts"] if m["mountPath"] != "/tmp"]
    del bad["securityContext"]["seccompProfile"]
    problems = " | ".join(restricted_violations(bad) + read_only_violations(bad))
    for expected in ("hostNetwork", "hostPath", "allowPrivilegeEscalation", "drop ALL", "SYS_ADMIN",
                     "seccompProfile", "readOnlyRootFilesystem", "no emptyDir at /tmp"):  # fmt: skip
        assert expected in problems


def test_the_namespace_enforces_the_restricted_pod_security_standard() -> None:
    namespace = find("Namespace")
    labels = namespace["metadata"]["labels"]
    for mode in PSA_MODES:
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted", mode
    # the kustomization makes the namespace and puts everything in it (kustomize renames the Namespace too)
    (kustomization,) = documents(KUBE / "kustomization.yaml")
    assert kustomization["namespace"] == namespace["metadata"]["name"]
    assert kustomization["resources"][0] == "manifests/namespace.yaml"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (its kustomize) is not installed")
def test_kustomize_renders_the_set_into_the_labelled_namespace(tmp_path: Path) -> None:
    def build(directory: Path) -> list[dict]:
        out = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True, check=True)
        return [doc for doc in yaml.safe_load_all(out.stdout) if doc]

    rendered = build(KUBE)
    (namespace,) = [doc for doc in rendered if doc["kind"] == "Namespace"]
    name = namespace["metadata"]["name"]
    assert all(doc["metadata"].get("namespace") == name for doc in rendered if doc["kind"] != "Namespace")
    # another namespace (kustomize edit set namespace): the Namespace object is renamed with its labels
    shutil.copytree(KUBE, tmp_path / "k")
    path = tmp_path / "k" / "kustomization.yaml"
    path.write_text(path.read_text().replace(f"namespace: {name}", "namespace: lamost-dr11"))
    (renamed,) = [doc for doc in build(tmp_path / "k") if doc["kind"] == "Namespace"]
    assert renamed["metadata"]["name"] == "lamost-dr11"
    assert renamed["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# --- NetworkPolicy --------------------------------------------------------------------------------------------


class Pod(NamedTuple):
    labels: dict[str, str]
    namespace: str


def selects(selector: dict, labels: dict[str, str]) -> bool:
    """A LabelSelector's verdict on ``labels`` (``{}`` selects everything)."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        if not {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels[key] not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]:
            return False
    return True


def peer_matches(peer: dict, policy_namespace: str, other: Pod | str) -> bool:
    if isinstance(other, str):  # an address outside the cluster's pods
        if "ipBlock" not in peer:
            return False
        address = ipaddress.ip_address(other)
        block = peer["ipBlock"]
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(excluded) for excluded in block.get("except", [])
        )
    if "ipBlock" in peer:
        return False  # pod addresses are not matched by ipBlock (implementation-defined): do not rely on it
    namespace_labels = {"kubernetes.io/metadata.name": other.namespace}
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], namespace_labels):
            return False
    elif other.namespace != policy_namespace:
        return False
    return selects(peer.get("podSelector", {}), other.labels)


def rule_allows(rule: dict, key: str, policy_namespace: str, other: Pod | str, port: int, protocol: str) -> bool:
    peers = rule.get(key)
    if peers is not None and peers != [] and not any(peer_matches(p, policy_namespace, other) for p in peers):
        return False
    ports = rule.get("ports")
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        first = entry.get("port")
        if first is None or first == port or (isinstance(first, int) and first <= port <= entry.get("endPort", 0)):
            return True
    return False


def allowed(policies: list[dict], source: Pod | str, destination: Pod | str, port: int, protocol: str = "TCP") -> bool:
    """Whether a connection from ``source`` to ``destination``:``port`` gets through ``policies``.

    A pod selected by no policy of a direction is open in that direction; otherwise one rule of one selecting
    policy must admit the connection. The egress of an address outside the pods is not restricted here, nor
    is the ingress of one (the Kubernetes API, the DNS outside the cluster).
    """

    def types(spec: dict) -> list[str]:  # policyTypes, or its default: Ingress, and Egress with egress rules
        return spec.get("policyTypes", ["Ingress", "Egress"] if "egress" in spec else ["Ingress"])

    def passes(pod: Pod, other: Pod | str, direction: str, key: str) -> bool:
        selecting = [
            policy
            for policy in policies
            if policy["metadata"]["namespace"] == pod.namespace
            and selects(policy["spec"]["podSelector"], pod.labels)
            and direction in types(policy["spec"])
        ]
        rules = [(rule, policy) for policy in selecting for rule in policy["spec"].get(direction.lower(), [])]
        return not selecting or any(
            rule_allows(rule, key, policy["metadata"]["namespace"], other, port, protocol) for rule, policy in rules
        )

    egress_ok = isinstance(source, str) or passes(source, destination, "Egress", "to")
    ingress_ok = isinstance(destination, str) or passes(destination, source, "Ingress", "from")
    return egress_ok and ingress_ok


def namespace_name() -> str:
    """The set's namespace (its Namespace manifest; "survey-scale" without one, for the network tests alone)."""
    names = [doc["metadata"]["name"] for doc in manifests().values() if doc["kind"] == "Namespace"]
    return names[0] if names else "survey-scale"


def policies(*example_files: str) -> list[dict]:
    """The NetworkPolicies of manifests/ (and of the named examples), as applied in the set's namespace."""
    found = [doc for key, doc in manifests().items() if doc["kind"] == "NetworkPolicy" and key.startswith("manifests/")]
    for file in example_files:
        found += [doc for doc in documents(KUBE / "examples" / file) if doc["kind"] == "NetworkPolicy"]
    return [doc | {"metadata": doc["metadata"] | {"namespace": namespace_name()}} for doc in found]


def cluster_pods() -> dict[str, Pod]:
    """The pods of a run as the operator labels them (the DaskCluster's labels and its own), and others."""
    ns = namespace_name()
    job_labels = find("Job")["spec"]["template"]["metadata"]["labels"]
    cluster_labels = find("DaskCluster")["metadata"]["labels"] | {"dask.org/cluster-name": "survey-scale"}
    operator = {"app.kubernetes.io/name": "dask-kubernetes-operator", "app.kubernetes.io/instance": "dask"}
    return {
        "client": Pod(job_labels, ns),
        "scheduler": Pod(cluster_labels | {"dask.org/component": "scheduler"}, ns),
        "worker": Pod(cluster_labels | {"dask.org/component": "worker"}, ns),
        "other worker": Pod(cluster_labels | {"dask.org/component": "worker", "pod": "2"}, ns),
        "data-shell": Pod(find("Pod")["metadata"]["labels"], ns),
        "stranger": Pod({"app": "notebook"}, ns),
        "elsewhere": Pod(job_labels, "default"),  # survey-scale's labels in another namespace
        "operator": Pod(operator, ns),  # namespaced install (operator-values.yaml)
        "cluster-wide operator": Pod(operator, "dask-operator"),
        "dns": Pod({"k8s-app": "kube-dns"}, "kube-system"),
    }


def test_every_survey_scale_pod_is_under_ingress_and_egress_policies() -> None:
    pods = cluster_pods()
    for name in ("client", "scheduler", "worker"):
        for direction in ("Ingress", "Egress"):
            assert any(
                selects(p["spec"]["podSelector"], pods[name].labels) and direction in p["spec"]["policyTypes"]
                for p in policies()
            ), f"no {direction} policy selects the {name} pod"
    for policy in policies():
        for rule in policy["spec"].get("egress", []):
            assert rule.get("to") and rule.get("ports"), f"{policy['metadata']['name']}: an egress rule open to all"
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("from") and rule.get("ports"), f"{policy['metadata']['name']}: an ingress rule open to all"


def test_the_network_policies_admit_the_runs_connections_and_nothing_else() -> None:
    pods, manifest_policies = cluster_pods(), policies()
    dask_ports = (km.SCHEDULER_PORT, km.WORKER_PORT, km.NANNY_PORT)

    def ok(source: str, destination: str, port: int, protocol: str = "TCP", extra: tuple[str, ...] = ()) -> bool:
        chosen = policies(*extra) if extra else manifest_policies
        return allowed(chosen, pods.get(source, source), pods.get(destination, destination), port, protocol)

    # Dask: client → scheduler; scheduler ↔ workers; workers ↔ workers (the ports cluster_spec fixes)
    assert ok("client", "scheduler", km.SCHEDULER_PORT) and ok("worker", "scheduler", km.SCHEDULER_PORT)
    for port in (km.WORKER_PORT, km.NANNY_PORT):
        assert ok("scheduler", "worker", port) and ok("other worker", "worker", port) and ok("client", "worker", port)
    # DNS, for every one of them
    for name in ("client", "scheduler", "worker"):
        assert ok(name, "dns", 53, "UDP") and ok(name, "dns", 53, "TCP")
        assert not ok(name, "dns", 80)
    # the Kubernetes API: the Job's pod only (scheduler and workers have no token, and no route)
    assert ok("client", "10.96.0.1", 443) and ok("client", "192.168.1.10", 6443)
    for name in ("scheduler", "worker"):
        assert not ok(name, "10.96.0.1", 443) and not ok(name, "192.168.1.10", 6443)
        assert not ok(name, "203.0.113.7", 443)  # nor anywhere else: code sent to a worker cannot call out
    assert not ok("client", "203.0.113.7", 80) and not ok("client", "203.0.113.7", 22)
    # no one else reaches the Dask ports, and no pod at all reaches the dashboards
    for stranger in ("stranger", "data-shell", "elsewhere", "operator", "cluster-wide operator"):
        for port in dask_ports:
            assert not ok(stranger, "scheduler", port) and not ok(stranger, "worker", port), (stranger, port)
    for name in ("client", "worker", "stranger", "operator", "cluster-wide operator"):
        assert not ok(name, "scheduler", km.DASHBOARD_PORT), name
        assert not ok(name, "worker", km.WORKER_DASHBOARD_PORT), name
    assert not ok("stranger", "client", 8080) and not ok("scheduler", "client", 40000)  # nothing connects to the Job
    # adaptive clusters: the operator's controller reads the scheduler's API on the dashboard port
    adaptive = ("networkpolicy-adaptive.yaml",)
    for operator in ("operator", "cluster-wide operator"):
        assert ok(operator, "scheduler", km.DASHBOARD_PORT, extra=adaptive)
        assert not ok(operator, "worker", km.WORKER_DASHBOARD_PORT, extra=adaptive)
    for name in ("client", "worker", "stranger"):
        assert not ok(name, "scheduler", km.DASHBOARD_PORT, extra=adaptive)


def test_the_network_policies_follow_the_generated_cluster(tmp_path: Path) -> None:
    config = configmap_config(tmp_path).cluster.kubernetes
    spec = km.cluster_spec(config, km.tls_secret_name(config), image="x")
    scheduler = spec["spec"]["scheduler"]["spec"]["containers"][0]
    worker = spec["spec"]["worker"]["spec"]["containers"][0]

    def flag(args: list[str], name: str) -> str:
        return args[args.index(name) + 1]

    assert flag(scheduler["args"], "--port") == str(km.SCHEDULER_PORT)
    assert flag(worker["args"], "--worker-port") == str(km.WORKER_PORT)
    assert flag(worker["args"], "--nanny-port") == str(km.NANNY_PORT)
    assert {p["containerPort"] for p in worker["ports"]} == {km.WORKER_PORT, km.NANNY_PORT, km.WORKER_DASHBOARD_PORT}


def test_the_evaluator_agrees_with_the_documented_semantics() -> None:
    ns = "ns"
    deny_all = {"metadata": {"name": "deny", "namespace": ns},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}  # fmt: skip
    a, b = Pod({"app": "a"}, ns), Pod({"app": "b"}, ns)
    assert allowed([], a, b, 80) and not allowed([deny_all], a, b, 80)
    allow_b = {"metadata": {"name": "b", "namespace": ns},
               "spec": {"podSelector": {"matchLabels": {"app": "b"}}, "policyTypes": ["Ingress"],
                        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}],
                                     "ports": [{"port": 8000, "endPort": 8010}]}]}}  # fmt: skip
    assert allowed([allow_b], a, b, 8005) and not allowed([allow_b], a, b, 8011) and not allowed([allow_b], b, b, 8005)
    assert not allowed([allow_b], Pod({"app": "a"}, "other"), b, 8005)  # a podSelector alone: the same namespace


# --- RBAC -------------------------------------------------------------------------------------------------------


def test_the_jobs_service_account_has_a_namespaced_role_naming_what_it_reads_and_deletes(tmp_path: Path) -> None:
    kinds = [doc["kind"] for doc in manifests().values()]
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds
    binding, role = find("RoleBinding"), find("Role")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "survey-scale"}
    config = configmap_config(tmp_path).cluster.kubernetes
    named = {  # resource → the names it may be read, patched or deleted by
        "daskclusters": {config.name},
        "daskautoscalers": {config.name},
        "secrets": {km.tls_secret_name(config)},
        "services": {km.scheduler_service_name(config)},
    }
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], rule
        assert set(rule["verbs"]) <= {"get", "list", "create", "delete", "patch"}, rule  # no watch, escalate, bind...
        assert not any("/" in resource for resource in rule["resources"]), rule  # no pods/exec, pods/portforward
        for resource in rule["resources"]:
            for verb in rule["verbs"]:
                if verb in ("get", "patch", "delete") and resource in named:
                    assert set(rule.get("resourceNames", [])) == named[resource], (resource, verb)
                granted.setdefault((resource, verb), set()).update(rule.get("resourceNames", ["*any*"]))
    assert set(granted) == {
        ("daskclusters", "create"), ("daskclusters", "get"), ("daskclusters", "delete"),
        ("daskautoscalers", "create"), ("daskautoscalers", "get"), ("daskautoscalers", "delete"),
        ("secrets", "create"), ("secrets", "get"), ("secrets", "patch"), ("secrets", "delete"),
        ("services", "get"), ("pods", "get"), ("pods", "list"),
    }  # fmt: skip


def test_the_operator_values_watch_one_namespace_with_a_role() -> None:
    (values,) = documents(KUBE / "operator-values.yaml")
    assert values["rbac"] == {"create": True, "cluster": False}  # a Role in the release's namespace
    assert values["kopfArgs"] == [f"--namespace={namespace_name()}"]
    # its pod is admitted into the restricted namespace
    pod = {"securityContext": values["podSecurityContext"],
           "containers": [{"name": "operator", "securityContext": values["securityContext"]}]}  # fmt: skip
    assert restricted_violations(pod) == []
    assert values["securityContext"]["readOnlyRootFilesystem"] is True


# --- Images -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    [
        f"registry.example.org/survey/survey-scale@{DIGEST}",
        f"registry.example.org:5000/survey/survey-scale:1.4.0-cpu@{DIGEST}",  # tag kept for people, digest wins
        f"survey-scale@{DIGEST}",
        "survey-scale:cpu",
        "ghcr.io/a_b/c.d/e-f:v1.0",
    ],
)
def test_an_image_pinned_by_digest_is_used_as_given(image: str) -> None:
    for spec in (km.cluster_spec(k8s_config(image=image), "survey-scale-tls"),
                 km.cluster_spec(k8s_config(), "survey-scale-tls", image=image)):  # fmt: skip
        for role in ("scheduler", "worker"):
            assert spec["spec"][role]["spec"]["containers"][0]["image"] == image
        assert validate(spec)
    assert km.image_digest(image) == (DIGEST if "@" in image else None)


MALFORMED_IMAGES = ["survey-scale@sha256:0123", f"survey-scale@md5:{DIGEST[7:]}", "Survey-Scale:cpu", "x:", "", " x",
                    f"survey-scale@{DIGEST.upper()}", "survey-scale:cpu:gpu", "survey-scale:cpu\n"]  # fmt: skip


@pytest.mark.parametrize("image", MALFORMED_IMAGES)
def test_a_malformed_image_reference_is_refused(image: str) -> None:
    with pytest.raises(ConfigError, match="image"):
        km.cluster_spec(k8s_config(), "survey-scale-tls", image=image)


def test_pinning_by_digest_is_documented() -> None:
    for path in (KUBE / "README.md", KUBE / "manifests" / "job.yaml", KUBE / "kustomization.yaml",
                 KUBE / "operator-values.yaml", KUBE.parent / "container" / "README.md"):  # fmt: skip
        assert "@sha256:" in path.read_text(), path


# --- Dashboard --------------------------------------------------------------------------------------------------


def test_the_dashboard_is_reached_by_port_forward_only() -> None:
    # no manifest exposes anything: no Service, Ingress, Route or Gateway
    kinds = {doc["kind"] for doc in manifests().values()} - {"DaskCluster"}
    assert not kinds & {"Service", "Ingress", "Gateway", "HTTPRoute", "Route"}
    assert "kubectl port-forward" in (KUBE / "README.md").read_text()
    # ClusterIP: the scheduler's Service carries the dashboard (port-forward, the operator) inside the cluster
    service = km.cluster_spec(k8s_config(), "survey-scale-tls", image="x")["spec"]["scheduler"]["service"]
    assert service["type"] == "ClusterIP" and km.DASHBOARD_PORT in [p["port"] for p in service["ports"]]
    # NodePort / LoadBalancer: the TLS comm port only, never the plain-HTTP dashboard
    for kind in ("NodePort", "LoadBalancer"):
        spec = km.cluster_spec(k8s_config(service_type=kind), "survey-scale-tls", image="x")
        assert [p["port"] for p in spec["spec"]["scheduler"]["service"]["ports"]] == [km.SCHEDULER_PORT]
        validate(spec)
        with pytest.raises(ConfigError, match="service_type"):  # the operator needs the dashboard's Service port
            km.cluster_spec(k8s_config(service_type=kind, adaptive=True), "survey-scale-tls", image="x")
        with pytest.raises(ConfigError, match="tls"):  # a scheduler outside the cluster without TLS runs anyone's code
            km.cluster_spec(k8s_config(service_type=kind), None, image="x")


def test_the_schedulers_http_api_is_on_only_for_adaptive_clusters() -> None:
    def routes(config: KubernetesClusterConfig) -> list[str]:
        scheduler = km.cluster_spec(config, "survey-scale-tls", image="x")["spec"]["scheduler"]["spec"]["containers"][0]
        (value,) = [e["value"] for e in scheduler["env"] if e["name"] == "DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES"]
        return yaml.safe_load(value)

    assert "distributed.http.scheduler.api" not in routes(k8s_config())  # no retire_workers over plain HTTP
    assert "distributed.http.scheduler.api" in routes(k8s_config(adaptive=True))  # the operator's controller
    assert "distributed.http.health" in routes(k8s_config())  # the kubelet's probe
    assert not any("proxy" in route for route in routes(k8s_config(adaptive=True)))
