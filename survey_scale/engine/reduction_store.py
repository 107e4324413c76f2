"""What reductions keep in the cube, without Dask: cached results, per-spectrum columns, coefficients (SPEC §11).

A reduction's result is stored under a key (:func:`input_key`: the cube's rows and the provenance of what it
read) and re-used while the key holds (:func:`cached`); per-spectrum variables a reduction makes are written
with a provenance stamp carrying their key and skipped while it holds (:func:`write_columns`); a reduction's
coefficients go to the cube's attributes (:func:`record_reduction`), where ``survey-scale info`` shows them.
A variable is replaced by write-then-swap (:func:`~survey_scale.store.cube.write_column`); a full file system
gives a :class:`~survey_scale.store.cube.CubeFullError` naming the cube, and what was written before is kept.
:class:`~survey_scale.engine.runner.DaskEngine` offers them to the pipeline's steps.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from survey_scale._version import __version__
from survey_scale.core.files import stable_hash
from survey_scale.engine.contracts import PipelineError
from survey_scale.store.bookkeeping import Bookkeeping
from survey_scale.store.cube import (
    consolidate,
    named_when_full,
    open_group,
    read_column,
    spec_length,
    write_column,
)

log = logging.getLogger("survey_scale.engine.runner")  # the runner's messages, under the name they always had


def cached(
    bookkeeping: Bookkeeping, name: str, key: str, compute: Callable[[], dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """The stored result of reduction ``name`` if it carries ``key``; else ``compute()``, then stored."""
    result = bookkeeping.load_reduction(name, key)
    if result is None:
        log.info("%s: computing (inputs changed or no stored result)", name)
        result = compute()
        bookkeeping.save_reduction(name, key, result)
    else:
        log.info("%s: up to date (stored result re-used)", name)
    return result


def input_key(cube: Path, variables: Sequence[str], *parts: Any) -> str:
    """A key of the cube's specids, the provenance of ``variables`` (who wrote them, with what) and ``parts``.

    The time and code version of the provenance are left out: a stage re-run with the same settings
    and models writes the same values, so it does not invalidate what was computed from them.
    """
    root = open_group(cube)
    stamps = {
        name: {
            k: v
            for k, v in root[name].attrs.items()
            if str(k).startswith("provenance_") and k not in ("provenance_updated", "provenance_code_version")
        }
        for name in variables
    }
    return stable_hash(read_column(root, "specid").astype(str), stamps, *parts)


def write_columns(
    cube: Path,
    name: str,
    key: str,
    compute: Callable[[], Mapping[str, np.ndarray]],
    attrs: Mapping[str, Mapping[str, Any]],
) -> bool:
    """Per-spectrum variables made by a reduction (one value per row, e.g. from ``reduce_by_star``).

    The variables named in ``attrs`` are written with their attributes and a provenance stamp carrying
    ``key``, unless they all exist with ``key`` already (then ``compute`` is not called). Returns whether
    they were (re)written. A kill between two variables leaves one with another key: the next run
    rewrites them all.
    """
    root = open_group(cube)
    n = spec_length(root)
    if all(v in root and root[v].shape == (n,) and root[v].attrs.get("provenance_key") == key for v in attrs):
        log.info("%s: up to date (%s)", name, ", ".join(attrs))
        return False
    values = compute()
    stamp = {
        "provenance_step": name,
        "provenance_key": key,
        "provenance_code_version": __version__,
        "provenance_updated": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    for var in attrs:
        if np.shape(values[var])[0] != n:
            raise PipelineError(f"{cube}: {name} gave {np.shape(values[var])[0]} values of {var} for {n} spectra")
    with named_when_full(cube, f"writing {', '.join(attrs)} ({name})"):
        root = open_group(cube, mode="r+")
        for var, var_attrs in attrs.items():
            write_column(root, var, np.asarray(values[var]), {**var_attrs, **stamp})
        consolidate(cube)
    log.info("%s: wrote %s", name, ", ".join(attrs))
    return True


def record_reduction(cube: Path, name: str, summary: Mapping[str, Any]) -> None:
    """Keep a reduction's coefficients (JSON-serialisable) with provenance in the cube's attributes
    (``attrs['reductions'][name]``), where ``survey-scale info`` shows them."""
    record = {
        **_json_safe(json.loads(json.dumps(dict(summary), default=str))),
        "code_version": __version__,
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    root = open_group(cube, mode="r+")
    reductions = dict(root.attrs.get("reductions", {}))
    old = {k: v for k, v in reductions.get(name, {}).items() if k != "updated"}
    if old == {k: v for k, v in record.items() if k != "updated"}:
        return  # unchanged: keep the time it was computed
    reductions[name] = record
    with named_when_full(cube, f"recording reduction {name}"):
        root.attrs["reductions"] = reductions
        consolidate(cube)


def _json_safe(value: Any) -> Any:
    # Strict JSON for the cube's attributes: NaN and infinities become null.
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value
