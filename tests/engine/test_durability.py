"""What the engine writes survives a crash, a full disk or a power loss (issue 26): a chunk's shards and result
are synced before its done marker, a reshaped output is replaced by write-then-swap, a full disk is a typed
error naming the cube that leaves every finished chunk done, an export leaves no temporary file behind, and the
pipeline creates a missing cube only under the writer lock."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from survey_scale.engine import catalog_writer, stage_store
from survey_scale.engine.contracts import Output, Stage, StageError
from survey_scale.engine.runner import DaskEngine, compute_block, run_stage, stage_provenance, write_chunk
from survey_scale.engine.stage_store import ensure_outputs, input_provenance
from survey_scale.store import bookkeeping as bookkeeping_mod
from survey_scale.store.bookkeeping import Bookkeeping
from survey_scale.store.cube import META_GROUP, open_cube, open_group
from tests.conftest import flux_cube, small_config
from tests.engine.test_reductions import STARS
from tests.engine.test_reductions import cube as reductions_cube  # noqa: F401  (fixture)
from tests.engine.test_runner import toy_stage
from tests.store.test_replacements import record_io


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def cube(tmp_path: Path) -> Path:
    return flux_cube(tmp_path / "cube.zarr")


# --- a chunk: shards and result synced before the marker -----------------------------------------------------


def test_a_chunks_shards_and_result_are_synced_before_its_marker(cube: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stage = toy_stage()
    ensure_outputs(cube, stage)
    provenance = stage_provenance(stage, input_provenance(open_group(cube), stage))
    block = compute_block(str(cube), stage, 0, 4)
    events = record_io(monkeypatch)
    write_chunk(str(cube), stage, 0, 4, provenance, block)
    monkeypatch.undo()

    meta = cube / META_GROUP
    marker = str(meta / "markers" / "toy" / "rows-0000000000.json")
    result = str(meta / "results" / "toy" / "rows-0000000000.npz")
    shard = str(cube / "scaled" / "c" / "0" / "0")

    def first(kind: str, test) -> int:
        return next(i for i, e in enumerate(events) if e[0] == kind and test(e))

    marked = first("replace", lambda e: e[2] == marker)
    assert first("fsync", lambda e: e[1] == shard) < marked  # the region write, synced
    assert first("fsync", lambda e: e[1] == str(cube / "scaled")) < marked  # with its folders
    result_in_place = first("replace", lambda e: e[2] == result)
    result_tmp = events[result_in_place][1]
    assert first("fsync", lambda e: e[1] == result_tmp) < result_in_place < marked  # the result's data
    assert result_in_place < first("fsync", lambda e: e[1] == str(Path(result).parent)) < marked  # and its name
    marker_tmp = events[marked][1]
    assert first("fsync", lambda e: e[1] == marker_tmp) < marked  # the marker itself, then its folder
    assert any(e == ("fsync", str(Path(marker).parent)) for e in events[marked:])
    assert Bookkeeping(cube).marker_matches("toy", 0, 4, provenance)


# --- a reshaped output ---------------------------------------------------------------------------------------


def test_replacing_an_output_of_another_dtype_keeps_the_old_one_when_the_disk_is_full(
    cube: Path, client, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_stage(cube, toy_stage(), client, progress=False)
    before = open_group(cube)["scaled"][:]
    wider = Stage(
        **{
            **toy_stage().__dict__,
            "outputs": (Output("flux_mean", "float32"), Output("scaled", "float64", ("spec", "wave"))),
        }
    )
    monkeypatch.setattr(stage_store, "create_spectra_array", disk_full)
    with pytest.raises(OSError) as info:
        ensure_outputs(cube, wider)
    assert info.value.errno == errno.ENOSPC and "no space left on device while allocating" in str(info.value)
    assert str(cube) in str(info.value)
    monkeypatch.undo()
    root = open_group(cube)
    assert root["scaled"].dtype == np.float32
    np.testing.assert_array_equal(root["scaled"][:], before)  # the old array, whole
    ensure_outputs(cube, wider)
    assert open_group(cube)["scaled"].dtype == np.float64 and np.isnan(open_group(cube)["scaled"][:]).all()
    assert open_cube(cube)["scaled"].dtype == np.float64  # re-consolidated


# --- a full disk during a stage ------------------------------------------------------------------------------


def test_a_full_disk_fails_the_chunks_with_a_typed_error_and_a_rerun_completes(
    cube: Path, client, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = bookkeeping_mod.save_npz

    def full_after_first(path, arrays):
        if int(arrays["_start"]) >= 4:
            disk_full()
        real(path, arrays)

    monkeypatch.setattr(bookkeeping_mod, "save_npz", full_after_first)
    with pytest.raises(StageError) as info:
        run_stage(cube, toy_stage(), client, progress=False)
    message = str(info.value)
    del info  # its traceback holds the failed futures, whose keys the rerun reuses
    assert message.startswith(f"{cube}: stage toy: 2 chunk(s) failed")
    result = f"{cube}/{META_GROUP}/results/toy/rows-0000000004.npz"
    assert f"rows 4: CubeFullError: {cube}: no space left on device while writing a bookkeeping file at {result}" in (
        message
    )
    books = Bookkeeping(cube)
    assert [(m["start"], m["stop"]) for m in books.chunk_markers("toy")] == [(0, 4)]  # only the finished chunk
    assert sorted(p.name for p in (books.root / "results" / "toy").iterdir()) == ["rows-0000000000.npz"]
    monkeypatch.undo()
    summary = run_stage(cube, toy_stage(), client, progress=False)
    assert (summary.n_chunks, summary.n_computed) == (3, 2)
    ds = open_cube(cube)
    np.testing.assert_allclose(ds.flux_mean.values, 2 * ds.flux.values.mean(axis=1), rtol=1e-6)


# --- export --------------------------------------------------------------------------------------------------


def _block(data: dict, params: dict) -> dict:
    return {"specid": data["specid"], "snr_g": data["snr_g"]}


def test_a_failed_export_keeps_the_previous_files_and_leaves_no_temporary_file(
    reductions_cube: Path,  # noqa: F811
    client,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = DaskEngine(reductions_cube, client, progress=False)
    out = tmp_path / "cat"
    args = ("toy", ["specid", "snr_g"], _block, {}, out, ["fits", "parquet"], {})
    paths = engine.write_catalog(*args, key="k1", block_rows=4)
    before = {f: p.read_bytes() for f, p in paths.items()}
    monkeypatch.setattr(pq.ParquetWriter, "write_table", disk_full)  # parquet: the disk fills mid-file
    with pytest.raises(OSError, match="No space left"):
        engine.write_catalog(*args, key="k2", block_rows=4)
    monkeypatch.undo()
    real_read = catalog_writer.pq.read_table
    monkeypatch.setattr(catalog_writer.pq, "read_table", disk_full)  # FITS: after its header was written
    with pytest.raises(OSError, match="No space left"):
        engine.write_catalog("toy", ["specid", "snr_g"], _block, {}, out, ["fits"], {}, key="k3", block_rows=4)
    monkeypatch.setattr(catalog_writer.pq, "read_table", real_read)
    left = sorted(p.name for p in out.iterdir())
    assert left == ["toy.fits", "toy.parquet"]  # no *.tmp, no parts folder, no manifest: not up to date
    assert {f: p.read_bytes() for f, p in paths.items()} == before
    assert pq.read_table(paths["parquet"]).num_rows == STARS.size
    engine.write_catalog(*args, key="k2", block_rows=4)
    assert sorted(p.name for p in out.iterdir()) == [".toy.json", "toy.fits", "toy.parquet"]


def test_a_failed_hats_import_keeps_the_previous_catalog(
    reductions_cube: Path,  # noqa: F811
    client,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("hats_import")
    import importlib

    hats_pipeline = importlib.import_module("hats_import.pipeline")  # the module (the package names a function so)

    out = tmp_path / "cat"
    previous = out / "toy_hats"
    previous.mkdir(parents=True)
    (previous / "hats.properties").write_text("the previous catalog")

    def failing(args, client):
        (Path(args.output_path) / args.output_artifact_name / "partial").mkdir(parents=True, exist_ok=True)
        disk_full()

    monkeypatch.setattr(hats_pipeline, "pipeline_with_client", failing)
    engine = DaskEngine(reductions_cube, client, progress=False)

    def block(data: dict, params: dict) -> dict:
        n = data["specid"].size
        return {"specid": data["specid"], "ra": np.linspace(10, 20, n), "dec": np.linspace(-5, 5, n)}

    with pytest.raises(OSError, match="No space left"):
        engine.write_catalog("toy", ["specid"], block, {}, out, ["hats"], {}, key="k1", block_rows=4)
    assert (previous / "hats.properties").read_text() == "the previous catalog"
    assert sorted(p.name for p in out.iterdir()) == ["toy_hats"]


# --- the pipeline creates a missing cube under the writer lock -----------------------------------------------


def test_run_pipeline_creates_a_missing_cube_only_under_the_writer_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import survey_scale.pipeline as pipeline
    from survey_scale.store.lock import StoreLockedError, WriterLock

    config = small_config(tmp_path, **{"cluster.local.processes": False})
    cube = Path(config.cube.path)
    seen = []

    def create(path, cube_config):
        seen.append(Bookkeeping(path).lock_path.is_file())
        raise RuntimeError("stop here")

    monkeypatch.setattr(pipeline, "create_cube", create)
    with pytest.raises(RuntimeError, match="stop here"):
        pipeline.run_pipeline(config)
    assert seen == [True]  # the lock was held when the cube was created
    assert not Bookkeeping(cube).lock_path.exists()  # and released
    monkeypatch.undo()
    with WriterLock(cube, 600.0):  # another writer holds the lock: nothing is created
        with pytest.raises(StoreLockedError):
            pipeline.run_pipeline(config)
    assert not (cube / "zarr.json").exists()  # the cube is only created by a run that holds the lock
