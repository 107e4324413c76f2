"""The chunk runner: region writes, done markers, provenance, resume, consolidation, rejects."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import zarr

from survey_scale.engine.contracts import ModelRef, Output, Stage, StageError, StageResult
from survey_scale.engine.runner import chunk_bounds, is_system_error, run_stage
from survey_scale.store.cube import open_cube, open_rejects, resize_spec
from tests.conftest import flux_cube


def _toy(inputs, params, ctx):
    flux = inputs["flux"]
    if np.any(flux == -999.0):
        raise ValueError("sentinel value found")
    mean = flux.mean(axis=1) * params["scale"] + (ctx.models["offset"] if ctx.models else 0.0)
    rejects = [(i, "negative_mean", f"mean flux {m:.2f} < 0") for i, m in enumerate(mean) if m < 0]
    return StageResult({"flux_mean": mean, "scaled": flux * params["scale"]}, rejects)


def _load_offset(path: str) -> float:
    return float(Path(path).read_text())


def toy_stage(scale: float = 2.0, model: Path | None = None) -> Stage:
    return Stage(
        name="toy",
        version="1",
        func=_toy,
        inputs=("flux",),
        outputs=(Output("flux_mean", "float32", attrs={"units": "x"}), Output("scaled", "float32", ("spec", "wave"))),
        params={"scale": scale},
        models={"offset": ModelRef(str(model), _load_offset)} if model else {},
    )


@pytest.fixture
def cube(tmp_path: Path) -> Path:
    path = flux_cube(tmp_path / "cube.zarr")
    root = zarr.open_group(str(path), mode="r+")
    root["flux"][7] -= 2.0  # one spectrum with a negative mean: the toy stage rejects it
    return path


def test_chunk_bounds_align_to_shards() -> None:
    assert chunk_bounds(0, 10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert chunk_bounds(6, 13, 4) == [(6, 8), (8, 12), (12, 13)]
    assert chunk_bounds(4, 4, 4) == []


def test_run_writes_outputs_markers_and_provenance(cube: Path, client) -> None:
    summary = run_stage(cube, toy_stage(), client, progress=False)
    assert (summary.n_chunks, summary.n_computed, summary.n_rejects) == (3, 3, 1)
    ds = open_cube(cube)
    flux = ds.flux.values
    np.testing.assert_allclose(ds.flux_mean.values, flux.mean(axis=1) * 2.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.scaled.values, flux * 2.0)
    root = zarr.open_group(str(cube))
    assert root["flux_mean"].chunks == (10,)  # a per-spectrum output is one chunk
    assert root["scaled"].shards == (4, 3802) and root["scaled"].chunks == (2, 3802)
    assert ds.scaled.data.chunks[0] == (4, 4, 2)  # one Dask chunk per shard
    assert ds.flux_mean.attrs["units"] == "x" and ds.flux_mean.attrs["provenance_stage_version"] == "1"
    assert ds.attrs["stages"]["toy"]["config_hash"] == ds.flux_mean.attrs["provenance_config_hash"]
    marker = json.loads((cube / "_survey_scale/markers/toy/rows-0000000004.json").read_text())
    assert (marker["start"], marker["stop"], marker["stage"]) == (4, 8, "toy")
    rejects = open_rejects(cube)
    assert rejects[["stage", "source", "code"]].values.tolist() == [["toy", "7", "negative_mean"]]


def test_rerun_skips_done_chunks_and_recomputes_stale_ones(cube: Path, client) -> None:
    run_stage(cube, toy_stage(), client, progress=False)
    before = open_cube(cube).scaled.values
    assert run_stage(cube, toy_stage(), client, progress=False).n_computed == 0
    (cube / "_survey_scale/markers/toy/rows-0000000004.json").unlink()
    assert run_stage(cube, toy_stage(), client, progress=False).n_computed == 1
    np.testing.assert_array_equal(open_cube(cube).scaled.values, before)
    summary = run_stage(cube, toy_stage(scale=3.0), client, progress=False)
    assert summary.n_computed == 3
    np.testing.assert_allclose(open_cube(cube).scaled.values, before * 1.5, rtol=1e-6)


def _centred(inputs, params, ctx):
    # depends on which rows share a call, as a batched fit's rounding does
    return StageResult({"centred": inputs["flux"][:, 0] - inputs["flux"][:, 0].mean() + params["offset"]})


def centred_stage(offset: float = 0.0) -> Stage:
    return Stage("centred", "1", _centred, inputs=("flux",), outputs=(Output("centred", "float64"),),
                 params={"offset": offset})  # fmt: skip


def test_an_append_keeps_the_rows_of_a_partial_last_shard(cube: Path, client) -> None:
    """After an append, the shard that was the cube's partial last one computes only its new rows: the old
    rows keep their values bit for bit. A later change of settings recomputes the whole shard again."""
    run_stage(cube, centred_stage(), client, progress=False)  # chunks 0:4, 4:8, 8:10
    before = open_cube(cube).centred.values
    resize_spec(cube, 13)
    root = zarr.open_group(str(cube), mode="r+")
    root["flux"][10:] = np.random.default_rng(2).normal(1.0, 0.1, (3, 3802)).astype(np.float32)
    summary = run_stage(cube, centred_stage(), client, progress=False)
    assert (summary.n_chunks, summary.n_computed) == (4, 2)  # rows 10:12 of shard 8:12, and 12:13
    after = open_cube(cube).centred.values
    np.testing.assert_array_equal(after[:10], before)
    flux0 = open_cube(cube).flux.values[:, 0].astype(np.float64)
    np.testing.assert_allclose(after[10:12], flux0[10:12] - flux0[10:12].mean(), atol=1e-6)
    markers = sorted(p.name for p in (cube / "_survey_scale/markers/centred").iterdir())
    assert markers == [f"rows-{r:010d}.json" for r in (0, 4, 8, 10, 12)]
    assert run_stage(cube, centred_stage(), client, progress=False).n_computed == 0
    summary = run_stage(cube, centred_stage(offset=1.0), client, progress=False)  # stale: whole shards again
    assert (summary.n_chunks, summary.n_computed) == (4, 4)
    markers = sorted(p.name for p in (cube / "_survey_scale/markers/centred").iterdir())
    assert markers == [f"rows-{r:010d}.json" for r in (0, 4, 8, 12)]
    np.testing.assert_allclose(open_cube(cube).centred.values[8:12], flux0[8:12] - flux0[8:12].mean() + 1.0, atol=1e-6)


def test_model_hash_in_provenance_and_loaded_on_workers(cube: Path, tmp_path: Path, client) -> None:
    model = tmp_path / "offset.txt"
    model.write_text("10.0")
    run_stage(cube, toy_stage(model=model), client, progress=False)
    ds = open_cube(cube)
    np.testing.assert_allclose(ds.flux_mean.values, ds.flux.values.mean(axis=1) * 2 + 10, rtol=1e-6)
    assert "offset" in json.loads(ds.flux_mean.attrs["provenance_model_hashes"])
    assert run_stage(cube, toy_stage(model=model), client, progress=False).n_computed == 0
    model.write_text("20.0")  # a changed model makes every chunk stale
    assert run_stage(cube, toy_stage(model=model), client, progress=False).n_computed == 3
    np.testing.assert_allclose(open_cube(cube).flux_mean.values, ds.flux.values.mean(axis=1) * 2 + 20, rtol=1e-6)


def _plus_one(inputs, params, ctx):
    return StageResult({"flux_mean_plus": inputs["flux_mean"] + 1.0})


DOWNSTREAM = Stage("downstream", "1", _plus_one, inputs=("flux_mean",), outputs=(Output("flux_mean_plus", "float32"),))


def test_a_change_upstream_recomputes_the_stages_that_read_it(cube: Path, client) -> None:
    """A stage's markers carry how its inputs were made: new upstream settings make it stale, while the
    ingest-like source variables (flux here, written without a stage) never do."""
    run_stage(cube, toy_stage(), client, progress=False)
    assert run_stage(cube, DOWNSTREAM, client, progress=False).n_computed == 3
    assert run_stage(cube, DOWNSTREAM, client, progress=False).n_computed == 0
    run_stage(cube, toy_stage(scale=3.0), client, progress=False)
    assert run_stage(cube, DOWNSTREAM, client, progress=False).n_computed == 3
    ds = open_cube(cube)
    np.testing.assert_allclose(ds.flux_mean_plus.values, ds.flux.values.mean(axis=1) * 3.0 + 1.0, rtol=1e-6)
    run_stage(cube, toy_stage(scale=3.0), client, progress=False)  # the same settings again: nothing stale
    assert run_stage(cube, DOWNSTREAM, client, progress=False).n_computed == 0


def test_a_spectrum_that_makes_the_stage_fail_is_rejected_and_its_chunk_kept(cube: Path, client) -> None:
    root = zarr.open_group(str(cube), mode="r+")
    root["flux"][5, 0] = -999.0
    summary = run_stage(cube, toy_stage(), client, progress=False)
    assert summary.n_computed == summary.n_chunks == 3  # nothing stops: every chunk is done
    ds = open_cube(cube)
    assert np.isnan(ds.flux_mean.values[5]) and np.isnan(ds.scaled.values[5]).all()
    others = np.r_[4, 6, 7]
    np.testing.assert_allclose(ds.flux_mean.values[others], 2 * ds.flux.values[others].mean(axis=1), rtol=1e-6)
    rejects = open_rejects(cube).set_index("specid")
    assert (
        rejects.loc["5", "code"] == "stage_error" and "ValueError: sentinel value found" in rejects.loc["5", "reason"]
    )


def _out_of_memory(inputs, params, ctx):
    if np.any(inputs["flux"] == -777.0):
        raise MemoryError("sentinel: out of memory")
    if np.any(inputs["flux"] == -778.0):
        raise OSError(28, "No space left on device")
    return _toy(inputs, params, ctx)


@pytest.mark.parametrize("sentinel, error", [(-777.0, "MemoryError"), (-778.0, "OSError")])
def test_a_system_error_fails_its_chunk_unmarked_and_a_rerun_retries_it(
    cube: Path, client, sentinel: float, error: str
) -> None:
    root = zarr.open_group(str(cube), mode="r+")
    good = float(root["flux"][5, 0])
    root["flux"][5, 0] = sentinel
    stage = Stage(**{**toy_stage().__dict__, "func": _out_of_memory})
    with pytest.raises(StageError, match=rf"(?s)1 chunk\(s\) failed.*rows 4: {error}"):
        run_stage(cube, stage, client, progress=False)
    root["flux"][5, 0] = good  # the machine's trouble is over
    summary = run_stage(cube, stage, client, progress=False)
    assert (summary.n_chunks, summary.n_computed) == (3, 1)  # the other chunks were done; 4:8 is retried
    ds = open_cube(cube)
    np.testing.assert_allclose(ds.flux_mean.values, 2 * ds.flux.values.mean(axis=1), rtol=1e-6)
    assert open_rejects(cube)[["source", "code"]].values.tolist() == [["7", "negative_mean"]]  # no stage_error


def test_system_errors_are_recognised_without_importing_torch() -> None:
    torch_oom = type("OutOfMemoryError", (RuntimeError,), {"__module__": "torch.cuda"})
    assert is_system_error(MemoryError()) and is_system_error(FileNotFoundError()) and is_system_error(torch_oom())
    assert not is_system_error(ValueError()) and not is_system_error(RuntimeError("out of memory?"))


def _broken(inputs, params, ctx):
    return StageResult({"flux_mean": np.zeros(1), "scaled": inputs["flux"]})  # wrong length: a bug


def test_a_stage_that_breaks_its_contract_fails_and_finished_chunks_are_kept(cube: Path, client) -> None:
    stage = toy_stage()
    run_stage(cube, stage, client, progress=False)
    broken = Stage(**{**stage.__dict__, "func": _broken, "version": "2"})
    with pytest.raises(StageError, match=r"(?s)3 chunk\(s\) failed.*output 'flux_mean' has 1 rows"):
        run_stage(cube, broken, client, progress=False)


def test_appended_rows_compute_only_new_chunks(cube: Path, client) -> None:
    run_stage(cube, toy_stage(), client, progress=False)
    resize_spec(cube, 14)
    zarr.open_group(str(cube), mode="r+")["flux"][10:14] = np.ones((4, 3802), np.float32)
    summary = run_stage(cube, toy_stage(), client, progress=False)
    # the partial shard 8:10 grew to 8:12 (recomputed), 12:14 is new; 0:4 and 4:8 are kept
    assert (summary.n_chunks, summary.n_computed) == (4, 2)
    ds = open_cube(cube)
    assert ds.sizes["spec"] == 14
    np.testing.assert_allclose(ds.flux_mean.values[10:], 2.0)


def _maybe_die(i: int) -> int:
    if i == 3:
        os._exit(1)  # the worker process dies, as it would killed by the OOM killer
    if i == 4:
        raise ValueError("bad item")
    if i == 6:
        raise OSError(errno.ENOSPC, "No space left on device")
    return i * i


def _sum_with(shared: np.ndarray, i: int) -> int:
    return int(shared.sum()) + i


@pytest.mark.slow
def test_map_tasks_survives_a_worker_that_dies(tmp_path: Path) -> None:
    """A task whose worker dies (on every worker that tries it) and a task that raises become TaskFailures;
    the other tasks finish, and the cluster (its nannies restart the workers) stays usable. A system error is
    raised (issue 26)."""
    import dask
    from distributed import Client, LocalCluster

    from survey_scale.engine.contracts import TaskFailure
    from survey_scale.engine.runner import DaskEngine

    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        with (
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, worker_dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            engine = DaskEngine(tmp_path, client, progress=False)
            (died,) = engine.map_tasks("toy", _maybe_die, [(3,)], errors="return")
            assert died.kind == "KilledWorker"
            # the nannies restarted the workers: the next tasks run, and one that raises is a TaskFailure
            results = engine.map_tasks("toy", _maybe_die, [(0,), (2,), (4,), (5,)], errors="return")
            assert results == [0, 4, TaskFailure("ValueError", "bad item"), 25]
            with pytest.raises(ValueError, match="bad item"):
                engine.map_tasks("toy", _maybe_die, [(4,)])
            # what every task reads goes to the workers once, before the items
            assert engine.map_tasks("toy", _sum_with, [(1,), (2,)], shared=(np.arange(4),)) == [7, 8]
            # a full disk is no task's fault: raised even with errors="return", never a TaskFailure to record
            with pytest.raises(OSError, match="No space left"):
                engine.map_tasks("toy", _maybe_die, [(4,), (6,), (5,)], errors="return")
