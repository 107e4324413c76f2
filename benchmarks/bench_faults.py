"""Faults during ``survey-scale run``, timed: what each costs and whether the resumed cube is identical.

The scenarios of ``tests/test_faults.py`` (one copy of their code): the whole run SIGKILLed inside the PCA
training, the emulator training and the fit, then run again; a Dask worker SIGKILLed as each stage starts
computing. Prints one row per fault: what was killed, where, whether the final arrays equal those of an
uninterrupted run, and the time lost (killed run + rerun − uninterrupted run).

    python benchmarks/bench_faults.py
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the scenarios live in the test suite (tests/test_faults.py)

from survey_scale.mock import make_release  # noqa: E402
from tests.conftest import assert_same_arrays, cli_process  # noqa: E402
from tests.test_faults import CONFIG, _kill_run, _run, _run_until_line  # noqa: E402


def identical(a: Path, b: Path) -> bool:
    """Every array of the two cubes equal (NaN equal to NaN), as ``tests.conftest.assert_same_arrays``."""
    try:
        assert_same_arrays(a, b)
    except AssertionError:
        return False
    return True


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="bench_faults-"))
    make_release(root / "mock", 300, 7)
    config = root / "config.yaml"
    config.write_text(CONFIG.format(mock=root / "mock"))
    t0 = time.perf_counter()
    assert _run(config, root / "reference.zarr").returncode == 0
    baseline = time.perf_counter() - t0
    print(f"uninterrupted run: {baseline:.1f} s (300-star mock, 442 spectra, 4 shards, 2 workers)")
    rows = []
    for name, pattern in (
        ("PCA training", r"PCA pass 1: fitting"),
        ("emulator training", r"emulator: training the"),
        ("fit", r"fit: \d+ of \d+ chunks to compute"),
    ):
        cube = root / f"killed-{name.replace(' ', '_')}.zarr"
        t0 = time.perf_counter()
        _run_until_line(config, cube, pattern, then=_kill_run)
        again = _run(config, cube)
        lost = time.perf_counter() - t0 - baseline
        rows.append(
            ("whole run (SIGKILL)", name, again.returncode == 0 and identical(root / "reference.zarr", cube), lost)
        )
    cube = root / "worker-killed.zarr"
    t0 = time.perf_counter()
    proc = cli_process("run", "--config", str(config), "--cube", str(cube), "--no-progress")
    killed = []
    for line in proc.stdout:
        match = re.search(r"(ingest|normalize|pca|fit): [1-9]\d* of \d+ chunks to compute", line)
        if match:
            time.sleep(0.3)
            children = psutil.Process(proc.pid).children(recursive=True)
            workers = [p for p in children if "spawn_main" in " ".join(p.cmdline())]
            if workers:
                workers[-1].kill()
                killed.append(match.group(1))
    proc.wait()
    lost = time.perf_counter() - t0 - baseline
    ok = proc.returncode == 0 and identical(root / "reference.zarr", cube)
    rows.append(("one Dask worker (SIGKILL)", " and ".join(killed) + " (one kill each)", ok, lost))
    print(f"{'killed':<26} {'where':<44} {'identical':<10} time lost")
    for what, where, same, lost in rows:
        print(f"{what:<26} {where:<44} {'yes' if same else 'NO':<10} {lost:6.1f} s")


if __name__ == "__main__":
    main()
