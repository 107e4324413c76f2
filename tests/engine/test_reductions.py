"""Reductions over rows and over the visits of each star, and their cached, keyed results (no science)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from survey_scale.config import CubeConfig
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
