"""One bad file never stops an ingest: a file that breaks its inspect task, or changes before it is written,
is rejected with its cause and every other file is ingested."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

from survey_scale.engine.contracts import ChunkContext
from survey_scale.engine.runner import compute_block
from survey_scale.io.lamost import LamostReadError, read_lamost
from survey_scale.pipeline import run_pipeline_with_client
from survey_scale.science import ingest as science_ingest
from survey_scale.science.ingest import inspect as ingest_inspect
from survey_scale.stages import ingest as stage_ingest
from survey_scale.store.bookkeeping import Bookkeeping
from survey_scale.store.cube import create_cube, open_cube, open_rejects
from tests.conftest import DR2_FLOAT64, DR9_101001, small_config


def test_a_file_that_breaks_its_inspect_block_is_rejected_alone(
    lamost_copy: Path, tmp_path: Path, client, monkeypatch
) -> None:
    poison = str((lamost_copy / DR2_FLOAT64).resolve())
    real = science_ingest.inspect_files

    def crashing(paths: list[str], **options):
        if poison in paths:
            raise RecursionError("the reader blew up")  # a reader's bug that escapes the per-file guard
        return real(paths, **options)

    monkeypatch.setattr(stage_ingest, "inspect_files", crashing)  # both the block task and the retry
    config = small_config(tmp_path, **{"ingest.input": str(lamost_copy), "ingest.files_per_task": 4})
    create_cube(config.cube.path, config.cube)
    (summary,) = run_pipeline_with_client(config, client, progress=False, until="ingest").ingest
    assert summary.n_files == 10 and summary.n_files == summary.n_ingested + summary.n_rejected
    rejects = open_rejects(config.cube.path)
    row = rejects[rejects["source"] == poison].iloc[0]
    assert row["code"] == "read_error" and "RecursionError: the reader blew up" in row["reason"]
    # its block-mates were read again alone and ingested: 8 = the 9 spectra of a clean run (the QSO kept)
    # minus the poison
    assert open_cube(config.cube.path).sizes["spec"] == 8 and summary.n_rejected == 2


def test_a_system_error_in_an_inspect_block_stops_the_ingest_and_a_rerun_reads_every_file(
    lamost_copy: Path, tmp_path: Path, client, monkeypatch
) -> None:
    """Out of memory (or a full disk) while a block is inspected is no file's fault (issue 26): the ingest
    stops with the error, no file is rejected for it, and a rerun inspects the block again."""
    poison = str((lamost_copy / DR2_FLOAT64).resolve())
    real = science_ingest.inspect_files

    def out_of_memory(paths: list[str], **options):
        if poison in paths:
            raise MemoryError("out of memory")
        return real(paths, **options)

    monkeypatch.setattr(stage_ingest, "inspect_files", out_of_memory)  # the block task and the retry alone
    config = small_config(tmp_path, **{"ingest.input": str(lamost_copy), "ingest.files_per_task": 4})
    create_cube(config.cube.path, config.cube)
    with pytest.raises(MemoryError):
        run_pipeline_with_client(config, client, progress=False, until="ingest")
    assert open_rejects(config.cube.path).empty
    monkeypatch.setattr(stage_ingest, "inspect_files", real)  # memory freed
    # the unfinished batch is resumed (then the input is seen again: nothing new)
    resumed, *_ = run_pipeline_with_client(config, client, progress=False, until="ingest").ingest
    assert resumed.batch == 1 and resumed.n_files == 10
    assert resumed.n_rejected == 1  # as in a clean run: the one file that is not a star's spectrum
    assert open_cube(config.cube.path).sizes["spec"] == 9


def test_a_file_changed_since_inspect_fails_its_chunk_unmarked_and_a_rerun_writes_it(
    lamost_copy: Path, tmp_path: Path, client
) -> None:
    """Not the file's fault, or not for good: the chunk is not written as rejects, and the rerun repairs it."""
    paths = [str(lamost_copy / DR9_101001), str(lamost_copy / DR2_FLOAT64)]
    records = science_ingest.inspect_files(paths)
    config = small_config(tmp_path)
    plan, _, _ = stage_ingest.plan_ingest(records, set(), config.ingest, batch=1)
    Bookkeeping.save_plan(tmp_path, plan)
    changed = plan["path"].iloc[1]
    os.utime(changed, ns=(0, 0))  # touched after the inspect
    stage = stage_ingest.ingest_stage(Path("plan"), 0, config)  # relative to the cube's folder
    with pytest.raises(LamostReadError, match="changed after it was inspected") as info:
        compute_block(str(tmp_path), stage, 0, 2)
    assert info.value.code == "changed_since_inspect" and info.value.path == changed


