"""The runner: maps stages and reductions over the cube with Dask (SPEC §1, §11).

The runner never knows the science. For a :class:`~survey_scale.engine.contracts.Stage` it

1. allocates the stage's outputs in the cube (arrays with a ``wave`` dim are sharded like ``flux``),
2. cuts the rows into chunks aligned to the shards (one chunk = one shard = one Dask task),
3. skips chunks whose **done marker** carries the stage's current provenance (stage version, hash of its
   parameters, hashes of its model files, and how its inputs were made — so a change upstream propagates)
   and submits the others to the Dask cluster,
4. on the worker: reads the chunk's inputs, calls the stage, writes each (spec, …) output with a region
   write of whole shards, has the bookkeeping save the chunk's per-spectrum outputs and rejects, and only
   then its marker,
5. consolidates: rewrites every per-spectrum output as one chunk from all chunk results, records provenance
   in the variables' and the root's attributes, rebuilds the rejects table and the consolidated metadata.

A run killed at any moment leaves each chunk either marked (fully written) or unmarked (rewritten whole by
the next run), so a re-run ends with exactly the store an uninterrupted run makes. Zarr's local store writes
every chunk file atomically (temporary file + rename), so a kill never leaves a torn shard.

Reductions (:class:`DaskEngine`'s ``reduce_rows``, ``map_rows``, ``reduce_by_star``) read only their rows,
task by task, so their memory does not grow with the cube. Models (PCA basis, emulator) are loaded once per
worker by a :class:`distributed.WorkerPlugin` that reads the saved files, not pickled into every task.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from distributed import Client, WorkerPlugin, as_completed, get_worker
from tqdm.auto import tqdm

from survey_scale._version import __version__
from survey_scale.core.files import file_sha256, stable_hash
from survey_scale.core.grid import N_WAVE
from survey_scale.engine.contracts import (
    ChunkContext,
    ModelRef,
    PipelineError,
    RowBlock,
    Stage,
    StageError,
    StageResult,
    StageSummary,
    StarBlock,
    TaskFailure,
)
from survey_scale.store.bookkeeping import Bookkeeping
from survey_scale.store.cube import (
    consolidate,
    create_spectra_array,
    open_group,
    python_strings,
    read_column,
    resize_spec,
    shard_spectra,
    spec_length,
    update_stage_attrs,
    write_column,
)

log = logging.getLogger(__name__)

MODEL_PLUGIN = "survey_scale-models"


# --- provenance ----------------------------------------------------------------------------------------


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


# --- worker side ---------------------------------------------------------------------------------------


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


def _register(client: Client, plugin: ModelPlugin, attempts: int = 3) -> None:
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
    retries it. torch is not imported here: its error is recognised by its class's name and module.
    """
    if isinstance(exc, (MemoryError, OSError)):
        return True
    return any(
        cls.__name__ == "OutOfMemoryError" and cls.__module__.split(".")[0] == "torch" for cls in type(exc).__mro__
    )


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
    """Write one chunk from its blocks' results (:func:`compute_block`'s): region writes, then the chunk's result
    and marker (with the blocks' compute seconds summed)."""
    t0 = time.perf_counter()
    root = open_group(cube, mode="r+")
    blocks = tuple(sorted(blocks, key=lambda b: b[0]))
    per_spectrum: dict[str, np.ndarray] = {}
    for out in stage.outputs:
        value = np.concatenate([np.asarray(r.outputs[out.name]) for _, r, _ in blocks])
        if out.per_spectrum:
            per_spectrum[out.name] = value.astype(str) if out.dtype == "str" else value.astype(out.dtype)
        else:
            root[out.name][start:stop] = value.astype(out.dtype, copy=False)
    rejects = [(block_start + row, code, reason) for block_start, r, _ in blocks for row, code, reason in r.rejects]
    compute_seconds = sum(seconds for _, _, seconds in blocks)
    Bookkeeping(cube).record_chunk(stage.name, start, stop, per_spectrum, rejects, provenance, t0, compute_seconds)
    return {"start": start, "stop": stop, "n_rejects": len(rejects)}


