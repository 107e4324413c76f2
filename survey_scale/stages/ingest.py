"""Ingest LAMOST FITS files into the cube: the source step of the pipeline (SPEC §2).

An ingest adds one **batch** (a directory of files, with or without the release catalog and cross-match
table) in four resumable steps, each recorded under ``<cube>/_survey_scale/ingest/batch-NNNN/``:

1. **inspect** (tasks on the cluster, blocks of ``ingest.files_per_task`` files): read every new file
   completely, check it and extract its header metadata (:func:`survey_scale.science.ingest.inspect_file`).
   Files already in the cube (same path) are not read again. Each block's result is saved, so a re-run
   skips it.
2. **plan** (:func:`survey_scale.science.ingest.plan_batch`, in the client): specids, the catalog and
   cross-match joins, radial velocities, range and coverage checks, duplicates; each accepted file gets a
   row (sorted by specid), each rejected file or catalog row a reason. The plan is saved before the cube
   changes.
3. **allocate**: grow every per-spectrum array of the cube to the new length.
4. **write** (the ``ingest`` stage on :mod:`survey_scale.engine.runner`): per shard-aligned chunk, re-read the
   planned files, shift to the rest frame (a QSO or galaxy, rv NaN, stays in the observed frame), resample
   flux and ivar onto the grid
   (:func:`survey_scale.science.resample.resample_to_grid`) and write them with the metadata.

Every file found ends up in the cube or in ``rejects``: ``n_files = n_ingested + n_rejected``, where
``n_ingested`` counts new spectra and those already in the cube. A re-ingest of the same directory is a
no-op; a killed ingest resumes its pending batch and ends with the same store as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field, field_validator

from survey_scale.core.files import is_system_error
from survey_scale.core.row_parts import read_row_parts
from survey_scale.core.settings import ConfigBase, Section
from survey_scale.core.wavelength import N_WAVE, PIXMASK_BITS
from survey_scale.engine.contracts import (
    ChunkContext,
    Engine,
    Output,
    Stage,
    StageResult,
    Step,
    TaskFailure,
    output_names,
)
from survey_scale.io.input_tables import read_catalog, read_crossmatch
from survey_scale.io.lamost import LamostReadError, read_lamost
from survey_scale.science.ingest import (
    METADATA,
    RECORD_COLUMNS,
    InputTable,
    find_files,
    inspect_files,
    isin_strings,
    plan_batch,
    records_frame,
)
from survey_scale.science.resample import resample_to_grid, rest_frame


class IngestConfig(Section):
    """Ingest of LAMOST FITS files into the cube (SPEC §2)."""

    input: Path | None = Field(None, description="folder of spectra, searched recursively (or --input)")
    patterns: list[str] = Field(
        ["*.fits", "*.fits.gz", "*.fit", "*.fit.gz", "*.fits.bz2"], description="file names that are spectra"
    )
    catalog: Path | None = Field(
        None, description="release catalog, CSV / FITS / Parquet (or --catalog); null = headers only"
    )
    crossmatch: Path | None = Field(
        None, description="Gaia / 2MASS / photometry table joined by obsid (or --crossmatch)"
    )
    release: str | None = Field(
        None, description='release name; null = from the header DATA_V ("LAMOST DR9" -> "DR9"), else "unknown"'
    )
    files_per_task: int = Field(
        256, ge=1, description="files per Dask task (inspecting, and reading+resampling when writing)"
    )
    rv_source: Literal["auto", "catalog", "header"] = Field(
        "auto", description="auto (catalog, else header Z*c) | catalog | header"
    )
    max_abs_rv: float = Field(
        1000.0, gt=0, description="km/s; a star with a larger |RV| is rejected (QSO, GALAXY: kept with rv NaN)"
    )
    min_coverage: float = Field(
        0.5, ge=0, le=1, description="fraction of the 3750-9000 A grid the rest-frame spectrum must cover"
    )
    min_good_fraction: float = Field(
        0.5, ge=0, le=1, description="good input pixels must cover this fraction of an output pixel to keep its ivar"
    )
    mask_andmask: bool = Field(True, description="treat input pixels with a LAMOST and-mask bit as bad")
    max_file_bytes: int = Field(
        64 * 2**20,
        ge=2880,
        description="a file larger than this once decompressed is rejected (64 MiB; gzip bombs)",
    )
    file_time_limit_s: float | None = Field(
        10.0, gt=0, description="reading one file may take this long, s (checked between its parts); null = no limit"
    )
    classes: list[str] | None = Field(
        None,
        description="keep only these LAMOST classes, e.g. [O, B, A]: the spectral letter of SUBCLASS (A2V -> A, "
        "OB -> O and B, dM5/gM0/sdM -> M), a whole SUBCLASS (WD, DA, Carbon) or a CLASS (STAR, QSO, GALAXY), "
        "case-insensitive; the others are rejected as class_not_selected; null = every class",
    )

    @field_validator("classes")
    @classmethod
    def _classes_named(cls, classes: list[str] | None) -> list[str] | None:
        if classes is None:
            return None
        names = [str(c).strip() for c in classes]
        if not names or not all(names):
            raise ValueError("give at least one class name, none empty (null keeps every class)")
        return names


log = logging.getLogger(__name__)

INGEST_STAGE_VERSION = "1"

SPECTRA: tuple[Output, ...] = (
    Output("flux", "float32", ("spec", "wave")),
    Output("ivar", "float32", ("spec", "wave")),
    Output("pixmask", "uint8", ("spec", "wave")),
)
METADATA_OUTPUTS: tuple[Output, ...] = tuple(Output(c.name, c.dtype, ("spec",), c.attrs) for c in METADATA)
"""Per-spectrum variables the ingest writes (all present in every cube; NaN / −1 / "" when unknown)."""


def inspect_block(
    paths: list[str], out: Path, save: Callable[[Path, pd.DataFrame], None], read_options: Mapping[str, Any]
) -> int:
    """Inspect a block of files (on a worker) and have the bookkeeping's ``save`` write the records to ``out``."""
    table = inspect_files(paths, **read_options)
    save(out, table)
    return len(table)


