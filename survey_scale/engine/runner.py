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

This module is the driver: :class:`DaskEngine` submits the tasks and follows them. The rest lives beside it —

- :mod:`.stage_store`: steps 1, 2, 3 (provenance) and 5, on the cube, without Dask;
- :mod:`.stage_tasks`: step 4, the functions that run on the workers, and the model plugin;
- :mod:`.reductions`: the reductions over rows and stars;
- :mod:`.reduction_store`: what reductions keep in the cube (cached results, columns, coefficients).

The names other modules import from here (:func:`compute_block`, :func:`chunk_bounds`, :func:`star_groups`,
:class:`ModelPlugin`, ...) are re-exported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from distributed import Client, as_completed
from tqdm.auto import tqdm

from survey_scale.engine import reduction_store, reductions
from survey_scale.engine.contracts import (
    PipelineError,
    RowBlock,
    Stage,
    StageError,
    StageSummary,
    StarBlock,
    TaskFailure,
)
from survey_scale.engine.reductions import star_groups
from survey_scale.engine.stage_store import (
    INPUT_STAMP_KEYS,
    chunk_bounds,
    consolidate_stage,
    ensure_outputs,
    input_provenance,
    stage_provenance,
)
from survey_scale.engine.stage_tasks import (
    MODEL_PLUGIN,
    ModelPlugin,
    compute_block,
    is_system_error,
    register_model_plugin,
    write_chunk,
)
from survey_scale.store.bookkeeping import Bookkeeping
from survey_scale.store.cube import open_group, read_column, resize_spec, shard_spectra, spec_length

__all__ = [
    "INPUT_STAMP_KEYS",
    "MODEL_PLUGIN",
    "DaskEngine",
    "ModelPlugin",
    "chunk_bounds",
    "compute_block",
    "consolidate_stage",
    "input_provenance",
    "is_system_error",
    "run_stage",
    "stage_provenance",
    "star_groups",
    "write_chunk",
]

log = logging.getLogger(__name__)


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
        ensure_outputs(cube, stage)
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
                register_model_plugin(client, ModelPlugin(stage.models, stage.worker_setup))
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
        shared: tuple[Any, ...] = (),
    ) -> list[Any]:
        """Run ``func(*shared, *item)`` for every item on the cluster; results in order.

        ``shared`` is scattered to the workers once (its futures passed to every task). The progress bar
        counts ``sizes`` (e.g. files per task) in ``unit`` if given, else tasks. With
        ``errors="return"`` a task that raised, or whose worker died, gives a :class:`TaskFailure` and the
        others go on, except a system error (:func:`is_system_error`: out of memory, a full disk), which is no
        task's fault: it is raised once every task has ended, so nothing is recorded for the failed tasks and a
        rerun retries them. With ``"raise"`` the first failure is raised.
        """
        common = self.client.scatter(list(shared), broadcast=True) if shared else []
        futures = [self.client.submit(func, *common, *item, pure=False) for item in items]
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
                exc = future.exception()
                if is_system_error(exc):
                    raise exc
                results.append(TaskFailure(type(exc).__name__, str(exc)))
            else:
                results.append(TaskFailure("CancelledError", f"the task was {future.status}"))
        return results

    # --- reductions (survey_scale.engine.reductions)

    def reduce_rows(
        self,
        variables: Sequence[str],
        rows: np.ndarray,
        block: RowBlock,
        combine: Callable[[Any, Any], Any],
        params: Mapping[str, Any] | None = None,
        block_rows: int = 2048,
    ) -> Any:
        """Fold ``block`` over groups of ``rows`` with ``combine`` (:func:`.reductions.reduce_rows`)."""
        return reductions.reduce_rows(self.client, self.cube, variables, rows, block, combine, params, block_rows)

    def map_rows(
        self,
        variables: Sequence[str],
        rows: np.ndarray,
        block: RowBlock,
        params: Mapping[str, Any] | None = None,
        block_rows: int = 2048,
    ) -> dict[str, np.ndarray]:
        """Per-row outputs of ``block`` in row order (:func:`.reductions.map_rows`)."""
        return reductions.map_rows(self.client, self.cube, variables, rows, block, params, block_rows)

    def reduce_by_star(
        self,
        variables: Sequence[str],
        block: StarBlock,
        params: Mapping[str, Any] | None = None,
        combine: Callable[[Any, Any], Any] | None = None,
        block_rows: int = 2048,
    ) -> Any:
        """``block`` over all visits of each star (:func:`.reductions.reduce_by_star`)."""
        star_id = self.read_column("star_id")
        return reductions.reduce_by_star(self.client, self.cube, star_id, variables, block, params, combine, block_rows)

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

    # --- what reductions keep in the cube (survey_scale.engine.reduction_store)

    def cached(self, name: str, key: str, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """The stored result of reduction ``name`` if it carries ``key``; else ``compute()``, then stored."""
        return reduction_store.cached(self.bookkeeping, name, key, compute)

    def input_key(self, variables: Sequence[str], *parts: Any) -> str:
        """A key of the cube's specids, the provenance of ``variables`` and ``parts``
        (:func:`.reduction_store.input_key`)."""
        return reduction_store.input_key(self.cube, variables, *parts)

    def write_columns(
        self,
        name: str,
        key: str,
        compute: Callable[[], Mapping[str, np.ndarray]],
        attrs: Mapping[str, Mapping[str, Any]],
    ) -> bool:
        """Per-spectrum variables made by a reduction, unless they carry ``key``
        (:func:`.reduction_store.write_columns`)."""
        return reduction_store.write_columns(self.cube, name, key, compute, attrs)

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
        """Catalog files streamed from the cube (:func:`survey_scale.engine.catalog_writer.write_catalog`)."""
        from survey_scale.engine.catalog_writer import write_catalog

        return write_catalog(self, name, variables, block, params, out, formats, meta, key, block_rows, hats)

    def has_variable(self, name: str) -> bool:
        return name in open_group(self.cube)

    def record_reduction(self, name: str, summary: Mapping[str, Any]) -> None:
        """Keep a reduction's coefficients with provenance in the cube's attributes
        (:func:`.reduction_store.record_reduction`)."""
        reduction_store.record_reduction(self.cube, name, summary)


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
