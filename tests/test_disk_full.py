"""A full disk mid-run (issue 26): the run stops with one clear error naming the cube and "no space left", the
cube keeps every finished result (a done marker only for a complete result), and once space is freed a rerun
completes to exactly the cube of an undisturbed run.

The cube lives on a size-limited file system: a tmpfs mounted for the test (needs root or CAP_SYS_ADMIN; the
test is skipped with the reason when mounting is not permitted), sized to a fraction of the finished cube so that
it fills during the ingest, the normalization or the PCA. Freeing space = remounting it larger (tmpfs keeps its
files). The failing run is the real command line (``survey-scale run``, in a process of its own); the reference
and the rerun are :func:`survey_scale.pipeline.run_pipeline` with in-process workers.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from survey_scale.config import load_config
from survey_scale.mock import make_release
from survey_scale.pipeline import run_pipeline
from survey_scale.store.bookkeeping import Bookkeeping
from survey_scale.store.cube import META_GROUP, open_group, open_rejects, read_column
from tests.conftest import assert_same_arrays

pytestmark = pytest.mark.slow

UNTIL = "pca"
STAGE_ARRAYS = {"ingest": ("flux", "ivar", "pixmask"), "normalize": ("norm_flux", "norm_ivar"), "pca": ("pca_flux",)}
"""The arrays with a ``wave`` dim that each stage of the run writes chunk by chunk."""


def settings(cube: Path, release: Path) -> dict:
    return {
        "cube.path": str(cube),
        "cube.shard_spectra": 16,
        "cube.inner_chunk_spectra": 8,
        "ingest.input": str(release / "spectra"),
        "ingest.catalog": str(release / "catalog.csv"),
        "ingest.crossmatch": str(release / "crossmatch.parquet"),
        "ingest.files_per_task": 16,
        "normalize.block_spectra": 16,
        "pca.n_components": 10,
        "pca.min_snr": 20.0,
        "pca.block_spectra": 16,
        "runner.progress": False,
        # workers in processes, as a run has them: the rerun is compared bit for bit with the undisturbed run, and
        # BLAS calls in threads of one busy process (processes: false) were seen to round differently (1e-6)
        "cluster.local.processes": True,
        "cluster.local.n_workers": 2,
    }


def nested(dotted: dict) -> dict:
    out: dict = {}
    for key, value in dotted.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def stored_bytes(folder: Path) -> int:
    """What the files under ``folder`` take on a tmpfs (whole 4 KiB pages)."""
    return sum(-(-p.stat().st_size // 4096) * 4096 for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A mock release (~150 spectra, some invalid files) and the cube of an undisturbed run up to the PCA."""
    base = tmp_path_factory.mktemp("disk_full")
    release = make_release(base / "mock", 70, seed=7, release="MOCK1").outdir
    cube = base / "reference.zarr"
    run_pipeline(load_config(None, settings(cube, release)), progress=False, until=UNTIL)
    return release, cube


@pytest.fixture
def small_fs(tmp_path: Path):
    """A tmpfs mounted at ``tmp_path/small``; yields a function that (re)mounts it with a size in KiB."""
    if sys.platform != "linux" or shutil.which("mount") is None:
        pytest.skip("a size-limited file system needs Linux and mount(8)")
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = []

    def mount(kib: int) -> Path:
        options = f"{'remount,' if mounted else ''}size={kib}k"
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)], capture_output=True, text=True
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a size-limited tmpfs here (needs root or CAP_SYS_ADMIN): {done.stderr.strip()}")
        mounted.append(kib)
        return mount_point

    yield mount
    if mounted:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def check_finished_results(cube: Path, reference: Path) -> int:
    """Every chunk marked done has its complete result and its rows in the cube as the undisturbed run wrote
    them; returns the number of marked chunks."""
    books, ref = Bookkeeping(cube), open_group(reference)
    root = open_group(cube)
    n_marked = 0
    for stage, names in STAGE_ARRAYS.items():
        for marker in books.chunk_markers(stage):
            start, stop = marker["start"], marker["stop"]
            result = books.root / "results" / stage / f"rows-{start:010d}.npz"
            with np.load(result, allow_pickle=False) as z:
                assert (int(z["_start"]), int(z["_stop"])) == (start, stop), result
                for key in z.files:
                    if not key.startswith("_"):
                        expected = read_column(ref, key)[start:stop]
                        got = z[key]
                        if got.dtype.kind in "US":
                            assert list(got) == [str(v) for v in expected], (stage, key, start)
                        else:
                            np.testing.assert_array_equal(got, expected, err_msg=f"{stage} {key} {start}")
            for name in names:
                np.testing.assert_array_equal(root[name][start:stop], ref[name][start:stop], err_msg=f"{name} {start}")
            n_marked += 1
    return n_marked


