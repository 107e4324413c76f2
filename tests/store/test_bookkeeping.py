"""The bookkeeping folder without Dask: chunk markers and results, batches, cached reductions, rejects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from survey_scale.config import CubeConfig
from survey_scale.core.row_parts import read_row_parts
from survey_scale.store.bookkeeping import PLAN_PART_ROWS, Bookkeeping
from survey_scale.store.cube import create_cube, open_group, open_rejects, resize_spec, write_column


@pytest.fixture
def books(tmp_path: Path) -> Bookkeeping:
    cube = tmp_path / "cube.zarr"
    create_cube(cube, CubeConfig(shard_spectra=4, inner_chunk_spectra=2))
    resize_spec(cube, 6)
    write_column(open_group(cube, mode="r+"), "specid", np.array([f"S{i}" for i in range(6)]), {})
    return Bookkeeping(cube)


def test_a_chunk_is_done_only_with_its_marker_and_provenance(books: Bookkeeping) -> None:
    prov = {"stage": "toy", "stage_version": "1", "config_hash": "abc", "model_hashes": {}}
    assert not books.marker_matches("toy", 0, 4, prov)
    books.record_chunk("toy", 0, 4, {"x": np.arange(4.0)}, [(1, "bad", "row 1 is bad")], prov, started=0.0)
    assert books.marker_matches("toy", 0, 4, prov)
    assert not books.marker_matches("toy", 0, 3, prov)  # another extent
    assert not books.marker_matches("toy", 0, 4, {**prov, "config_hash": "def"})  # other settings
    (result,) = books.chunk_results("toy")
    np.testing.assert_array_equal(result["x"], np.arange(4.0))
    assert list(result["_reject_code"]) == ["bad"] and int(result["_stop"]) == 4
    assert books.stages_done() == {"toy": {"chunks_done": 1, "rows_done": 4}}
    assert not list(books.root.rglob("*.tmp"))  # atomic writes leave no temporary file


def test_rejects_from_chunks_and_recorded_tables(books: Bookkeeping) -> None:
    prov = {"stage": "toy"}
    books.record_chunk("toy", 4, 6, {}, [(5, "no_fit", "too few pixels")], prov, started=0.0)
    books.record_rejects(
        "ingest-batch-0001",
        pd.DataFrame(
            {
                "stage": ["ingest"],
                "source": ["a.fits"],
                "specid": [""],
                "code": ["not_fits"],
                "reason": ["x"],
                "batch": [1],
            }
        ),
    )
    table = books.rebuild_rejects()
    assert sorted(zip(table["stage"], table["source"], table["code"])) == [
        ("ingest", "a.fits", "not_fits"),
        ("toy", "S5", "no_fit"),
    ]
    assert len(open_rejects(books.cube)) == 2


def test_batches_are_numbered_and_their_state_survives(books: Bookkeeping) -> None:
    first, state = books.new_batch({"phase": "inspect"})
    assert first.name == "batch-0001" and state == {"batch": 1, "phase": "inspect"}
    books.set_batch_state(first, state, phase="planned", n_new=3)
    assert books.batch_state(first) == {"batch": 1, "phase": "planned", "n_new": 3}
    second, _ = books.new_batch({"phase": "inspect"})
    assert second.name == "batch-0002" and books.batch_dirs() == [first, second]
    assert books.plan_path(first).parent == books.inspect_path(first, 0).parent.parent == first


def test_a_plan_is_saved_in_parts_replacing_an_earlier_attempt(books: Bookkeeping) -> None:
    batch, _ = books.new_batch({"phase": "inspect"})
    (batch / "plan.parquet").write_bytes(b"an attempt by a version without parts")
    (batch / "plan").mkdir()
    (batch / "plan" / "part-000009.parquet").write_bytes(b"an earlier attempt's part")
    plan = pd.DataFrame({"path": [f"f{i}" for i in range(PLAN_PART_ROWS + 1)]})
    books.save_plan(batch, plan)
    assert books.plan_path(batch) == batch / "plan"
    assert sorted(p.name for p in (batch / "plan").iterdir()) == ["part-000000.parquet", "part-000001.parquet"]
    assert not (batch / "plan.new").exists() and not (batch / "plan.parquet").exists()
    assert list(read_row_parts(batch / "plan", PLAN_PART_ROWS - 1, PLAN_PART_ROWS + 1)["path"]) == [
        f"f{PLAN_PART_ROWS - 1}",
        f"f{PLAN_PART_ROWS}",
    ]


def test_reductions_are_returned_only_for_their_key(books: Bookkeeping) -> None:
    assert books.load_reduction("pairs", "k1") is None
    books.save_reduction("pairs", "k1", {"scatter": np.array([1.0, 2.0])})
    np.testing.assert_array_equal(books.load_reduction("pairs", "k1")["scatter"], [1.0, 2.0])
    assert books.load_reduction("pairs", "k2") is None


def test_rows_not_done_step_history_and_recorded_models(books: Bookkeeping, tmp_path: Path) -> None:
    prov = {"stage": "toy"}
    assert books.rows_not_done("toy", 6) == [(0, 6)]
    books.record_chunk("toy", 4, 6, {}, [], prov, started=0.0, compute_seconds=1.25)
    assert books.rows_not_done("toy", 6) == [(0, 4)]
    assert books.rows_not_done("toy", 9) == [(0, 4), (6, 9)]  # an append leaves the new rows to do
    books.record_chunk("toy", 0, 4, {}, [], prov, started=0.0)
    assert books.rows_not_done("toy", 6) == []
    assert [m.get("compute_seconds") for m in books.chunk_markers("toy")] == [None, 1.25]

    assert books.step_history("toy") == []
    for k in range(books.STEP_HISTORY + 3):
        books.record_step("toy", {"seconds": float(k)})
    runs = books.step_history("toy")
    assert len(runs) == books.STEP_HISTORY and runs[-1]["seconds"] == books.STEP_HISTORY + 2
    assert {"code_version", "finished"} <= set(runs[-1])

    model = tmp_path / "model.npz"
    model.write_bytes(b"weights")
    books.record_model("toy", model, step="toy_model")
    record = books.recorded_models()["toy"]
    assert record["path"] == str(model.resolve()) and record["step"] == "toy_model" and len(record["sha256"]) == 64
