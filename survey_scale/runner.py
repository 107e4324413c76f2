"""The chunk runner: maps any stage over the cube's chunks with Dask (SPEC §1, §11).

A **stage** is a pure function from an in-memory chunk of input variables to output variables (numpy in,
numpy out), plus its name, version, parameters and models. The runner never knows the science; it

1. allocates the stage's outputs in the cube (arrays with a ``wave`` dim are sharded like ``flux``),
2. cuts the rows into chunks aligned to the shards (one chunk = one shard = one Dask task),
3. skips chunks whose **done marker** carries the stage's current provenance (stage version, hash of its
   parameters, hashes of its model files) and submits the others to the Dask cluster,
4. on the worker: reads the chunk's inputs, calls the stage, writes each (spec, …) output with a region
   write of whole shards, writes the chunk's per-spectrum outputs and rejects to a small result file, and
   only then the marker,
5. consolidates: rewrites every per-spectrum output as one chunk from all chunk results, records provenance
   in the variables' and the root's attributes, rebuilds the rejects table and the consolidated metadata.

A run killed at any moment leaves each chunk either marked (fully written) or unmarked (rewritten whole by
the next run), so a re-run ends with exactly the store an uninterrupted run makes. Zarr's local store writes
every chunk file atomically (temporary file + rename), so a kill never leaves a torn shard.

Models (PCA basis, emulator) are loaded once per worker by a :class:`distributed.WorkerPlugin` that reads
the saved files, not pickled into every task.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from distributed import Client, WorkerPlugin, as_completed, get_worker
from tqdm.auto import tqdm

from survey_scale._version import __version__
from survey_scale.cube import (
    META_GROUP,
    REJECT_COLUMNS,
    consolidate,
    create_spectra_array,
    meta_dir,
    open_group,
    read_column,
    shard_spectra,
    spec_length,
    update_stage_attrs,
    write_column,
    write_rejects,
)

log = logging.getLogger(__name__)

MODEL_PLUGIN = "survey_scale-models"


@dataclass(frozen=True)
class Output:
    """One output variable of a stage.

    ``dims`` starts with ``spec``. A purely per-spectrum output (``("spec",)``) is collected from the chunks
    and stored as one chunk; any other is written into the cube chunk by chunk.
    """

    name: str
    dtype: str
    dims: tuple[str, ...] = ("spec",)
    attrs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def per_spectrum(self) -> bool:
        return self.dims == ("spec",)


@dataclass(frozen=True)
class ModelRef:
    """A model file a stage uses: loaded once per worker by ``loader(path)``, hashed into provenance."""

    path: str
    loader: Callable[[str], Any]


@dataclass(frozen=True)
class ChunkContext:
    """What a stage function knows about its chunk besides its inputs."""

    start: int
    stop: int
    models: Mapping[str, Any]


@dataclass
class StageResult:
    """A stage function's outputs for one chunk.

    ``outputs`` maps each output name to an array whose first axis is the chunk's rows; ``rejects`` lists
    ``(row within the chunk, code, reason)`` for spectra the stage could not process (their outputs are
    still written, as NaN or flags, so that rows stay aligned).
    """

    outputs: dict[str, np.ndarray]
    rejects: list[tuple[int, str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Stage:
    """A stage: a pure function mapped by the runner over the cube's chunks.

    Attributes
    ----------
    name
        Stage name (markers, provenance, rejects).
    version
        Bumped when the algorithm changes; a new version re-runs every chunk.
    func
        ``func(inputs, params, ctx) -> StageResult``, a module-level function (pickled by reference).
    inputs
        Cube variables read for each chunk (rows ``ctx.start:ctx.stop``).
    outputs
        Variables the stage writes.
    params
        JSON-serialisable parameters passed to ``func``; hashed into provenance.
    models
        Model files (name → :class:`ModelRef`); their SHA-256 goes into provenance.
    dims
        Sizes (int) or coordinate values (sequence) of the extra dims the outputs use, e.g.
        ``{"label": LABEL_NAMES}``.
    load_inputs
        Optional ``load_inputs(start, stop, params) -> dict`` used instead of reading cube variables (the
        ingest reads FITS files).
    block_rows
        If set, a chunk is computed in blocks of this many rows by separate tasks (spreading a chunk over
        the workers) and written by one task that gathers them; default one task per chunk.
    """

    name: str
    version: str
    func: Callable[[dict[str, np.ndarray], Mapping[str, Any], ChunkContext], StageResult]
    inputs: tuple[str, ...] = ()
    outputs: tuple[Output, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    models: Mapping[str, ModelRef] = field(default_factory=dict)
    dims: Mapping[str, int | Sequence[Any]] = field(default_factory=dict)
    load_inputs: Callable[[int, int, Mapping[str, Any]], dict[str, np.ndarray]] | None = None
    block_rows: int | None = None


class StageError(RuntimeError):
    """Chunks of a stage failed; the message lists them. Finished chunks are kept: re-run to resume."""


@dataclass
class StageSummary:
    """What a :func:`run_stage` call did."""

    stage: str
    n_chunks: int
    n_done_before: int
    n_computed: int
    n_rejects: int
    seconds: float


# --- provenance ----------------------------------------------------------------------------------------


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file (model provenance)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def params_hash(params: Mapping[str, Any]) -> str:
    """Stable hash of a stage's parameters."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stage_provenance(stage: Stage) -> dict[str, Any]:
    """Provenance of a stage run: what a chunk's marker must match to be skipped."""
    return {
        "stage": stage.name,
        "stage_version": stage.version,
        "config_hash": params_hash(stage.params),
        "model_hashes": {name: file_sha256(ref.path) for name, ref in sorted(stage.models.items())},
    }


