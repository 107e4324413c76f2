"""An in-memory Kubernetes API in place of kr8s's objects, for testing ``engine/cluster/kubernetes.py``.

Each fake kind has the kr8s methods that module uses (``refresh``, ``exists``, ``create``, ``delete``,
``patch``, Service ``ready``), and every call is recorded as the API request kr8s makes for it
(``refresh``/``exists``: GET by name → verb ``get``; ``Service.ready``: GET and a LIST of pods), so a test can
check the calls against the Role of ``deploy/kubernetes/manifests/rbac.yaml``. ``on_create``/``on_delete``
hooks stand in for the operator.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from typing import Any

import httpx
import kr8s
import pytest

from survey_scale.engine.cluster import kubernetes as kube

KINDS = {  # kind → (apiVersion, plural, API group for RBAC)
    "Pod": ("v1", "pods", ""),
    "Secret": ("v1", "secrets", ""),
    "Service": ("v1", "services", ""),
    "DaskCluster": ("kubernetes.dask.org/v1", "daskclusters", "kubernetes.dask.org"),
    "DaskAutoscaler": ("kubernetes.dask.org/v1", "daskautoscalers", "kubernetes.dask.org"),
}


class FakeKubernetes:
    """Objects by (plural, namespace, name), the API calls made, and the operator's hooks."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.calls: list[tuple[str, str, str, str]] = []  # (verb, API group, resource, name)
        self.on_create: dict[str, Callable[[dict], None]] = {}
        self.on_delete: dict[str, Callable[[dict], None]] = {}
        self.ready_services: set[str] = set()
        self._uids = itertools.count(1)

    def call(self, verb: str, kind: str, name: str = "") -> None:
        _, plural, group = KINDS[kind]
        self.calls.append((verb, group, plural, name))

    def add(self, manifest: dict, namespace: str) -> dict:
        """Put an object in place (as if made by someone else); returns what is stored."""
        stored = copy.deepcopy(manifest)
        stored["metadata"]["namespace"] = namespace
        stored["metadata"].setdefault("uid", f"uid-{next(self._uids)}")
        _, plural, _ = KINDS[stored["kind"]]
        self.objects[(plural, namespace, stored["metadata"]["name"])] = stored
        return stored

    def of_kind(self, kind: str) -> list[dict]:
        return [obj for (plural, _, _), obj in self.objects.items() if plural == KINDS[kind][1]]

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Replace kr8s in the module under test by this fake."""
        for kind in KINDS:
            monkeypatch.setattr(kube, kind, self.kind(kind))
        monkeypatch.setattr(kube, "kube_namespace", lambda: "survey")
        monkeypatch.setattr(kube.kr8s, "get", self._list)

    def _list(self, plural: str, namespace: str, label_selector: dict[str, str]) -> list[Any]:
        self.calls.append(("list", "", plural, ""))
        found = [
            obj
            for (p, ns, _), obj in self.objects.items()
            if p == plural
            and ns == namespace
            and all(obj["metadata"].get("labels", {}).get(k) == v for k, v in label_selector.items())
        ]
        return [self.kind(obj["kind"])(copy.deepcopy(obj)) for obj in found]

    def kind(self, kind: str) -> type:
        api = self
        api_version, plural, _ = KINDS[kind]

        class Resource:
            def __init__(self, resource: dict | str, namespace: str | None = None) -> None:
                raw = {"metadata": {"name": resource}} if isinstance(resource, str) else copy.deepcopy(resource)
                raw.setdefault("apiVersion", api_version)
                raw.setdefault("kind", kind)
                if namespace is not None:
                    raw["metadata"]["namespace"] = namespace
                self.raw = raw

            @property
            def name(self) -> str:
                return self.raw["metadata"]["name"]

            @property
            def namespace(self) -> str:
                return self.raw["metadata"]["namespace"]

            def _key(self) -> tuple[str, str, str]:
                return (plural, self.namespace, self.name)

            def refresh(self) -> None:
                api.call("get", kind, self.name)
                if self._key() not in api.objects:
                    raise kr8s.NotFoundError(f"{kind} {self.name}")
                self.raw = copy.deepcopy(api.objects[self._key()])

            def exists(self) -> bool:
                api.call("get", kind, self.name)
                return self._key() in api.objects

            def create(self) -> None:
                api.call("create", kind)
                if self._key() in api.objects:
                    response = httpx.Response(409, request=httpx.Request("POST", "https://k8s"))
                    raise kr8s.ServerError(f"{kind} {self.name} already exists", response=response)
                self.raw = copy.deepcopy(api.add(self.raw, self.namespace))
                if kind in api.on_create:
                    api.on_create[kind](api.objects[self._key()])

            def delete(self) -> None:
                api.call("delete", kind, self.name)
                if self._key() not in api.objects:
                    raise kr8s.NotFoundError(f"{kind} {self.name}")
                removed = api.objects.pop(self._key())
                if kind in api.on_delete:
                    api.on_delete[kind](removed)

            def patch(self, patch: dict) -> None:
                api.call("patch", kind, self.name)
                _merge(api.objects[self._key()], patch)
                self.raw = copy.deepcopy(api.objects[self._key()])

            def ready(self) -> bool:  # Service.ready: GET the Service, LIST the pods behind it
                self.refresh()
                api.calls.append(("list", "", "pods", ""))
                return self.name in api.ready_services

        Resource.__name__ = kind
        return Resource


def _merge(target: dict, patch: dict) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def allowed_by(role: dict, call: tuple[str, str, str, str]) -> bool:
    """Whether a Role's rules allow one recorded API call."""
    verb, group, resource, name = call
    for rule in role["rules"]:
        if group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]:
            names = rule.get("resourceNames")
            if not names or name in names:
                return True
    return False
