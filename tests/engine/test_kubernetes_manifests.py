"""engine/cluster/kubernetes_manifests.py: the kubernetes kind's resources, built without dask-kubernetes or kr8s.

Its copy of the operator's template must stay what the operator's ``make_cluster_spec`` gives (a new
dask-kubernetes release that changes it shows up here), and the lifecycle module keeps re-exporting the
builders under their old names.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from dask_kubernetes.operator import make_cluster_spec

from survey_scale.core.settings import ConfigError
from survey_scale.engine.cluster import kubernetes, kubernetes_manifests


def test_the_manifests_import_neither_dask_kubernetes_nor_kr8s() -> None:
    code = (
        "import sys; import survey_scale.engine.cluster.kubernetes_manifests; "
        "print(','.join(m for m in ('dask_kubernetes', 'kr8s') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""


@pytest.mark.parametrize(
    ("name", "n_workers", "resources", "env", "service_type"),
    [
        ("survey-scale", 4, {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"cpu": "1"}}, {}, "ClusterIP"),
        ("abc", 0, {}, {"OMP_NUM_THREADS": "1", "A": "b"}, "NodePort"),
        ("x", 2, {"limits": {"nvidia.com/gpu": "1"}}, {"B": "c"}, "LoadBalancer"),
    ],
)
def test_the_template_is_the_operators(name: str, n_workers: int, resources: dict, env: dict, service_type: str):
    arguments = dict(name=name, image="reg/img:1", n_workers=n_workers, resources=resources, env=env,
                     worker_command="dask worker", scheduler_service_type=service_type)  # fmt: skip
    ours = kubernetes_manifests.operator_cluster_spec(**arguments)
    theirs = make_cluster_spec(**arguments)
    assert ours == theirs
    assert repr(ours) == repr(theirs)  # the same key order too: preview() dumps it unsorted


def test_the_lifecycle_module_re_exports_the_builders() -> None:
    for name in ("cluster_spec", "autoscaler_spec", "tls_secret_spec", "tls_secret_name", "preview", "LABELS",
                 "TLS_DIR", "TLS_FILES", "SCHEDULER_PORT", "DASHBOARD_PORT"):  # fmt: skip
        assert getattr(kubernetes, name) is getattr(kubernetes_manifests, name), name


def test_the_scheduler_http_routes_are_modules_of_distributed() -> None:
    import importlib

    for route in (*kubernetes_manifests.SCHEDULER_HTTP_ROUTES, kubernetes_manifests.SCHEDULER_API_ROUTE):
        assert isinstance(importlib.import_module(route).routes, list), route
    assert kubernetes_manifests.SCHEDULER_API_ROUTE not in kubernetes_manifests.SCHEDULER_HTTP_ROUTES


SHA = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("image", "digest"),
    [
        ("survey-scale:cpu", None),
        ("registry.example.org/survey/survey-scale", None),
        (f"registry.example.org/survey/survey-scale@{SHA}", SHA),
        (f"localhost:5000/survey-scale:1.0-cuda@{SHA}", SHA),
        (f"ghcr.io/dask/dask-kubernetes-operator:2026.3.0@{SHA}", SHA),
    ],
)
def test_an_image_reference_by_tag_or_by_digest(image: str, digest: str | None) -> None:
    assert kubernetes_manifests.check_image(image) == image
    assert kubernetes_manifests.image_digest(image) == digest


@pytest.mark.parametrize("image", [f"survey-scale@{SHA[:-1]}", "survey-scale@sha256", "registry/UPPER:x", "a b", "x:"])
def test_a_malformed_image_reference_is_a_config_error(image: str) -> None:
    with pytest.raises(ConfigError, match=r"cluster\.kubernetes\.image: .* is not an image reference"):
        kubernetes_manifests.check_image(image)
