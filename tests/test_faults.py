"""Faults during a whole ``survey-scale run``: the run SIGKILLed inside a step, or a Dask worker SIGKILLed
in the middle of a stage. Each run, resumed, ends with arrays identical to an uninterrupted run's.

(The ingest killed in its inspect and write phases: ``tests/stages/test_ingest.py``.)
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from survey_scale.mock import make_release
from tests.conftest import assert_same_arrays, cli_process

CONFIG = """\
cube:
  shard_spectra: 128
  inner_chunk_spectra: 32
cluster:
  local:
    n_workers: 2
runner:
  lock_stale_after_s: 600
ingest:
  input: {mock}/spectra
  catalog: {mock}/catalog.csv
  crossmatch: {mock}/crossmatch.parquet
  files_per_task: 64
normalize:
  block_spectra: 64
pca:
  n_components: 30
  block_spectra: 64
emulator:
  train: true  # not the shipped emulator: a run killed while training must resume
  grid_size: 800
  epochs: 15
fit:
  block_spectra: 64
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    """A 300-star mock release, its configuration, and the cube of an uninterrupted run."""
    root = tmp_path_factory.mktemp("faults")
    make_release(root / "mock", 300, 7)
    config = root / "config.yaml"
    config.write_text(CONFIG.format(mock=root / "mock"))
    reference = root / "reference.zarr"
    done = _run(config, reference)
    assert done.returncode == 0, done.stdout
    return config, reference


def _run(config: Path, cube: Path) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "survey_scale.cli", "run", "--config", str(config), "--cube", str(cube)]
    return subprocess.run([*args, "--no-progress"], capture_output=True, text=True, timeout=900)


def _run_until_line(config: Path, cube: Path, pattern: str, *, then=None) -> tuple[subprocess.Popen, str]:
    """Start a run and call ``then(proc)`` when a log line matches ``pattern``; return the process and its log."""
    proc = cli_process("run", "--config", str(config), "--cube", str(cube), "--no-progress")
    lines = []
    deadline = time.time() + 600
    for line in proc.stdout:
        lines.append(line)
        if re.search(pattern, line):
            then(proc)
            break
        assert time.time() < deadline, "".join(lines)
    lines.extend(proc.stdout)
    proc.wait(timeout=900)
    return proc, "".join(lines)


def _kill_run(proc: subprocess.Popen) -> None:
    time.sleep(0.5)  # inside the step
    os.killpg(proc.pid, signal.SIGKILL)  # the client, the scheduler and the workers


@pytest.mark.slow
def test_a_run_killed_inside_three_steps_resumes_each_time_to_the_same_cube(setup, tmp_path: Path) -> None:
    """The run SIGKILLed while training the PCA, restarted and killed while training the emulator, restarted
    and killed in the middle of the fit, restarted to its end: each restart breaks the dead run's lock and
    goes on from what was finished, and the cube equals an uninterrupted run's."""
    config, reference = setup
    cube = tmp_path / "killed.zarr"
    for n, where in enumerate(
        [r"PCA pass 1: fitting", r"emulator: training the", r"fit: \d+ of \d+ chunks to compute"]
    ):
        proc, log = _run_until_line(config, cube, where, then=_kill_run)
        assert proc.returncode == -signal.SIGKILL, log
        assert n == 0 or "broke a stale writer lock" in log, log
    again = _run(config, cube)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "broke a stale writer lock" in again.stderr
    assert_same_arrays(reference, cube)


@pytest.mark.slow
def test_a_worker_killed_in_every_stage_costs_nothing(setup, tmp_path: Path) -> None:
    """SIGKILL one Dask worker process as each stage starts computing: its nanny restarts it, the scheduler
    reruns its tasks, and the run ends normally with the same cube."""
    config, reference = setup
    cube = tmp_path / "cube.zarr"
    killed = []
    proc = cli_process("run", "--config", str(config), "--cube", str(cube), "--no-progress")
    lines = []
    for line in proc.stdout:
        lines.append(line)
        match = re.search(r"(ingest|normalize|pca|fit): [1-9]\d* of \d+ chunks to compute", line)
        if match:
            time.sleep(0.3)
            children = psutil.Process(proc.pid).children(recursive=True)
            workers = [p for p in children if "spawn_main" in " ".join(p.cmdline())]  # not the resource tracker
            if workers:
                workers[-1].kill()
                killed.append(match.group(1))
    proc.wait(timeout=900)
    log = "".join(lines)
    assert proc.returncode == 0, log
    assert killed == ["ingest", "normalize", "pca", "fit"], log
    assert_same_arrays(reference, cube)