def _read_rows(cube: str, variables: tuple[str, ...], rows: np.ndarray) -> dict[str, np.ndarray]:
    # Strings as object arrays of str, as read_column gives them.
    root = open_group(cube)
    return {name: python_strings(root[name].get_orthogonal_selection((rows,))) for name in variables}


def _block_task(cube: str, variables: tuple[str, ...], rows: np.ndarray, block: Callable[..., Any], *args: Any) -> Any:
    """Read ``variables`` at ``rows`` and return ``block(data, *args)`` (runs on a worker)."""
    return block(_read_rows(cube, variables, rows), *args)


def _row_blocks(rows: np.ndarray, block_rows: int) -> list[np.ndarray]:
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        raise ValueError("no rows selected")
    return [rows[i : i + block_rows] for i in range(0, rows.size, block_rows)]


def star_groups(star_id: np.ndarray, block_rows: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Rows grouped by star into blocks of about ``block_rows`` rows that never split a star.

    Returns ``(rows, star)`` per block: the rows in increasing order within each star, stars in order of
    their ``star_id``, and ``star`` numbering the block's stars 0..m-1. A block grows past ``block_rows``
    only to hold one star whole.
    """
    star_id = np.asarray(star_id).astype(str)
    order = np.argsort(star_id, kind="stable")
    sorted_ids = star_id[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    ends = np.r_[starts[1:], order.size]
    blocks: list[tuple[np.ndarray, np.ndarray]] = []
    first = 0
    while first < starts.size:
        last = first
        while last + 1 < starts.size and ends[last + 1] - starts[first] <= block_rows:
            last += 1
        rows = order[starts[first] : ends[last]]
        star = np.repeat(np.arange(last - first + 1), ends[first : last + 1] - starts[first : last + 1])
        blocks.append((rows, star))
        first = last + 1
    return blocks


def _fold(client: Client, futures: Any, combine: Callable[[Any, Any], Any]) -> Any:
    # Only as_completed holds the futures: a result is released as soon as it has been combined.
    finished = as_completed(futures)
    waiting = None
    for future in finished:
        if waiting is None:
            waiting = future
        else:
            finished.add(client.submit(combine, waiting, future, pure=False))
            waiting = None
    return waiting.result()


# --- the engine ----------------------------------------------------------------------------------------


@dataclass
class DaskEngine:
    """The engine of one pipeline run: a cube, its bookkeeping and a Dask client (the caller holds the lock).

    Implements :class:`survey_scale.engine.contracts.Engine`.
    """

    cube: Path
    client: Client
    progress: bool = True
    models: dict[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.cube = Path(self.cube)
        self.bookkeeping = Bookkeeping(self.cube)

    # --- stages

    def run_stage(self, stage: Stage, rows: tuple[int, int] | None = None) -> StageSummary:
        """Run ``stage`` over the cube's chunks that are not done.

        ``rows`` limits it to rows [start, stop) (the ingest writes the rows it appended); default all rows.

        Raises
        ------
        StageError
            If any chunk failed; the finished chunks stay done.
        """
        t0 = time.perf_counter()
        cube, client = self.cube, self.client
        _ensure_outputs(cube, stage)
        root = open_group(cube)
        n = spec_length(root)
        start, stop = rows if rows is not None else (0, n)
        provenance = stage_provenance(stage, input_provenance(root, stage))
        chunks = chunk_bounds(start, stop, shard_spectra(root))
        pending = [p for p in (self._pending_rows(stage.name, a, b, provenance) for a, b in chunks) if p]
        log.info(
            "%s: %d of %d chunks to compute (%d up to date), rows %d:%d",
            stage.name,
            len(pending),
            len(chunks),
            len(chunks) - len(pending),
            start,
            stop,
        )
        failures: list[str] = []
        n_rejects = 0
        if pending:
            if stage.models:
                _register(client, ModelPlugin(stage.models, stage.worker_setup))
            futures = []
            for a, b in pending:
                step = stage.block_rows or (b - a)
                blocks = [
                    client.submit(
                        compute_block, str(cube), stage, s, min(s + step, b), pure=False, key=f"{stage.name}-block-{s}"
                    )
                    for s in range(a, b, step)
                ]
                futures.append(
                    client.submit(
                        write_chunk,
                        str(cube),
                        stage,
                        a,
                        b,
                        provenance,
                        *blocks,
                        pure=False,
                        key=f"{stage.name}-rows-{a}",
                    )
                )
            bar = tqdm(total=len(futures), desc=stage.name, unit="chunk", disable=not self.progress)
            for future in as_completed(futures):
                bar.update()
                if future.status == "error":
                    a = int(str(future.key).rsplit("-", 1)[1])
                    failures.append(f"rows {a}: {type(future.exception()).__name__}: {future.exception()}")
                else:
                    n_rejects += future.result()["n_rejects"]
            bar.close()
        if failures:
            raise StageError(
                f"{cube}: stage {stage.name}: {len(failures)} chunk(s) failed (finished chunks are kept; fix the "
                "cause and re-run to resume):\n  " + "\n  ".join(failures)
            )
        consolidate_stage(self.bookkeeping, stage, provenance)
        return StageSummary(
            stage.name, len(chunks), len(chunks) - len(pending), len(pending), n_rejects, time.perf_counter() - t0
        )

    def _pending_rows(self, stage: str, start: int, stop: int, provenance: Mapping[str, Any]) -> tuple[int, int] | None:
        """The rows of chunk [start, stop) still to compute: none if done; past its done leading chunks if it
        has some (the cube's partial last shard before an append keeps its rows and their bits); else all."""
        first = start
        while first < stop and (done := self.bookkeeping.done_stop(stage, first, provenance)) is not None:
            if not first < done <= stop:
                break
            first = done
        return None if first == stop else (first, stop)

    def map_tasks(
        self,
        name: str,
        func: Callable[..., Any],
        items: Sequence[tuple[Any, ...]],
        sizes: Sequence[int] | None = None,
        unit: str = "task",
        errors: str = "raise",
    ) -> list[Any]:
        """Run ``func(*item)`` for every item on the cluster; results in order.

        The progress bar counts ``sizes`` (e.g. files per task) in ``unit`` if given, else tasks. With
        ``errors="return"`` a task that raised, or whose worker died, gives a :class:`TaskFailure` and the
        others go on; with ``"raise"`` the first failure is raised.
        """
        futures = [self.client.submit(func, *item, pure=False) for item in items]
        size_of = dict(zip((f.key for f in futures), sizes or [1] * len(futures), strict=True))
        with tqdm(total=sum(size_of.values()), desc=name, unit=unit, disable=not self.progress) as bar:
            for future in as_completed(futures):
                bar.update(size_of[future.key])
        if errors == "raise":
            return self.client.gather(futures)
        results = []
        for future in futures:
            if future.status == "finished":
                results.append(future.result())
            elif future.status == "error":
                results.append(TaskFailure(type(future.exception()).__name__, str(future.exception())))
            else:
                results.append(TaskFailure("CancelledError", f"the task was {future.status}"))
        return results

    # --- reductions

    def _broadcast(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        # One scatter per value: a scattered dict would use its keys as the futures' keys, and a later
        # broadcast of another model under the same name would find the old one.
        return {name: self.client.scatter(value, broadcast=True) for name, value in (params or {}).items()}

    def reduce_rows(
        self,
        variables: Sequence[str],
        rows: np.ndarray,
        block: RowBlock,
        combine: Callable[[Any, Any], Any],
        params: Mapping[str, Any] | None = None,
        block_rows: int = 2048,
    ) -> Any:
        """Map ``block`` over groups of the given rows and fold the results with ``combine`` as they finish.

        Each task reads only its rows of ``variables`` from the cube, and two finished results are combined
        as soon as both exist, so the number of partial results alive at once stays near the number of
        workers whatever the selection size. ``combine`` must be commutative and associative (a sum).
        ``params`` are sent to every worker once (a model, say), not with every task.
        """
        params = self._broadcast(params)
        futures = (
            self.client.submit(_block_task, str(self.cube), tuple(variables), group, block, params, pure=False)
            for group in _row_blocks(rows, block_rows)
        )
        return _fold(self.client, futures, combine)

    def map_rows(
        self,
        variables: Sequence[str],
        rows: np.ndarray,
        block: RowBlock,
        params: Mapping[str, Any] | None = None,
        block_rows: int = 2048,
    ) -> dict[str, np.ndarray]:
        """Map ``block`` over groups of the given rows and concatenate its (small) per-row outputs in row order."""
        params = self._broadcast(params)
        futures = [
            self.client.submit(_block_task, str(self.cube), tuple(variables), group, block, params, pure=False)
            for group in _row_blocks(rows, block_rows)
        ]
        parts = self.client.gather(futures)
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}

    def reduce_by_star(
        self,
        variables: Sequence[str],
        block: StarBlock,
        params: Mapping[str, Any] | None = None,
        combine: Callable[[Any, Any], Any] | None = None,
        block_rows: int = 2048,
    ) -> Any:
        """``block(data, star, params)`` over all visits of each star, wherever their shards are.

        Rows are grouped by ``star_id`` (:func:`star_groups`); each task reads the rows of whole stars. With
        ``combine`` the task results are folded as in :meth:`reduce_rows`; without, ``block`` returns per-row
        arrays (in the order of its rows), put back in the cube's row order: one array per output, length
        the number of spectra.
        """
        star_id = self.read_column("star_id")
        groups = star_groups(star_id, block_rows)
        params = self._broadcast(params)
        futures = [
            self.client.submit(_block_task, str(self.cube), tuple(variables), rows, block, star, params, pure=False)
            for rows, star in groups
        ]
        if combine is not None:
            return _fold(self.client, futures, combine)
        parts = self.client.gather(futures)
        order = np.concatenate([rows for rows, _ in groups])
        out = {}
        for key in parts[0]:
            values = np.concatenate([part[key] for part in parts])
            full = np.empty((star_id.size, *values.shape[1:]), dtype=values.dtype)
            full[order] = values
            out[key] = full
        return out

    # --- the cube and the bookkeeping

    def n_spectra(self) -> int:
        return spec_length(open_group(self.cube))

    def resize(self, n: int) -> None:
        resize_spec(self.cube, n)

    def read_column(self, name: str) -> np.ndarray:
        root = open_group(self.cube)
        if name not in root:
            raise PipelineError(
                f"{self.cube}: the cube has no variable {name!r} (check the configuration's column names)"
            )
        return read_column(root, name)

    def variable_attrs(self, name: str) -> dict[str, Any]:
        return dict(open_group(self.cube)[name].attrs)

    def model_path(self, name: str) -> Path:
        return self.bookkeeping.model_path(name)

    def cached(self, name: str, key: str, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """The stored result of reduction ``name`` if it carries ``key``; else ``compute()``, then stored."""
        result = self.bookkeeping.load_reduction(name, key)
        if result is None:
            log.info("%s: computing (inputs changed or no stored result)", name)
            result = compute()
            self.bookkeeping.save_reduction(name, key, result)
        else:
            log.info("%s: up to date (stored result re-used)", name)
        return result

    def input_key(self, variables: Sequence[str], *parts: Any) -> str:
        """A key of the cube's specids, the provenance of ``variables`` (who wrote them, with what) and ``parts``.

        The time and code version of the provenance are left out: a stage re-run with the same settings
        and models writes the same values, so it does not invalidate what was computed from them.
        """
        root = open_group(self.cube)
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
        self,
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
        root = open_group(self.cube)
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
        root = open_group(self.cube, mode="r+")
        for var, var_attrs in attrs.items():
            column = np.asarray(values[var])
            if column.shape[0] != n:
                raise PipelineError(f"{self.cube}: {name} gave {column.shape[0]} values of {var} for {n} spectra")
            write_column(root, var, column, {**var_attrs, **stamp})
        consolidate(self.cube)
        log.info("%s: wrote %s", name, ", ".join(attrs))
        return True

    def write_catalog(
        self,
        name: str,
        variables: Sequence[str],
        block: RowBlock,
        params: Mapping[str, Any],
        out: Path,
        formats: Sequence[str],
        meta: Mapping[str, Mapping[str, str]],
        key: str,
        block_rows: int = 131072,
        hats: Mapping[str, Any] | None = None,
    ) -> dict[str, Path]:
        """Catalog files streamed from the cube (:func:`survey_scale.engine.catalog.write_catalog`)."""
        from survey_scale.engine.catalog import write_catalog

        return write_catalog(self, name, variables, block, params, out, formats, meta, key, block_rows, hats)

    def has_variable(self, name: str) -> bool:
        return name in open_group(self.cube)

    def record_reduction(self, name: str, summary: Mapping[str, Any]) -> None:
        """Keep a reduction's coefficients (JSON-serialisable) with provenance in the cube's attributes
        (``attrs['reductions'][name]``), where ``survey-scale info`` shows them."""
        record = {
            **_json_safe(json.loads(json.dumps(dict(summary), default=str))),
            "code_version": __version__,
            "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        root = open_group(self.cube, mode="r+")
        reductions = dict(root.attrs.get("reductions", {}))
        old = {k: v for k, v in reductions.get(name, {}).items() if k != "updated"}
        if old == {k: v for k, v in record.items() if k != "updated"}:
            return  # unchanged: keep the time it was computed
        reductions[name] = record
        root.attrs["reductions"] = reductions
        consolidate(self.cube)


def _json_safe(value: Any) -> Any:
    # Strict JSON for the cube's attributes: NaN and infinities become null.
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _ensure_outputs(cube: Path, stage: Stage) -> None:
    root = open_group(cube, mode="r+")
    n = spec_length(root)
    changed = False
    for dim, spec in stage.dims.items():
        values = None if isinstance(spec, int) else np.asarray(spec)
        size = spec if isinstance(spec, int) else len(values)
        if dim in root and root[dim].shape == (size,):
            continue
        if dim in root:
            del root[dim]
        array = root.create_array(
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
        if out.name in root:
            existing = root[out.name]
            if existing.shape[1:] == tuple(s for _, s in tail) and existing.dtype == np.dtype(out.dtype):
                continue
            del root[out.name]
        create_spectra_array(root, out.name, out.dtype, config, out.attrs, extra_dims=tail, n_spec=n)
        changed = True
    if changed:
        consolidate(cube)


def consolidate_stage(bookkeeping: Bookkeeping, stage: Stage, provenance: Mapping[str, Any]) -> None:
    """Write a stage's per-spectrum outputs from all chunk results, its provenance and the rejects table.

    Raises
    ------
    StageError
        If the chunk results do not cover every row of the cube (the stage is not finished).
    """
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


def run_stage(
    cube: str | Path,
    stage: Stage,
    client: Client,
    *,
    rows: tuple[int, int] | None = None,
    progress: bool = True,
) -> StageSummary:
    """Run one stage over ``cube`` on ``client`` (the caller holds the writer lock); see
    :meth:`DaskEngine.run_stage`."""
    return DaskEngine(Path(cube), client, progress=progress).run_stage(stage, rows)
