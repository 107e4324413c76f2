"""The layers of the package and what each may import (every import statement, lazy ones included).

core → io / science / synth / mock → store → engine → stages → products → application (see
``survey_scale/__init__.py``): science imports neither Dask, Zarr nor the engine; the engine imports neither
science nor torch; a stage module reaches the engine only through its contracts.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "survey_scale"

LAYERS: dict[str, tuple[str, ...]] = {
    "core": ("survey_scale.core", "survey_scale._version"),
    "science": ("survey_scale.io", "survey_scale.science", "survey_scale.synth", "survey_scale.mock"),
    "store": ("survey_scale.store",),
    "engine": ("survey_scale.engine",),
    "stages": ("survey_scale.stages",),
    "products": ("survey_scale.products",),
    "application": ("survey_scale.config", "survey_scale.pipeline", "survey_scale.cli", "survey_scale.demo"),
}
"""Each layer's modules, by prefix; the package's own ``__init__`` (lazy attribute access) is application."""

MAY_IMPORT: dict[str, set[str]] = {
    "core": {"core"},
    "science": {"core", "science"},
    "store": {"core", "store"},
    "engine": {"core", "store", "engine"},
    "stages": {"core", "science", "stages", "engine.contracts"},
    "products": {"core", "science", "store", "engine", "stages", "products"},
    "application": set(LAYERS),
}

THIRD_PARTY_BANNED: dict[str, set[str]] = {
    "core": {"dask", "distributed", "zarr", "xarray", "torch", "matplotlib"},
    "science": {"dask", "distributed", "zarr", "xarray", "matplotlib"},
    "store": {"distributed", "torch", "matplotlib"},
    "engine": {"torch", "matplotlib"},
    "stages": {"dask", "distributed", "zarr", "xarray", "matplotlib"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str | None:
    if module == "survey_scale":
        return "application"
    matches = [(layer, prefix) for layer, prefixes in LAYERS.items() for prefix in prefixes if _under(module, prefix)]
    return max(matches, key=lambda lp: len(lp[1]))[0] if matches else None


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def imports(path: Path) -> list[tuple[int, str]]:
    """Every module an import statement of ``path`` names (absolute; relative ones resolved)."""
    out = []
    package = module_name(path).rsplit(".", 0 if path.name == "__init__.py" else 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
            out += [(node.lineno, base)]
            # ``from survey_scale.science import emulator`` names the sub-module too
            out += [(node.lineno, f"{base}.{alias.name}") for alias in node.names if base.startswith("survey_scale")]
    return out


def allowed(target_layer: str, target: str, rules: set[str]) -> bool:
    return target_layer in rules or any(_under(target, f"survey_scale.{rule}") for rule in rules if "." in rule)


def test_every_module_has_a_layer() -> None:
    """A new top-level module or package must be placed in a layer here before it can be used."""
    unplaced = [module_name(p) for p in PACKAGE.rglob("*.py") if layer_of(module_name(p)) is None]
    assert not unplaced, f"modules in no layer: {unplaced}"


def test_imports_follow_the_layers() -> None:
    known = {module_name(p) for p in PACKAGE.rglob("*.py")}
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = module_name(path)
        layer = layer_of(source)
        for line, target in imports(path):
            where = f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}"
            top = target.split(".")[0]
            if top in THIRD_PARTY_BANNED.get(layer, set()):
                violations.append(f"{where} ({layer} may not import {top})")
            if top != "survey_scale":
                continue
            if target not in known and target.rsplit(".", 1)[0] not in known:
                violations.append(f"{where} (no such module)")  # a stale path, lazy imports included
            elif target in known and not allowed(layer_of(target), target, MAY_IMPORT[layer]):
                violations.append(f"{where} ({layer} may not import the {layer_of(target)} layer)")
    assert not violations, "layer violations:\n" + "\n".join(violations)


@pytest.mark.parametrize(
    ("modules", "banned"),
    [
        (["survey_scale.engine.contracts", "survey_scale.stages.registry"], ["distributed", "zarr", "torch"]),
        (["survey_scale.science.normalize", "survey_scale.science.pca", "survey_scale.synth"], ["distributed", "zarr"]),
        (["survey_scale.engine.runner", "survey_scale.engine.cluster", "survey_scale.store.bookkeeping"], ["torch"]),
        (
            ["survey_scale.science.ingest", "survey_scale.science.label_fit", "survey_scale.mock"],
            ["distributed", "zarr"],
        ),
        (["survey_scale.cli"], ["torch", "distributed", "zarr"]),
    ],
)
def test_what_an_import_pulls_in(modules: list[str], banned: list[str]) -> None:
    """Transitively: the contracts and registry pull in no Dask, Zarr or torch (``survey-scale --help`` stays
    light); science no Dask or Zarr; the engine no torch."""
    code = f"import sys; import {', '.join(modules)}; print(','.join(m for m in {banned!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "", f"importing {modules} loads {loaded}"


def test_modules_named_in_strings_are_in_their_layer() -> None:
    """Imports by name (the registry's step modules, cluster kinds) follow the layers too: steps come from stage
    modules, cluster kinds from engine modules, and every one resolves."""
    from survey_scale.engine.cluster import KINDS
    from survey_scale.stages.registry import STEP_MODULES, default_registry

    assert all(layer_of(module) == "stages" for module in STEP_MODULES)
    for step in default_registry().ordered():
        assert layer_of(step.resolve().__module__) == "stages" and callable(step.resolve()), step.name
    for kind, module in KINDS.items():
        assert layer_of(module) == "engine" and hasattr(importlib.import_module(module), "start"), kind