# --- the write stage (pure function on a chunk) ------------------------------------------------------


def load_chunk_files(cube: str, start: int, stop: int, params: Mapping[str, Any]) -> dict[str, Any]:
    """Inputs of one write chunk: the planned rows and their spectra, read again from the files.

    Raises
    ------
    LamostReadError
        If a file changed since it was inspected, or cannot be read again (a slow or failing disk). The chunk
        then fails unmarked — not its file's fault, or not for good — and a rerun of the ingest writes it.
    """
    # only the parts holding the chunk's rows: the whole plan grows with the release
    rows = read_row_parts(Path(cube) / params["plan"], start - params["row0"], stop - params["row0"])
    spectra = []
    for path, size, mtime in zip(rows["path"], rows["size"], rows["mtime_ns"]):
        stat = os.stat(path)
        if stat.st_size != size or stat.st_mtime_ns != mtime:
            raise LamostReadError(
                path, "changed_since_inspect", "the file changed after it was inspected; re-run the ingest"
            )
        spectra.append(read_lamost(path, **params["read_options"]))
    return {"plan": rows, "spectra": spectra}


def resample_chunk(inputs: Mapping[str, Any], params: Mapping[str, Any], ctx: ChunkContext) -> StageResult:
    """Resample a chunk of planned spectra onto the grid and assemble their metadata (pure).

    A spectrum that cannot be resampled keeps its row and metadata, with NaN flux, zero ivar and every pixel
    NO_COVERAGE, and is rejected (stage ``ingest``) with the file and the cause. A system error (out of memory, an
    ``OSError``: :func:`~survey_scale.core.files.is_system_error`) is not the spectrum's fault: it is raised, so
    the chunk fails unmarked and a rerun retries it.
    """
    rows: pd.DataFrame = inputs["plan"]
    n = len(rows)
    flux = np.full((n, N_WAVE), np.nan, np.float32)
    ivar = np.zeros_like(flux)
    pixmask = np.full(flux.shape, PIXMASK_BITS["NO_COVERAGE"], np.uint8)
    coverage = np.zeros(n, np.float32)
    rejects = []
    for i, (sp, rv) in enumerate(zip(inputs["spectra"], rows["rv"].to_numpy(np.float64))):
        try:
            flux[i], ivar[i], pixmask[i], coverage[i] = resample_to_grid(
                # rv NaN: a QSO or galaxy (the plan gives every star a finite rv), kept in the observed frame
                rest_frame(sp.wavelength, rv if np.isfinite(rv) else 0.0),
                sp.flux,
                sp.ivar,
                sp.andmask,
                sp.ormask,
                min_good_fraction=params["min_good_fraction"],
                mask_andmask=params["mask_andmask"],
            )
        except Exception as exc:  # one spectrum must not cost its chunk
            if is_system_error(exc):
                raise
            flux[i], ivar[i], pixmask[i], coverage[i] = np.nan, 0.0, PIXMASK_BITS["NO_COVERAGE"], 0.0
            rejects.append((i, "resample_error", f"{sp.path}: resampling failed: {type(exc).__name__}: {exc}"))
    outputs: dict[str, np.ndarray] = {"flux": flux, "ivar": ivar, "pixmask": pixmask, "coverage": coverage}
    for out in METADATA:
        if out.name not in outputs:
            outputs[out.name] = rows[out.name].to_numpy()
    return StageResult(outputs, rejects)


