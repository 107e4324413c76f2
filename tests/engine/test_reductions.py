"""Reductions over rows and over the visits of each star, and their cached, keyed results (no science)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from survey_scale.config import CubeConfig
from survey_scale.engine.contracts import PipelineError
from survey_scale.engine.runner import DaskEngine, star_groups
from survey_scale.store.cube import create_cube, open_group, resize_spec, write_column

# 14 visits of 5 stars, spread over 4 shards of 4 rows: S1 has visits in shards 0, 1 and 3.
STARS = np.array(["S1", "S2", "S3", "S1", "S4", "S2", "S1", "S5", "S3", "S3", "S4", "S2", "S1", "S5"], dtype=object)
SNR = np.array([10, 20, 30, 40, 50, 60, 70, 80, 90, 15, 25, 35, 45, 55], dtype=np.float32)


@pytest.fixture
def cube(tmp_path: Path) -> Path:
    path = tmp_path / "cube.zarr"
    create_cube(path, CubeConfig(shard_spectra=4, inner_chunk_spectra=2))
    resize_spec(path, STARS.size)
    root = open_group(path, mode="r+")
    write_column(root, "specid", np.array([f"X{i:03d}" for i in range(STARS.size)]), {})
    write_column(root, "star_id", STARS, {})
    write_column(root, "snr_g", SNR, {"provenance_config_hash": "a"})
    return path


def visit_rank(data: dict[str, np.ndarray], star: np.ndarray, params: dict) -> dict[str, np.ndarray]:
    """Per visit: the number of visits of its star and its rank by decreasing S/N (1 = best)."""
    snr = data["snr_g"]
    order = np.lexsort((-snr, star))
    rank = np.empty(snr.size, np.int32)
    first = np.searchsorted(star[order], star[order])
    rank[order] = np.arange(snr.size) - first + 1
    return {"n_visits": np.bincount(star)[star], "rank": rank}


def count_pairs(data: dict[str, np.ndarray], star: np.ndarray, params: dict) -> dict[str, int]:
    n = np.bincount(star)
    return {"pairs": int((n * (n - 1) // 2).sum()), "stars": int(n.size)}


def add(a: dict, b: dict) -> dict:
    return {k: a[k] + b[k] for k in a}


def test_star_groups_never_split_a_star() -> None:
    for block_rows in (1, 2, 3, 5, 100):
        groups = star_groups(STARS, block_rows)
        rows = np.concatenate([r for r, _ in groups])
        assert sorted(rows) == list(range(STARS.size))  # every row exactly once
        seen: set[str] = set()
        for r, star in groups:
            ids = STARS[r]
            assert len(set(ids)) == star.max() + 1 and not seen & set(ids)  # whole stars, each in one block
            assert all(len(set(ids[star == k])) == 1 for k in range(star.max() + 1))
            assert r.size <= block_rows or len(set(ids)) == 1  # larger than asked only to hold one star
            seen |= set(ids)


def test_reduce_by_star_sees_all_visits_across_shards(cube: Path, client) -> None:
    engine = DaskEngine(cube, client, progress=False)
    out = engine.reduce_by_star(["snr_g"], visit_rank, block_rows=3)
    table = pd.DataFrame({"star": STARS, "snr": SNR})
    expected_rank = table.groupby("star")["snr"].rank(ascending=False).to_numpy()
    np.testing.assert_array_equal(out["n_visits"], table.groupby("star")["star"].transform("size"))
    np.testing.assert_array_equal(out["rank"], expected_rank.astype(np.int32))
    assert engine.reduce_by_star(["snr_g"], count_pairs, combine=add, block_rows=2) == {
        "pairs": 6 + 3 + 3 + 1 + 1,
        "stars": 5,
    }


def test_row_reduction_and_map(cube: Path, client) -> None:
    engine = DaskEngine(cube, client, progress=False)
    rows = np.arange(2, 13)
    total = engine.reduce_rows(["snr_g"], rows, lambda d, p: {"s": d["snr_g"].sum()}, add, block_rows=3)
    assert total["s"] == pytest.approx(SNR[rows].sum())
    twice = engine.map_rows(["snr_g"], rows, lambda d, p: {"x": d["snr_g"] * p["k"]}, {"k": 2.0}, block_rows=4)
    np.testing.assert_array_equal(twice["x"], SNR[rows] * 2.0)


def test_cached_result_is_reused_while_its_inputs_are_unchanged(cube: Path, client) -> None:
    engine = DaskEngine(cube, client, progress=False)
    calls = []

    def compute() -> dict[str, np.ndarray]:
        calls.append(1)
        return engine.reduce_by_star(["snr_g"], visit_rank)

    key = engine.input_key(["snr_g"], "visit_rank v1")
    first = engine.cached("visit_rank", key, compute)
    again = engine.cached("visit_rank", engine.input_key(["snr_g"], "visit_rank v1"), compute)
    assert len(calls) == 1 and all(np.array_equal(first[k], again[k]) for k in first)
    # new settings, a new writer of the input, or appended rows: recomputed
    engine.cached("visit_rank", engine.input_key(["snr_g"], "visit_rank v2"), compute)
    open_group(cube, mode="r+")["snr_g"].attrs["provenance_config_hash"] = "b"
    engine.cached("visit_rank", engine.input_key(["snr_g"], "visit_rank v2"), compute)
    assert len(calls) == 3
    root = open_group(cube, mode="r+")
    write_column(root, "specid", np.array([f"Y{i:03d}" for i in range(STARS.size)]), {})
    engine.cached("visit_rank", engine.input_key(["snr_g"], "visit_rank v2"), compute)
    assert len(calls) == 4


def test_input_key_ignores_when_and_by_which_code_version_an_input_was_written(cube: Path, client) -> None:
    engine = DaskEngine(cube, client, progress=False)
    key = engine.input_key(["snr_g"], "x")
    attrs = open_group(cube, mode="r+")["snr_g"].attrs
    attrs.update({"provenance_updated": "2030-01-01T00:00:00", "provenance_code_version": "9.9"})
    assert engine.input_key(["snr_g"], "x") == key


def test_write_columns_writes_once_per_key(cube: Path, client) -> None:
    engine = DaskEngine(cube, client, progress=False)
    calls = []

    def compute() -> dict[str, np.ndarray]:
        calls.append(1)
        return engine.reduce_by_star(["snr_g"], visit_rank)

    attrs = {"rank": {"long_name": "visit rank"}, "n_visits": {"long_name": "visits of the star"}}
    assert engine.write_columns("visit_rank", "k1", compute, attrs) is True
    assert engine.write_columns("visit_rank", "k1", compute, attrs) is False
    assert len(calls) == 1
    root = open_group(cube)
    assert root["rank"].attrs["provenance_key"] == "k1" and root["rank"].attrs["long_name"] == "visit rank"
    assert root["rank"].attrs["provenance_step"] == "visit_rank"
    del open_group(cube, mode="r+")["n_visits"]  # a kill between two columns: all rewritten
    assert engine.write_columns("visit_rank", "k1", compute, attrs) is True and len(calls) == 2
    with pytest.raises(PipelineError, match="gave 2 values of rank for 14 spectra"):
        engine.write_columns("visit_rank", "k2", lambda: {"rank": np.zeros(2)}, {"rank": {}})


def test_record_reduction_is_strict_json_and_keeps_its_time_while_unchanged(cube: Path, client) -> None:
    engine = DaskEngine(cube, client, progress=False)
    engine.record_reduction("model", {"coeffs": [1.0, float("nan")], "edges": [0.0, float("inf")], "n": 3})
    first = dict(open_group(cube).attrs["reductions"]["model"])
    assert first["coeffs"] == [1.0, None] and first["edges"] == [0.0, None] and first["code_version"]
    engine.record_reduction("model", {"coeffs": [1.0, float("nan")], "edges": [0.0, float("inf")], "n": 3})
    assert dict(open_group(cube).attrs["reductions"]["model"]) == first
    engine.record_reduction("model", {"coeffs": [2.0], "n": 4})
    assert open_group(cube).attrs["reductions"]["model"]["n"] == 4


def test_write_catalog_streams_parts_into_fits_and_parquet(cube: Path, client, tmp_path: Path) -> None:
    import pyarrow.parquet as pq
    from astropy.table import Table

    engine = DaskEngine(cube, client, progress=False)

    def block(data: dict, params: dict) -> dict:
        return {
            "specid": data["specid"],
            "star_id": data["star_id"],
            "snr_g": data["snr_g"] * params["k"],
            "rank": np.arange(data["snr_g"].size, dtype=np.int16),
            "big": np.full(data["snr_g"].size, 2**40, np.int64),
        }

    meta = {"snr_g": {"unit": "km / s", "description": "a speed"}, "rank": {"unit": "dex", "description": "log"}}
    out = tmp_path / "cat"
    args = ("toy", ["specid", "star_id", "snr_g", "absent"], block, {"k": 2.0}, out, ["fits", "parquet"], meta)
    paths = engine.write_catalog(*args, key="k1", block_rows=4)
    table = Table.read(paths["fits"])
    assert len(table) == STARS.size and list(table["specid"]) == [f"X{i:03d}" for i in range(STARS.size)]
    np.testing.assert_array_equal(table["snr_g"], SNR * 2.0)
    assert str(table["snr_g"].unit) == "km / s" and table["rank"].unit is None  # dex: not a FITS unit
    assert table["rank"].tolist() == [0, 1, 2, 3] * 3 + [0, 1] and table["big"][0] == 2**40
    header = Table.read(paths["fits"]).meta
    assert header["CREATOR"] == "survey_scale" and header["TCOMM4"] == "[dex] log"
    parquet = pq.read_table(paths["parquet"])
    assert parquet.num_rows == STARS.size and parquet.schema.field("snr_g").metadata[b"unit"] == b"km / s"
    stamp = paths["fits"].stat().st_mtime_ns
    engine.write_catalog(*args, key="k1", block_rows=4)
    assert paths["fits"].stat().st_mtime_ns == stamp  # same key: nothing rewritten
    with pytest.raises(ValueError, match="unknown catalog format"):
        engine.write_catalog("toy", ["specid"], block, {}, out, ["votable"], meta, key="k2")


def test_rows_read_in_groups_of_chunks_come_back_in_the_order_asked(cube: Path, monkeypatch) -> None:
    from survey_scale.engine import reductions

    monkeypatch.setattr(reductions, "READ_CHUNKS", 1)  # 2 rows per read: every inner chunk read on its own
    rows = np.array([13, 0, 7, 6, 2, 11, 3])
    data = reductions._read_rows(str(cube), ("snr_g", "star_id"), rows)
    np.testing.assert_array_equal(data["snr_g"], SNR[rows])
    assert data["star_id"].dtype == object and list(data["star_id"]) == list(STARS[rows])
