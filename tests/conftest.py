"""Shared fixtures: the real LAMOST files, a Dask client, small cube configurations."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from distributed import Client, LocalCluster

from survey_scale.config import Config, CubeConfig, load_config
from survey_scale.store.cube import create_cube, resize_spec

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
LAMOST_DIR = SHARED_DATA / "lamost"
DR9_101001 = "spec-55859-F5902_sp01-001.fits.gz"
DR7_101001 = "spec-55859-F5902_sp01-001_dr7.fits.gz"
DR2_FLOAT64 = "spec-55916-B5591606_sp01-001.fits"


@pytest.fixture(scope="session")
def lamost_dir() -> Path:
    """The folder of real LAMOST files (../shared/data/lamost); skips the test when it is absent."""
    if not LAMOST_DIR.is_dir():
        pytest.skip(f"real LAMOST files not found at {LAMOST_DIR} (../shared/data/lamost from the project root)")
    return LAMOST_DIR


@pytest.fixture
def lamost_copy(lamost_dir: Path, tmp_path: Path) -> Path:
    """A writable copy of the real files."""
    target = tmp_path / "lamost"
    shutil.copytree(lamost_dir, target)
    return target


@pytest.fixture(scope="session")
def client():
    """A small in-process Dask cluster shared by the tests (threads: no process start-up cost)."""
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        dashboard_address=None,
        worker_dashboard_address="127.0.0.1:0",
    ) as cluster:
        with Client(cluster) as c:
            yield c


def small_config(tmp_path: Path, **overrides) -> Config:
    """A configuration with a tiny shard so that a few spectra span several chunks."""
    values = {
        "cube.path": str(tmp_path / "cube.zarr"),
        "cube.shard_spectra": 4,
        "cube.inner_chunk_spectra": 2,
        "ingest.files_per_task": 3,
        "runner.progress": False,
    }
    values.update(overrides)
    return load_config(None, values)


def flux_cube(path: Path, n: int = 10) -> Path:
    """A cube of ``n`` spectra of random flux around 1 in shards of 4 (seed 1); nothing else written."""
    create_cube(path, CubeConfig(shard_spectra=4, inner_chunk_spectra=2))
    resize_spec(path, n)
    root = zarr.open_group(str(path), mode="r+")
    root["flux"][:] = np.random.default_rng(1).normal(1.0, 0.1, (n, 3802)).astype(np.float32)
    return path


def store_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of a store except the bookkeeping group, as numpy (strings as str)."""
    root = zarr.open_group(str(path), mode="r")
    out = {}
    for name, array in root.arrays():
        values = np.asarray(array[:])
        out[name] = values.astype(object) if values.dtype.kind in "TO" else values
    return out


def assert_same_arrays(a: Path, b: Path, skip: tuple[str, ...] = ()) -> None:
    left, right = store_arrays(a), store_arrays(b)
    assert set(left) == set(right)
    for name in left:
        if name not in skip:
            np.testing.assert_array_equal(left[name], right[name], err_msg=name)


def cli_process(*args: str, **kw) -> subprocess.Popen:
    """``survey-scale ARGS`` in a process group of its own (so that a test can SIGKILL it with its workers)."""
    return subprocess.Popen(
        [sys.executable, "-m", "survey_scale.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        **kw,
    )
