"""Replacements write the new version beside the old one, then swap (issue 26): a failure while writing (a full
disk) or a kill between the renames never leaves a variable missing; a new cube is created only as a whole, in a
folder that may already hold its bookkeeping folder (the writer lock), and never with Zarr's overwriting mode."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr

from survey_scale.config import CubeConfig
from survey_scale.core import files
from survey_scale.store import cube as cube_mod
from survey_scale.store.cube import (
    META_GROUP,
    REJECT_COLUMNS,
    CubeError,
    consolidate,
    create_cube,
    open_cube,
    open_group,
    open_rejects,
    read_column,
    resize_spec,
    write_column,
    write_rejects,
)

CONFIG = CubeConfig(shard_spectra=4, inner_chunk_spectra=2)


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def cube(tmp_path: Path) -> Path:
    path = tmp_path / "cube.zarr"
    create_cube(path, CONFIG)
    resize_spec(path, 5)
    write_column(open_group(path, mode="r+"), "specid", np.array(list("abcde")), {"version": 1})
    consolidate(path)
    return path


def swap_leftovers(cube: Path) -> list[str]:
    folder = cube / META_GROUP / "swap"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# --- per-spectrum columns ------------------------------------------------------------------------------------


def test_a_column_replacement_that_fails_keeps_the_old_column(cube: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = open_group(cube, mode="r+")
    monkeypatch.setattr(zarr.Array, "__setitem__", disk_full)  # the disk fills while the new values are written
    with pytest.raises(OSError, match=r"(?i)no space left"):
        write_column(root, "specid", np.array(list("vwxyz")), {"version": 2})
    monkeypatch.undo()
    root = open_group(cube)
    assert list(read_column(root, "specid")) == list("abcde") and root["specid"].attrs["version"] == 1
    assert list(open_cube(cube).specid.values) == list("abcde")
    assert swap_leftovers(cube) == []  # the staged copy is gone


def test_a_column_is_replaced_whole_with_its_attributes(cube: Path) -> None:
    write_column(open_group(cube, mode="r+"), "specid", np.array(list("vwxyz")), {"version": 2})
    consolidate(cube)
    ds = open_cube(cube)
    assert list(ds.specid.values) == list("vwxyz") and ds.specid.attrs["version"] == 2
    assert swap_leftovers(cube) == []


def test_a_failed_second_rename_puts_the_old_column_back(cube: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real, calls = os.rename, []

    def rename(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if Path(src).name == "specid" and Path(src).parent.name == "new-specid":  # the new one into place
            raise OSError(errno.EIO, "Input/output error")
        return real(src, dst)

    monkeypatch.setattr(cube_mod.os, "rename", rename)
    with pytest.raises(OSError, match="Input/output"):
        write_column(open_group(cube, mode="r+"), "specid", np.array(list("vwxyz")), {})
    monkeypatch.undo()
    assert ("specid", "old-specid") in calls  # the old one was moved aside, then back
    assert list(read_column(open_group(cube), "specid")) == list("abcde")
    assert swap_leftovers(cube) == []


def test_a_kill_between_the_two_renames_is_repaired(cube: Path) -> None:
    """A process killed after moving the old column aside: the next writer puts it back, and a staged copy that
    was never swapped in is deleted."""
    swap = cube / META_GROUP / "swap"
    swap.mkdir(parents=True, exist_ok=True)
    os.rename(cube / "specid", swap / "old-specid")
    (swap / "new-specid" / "specid").mkdir(parents=True)
    assert cube_mod.recover_swaps(cube) == ["specid"]
    assert list(read_column(open_group(cube), "specid")) == list("abcde")
    assert swap_leftovers(cube) == []
    # a swap that finished but was killed before deleting the old version: the old one goes
    (swap / "old-specid").mkdir()
    assert cube_mod.recover_swaps(cube) == [] and swap_leftovers(cube) == []
    assert list(read_column(open_group(cube), "specid")) == list("abcde")


# --- the rejects group ---------------------------------------------------------------------------------------


def rejects_table(sources: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "stage": "ingest",
            "source": sources,
            "specid": "",
            "code": "bad",
            "reason": "a reason",
            "batch": np.arange(len(sources), dtype=np.int64),
        }
    )[list(REJECT_COLUMNS)]


def test_a_rejects_replacement_that_fails_keeps_the_old_table(cube: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_rejects(cube, rejects_table(["a.fits", "b.fits"]))
    monkeypatch.setattr(zarr.Array, "__setitem__", disk_full)
    with pytest.raises(OSError, match=r"(?i)no space left"):
        write_rejects(cube, rejects_table(["c.fits"]))
    monkeypatch.undo()
    assert list(open_rejects(cube)["source"]) == ["a.fits", "b.fits"]
    assert swap_leftovers(cube) == []
    write_rejects(cube, rejects_table(["c.fits"]))
    consolidate(cube)
    assert list(open_rejects(cube)["source"]) == ["c.fits"]


# --- creating a cube -----------------------------------------------------------------------------------------


def test_a_cube_is_created_in_a_folder_holding_only_its_bookkeeping_folder(tmp_path: Path) -> None:
    """The writer lock is taken (in <cube>/_survey_scale/) before the cube is created: the lock file is kept."""
    path = tmp_path / "cube.zarr"
    (path / META_GROUP).mkdir(parents=True)
    (path / META_GROUP / "writer.lock").write_text("held")
    create_cube(path, CONFIG)
    assert (path / META_GROUP / "writer.lock").read_text() == "held"
    ds = open_cube(path)
    assert ds.sizes["spec"] == 0 and {"flux", "ivar", "pixmask"} <= set(ds.data_vars)
    assert zarr.open_group(str(path / META_GROUP), mode="r").attrs["description"].startswith("survey_scale")


def test_create_cube_refuses_a_cube_and_other_content(tmp_path: Path, cube: Path) -> None:
    with pytest.raises(CubeError, match="exists already"):
        create_cube(cube, CONFIG)
    assert list(read_column(open_group(cube), "specid")) == list("abcde")  # untouched
    other = tmp_path / "other"
    (other / META_GROUP).mkdir(parents=True)
    (other / "notes.txt").write_text("mine")
    with pytest.raises(CubeError, match=r"not empty \(notes.txt\)"):
        create_cube(other, CONFIG)
    assert (other / "notes.txt").read_text() == "mine"


def test_an_interrupted_creation_leaves_no_cube_and_the_next_one_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "cube.zarr"
    (path / META_GROUP).mkdir(parents=True)
    (path / META_GROUP / "writer.lock").write_text("held")
    real = cube_mod.create_spectra_array

    def ivar_fills_the_disk(root, name, *args, **kwargs):
        if name == "ivar":
            disk_full()
        return real(root, name, *args, **kwargs)

    monkeypatch.setattr(cube_mod, "create_spectra_array", ivar_fills_the_disk)
    with pytest.raises(OSError) as info:
        create_cube(path, CONFIG)
    assert isinstance(info.value, cube_mod.CubeFullError) and info.value.errno == errno.ENOSPC
    assert str(path) in str(info.value) and "no space left on device while creating the cube" in str(info.value)
    assert not (path / "zarr.json").exists()  # no cube: the next run creates it again
    monkeypatch.undo()
    create_cube(path, CONFIG)
    assert open_cube(path).sizes["spec"] == 0 and (path / META_GROUP / "writer.lock").read_text() == "held"


def test_a_creation_killed_while_moving_in_is_completed_by_the_next(tmp_path: Path) -> None:
    """Arrays moved in before the root zarr.json (killed then): not a cube yet; the next creation replaces them."""
    path = tmp_path / "cube.zarr"
    create_cube(path, CONFIG)
    (path / "zarr.json").unlink()  # as if killed before the root's zarr.json, which goes last
    create_cube(path, CONFIG)
    assert open_cube(path).sizes["spec"] == 0


# --- durable small files -------------------------------------------------------------------------------------


def test_atomic_write_syncs_the_file_before_the_rename_and_the_folder_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = record_io(monkeypatch)
    target = tmp_path / "marker.json"
    files.atomic_write_bytes(target, b"{}")
    tmp_synced = [i for i, e in enumerate(events) if e[0] == "fsync" and e[1].endswith(".tmp")]
    renamed = [i for i, e in enumerate(events) if e[0] == "replace" and e[2] == str(target)]
    folder_synced = [i for i, e in enumerate(events) if e[0] == "fsync" and e[1] == str(tmp_path)]
    assert tmp_synced and renamed and folder_synced
    assert tmp_synced[0] < renamed[0] < folder_synced[-1]


def test_atomic_write_on_a_full_disk_names_the_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def half_then_full(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        disk_full()

    with pytest.raises(OSError) as info:
        files.atomic_write(tmp_path / "state.json", half_then_full)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "state.json")
    assert list(tmp_path.iterdir()) == []


def record_io(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """Record every fsync (with the synced path) and every rename/replace, in order."""
    events: list[tuple[str, ...]] = []
    real_fsync, real_replace, real_rename = os.fsync, os.replace, os.rename

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst, *args, **kwargs) -> None:
        events.append(("replace", str(src), str(dst)))
        real_replace(src, dst, *args, **kwargs)

    def rename(src, dst, *args, **kwargs) -> None:
        events.append(("replace", str(src), str(dst)))
        real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "rename", rename)
    return events
