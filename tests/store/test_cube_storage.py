"""Storage beyond one disk (SPEC §11, deploy/README.md "Storage"): a finished cube copied to object storage
opens through an fsspec URL with the same values; writing through a URL is refused with a message."""

from __future__ import annotations

from pathlib import Path

import fsspec
import numpy as np
import pytest

from survey_scale.store.cube import CubeError, consolidate, open_cube, open_group
from tests.conftest import flux_cube


@pytest.fixture
def cube(tmp_path: Path) -> Path:
    path = flux_cube(tmp_path / "cube.zarr")
    consolidate(path)
    return path


def test_a_cube_opens_through_fsspec_urls(cube: Path) -> None:
    local = open_cube(cube)
    memory = fsspec.filesystem("memory")
    memory.put(str(cube), "/bucket/cube.zarr", recursive=True)  # an object store held in memory
    for url in (f"file://{cube}", "memory://bucket/cube.zarr"):
        ds = open_cube(url)
        assert ds.sizes == local.sizes and ds.attrs["shard_spectra"] == 4
        assert ds.flux.chunks == local.flux.chunks  # one Dask chunk per shard, as from a folder
        np.testing.assert_array_equal(ds.flux.values, local.flux.values)
        np.testing.assert_array_equal(ds.wave.values, local.wave.values)
    memory.rm("/bucket", recursive=True)


def test_urls_are_read_only_and_a_missing_cube_is_named(cube: Path) -> None:
    with pytest.raises(CubeError, match="POSIX file system"):
        open_group(f"file://{cube}", mode="r+")
    with pytest.raises(CubeError, match=r"memory://nowhere/cube\.zarr: no survey_scale cube"):
        open_cube("memory://nowhere/cube.zarr")