def _marker_path(cube: Path, stage: str, start: int) -> Path:
    return meta_dir(cube) / "markers" / stage / f"rows-{start:010d}.json"


def _result_path(cube: Path, stage: str, start: int) -> Path:
    return meta_dir(cube) / "results" / stage / f"rows-{start:010d}.npz"


def chunk_bounds(start: int, stop: int, shard: int) -> list[tuple[int, int]]:
    """Rows [start, stop) cut at multiples of ``shard`` (a first partial shard is its own chunk)."""
    edges = [start, *range((start // shard + 1) * shard, stop, shard), stop]
    return [(a, b) for a, b in itertools.pairwise(edges) if b > a]


def marker_matches(cube: Path, stage: str, start: int, stop: int, provenance: Mapping[str, Any]) -> bool:
    """True if rows [start, stop) carry a done marker of ``stage`` with this provenance."""
    try:
        marker = json.loads(_marker_path(cube, stage, start).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("stop") == stop and all(marker.get(k) == v for k, v in provenance.items())


# --- worker side ---------------------------------------------------------------------------------------


class ModelPlugin(WorkerPlugin):
    """Loads a stage's model files once on each worker (``setup``) and keeps them for its tasks."""

    def __init__(self, models: Mapping[str, ModelRef], thread_budget: int | None = None) -> None:
        self.models = dict(models)
        self.thread_budget = thread_budget
        self.loaded: dict[str, Any] = {}

    def setup(self, worker: Any) -> None:
        if self.thread_budget:
            import torch

            torch.set_num_threads(self.thread_budget)
        self.loaded = {name: ref.loader(ref.path) for name, ref in self.models.items()}


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


def _atomic_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def compute_block(cube: str, stage: Stage, start: int, stop: int) -> tuple[int, StageResult]:
    """Read the inputs of rows [start, stop) and call the stage on them (runs on a worker)."""
    if stage.load_inputs is not None:
        inputs = stage.load_inputs(start, stop, stage.params)
    else:
        root = open_group(cube)
        inputs = {name: root[name][start:stop] for name in stage.inputs}
    result = stage.func(inputs, stage.params, ChunkContext(start=start, stop=stop, models=_worker_models(stage.models)))
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
    return start, result


def write_chunk(
    cube: str, stage: Stage, start: int, stop: int, provenance: Mapping[str, Any], *blocks: tuple[int, StageResult]
) -> dict[str, Any]:
    """Write one chunk from its blocks' results: region writes, chunk result file, then the marker."""
    t0 = time.perf_counter()
    cube_path = Path(cube)
    root = open_group(cube_path, mode="r+")
    blocks = tuple(sorted(blocks, key=lambda b: b[0]))
    per_spectrum: dict[str, np.ndarray] = {}
    for out in stage.outputs:
        value = np.concatenate([np.asarray(r.outputs[out.name]) for _, r in blocks])
        if out.per_spectrum:
            per_spectrum[out.name] = value.astype(str) if out.dtype == "str" else value.astype(out.dtype)
        else:
            root[out.name][start:stop] = value.astype(out.dtype, copy=False)
    rejects = [(block_start + row, code, reason) for block_start, r in blocks for row, code, reason in r.rejects]
    buffer = io.BytesIO()
    np.savez(
        buffer,
        _start=np.int64(start),
        _stop=np.int64(stop),
        _reject_row=np.array([row for row, _, _ in rejects], dtype=np.int64),
        _reject_code=np.array([code for _, code, _ in rejects], dtype=str),
        _reject_reason=np.array([reason for _, _, reason in rejects], dtype=str),
        **per_spectrum,
    )
    _atomic_bytes(_result_path(cube_path, stage.name, start), buffer.getvalue())
    marker = {
        **provenance,
        "start": start,
        "stop": stop,
        "n_rejects": len(rejects),
        "write_seconds": round(time.perf_counter() - t0, 3),
        "code_version": __version__,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _atomic_bytes(_marker_path(cube_path, stage.name, start), json.dumps(marker, sort_keys=True).encode())
    return {"start": start, "stop": stop, "n_rejects": len(rejects)}


# --- client side ---------------------------------------------------------------------------------------


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


def run_stage(
    cube: str | Path,
    stage: Stage,
    client: Client,
    *,
    rows: tuple[int, int] | None = None,
    progress: bool = True,
    thread_budget: int | None = None,
) -> StageSummary:
    """Run ``stage`` over the cube's chunks that are not done (the caller holds the writer lock).

    Parameters
    ----------
    cube
        The cube.
    stage
        The stage.
    client
        Dask client.
    rows
        Only rows [start, stop) (the ingest writes the rows it appended); default all rows.
    progress
        Show a progress bar.
    thread_budget
        torch threads per worker (see :func:`survey_scale.cluster.thread_budget`).

    Raises
    ------
    StageError
        If any chunk failed; the finished chunks stay done.
    """
    t0 = time.perf_counter()
    cube = Path(cube)
    _ensure_outputs(cube, stage)
    root = open_group(cube)
    n = spec_length(root)
    start, stop = rows if rows is not None else (0, n)
    provenance = stage_provenance(stage)
    chunks = chunk_bounds(start, stop, shard_spectra(root))
    pending = [(a, b) for a, b in chunks if not marker_matches(cube, stage.name, a, b, provenance)]
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
            client.register_plugin(ModelPlugin(stage.models, thread_budget), name=MODEL_PLUGIN)
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
                    write_chunk, str(cube), stage, a, b, provenance, *blocks, pure=False, key=f"{stage.name}-rows-{a}"
                )
            )
        bar = tqdm(total=len(futures), desc=stage.name, unit="chunk", disable=not progress)
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
    consolidate_stage(cube, stage, provenance)
    return StageSummary(
        stage.name, len(chunks), len(chunks) - len(pending), len(pending), n_rejects, time.perf_counter() - t0
    )


def _reduce_block(
    cube: str, variables: tuple[str, ...], rows: np.ndarray, block: Callable[..., Any], params: Mapping[str, Any]
) -> Any:
    root = open_group(cube)
    data = {name: root[name].get_orthogonal_selection((rows,)) for name in variables}
    return block(data, params)


def _row_blocks(rows: np.ndarray, block_rows: int) -> list[np.ndarray]:
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        raise ValueError("no rows selected")
    return [rows[i : i + block_rows] for i in range(0, rows.size, block_rows)]


def reduce_rows(
    cube: str | Path,
    variables: Sequence[str],
    rows: np.ndarray,
    block: Callable[[dict[str, np.ndarray], Mapping[str, Any]], Any],
    combine: Callable[[Any, Any], Any],
    client: Client,
    params: Mapping[str, Any] | None = None,
    block_rows: int = 2048,
) -> Any:
    """Map ``block`` over groups of the given rows and fold the results with ``combine`` as they finish.

    Survey-wide reductions (the PCA's moments and Gram matrix) use it: each task reads only its rows of
    ``variables`` from the cube, and two finished results are combined as soon as both exist, so the
    number of partial results alive at once stays near the number of workers whatever the selection size.
    ``combine`` must be commutative and associative (a sum).
    """
    params = dict(params or {})
    # Only as_completed holds the futures: a result is released as soon as it has been combined.
    finished = as_completed(
        client.submit(_reduce_block, str(cube), tuple(variables), group, block, params, pure=False)
        for group in _row_blocks(rows, block_rows)
    )
    waiting = None
    for future in finished:
        if waiting is None:
            waiting = future
        else:
            finished.add(client.submit(combine, waiting, future, pure=False))
            waiting = None
    return waiting.result()


def map_rows(
    cube: str | Path,
    variables: Sequence[str],
    rows: np.ndarray,
    block: Callable[[dict[str, np.ndarray], Mapping[str, Any]], dict[str, np.ndarray]],
    client: Client,
    params: Mapping[str, Any] | None = None,
    block_rows: int = 2048,
) -> dict[str, np.ndarray]:
    """Map ``block`` over groups of the given rows and concatenate its (small) per-row outputs in row order."""
    params = dict(params or {})
    futures = [
        client.submit(_reduce_block, str(cube), tuple(variables), group, block, params, pure=False)
        for group in _row_blocks(rows, block_rows)
    ]
    parts = client.gather(futures)
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def _load_results(cube: Path, stage: str) -> list[dict[str, np.ndarray]]:
    folder = meta_dir(cube) / "results" / stage
    results = []
    for path in sorted(folder.glob("rows-*.npz")):
        with np.load(path, allow_pickle=False) as z:
            results.append({k: z[k] for k in z.files})
    return results


def consolidate_stage(cube: str | Path, stage: Stage, provenance: Mapping[str, Any] | None = None) -> None:
    """Write a stage's per-spectrum outputs from all chunk results, its provenance and the rejects table.

    Raises
    ------
    StageError
        If the chunk results do not cover every row of the cube (the stage is not finished).
    """
    cube = Path(cube)
    provenance = dict(provenance or stage_provenance(stage))
    root = open_group(cube, mode="r+")
    n = spec_length(root)
    results = [r for r in _load_results(cube, stage.name) if int(r["_start"]) < n]
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
    rebuild_rejects(cube)
    consolidate(cube)


def rebuild_rejects(cube: str | Path) -> pd.DataFrame:
    """Rebuild the cube's rejects table from every source and return it.

    Sources: the chunk results of every stage (their specids looked up in the cube) and the tables in
    ``_survey_scale/rejects/*.parquet`` (written by the ingest: files that never became rows).
    """
    cube = Path(cube)
    frames = [pd.read_parquet(p) for p in sorted((meta_dir(cube) / "rejects").glob("*.parquet"))]
    root = open_group(cube)
    specids = read_column(root, "specid") if "specid" in root else None
    n = spec_length(root)
    results_dir = meta_dir(cube) / "results"
    for stage_dir in sorted(p for p in results_dir.glob("*") if p.is_dir()):
        for r in _load_results(cube, stage_dir.name):
            keep = r["_reject_row"] < n
            if not keep.any():
                continue
            rows = r["_reject_row"][keep]
            ids = specids[rows].astype(str) if specids is not None else rows.astype(str)
            frames.append(
                pd.DataFrame(
                    {
                        "stage": stage_dir.name,
                        "source": ids,
                        "specid": ids,
                        "code": r["_reject_code"][keep],
                        "reason": r["_reject_reason"][keep],
                        "batch": -1,
                    }
                )
            )
    table = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame({c: pd.Series(dtype=object) for c in REJECT_COLUMNS})
    )
    table = table.reindex(columns=list(REJECT_COLUMNS))
    table["batch"] = table["batch"].fillna(-1).astype(np.int64)
    for col in ("stage", "source", "specid", "code", "reason"):
        table[col] = table[col].fillna("").astype(str)
    write_rejects(cube, table)
    return table


def stages_done(cube: str | Path) -> dict[str, dict[str, int]]:
    """Per stage: chunks marked done (any provenance) — for ``survey-scale info``."""
    out = {}
    markers = meta_dir(cube) / "markers"
    for stage_dir in sorted(p for p in markers.glob("*") if p.is_dir()):
        out[stage_dir.name] = {"chunks_done": len(list(stage_dir.glob("rows-*.json")))}
    return out


__all__ = [
    "META_GROUP",
    "ChunkContext",
    "ModelRef",
    "Output",
    "Stage",
    "StageError",
    "StageResult",
    "StageSummary",
    "chunk_bounds",
    "compute_block",
    "consolidate_stage",
    "map_rows",
    "rebuild_rejects",
    "reduce_rows",
    "run_stage",
    "write_chunk",
]