def ingest_stage(plan_path: Path, row0: int, config: ConfigBase) -> Stage:
    """The ``ingest`` write stage for a planned batch (``plan_path`` relative to the cube)."""
    params = {
        "plan": str(plan_path),
        "row0": row0,
        "min_good_fraction": config.ingest.min_good_fraction,
        "mask_andmask": config.ingest.mask_andmask,
        "read_options": read_options(config),
    }
    return Stage(
        name="ingest",
        version=INGEST_STAGE_VERSION,
        func=resample_chunk,
        outputs=(*SPECTRA, *METADATA_OUTPUTS),
        params=params,
        load_inputs=load_chunk_files,
        block_rows=config.ingest.files_per_task,
    )


# --- planning ------------------------------------------------------------------------------------------


@dataclass
class IngestSummary:
    """Counts of one ingest (SPEC §2): ``n_files = n_new + n_already + n_rejected``."""

    batch: int
    n_files: int
    n_new: int
    n_already: int
    n_rejected: int
    n_catalog_rejected: int
    rows: tuple[int, int]

    @property
    def n_ingested(self) -> int:
        return self.n_new + self.n_already

    def balance_line(self) -> str:
        ok = "holds" if self.n_files == self.n_ingested + self.n_rejected else "DOES NOT HOLD"
        return (
            f"batch {self.batch}: n_files = n_ingested + n_rejected: {self.n_files} = {self.n_ingested} + "
            f"{self.n_rejected} ({self.n_new} new, {self.n_already} already in the cube) — {ok}; "
            f"{self.n_catalog_rejected} catalog row(s) rejected"
        )


@dataclass
class IngestResult:
    """What step ``ingest`` did: one :class:`IngestSummary` per batch (a resumed one first)."""

    batches: list[IngestSummary]

    def record(self) -> dict[str, Any]:
        return {"batches": [dataclasses.asdict(b) for b in self.batches]}

    def lines(self) -> list[str]:
        return [b.balance_line() for b in self.batches]


# --- orchestration: inspect -> plan -> allocate -> write ------------------------------------------------


