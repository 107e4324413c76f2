"""The bookkeeping of a cube: the one owner of the ``_survey_scale/`` folder (a resume plan, SPEC §1, §11).

Everything the engine needs to resume a killed run, to skip what is up to date and to explain a cube lives
here and is written only through :class:`Bookkeeping`::

    _survey_scale/
      markers/<stage>/rows-<start>.json    done marker of a chunk: its provenance and times (written last)
      results/<stage>/rows-<start>.npz     a chunk's per-spectrum outputs and rejects
      models/<file>                        model files (PCA passes, emulator, model grid)
      models.json                          the model files the steps made last (name -> path, hash, step)
      steps/<step>.json                    the latest runs of each pipeline step: wall time, what it did
      reductions/<name>.npz                cached survey-wide reductions with the key of their inputs
      rejects/<source>.parquet             rejects recorded outside stage chunks (ingest: files, catalog rows)
      ingest/batch-NNNN/                   an ingest batch: state.json, inspect/ blocks, plan/ parts
      logs/<command>-<time>.log            command logs
      writer.lock                          the writer lock (:mod:`survey_scale.store.lock`)
      swap/                                replacements of cube variables being written (``new-<name>``) and
                                           old versions being deleted (``old-<name>``), :func:`.cube.replacing`

Every file is written atomically and durably (:func:`survey_scale.core.files.atomic_write`: a temporary file,
synced, renamed, its folder synced); a chunk's marker is written after its result (and after the chunk's
shards in the cube, synced by the writer), so a chunk is either done (marked, fully written) or redone whole,
after a kill or a power loss alike.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from survey_scale._version import __version__
from survey_scale.core.files import atomic_write, file_sha256, fsync_dir, save_npz
from survey_scale.core.row_parts import write_row_parts
from survey_scale.store.cube import (
    META_GROUP,
    REJECT_COLUMNS,
    named_when_full,
    open_group,
    read_column,
    spec_length,
    write_rejects,
)


def _written(path: Path, write: Callable[[Path], Any]) -> Path:
    """:func:`atomic_write` of a bookkeeping file; a full file system is a
    :class:`~survey_scale.store.cube.CubeFullError` naming the cube and the file."""
    cube = next((p.parent for p in path.parents if p.name == META_GROUP), path.parent)
    with named_when_full(cube, "writing a bookkeeping file"):  # the message adds "at <path>"
        return atomic_write(path, write)


def _written_json(path: Path, value: Any, indent: int | None = 1) -> Path:
    data = json.dumps(value, indent=indent, sort_keys=True, default=str).encode()
    return _written(path, lambda tmp: tmp.write_bytes(data))


PLAN_PART_ROWS = 1024
"""Rows per part of an ingest plan (:meth:`Bookkeeping.save_plan`). A write task reads the one or two parts that
hold its rows, ~5 ms whatever the release. Each task used to read the whole plan, a cost that grows with the
release: at 40,000 spectra ~0.2 s of CPU per task (30 s of the ingest's 240) and 0.2 GB more peak memory."""


class Bookkeeping:
    """The ``_survey_scale/`` folder of the cube at ``cube`` (see the module docstring for its layout)."""

    def __init__(self, cube: str | Path) -> None:
        self.cube = Path(cube)
        self.root = self.cube / META_GROUP

    # --- layout -----------------------------------------------------------------------------------------

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def lock_path(self) -> Path:
        return self.root / "writer.lock"

    @property
    def rejects_dir(self) -> Path:
        return self.root / "rejects"

    def model_path(self, name: str) -> Path:
        """The model file ``name`` (e.g. ``pca.npz``)."""
        return self.models_dir / name

    def _marker_path(self, stage: str, start: int) -> Path:
        return self.root / "markers" / stage / f"rows-{start:010d}.json"

    def _result_path(self, stage: str, start: int) -> Path:
        return self.root / "results" / stage / f"rows-{start:010d}.npz"

    def log_path(self, command: str) -> Path:
        """A new log file for ``command`` (its folder created)."""
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        return self.logs_dir / f"{command}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}.log"

    # --- stage chunks ------------------------------------------------------------------------------------

    def _marker(self, stage: str, start: int) -> dict[str, Any] | None:
        try:
            return json.loads(self._marker_path(stage, start).read_text())
        except (OSError, ValueError):
            return None

    def done_stop(self, stage: str, start: int, provenance: Mapping[str, Any]) -> int | None:
        """The end of the chunk of ``stage`` starting at row ``start`` if it is marked done with this
        provenance, else None."""
        marker = self._marker(stage, start)
        if marker is None or not all(marker.get(k) == v for k, v in provenance.items()):
            return None
        return int(marker["stop"])

    def marker_matches(self, stage: str, start: int, stop: int, provenance: Mapping[str, Any]) -> bool:
        """True if rows [start, stop) carry a done marker of ``stage`` with this provenance."""
        return self.done_stop(stage, start, provenance) == stop

    def _forget_chunks(self, stage: str, start: int, stop: int) -> None:
        # Markers first (and synced): a chunk whose result is gone but whose marker stayed would count as done.
        for kind, suffix in (("markers", "json"), ("results", "npz")):
            folder = self.root / kind / stage
            removed = False
            for path in folder.glob(f"rows-*.{suffix}"):
                if start <= int(path.stem[5:]) < stop:
                    path.unlink(missing_ok=True)
                    removed = True
            if removed:
                fsync_dir(folder)

    def record_chunk(
        self,
        stage: str,
        start: int,
        stop: int,
        per_spectrum: Mapping[str, np.ndarray],
        rejects: list[tuple[int, str, str]],
        provenance: Mapping[str, Any],
        started: float,
        compute_seconds: float | None = None,
    ) -> None:
        """Save a written chunk's per-spectrum outputs and rejects (rows in the cube), then its done marker.

        The caller has synced the chunk's rows in the cube (:func:`survey_scale.engine.stage_tasks.write_chunk`);
        the result file is synced with its folder before the marker is written (itself atomically and
        synced), so no marker ever outlives its result, even after a power loss.

        Chunks recorded before inside rows [start, stop) (other extents, e.g. the partial last shard before
        an append) are forgotten first, so a kill at any point leaves their rows unmarked. The marker keeps
        the chunk's times: ``compute_seconds`` (the stage function's, summed over the chunk's blocks, when
        given) and ``write_seconds`` (since ``started``, a ``time.perf_counter()``).
        """
        self._forget_chunks(stage, start, stop)
        arrays = {
            "_start": np.int64(start),
            "_stop": np.int64(stop),
            "_reject_row": np.array([row for row, _, _ in rejects], dtype=np.int64),
            "_reject_code": np.array([code for _, code, _ in rejects], dtype=str),
            "_reject_reason": np.array([reason for _, _, reason in rejects], dtype=str),
            **per_spectrum,
        }
        _written(self._result_path(stage, start), lambda tmp: save_npz(tmp, arrays))
        marker = {
            **provenance,
            "start": start,
            "stop": stop,
            "n_rejects": len(rejects),
            "write_seconds": round(time.perf_counter() - started, 3),
            **({"compute_seconds": round(compute_seconds, 3)} if compute_seconds is not None else {}),
            "code_version": __version__,
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        marker_bytes = json.dumps(marker, sort_keys=True).encode()
        _written(self._marker_path(stage, start), lambda tmp: tmp.write_bytes(marker_bytes))

    def chunk_results(self, stage: str) -> list[dict[str, np.ndarray]]:
        """The saved results of the chunks of ``stage`` marked done, in row order."""
        results = []
        for path in sorted((self.root / "results" / stage).glob("rows-*.npz")):
            with np.load(path, allow_pickle=False) as z:
                result = {k: z[k] for k in z.files}
            marker = self._marker(stage, int(result["_start"]))
            if marker is not None and marker["stop"] == int(result["_stop"]):  # else: left by a killed write
                results.append(result)
        return results

    def stages_done(self) -> dict[str, dict[str, int]]:
        """Per stage with markers: chunks and rows marked done (any provenance)."""
        out = {}
        for stage_dir in sorted(p for p in (self.root / "markers").glob("*") if p.is_dir()):
            markers = [json.loads(p.read_text()) for p in stage_dir.glob("rows-*.json")]
            out[stage_dir.name] = {
                "chunks_done": len(markers),
                "rows_done": sum(m["stop"] - m["start"] for m in markers),
            }
        return out

    def chunk_markers(self, stage: str) -> list[dict[str, Any]]:
        """The done markers of ``stage`` in row order (provenance, ``start``/``stop``, times, ``finished``)."""
        markers = []
        for path in sorted((self.root / "markers" / stage).glob("rows-*.json")):
            try:
                markers.append(json.loads(path.read_text()))
            except (OSError, ValueError):  # a marker being replaced: the chunk counts as not done
                continue
        return markers

    def rows_not_done(self, stage: str, n: int) -> list[tuple[int, int]]:
        """The ranges of rows [0, n) that no done marker of ``stage`` covers (any provenance)."""
        gaps, covered = [], 0
        for marker in sorted(self.chunk_markers(stage), key=lambda m: m["start"]):
            if marker["start"] > covered:
                gaps.append((covered, min(marker["start"], n)))
            covered = max(covered, marker["stop"])
            if covered >= n:
                break
        if covered < n:
            gaps.append((covered, n))
        return [(a, b) for a, b in gaps if b > a]

    # --- pipeline steps and their models -----------------------------------------------------------------

    STEP_HISTORY = 20
    """Runs of a step kept in ``steps/<step>.json`` (the latest last)."""

    def record_step(self, step: str, record: Mapping[str, Any]) -> None:
        """Append a run of pipeline step ``step`` (JSON-serialisable: ``seconds``, what it computed) to its
        history, stamped with the code version and the time it finished."""
        path = self.root / "steps" / f"{step}.json"
        history = self.step_history(step)
        entry = {**record, "code_version": __version__, "finished": datetime.now(UTC).isoformat(timespec="seconds")}
        _written_json(path, {"step": step, "runs": [*history, entry][-self.STEP_HISTORY :]})

    def step_history(self, step: str) -> list[dict[str, Any]]:
        """The recorded runs of pipeline step ``step``, oldest first (empty if it never ran with a record)."""
        try:
            return list(json.loads((self.root / "steps" / f"{step}.json").read_text())["runs"])
        except (OSError, ValueError, KeyError):
            return []

    def record_model(self, name: str, path: str | Path, step: str) -> None:
        """Remember that step ``step`` made (or chose) model ``name`` at ``path``, with the file's SHA-256, so that
        a later command running one step alone finds the models of the steps before it."""
        models = self._models_record()
        models[name] = {
            "path": str(Path(path).resolve()),
            "sha256": file_sha256(path),
            "step": step,
            "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        _written_json(self.root / "models.json", models)

    def recorded_models(self) -> dict[str, dict[str, Any]]:
        """The models recorded by :meth:`record_model`, by name: ``path``, ``sha256``, ``step``, ``updated``."""
        return self._models_record()

    def recorded_model(self, name: str) -> Path:
        """The file of model ``name`` that a step recorded (what products read: never a guessed file name).

        Raises
        ------
        FileNotFoundError
            If no step recorded it, or its file is gone; the message names the model and the cube.
        """
        record = self._models_record().get(name)
        if record is None:
            raise FileNotFoundError(f"{self.cube}: no {name} model is recorded (survey-scale run makes it)")
        path = Path(record["path"])
        if not path.is_file():
            raise FileNotFoundError(f"{self.cube}: the recorded {name} model {path} is missing")
        return path

    def _models_record(self) -> dict[str, dict[str, Any]]:
        try:
            return dict(json.loads((self.root / "models.json").read_text()))
        except (OSError, ValueError):
            return {}

    # --- rejects -----------------------------------------------------------------------------------------

    def record_rejects(self, name: str, table: pd.DataFrame) -> None:
        """Save rejects found outside stage chunks (columns :data:`REJECT_COLUMNS`) as ``rejects/<name>``."""
        self.save_table(self.rejects_dir / f"{name}.parquet", table)

    def recorded_rejects(self) -> dict[str, pd.DataFrame]:
        """Every table saved by :meth:`record_rejects`, by name."""
        return {p.stem: pd.read_parquet(p) for p in sorted(self.rejects_dir.glob("*.parquet"))}

    def rebuild_rejects(self) -> pd.DataFrame:
        """Rebuild the cube's ``rejects`` table from every source and return it.

        Sources: the chunk results of every stage (their specids looked up in the cube) and the tables of
        :meth:`record_rejects` (the ingest's files that never became rows).
        """
        frames = list(self.recorded_rejects().values())
        root = open_group(self.cube)
        specids = read_column(root, "specid") if "specid" in root else None
        n = spec_length(root)
        for stage_dir in sorted(p for p in (self.root / "results").glob("*") if p.is_dir()):
            for r in self.chunk_results(stage_dir.name):
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
        write_rejects(self.cube, table)
        return table

    # --- ingest batches ----------------------------------------------------------------------------------

    def batch_dirs(self) -> list[Path]:
        """The ingest batches' folders, in order."""
        return sorted((self.root / "ingest").glob("batch-*"))

    def new_batch(self, state: Mapping[str, Any]) -> tuple[Path, dict[str, Any]]:
        """A new ingest batch folder (numbered after the last) with its initial ``state``."""
        existing = self.batch_dirs()
        batch = int(existing[-1].name.split("-")[1]) + 1 if existing else 1
        batch_dir = self.root / "ingest" / f"batch-{batch:04d}"
        batch_dir.mkdir(parents=True)
        return batch_dir, self.set_batch_state(batch_dir, {"batch": batch, **state})

    @staticmethod
    def inspect_path(batch_dir: Path, block: int) -> Path:
        """Where block ``block`` of a batch's inspect records goes."""
        return batch_dir / "inspect" / f"block-{block:06d}.parquet"

    @staticmethod
    def plan_path(batch_dir: Path) -> Path:
        """A batch's plan: its accepted files and the rows they get (a folder of parts, :meth:`save_plan`; a
        batch planned before plans had parts has one file, ``plan.parquet``)."""
        legacy = batch_dir / "plan.parquet"
        return legacy if legacy.is_file() else batch_dir / "plan"

    @staticmethod
    def save_plan(batch_dir: Path, plan: pd.DataFrame) -> None:
        """Write a batch's plan as parts of :data:`PLAN_PART_ROWS` rows (:func:`~survey_scale.core.row_parts.
        write_row_parts`) in ``plan/``, atomically: into a folder beside, then renamed into place."""
        path = batch_dir / "plan"
        staging = batch_dir / "plan.new"
        shutil.rmtree(staging, ignore_errors=True)
        write_row_parts(staging, plan, PLAN_PART_ROWS, _written)
        shutil.rmtree(path, ignore_errors=True)  # from an attempt killed before its batch was marked planned
        (batch_dir / "plan.parquet").unlink(missing_ok=True)  # the same, by a version without parts
        os.replace(staging, path)
        fsync_dir(batch_dir)

    @staticmethod
    def save_table(path: Path, table: pd.DataFrame) -> None:
        """Write a bookkeeping table (Parquet) atomically."""
        _written(path, lambda tmp: table.to_parquet(tmp, index=False))

    @staticmethod
    def batch_state(batch_dir: Path) -> dict[str, Any]:
        """A batch's saved state (``phase``: inspect → planned → allocated → complete)."""
        return json.loads((batch_dir / "state.json").read_text())

    @staticmethod
    def set_batch_state(batch_dir: Path, state: Mapping[str, Any], **changes: Any) -> dict[str, Any]:
        """Save a batch's state with ``changes`` applied, and return it."""
        state = {**state, **changes}
        # on one line: json's C encoder does not indent, and the file list of a release is a million paths
        _written_json(batch_dir / "state.json", state, indent=None)
        return state

    # --- cached reductions -------------------------------------------------------------------------------

    def load_reduction(self, name: str, key: str) -> dict[str, np.ndarray] | None:
        """The stored result of reduction ``name`` if it was computed with ``key``, else None."""
        path = self.root / "reductions" / f"{name}.npz"
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["_key"]) != key:
                    return None
                return {k: z[k] for k in z.files if not k.startswith("_")}
        except (OSError, KeyError, ValueError):
            return None

    def save_reduction(self, name: str, key: str, result: Mapping[str, np.ndarray]) -> None:
        """Store the result of reduction ``name`` with its key and provenance (code version, time)."""
        provenance = {"code_version": __version__, "updated": datetime.now(UTC).isoformat(timespec="seconds")}
        arrays = {"_key": np.array(key), "_provenance": np.array(json.dumps(provenance)), **result}
        _written(self.root / "reductions" / f"{name}.npz", lambda tmp: save_npz(tmp, arrays))
