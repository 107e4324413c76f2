"""Offline validation of Kubernetes resources, as the API server would check them (no cluster needed).

- Core kinds (ServiceAccount, Role, Job, ...): ``kubernetes-validate`` in strict mode (unknown fields are
  errors, as ``kubectl apply --validate=strict``), for the oldest and the newest Kubernetes in
  :data:`KUBERNETES_VERSIONS`.
- The dask-kubernetes operator's kinds (DaskCluster, DaskAutoscaler, ...): the ``openAPIV3Schema`` of their
  CustomResourceDefinitions, shipped in the dask-kubernetes wheel, with jsonschema; made strict as the API
  server's field validation is (an unknown field is an error, not silently pruned). The pods and the Service
  inside a DaskCluster are also validated as core ``Pod`` and ``Service`` specs, which the CRD's older copy
  of those schemas checks less closely.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import dask_kubernetes
import jsonschema
import kubernetes_validate
import yaml

CRD_DIR = Path(dask_kubernetes.__file__).parent / "operator/deployment/helm/dask-kubernetes-operator/crds"
KUBERNETES_VERSIONS = ("1.28.0", kubernetes_validate.latest_version())
"""The oldest Kubernetes the manifests are meant for, and the newest kubernetes-validate knows."""


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) → the strict JSON schema of that custom resource, from the CRDs of the wheel."""
    schemas = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # ~1 MB of YAML
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
            schema["properties"]["apiVersion"] = {"const": f"{group}/{version['name']}"}
            schema["properties"]["kind"] = {"const": kind}
            schema["properties"]["metadata"] = {"type": "object"}  # checked as core ObjectMeta below
            schema["required"] = sorted({"apiVersion", "kind", "metadata", *schema.get("required", [])})
            schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


@functools.cache
def _validator(key: tuple[str, str]) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(crd_schemas()[key])  # one instance: building one takes seconds


def _strict(schema: Any) -> Any:
    """Every object schema with listed properties refuses others (the API server's strict field validation)."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            if not schema.get("x-kubernetes-preserve-unknown-fields"):
                schema["additionalProperties"] = False
        for value in schema.values():
            _strict(value)
    elif isinstance(schema, list):
        for value in schema:
            _strict(value)
    return schema


def validate(manifest: dict) -> list[str]:
    """Validate one resource; returns what it was checked against. Raises on the first error found."""
    key = (manifest.get("apiVersion"), manifest.get("kind"))
    if key in crd_schemas():
        _validator(key).validate(manifest)
        checked = [f"CRD {key[1]}.{key[0]} openAPIV3Schema (dask-kubernetes {dask_kubernetes.__version__})"]
        # metadata is ObjectMeta in every kind: check it as a ConfigMap's
        checked += _core({"apiVersion": "v1", "kind": "ConfigMap", "metadata": manifest["metadata"]}, "metadata")
        if key[1] == "DaskCluster":
            for role in ("scheduler", "worker"):
                pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": role}}
                checked += _core(pod | {"spec": manifest["spec"][role]["spec"]}, f"{role} pod")
            service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "scheduler"}}
            checked += _core(service | {"spec": manifest["spec"]["scheduler"]["service"]}, "scheduler service")
        return checked
    return _core(manifest, manifest.get("kind", "?"))


def _core(manifest: dict, what: str) -> list[str]:
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(manifest, version, strict=True)
    return [f"{what}: kubernetes-validate --strict, Kubernetes {' and '.join(KUBERNETES_VERSIONS)}"]