def test_a_write_chunk_reads_its_rows_of_the_plan_in_parts_or_of_a_plan_in_one_file(
    lamost_copy: Path, tmp_path: Path
) -> None:
    """A batch planned by a version without plan parts (one ``plan.parquet``) is still written on a resume."""
    paths = [str(lamost_copy / DR9_101001), str(lamost_copy / DR2_FLOAT64)]
    config = small_config(tmp_path)
    plan, _, _ = stage_ingest.plan_ingest(science_ingest.inspect_files(paths), set(), config.ingest, batch=1)
    Bookkeeping.save_plan(tmp_path / "parts", plan)
    (tmp_path / "one").mkdir()
    plan.to_parquet(tmp_path / "one" / "plan.parquet", index=False)
    for cube, name in [(tmp_path / "parts", "plan"), (tmp_path / "one", "plan.parquet")]:
        params = stage_ingest.ingest_stage(Path(name), 10, config).params  # the batch's rows start at 10
        inputs = stage_ingest.load_chunk_files(str(cube), 11, 12, params)
        assert list(inputs["plan"]["path"]) == [plan["path"].iloc[1]] and len(inputs["spectra"]) == 1


def test_a_spectrum_that_cannot_be_resampled_keeps_its_row_and_is_rejected(lamost_copy: Path, tmp_path: Path) -> None:
    paths = [str(lamost_copy / DR9_101001), str(lamost_copy / DR2_FLOAT64)]
    config = small_config(tmp_path)
    plan, _, _ = stage_ingest.plan_ingest(science_ingest.inspect_files(paths), set(), config.ingest, batch=1)
    spectra = [read_lamost(p) for p in plan["path"]]
    spectra[1].flux = spectra[1].flux[:10]  # broken after the checks: resampling raises
    params = stage_ingest.ingest_stage(tmp_path / "plan.parquet", 0, config).params
    result = stage_ingest.resample_chunk({"plan": plan, "spectra": spectra}, params, ChunkContext(0, 2, {}))
    assert [(row, code) for row, code, _ in result.rejects] == [(1, "resample_error")]
    flux = result.outputs["flux"]
    assert np.isfinite(flux[0]).any() and np.isnan(flux[1]).all() and (result.outputs["ivar"][1] == 0).all()
    assert list(result.outputs["specid"]) == list(plan["specid"])  # the row keeps its metadata


TORCH_OOM = type("OutOfMemoryError", (RuntimeError,), {"__module__": "torch.cuda"})


@pytest.mark.parametrize(
    "exc", [MemoryError("out of memory"), OSError(errno.ENOSPC, "No space left on device"), TORCH_OOM("gpu")]
)
def test_a_system_error_while_resampling_fails_the_chunk_instead_of_rejecting_the_spectrum(
    lamost_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: Exception
) -> None:
    """Not the spectrum's fault: raised, so the chunk stays unmarked and a rerun retries it (issue 26)."""
    paths = [str(lamost_copy / DR9_101001), str(lamost_copy / DR2_FLOAT64)]
    config = small_config(tmp_path)
    plan, _, _ = stage_ingest.plan_ingest(science_ingest.inspect_files(paths), set(), config.ingest, batch=1)
    spectra = [read_lamost(p) for p in plan["path"]]
    real = stage_ingest.resample_to_grid
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise exc
        return real(*args, **kwargs)

    monkeypatch.setattr(stage_ingest, "resample_to_grid", failing)
    params = stage_ingest.ingest_stage(tmp_path / "plan.parquet", 0, config).params
    with pytest.raises(type(exc)):
        stage_ingest.resample_chunk({"plan": plan, "spectra": spectra}, params, ChunkContext(0, 2, {}))


@pytest.mark.parametrize("exc", [MemoryError("out of memory"), OSError(errno.EIO, "Input/output error")])
def test_a_system_error_while_inspecting_is_raised_not_a_reject(
    lamost_dir: Path, monkeypatch: pytest.MonkeyPatch, exc: Exception
) -> None:
    def failing(_path: str, **_options) -> None:
        raise exc

    monkeypatch.setattr(ingest_inspect, "read_lamost", failing)
    with pytest.raises(type(exc)):
        science_ingest.inspect_file(str(lamost_dir / DR9_101001))


def test_a_files_own_errors_stay_rejects_when_inspected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    garbage = tmp_path / "spec-55859-F5902_sp01-001.fits"
    garbage.write_bytes(b"SIMPLE  = nonsense" + b"x" * 3000)
    forbidden = tmp_path / "spec-55859-F5902_sp01-002.fits"
    forbidden.write_bytes(b"x")
    records = science_ingest.inspect_files([str(garbage), str(tmp_path / "missing.fits")])
    assert list(records["status"]) == ["rejected", "rejected"]

    def not_permitted(path: str, **_options) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr(ingest_inspect, "read_lamost", not_permitted)
    record = science_ingest.inspect_file(str(forbidden))
    assert (record["status"], record["code"]) == ("rejected", "unreadable")
