"""The cube side of a stage run, on the driver and without Dask: provenance, chunks, outputs (SPEC §1, §11).

Before the chunks are submitted, :func:`stage_provenance` (with :func:`input_provenance`) says what a chunk's
done marker must carry to be skipped, :func:`chunk_bounds` cuts the rows at the shards (one chunk = one shard =
one Dask task) and :func:`ensure_outputs` allocates the stage's outputs in the cube; after the last chunk,
:func:`consolidate_stage` rewrites every per-spectrum output as one chunk from all chunk results and records
the provenance and the rejects table. The scheduling is :mod:`.runner`'s, the tasks :mod:`.stage_tasks`'.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from survey_scale._version import __version__
from survey_scale.core.files import file_sha256, stable_hash
from survey_scale.engine.contracts import Stage, StageError
from survey_scale.store.bookkeeping import Bookkeeping
from survey_scale.store.cube import (
    consolidate,
    create_spectra_array,
    named_when_full,
    open_group,
    recover_swaps,
    replacing,
    spec_length,
    update_stage_attrs,
    write_column,
)

# --- provenance and chunks -----------------------------------------------------------------------------


INPUT_STAMP_KEYS = ("stage", "stage_version", "config_hash", "model_hashes", "inputs", "step", "key")
"""The parts of an input variable's provenance that say how its values were made (not when, nor by which
code version)."""


def input_provenance(root: Any, stage: Stage) -> str:
    """A hash of how the stage's inputs were made (``root``: the cube's Zarr group): the provenance of each input
    another stage wrote.

    A source stage's variables (the ingest's, ``provenance_source``) are left out: their rows never change
    once written, while their provenance names the latest batch. Everything else is in, so a stage whose
    inputs were recomputed (a new model upstream, new settings) is recomputed too.
    """
    stamps = {}
    for name in stage.inputs:
        if name not in root:
            continue
        attrs = root[name].attrs
        if attrs.get("provenance_source", False):
            continue
        stamps[name] = {k: attrs[f"provenance_{k}"] for k in INPUT_STAMP_KEYS if f"provenance_{k}" in attrs}
    return stable_hash(stamps)


def stage_provenance(stage: Stage, inputs: str | None = None) -> dict[str, Any]:
    """Provenance of a stage run: what a chunk's marker must match to be skipped (``inputs``: the hash of
    :func:`input_provenance`; a source stage, which reads files, has ``source`` instead)."""
    provenance: dict[str, Any] = {
        "stage": stage.name,
        "stage_version": stage.version,
        "config_hash": stable_hash(dict(stage.params)),
        "model_hashes": {name: file_sha256(ref.path) for name, ref in sorted(stage.models.items())},
    }
    if stage.load_inputs is not None:
        provenance["source"] = True
    else:
        provenance["inputs"] = inputs
    return provenance


def chunk_bounds(start: int, stop: int, shard: int) -> list[tuple[int, int]]:
    """Rows [start, stop) cut at multiples of ``shard`` (a first partial shard is its own chunk)."""
    edges = [start, *range((start // shard + 1) * shard, stop, shard), stop]
    return [(a, b) for a, b in itertools.pairwise(edges) if b > a]


# --- outputs -------------------------------------------------------------------------------------------


def ensure_outputs(cube: Path, stage: Stage) -> None:
    """Create the stage's dimension coordinates and its arrays with a spectrum dimension (sharded like ``flux``)
    where missing or of another shape or dtype.

    What a killed replacement left is repaired first (:func:`~survey_scale.store.cube.recover_swaps`); an array
    of another shape or dtype is replaced by write-then-swap (:func:`~survey_scale.store.cube.replacing`), so a
    failure (a full disk: :class:`~survey_scale.store.cube.CubeFullError`) keeps the old one.
    """
    with named_when_full(cube, f"allocating the outputs of stage {stage.name}"):
        _ensure_outputs(Path(cube), stage)


def _ensure_outputs(cube: Path, stage: Stage) -> None:
    restored = recover_swaps(cube)
    root = open_group(cube, mode="r+")
    n = spec_length(root)
    changed = bool(restored)
    for dim, spec in stage.dims.items():
        values = None if isinstance(spec, int) else np.asarray(spec)
        size = spec if isinstance(spec, int) else len(values)
        if dim in root and root[dim].shape == (size,):
            continue
        with replacing(cube, dim) if dim in root else _same(root) as group:
            array = group.create_array(
                dim,
                shape=(size,),
                chunks=(size,),
                dtype=str if values is not None and values.dtype.kind in "US" else "i8",
                dimension_names=(dim,),
                fill_value="" if values is not None and values.dtype.kind in "US" else -1,
            )
            array[:] = values.astype(object) if values is not None and values.dtype.kind in "US" else np.arange(size)
        changed = True
    sizes = {d: (s if isinstance(s, int) else len(s)) for d, s in stage.dims.items()}
    sizes["wave"] = root["wave"].shape[0]
    config = {
        "shard_spectra": root.attrs["shard_spectra"],
        "inner_chunk_spectra": root.attrs["inner_chunk_spectra"],
        "compression": root.attrs["compression"],
    }
    for out in stage.outputs:
        if out.per_spectrum:
            continue
        tail = tuple((d, sizes[d]) for d in out.dims[1:])
        exists = out.name in root
        if exists:
            existing = root[out.name]
            if existing.shape[1:] == tuple(s for _, s in tail) and existing.dtype == np.dtype(out.dtype):
                continue
        with replacing(cube, out.name) if exists else _same(root) as group:
            create_spectra_array(group, out.name, out.dtype, config, out.attrs, extra_dims=tail, n_spec=n)
        changed = True
    if changed:
        consolidate(cube)


@contextlib.contextmanager
def _same(root: Any) -> Iterator[Any]:
    """The cube's own group: a new node is created in place (nothing is replaced)."""
    yield root


