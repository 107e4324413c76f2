"""The tasks of a stage run on the Dask workers: compute a block of rows, write a chunk (SPEC §1, §11).

:func:`compute_block` reads a block's inputs and calls the stage on them, rejecting the spectra it fails on
one by one and failing the chunk on what is not one spectrum's fault (:func:`is_system_error`);
:func:`write_chunk` writes a chunk from its blocks' results (region writes of whole shards), syncs the shard files,
then has the bookkeeping save its per-spectrum outputs, rejects and done marker, in that order (each synced
before the next: after a power loss a marker never survives its results). A full file system fails the chunk
with a :class:`~survey_scale.store.cube.CubeFullError` naming the cube; the chunk stays unmarked. Models are
loaded once per worker by :class:`ModelPlugin` (:func:`register_model_plugin`), not pickled into every task.
The functions are module-level, so Dask sends them by reference; :mod:`.runner` submits them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from distributed import Client, WorkerPlugin, get_worker

from survey_scale.core.files import fsync_up
from survey_scale.core.files import is_system_error as _is_system_error
from survey_scale.core.wavelength import N_WAVE
from survey_scale.engine.contracts import ChunkContext, ModelRef, Stage, StageError, StageResult
from survey_scale.store.bookkeeping import Bookkeeping
from survey_scale.store.cube import named_when_full, open_group

log = logging.getLogger("survey_scale.engine.runner")  # the runner's messages, under the name they always had

MODEL_PLUGIN = "survey_scale-models"


class ModelPlugin(WorkerPlugin):
    """Loads a stage's model files once on each worker (``setup``) and keeps them for its tasks."""

    def __init__(self, models: Mapping[str, ModelRef], worker_setup: Callable[[], None] | None = None) -> None:
        self.models = dict(models)
        self.worker_setup = worker_setup
        self.loaded: dict[str, Any] = {}

    def setup(self, worker: Any) -> None:
        if self.worker_setup is not None:
            self.worker_setup()
        self.loaded = {name: ref.loader(ref.path) for name, ref in self.models.items()}


def register_model_plugin(client: Client, plugin: ModelPlugin, attempts: int = 3) -> None:
    """Register ``plugin`` on every worker (and every worker that joins later, e.g. one its nanny restarts).

    A worker dying during the broadcast closes its connection: the registration is tried again.
    """
    for attempt in range(attempts):
        try:
            client.register_plugin(plugin, name=MODEL_PLUGIN)
            return
        except OSError as exc:  # distributed's CommClosedError
            if attempt == attempts - 1:
                raise
            log.warning("registering the model plugin failed (%s); trying again", exc)
            time.sleep(1.0)


def _worker_models(models: Mapping[str, ModelRef]) -> dict[str, Any]:
    if not models:
        return {}
    try:
        plugin = get_worker().plugins.get(MODEL_PLUGIN)
    except ValueError:  # not on a worker (called directly)
        plugin = None
    if plugin is not None and all(
        name in plugin.loaded and plugin.models[name].path == ref.path for name, ref in models.items()
    ):
        return {name: plugin.loaded[name] for name in models}
    return {name: ref.loader(ref.path) for name, ref in models.items()}


def _block_inputs(cube: str, stage: Stage, start: int, stop: int) -> dict[str, Any]:
    if stage.load_inputs is not None:
        return stage.load_inputs(cube, start, stop, stage.params)
    root = open_group(cube)
    return {name: root[name][start:stop] for name in stage.inputs}


def _call_stage(
    stage: Stage, inputs: Mapping[str, Any], start: int, stop: int, models: Mapping[str, Any]
) -> StageResult:
    return stage.func(inputs, stage.params, ChunkContext(start=start, stop=stop, models=models))


def _failed_row(stage: Stage, exc: Exception) -> StageResult:
    """Outputs of one spectrum the stage failed on: fill values (NaN, −1, 0, "") and a reject naming the cause."""
    sizes = {d: (s if isinstance(s, int) else len(s)) for d, s in stage.dims.items()} | {"wave": N_WAVE}
    outputs = {}
    for out in stage.outputs:
        dtype = np.dtype(str if out.dtype == "str" else out.dtype)
        fill = {"f": np.nan, "i": -1, "U": ""}.get(dtype.kind, 0)
        outputs[out.name] = np.full((1, *(sizes[d] for d in out.dims[1:])), fill, dtype=dtype)
    code = getattr(exc, "code", None) or "stage_error"
    reason = f"stage {stage.name} failed on this spectrum: {type(exc).__name__}: {exc}"
    return StageResult(outputs, [(0, str(code), reason)])