def ingest_batches(config: ConfigBase, engine: Engine) -> IngestResult:
    """Ingest ``config.ingest.input`` into the engine's cube (registry step ``ingest``).

    A batch left unfinished by an earlier, interrupted ingest is completed first (with its own inputs).
    """
    summaries = []
    for batch_dir in engine.bookkeeping.batch_dirs():
        state = engine.bookkeeping.batch_state(batch_dir)
        if state["phase"] != "complete":
            log.info(
                "resuming unfinished ingest batch %d (input %s)", state["batch"], state["config"]["ingest"]["input"]
            )
            pending = type(config).model_validate(state["config"])  # the batch's own configuration
            summaries.append(_run_batch(pending, engine, batch_dir, state))
    if config.ingest.input is not None:
        batch_dir, state = engine.bookkeeping.new_batch(
            {"phase": "inspect", "config": json.loads(config.model_dump_json())}
        )
        summaries.append(_run_batch(config, engine, batch_dir, state))
    return IngestResult(summaries)


def _run_batch(config: ConfigBase, engine: Engine, batch_dir: Path, state: dict[str, Any]) -> IngestSummary:
    cfg = config.ingest
    bookkeeping = engine.bookkeeping
    batch = state["batch"]
    if state["phase"] == "inspect":
        if "todo" not in state:  # the file list is fixed at the first attempt, so a resume sees the same blocks
            files = find_files(Path(cfg.input), cfg.patterns)
            known = set(engine.read_column("source_path")) if engine.n_spectra() else set()
            todo = [p for p in files if p not in known]
            state = bookkeeping.set_batch_state(
                batch_dir, state, n_files=len(files), n_skipped_by_path=len(files) - len(todo), todo=todo
            )
        records = _inspect(engine, state["todo"], batch_dir, cfg.files_per_task, read_options(config))
        existing = set(engine.read_column("specid")) if engine.n_spectra() else set()
        n_old = engine.n_spectra()
        plan, rejects, already = plan_ingest(records, existing, cfg, batch)
        bookkeeping.save_plan(batch_dir, plan)
        _record_rejects(engine, batch, rejects)
        of_files = isin_strings(rejects["source"], records["path"])
        state = bookkeeping.set_batch_state(
            batch_dir,
            state,
            phase="planned",
            n_old=n_old,
            n_new=len(plan),
            n_already=len(already) + state["n_skipped_by_path"],
            n_rejected=int(of_files.sum()),
            n_catalog_rejected=int((~of_files).sum()),
        )
    n_old, n_new = state["n_old"], state["n_new"]
    if state["phase"] == "planned":
        if engine.n_spectra() != n_old + n_new:
            engine.resize(n_old + n_new)
        state = bookkeeping.set_batch_state(batch_dir, state, phase="allocated")
    if state["phase"] == "allocated":
        if n_new:
            plan = bookkeeping.plan_path(batch_dir).relative_to(engine.cube)
            stage = ingest_stage(plan, n_old, config)
            engine.run_stage(stage, rows=(n_old, n_old + n_new))
        else:
            bookkeeping.rebuild_rejects()
        state = bookkeeping.set_batch_state(batch_dir, state, phase="complete")
    summary = IngestSummary(
        batch,
        state["n_files"],
        n_new,
        state["n_already"],
        state["n_rejected"],
        state["n_catalog_rejected"],
        (n_old, n_old + n_new),
    )
    log.info(summary.balance_line())
    return summary