def consolidate_stage(bookkeeping: Bookkeeping, stage: Stage, provenance: Mapping[str, Any]) -> None:
    """Write a stage's per-spectrum outputs from all chunk results, its provenance and the rejects table.

    Raises
    ------
    StageError
        If the chunk results do not cover every row of the cube (the stage is not finished).
    survey_scale.store.cube.CubeFullError
        If the cube's file system is full (every replaced variable keeps its old version; a rerun finishes).
    """
    with named_when_full(bookkeeping.cube, f"consolidating stage {stage.name}"):
        _consolidate_stage(bookkeeping, stage, provenance)


def _consolidate_stage(bookkeeping: Bookkeeping, stage: Stage, provenance: Mapping[str, Any]) -> None:
    cube = bookkeeping.cube
    root = open_group(cube, mode="r+")
    n = spec_length(root)
    results = [r for r in bookkeeping.chunk_results(stage.name) if int(r["_start"]) < n]
    expected = 0
    for r in results:
        if int(r["_start"]) != expected:
            raise StageError(f"{cube}: stage {stage.name}: rows {expected}:{int(r['_start'])} have no results yet")
        expected = int(r["_stop"])
    if expected != n and any(o.per_spectrum for o in stage.outputs):
        raise StageError(f"{cube}: stage {stage.name}: rows {expected}:{n} have no results yet")
    stamp = {
        **provenance,
        "params": json.loads(json.dumps(dict(stage.params), default=str)),
        "code_version": __version__,
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    attrs_prov = {
        f"provenance_{k}": (json.dumps(v, sort_keys=True) if isinstance(v, dict) else v) for k, v in stamp.items()
    }
    for out in stage.outputs:
        if out.per_spectrum:
            values = (
                np.concatenate([r[out.name] for r in results])
                if results
                else np.zeros(0, dtype=out.dtype if out.dtype != "str" else str)
            )
            write_column(root, out.name, values, {**out.attrs, **attrs_prov})
        else:
            root[out.name].attrs.update({**out.attrs, **attrs_prov})
    update_stage_attrs(cube, stage.name, stamp)
    bookkeeping.rebuild_rejects()
    consolidate(cube)