def leftovers(cube: Path) -> list[str]:
    """Temporary files of interrupted writes (ours, Zarr's) and staged or old versions of replaced variables."""
    temporary = [str(p) for p in cube.rglob("*") if p.name.endswith((".tmp", ".partial"))]
    swap = cube / META_GROUP / "swap"
    return temporary + ([str(p) for p in swap.iterdir()] if swap.is_dir() else [])


@pytest.mark.parametrize("fraction", [0.3, 0.55, 0.8])
def test_a_full_disk_stops_the_run_keeps_finished_results_and_a_rerun_completes(
    reference: tuple[Path, Path], small_fs, tmp_path: Path, fraction: float
) -> None:
    release, ref_cube = reference
    kib = int(stored_bytes(ref_cube) * fraction) // 1024
    cube = small_fs(kib) / "cube.zarr"
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(nested(settings(cube, release))))

    # the real command: one error line naming the cube and the full disk, exit status 2
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = [sys.executable, "-m", "survey_scale.cli", "run", "--config", str(config_file), "--no-progress"]
    done = subprocess.run([*run, "--until", UNTIL], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("survey-scale run: error:")]
    assert len(errors) == 1, done.stderr
    message = done.stderr[done.stderr.index(errors[0]) :]
    assert str(cube) in errors[0] and "no space left" in message.lower(), message
    assert "Traceback (most recent call last)" not in done.stderr  # (distributed logs its failed tasks)

    # the lock released (else the rerun would be refused until the lock goes stale)
    left = sorted(p.name for p in (cube / META_GROUP).glob("writer.lock*"))
    assert left == [], f"the failed run left {left}: see test_the_writer_lock_is_released_on_a_full_disk"

    # every finished result intact: markers only for complete results, equal to the undisturbed run's rows
    assert (cube / "zarr.json").exists()
    check_finished_results(cube, ref_cube)
    assert leftovers(cube) == []

    # space freed: the rerun resumes and ends with the undisturbed run's cube, variable by variable
    small_fs(4 * kib + 64 * 1024)
    run_pipeline(load_config(str(config_file), {}), progress=False, until=UNTIL)
    assert_same_arrays(ref_cube, cube)
    # the rejects too; their batch aside: a rerun's ingest opens a new batch, which judges again the files that
    # earlier batches rejected (as after any rerun, full disk or not)
    expected, got = (
        open_rejects(path).drop(columns="batch").sort_values(["stage", "source", "code"]).reset_index(drop=True)
        for path in (ref_cube, cube)
    )
    assert got.to_dict("list") == expected.to_dict("list")
    assert set(open_group(cube).attrs["stages"]) == set(open_group(ref_cube).attrs["stages"])
    assert check_finished_results(cube, ref_cube) == sum(
        len(Bookkeeping(ref_cube).chunk_markers(stage)) for stage in STAGE_ARRAYS
    )
    assert leftovers(cube) == []
    record = json.loads((cube / META_GROUP / "models.json").read_text())
    assert set(record) == set(json.loads((ref_cube / META_GROUP / "models.json").read_text()))


def test_the_writer_lock_is_released_on_a_full_disk(small_fs) -> None:
    """Releasing (and breaking) take the claim by creating its file; its content is best-effort (issue 26)."""
    from survey_scale.store.lock import WriterLock

    cube = small_fs(1024) / "cube.zarr"
    lock = WriterLock(cube, 600.0)
    lock.acquire()
    try:
        with open(cube.parent / "filler", "wb") as filler:  # fill the file system to its last page
            while True:
                filler.write(b"\0" * 4096)
                filler.flush()
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    lock.release()
    assert sorted(p.name for p in (cube / META_GROUP).iterdir()) == []