def is_system_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the machine's fault, not one spectrum's: out of memory (``MemoryError``, torch's
    ``OutOfMemoryError``) or an ``OSError`` of any kind (a full disk, a storage or network error).

    Such an error must not become a permanent reject: it fails the chunk, which stays unmarked, so a rerun
    retries it. torch is not imported here: its error is recognised by its class's name and module
    (:func:`survey_scale.core.files.is_system_error`, which the ingest's per-file fallbacks use too).
    """
    return _is_system_error(exc)


def compute_block(cube: str, stage: Stage, start: int, stop: int) -> tuple[int, StageResult, float]:
    """Read the inputs of rows [start, stop) and call the stage on them (runs on a worker); returns the block's
    first row, its result and the seconds it took (reading the inputs included, loading the models not).

    If the stage function raises, its rows are computed one by one: a spectrum that makes it fail is rejected
    with the exception as its reason (its outputs at the fill values), and the rest of the block is kept. What
    is not one spectrum's fault raises and fails the chunk (kept unmarked, so a rerun redoes it): reading the
    inputs (a file changed since it was planned, a storage error), a block in which every spectrum fails (a
    bug, or a broken model), a result that breaks the stage contract (a missing output, a wrong length), and a
    system error (:func:`is_system_error`: out of memory, an ``OSError`` such as a full disk) on any row.
    """
    models = _worker_models(stage.models)
    t0 = time.perf_counter()
    inputs = _block_inputs(cube, stage, start, stop)
    try:
        result = _call_stage(stage, inputs, start, stop, models)
    except Exception as exc:
        if is_system_error(exc):
            raise
        if stop - start > 1:
            log.warning("%s: rows %d:%d failed (%s: %s); one by one", stage.name, start, stop, type(exc).__name__, exc)
        parts, failures = [], 0
        for row in range(start, stop):
            row_inputs = _block_inputs(cube, stage, row, row + 1)
            try:
                part = _call_stage(stage, row_inputs, row, row + 1, models)
            except Exception as row_exc:
                if is_system_error(row_exc):
                    raise
                part, failures = _failed_row(stage, row_exc), failures + 1
            _check_result(stage, part, row, row + 1)
            parts.append(part)
        if failures == stop - start > 1:
            raise
        result = StageResult(
            {out.name: np.concatenate([np.asarray(p.outputs[out.name]) for p in parts]) for out in stage.outputs},
            [(i + row, code, reason) for i, p in enumerate(parts) for row, code, reason in p.rejects],
        )
    _check_result(stage, result, start, stop)
    return start, result, time.perf_counter() - t0


def _check_result(stage: Stage, result: StageResult, start: int, stop: int) -> None:
    n = stop - start
    for out in stage.outputs:
        if out.name not in result.outputs:
            raise StageError(f"stage {stage.name} returned no {out.name!r} for rows {start}:{stop}")
        if np.shape(result.outputs[out.name])[0] != n:
            raise StageError(
                f"stage {stage.name}: output {out.name!r} has {np.shape(result.outputs[out.name])[0]} rows "
                f"for rows {start}:{stop} ({n})"
            )
    if any(not 0 <= row < n for row, _, _ in result.rejects):
        raise StageError(f"stage {stage.name}: a reject row lies outside rows {start}:{stop}")


def write_chunk(
    cube: str,
    stage: Stage,
    start: int,
    stop: int,
    provenance: Mapping[str, Any],
    *blocks: tuple[int, StageResult, float],
) -> dict[str, Any]:
    """Write one chunk from its blocks' results (:func:`compute_block`'s): region writes, synced, then the chunk's
    result and marker (with the blocks' compute seconds summed).

    Raises
    ------
    survey_scale.store.cube.CubeFullError
        If the cube's file system is full (the chunk stays unmarked; a rerun after freeing space writes it).
    """
    t0 = time.perf_counter()
    with named_when_full(cube, f"writing rows {start}:{stop} of stage {stage.name}"):
        root = open_group(cube, mode="r+")
        blocks = tuple(sorted(blocks, key=lambda b: b[0]))
        per_spectrum: dict[str, np.ndarray] = {}
        for out in stage.outputs:
            value = np.concatenate([np.asarray(r.outputs[out.name]) for _, r, _ in blocks])
            if out.per_spectrum:
                per_spectrum[out.name] = value.astype(str) if out.dtype == "str" else value.astype(out.dtype)
            else:
                root[out.name][start:stop] = value.astype(out.dtype, copy=False)
                sync_rows(cube, root[out.name], start, stop)
        rejects = [(block_start + row, code, reason) for block_start, r, _ in blocks for row, code, reason in r.rejects]
        compute_seconds = sum(seconds for _, _, seconds in blocks)
        Bookkeeping(cube).record_chunk(stage.name, start, stop, per_spectrum, rejects, provenance, t0, compute_seconds)
    return {"start": start, "stop": stop, "n_rejects": len(rejects)}


def sync_rows(cube: str, array: Any, start: int, stop: int) -> None:
    """``fsync`` the stored chunk (shard) files of ``array`` that hold rows [start, stop), and their folders up to
    the array's: what a region write put in the cube is on the storage before the chunk's marker is written.

    A chunk left at its fill value is not stored by Zarr (no file): its folder is synced all the same.
    """
    rows_per_file = array.metadata.chunk_grid.chunk_shape[0]  # the shard's, for a sharded array
    folder = Path(cube) / array.path
    tail = (0,) * (array.ndim - 1)
    for index in range(start // rows_per_file, -(-stop // rows_per_file)):
        fsync_up(folder / array.metadata.encode_chunk_key((index, *tail)), folder)