def plan_ingest(
    records: pd.DataFrame, existing_specids: set[str], cfg: IngestConfig, batch: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """:func:`~survey_scale.science.ingest.plan_batch` with the ``ingest`` section: its catalog and cross-match
    table read here (a bad row is a reject; :class:`survey_scale.io.input_tables.CatalogError` for a bad table)."""
    catalog = None if cfg.catalog is None else InputTable(*read_catalog(cfg.catalog), name=str(cfg.catalog))
    crossmatch = (
        None if cfg.crossmatch is None else InputTable(*read_crossmatch(cfg.crossmatch), name=str(cfg.crossmatch))
    )
    return plan_batch(
        records,
        existing_specids,
        batch,
        catalog=catalog,
        crossmatch=crossmatch,
        input_name=str(cfg.input),
        classes=cfg.classes,
        rv_source=cfg.rv_source,
        max_abs_rv=cfg.max_abs_rv,
        min_coverage=cfg.min_coverage,
        release=cfg.release,
    )


def read_options(config: ConfigBase) -> dict[str, Any]:
    """Limits of :func:`survey_scale.io.lamost.read_lamost` for untrusted files (``ingest`` section)."""
    return {"max_bytes": config.ingest.max_file_bytes, "time_limit_s": config.ingest.file_time_limit_s}


def _inspect(
    engine: Engine, paths: list[str], batch_dir: Path, per_task: int, options: Mapping[str, Any]
) -> pd.DataFrame:
    """Inspect records of every file, block by block; a block that fails is inspected again file by file."""
    bookkeeping = engine.bookkeeping
    blocks = [paths[i : i + per_task] for i in range(0, len(paths), per_task)]
    targets = [bookkeeping.inspect_path(batch_dir, i) for i in range(len(blocks))]
    pending = [(b, t, bookkeeping.save_table, options) for b, t in zip(blocks, targets) if not t.exists()]
    log.info(
        "inspect: %d files in %d blocks (%d already inspected)", len(paths), len(blocks), len(blocks) - len(pending)
    )
    sizes = [len(item[0]) for item in pending]
    results = engine.map_tasks("inspect", inspect_block, pending, sizes=sizes, unit="file", errors="return")
    for (block, target, _, _), result in zip(pending, results):
        if isinstance(result, TaskFailure):
            bookkeeping.save_table(target, _inspect_alone(engine, block, result, options))
    if not targets:
        return pd.DataFrame(columns=list(RECORD_COLUMNS))
    # one pyarrow table converted once: a release's thousands of blocks read by pandas one by one cost 2× more
    # ("permissive": a block written by another version, or all of whose values are missing, still joins)
    return pa.concat_tables([pq.read_table(t) for t in targets], promote_options="permissive").to_pandas()


def _inspect_alone(
    engine: Engine, paths: list[str], block_failure: TaskFailure, options: Mapping[str, Any]
) -> pd.DataFrame:
    """Records of a block whose task failed, each file inspected by a task of its own.

    The block failed because one of its files crashed or killed the worker (a worker that dies takes its
    whole task with it); alone, the others read normally and the culprit is rejected: ``worker_died`` if its
    worker died again, ``read_error`` if it raised. A system error (out of memory, a full disk) is no file's
    fault: ``map_tasks`` raises it, nothing is recorded for the block, and a rerun inspects it again.
    """
    log.warning("inspect: a block of %d files failed (%s); inspecting them one by one", len(paths), block_failure.kind)
    alone = partial(inspect_files, **options)
    results = engine.map_tasks("inspect alone", alone, [([p],) for p in paths], unit="file", errors="return")
    records = []
    for path, result in zip(paths, results):
        if not isinstance(result, TaskFailure):
            records.extend(result.to_dict("records"))
            continue
        died = result.kind == "KilledWorker"
        reason = (
            "the worker reading this file died (killed, out of memory or crashed) every time it was tried"
            if died
            else f"reading the file failed: {result.kind}: {result.message}"
        )
        records.append(
            {"path": path, "status": "rejected", "code": "worker_died" if died else "read_error", "reason": reason}
        )
    return records_frame(records)


def _record_rejects(engine: Engine, batch: int, rejects: pd.DataFrame) -> None:
    seen = set(rejects["source"])
    # A file rejected by an earlier batch and seen again now is judged by this batch alone.
    for name, table in engine.bookkeeping.recorded_rejects().items():
        if name.startswith("ingest-batch-"):
            kept = table[~isin_strings(table["source"], seen)]
            if len(kept) != len(table):
                engine.bookkeeping.record_rejects(name, kept)
    engine.bookkeeping.record_rejects(f"ingest-batch-{batch:04d}", rejects)


STEPS = (
    Step(
        "ingest",
        ingest_batches,
        produces=output_names((*SPECTRA, *METADATA_OUTPUTS)),
        description="LAMOST FITS files -> cube (§2)",
        config={"ingest": IngestConfig},
    ),
)
