"""Chaos during ``survey-scale run``: Dask workers SIGKILLed at random moments, the whole run SIGKILLed once.

A mock release (default 1,400 stars, seed 5: 3,063 files, 3,052 spectra) goes through ``survey-scale run`` twice on 2
worker processes: once undisturbed, once with chaos. During the chaos run a monitor reads the run's log; each
time a step starts (``STEP: N of M chunks to compute``, ``STEP: computing``, the ingest's ``inspect``) it arms a
kill at a random delay (``--min-delay``..``--max-delay`` s, drawn with ``--rng-seed``); when that fires, one
random worker process (a nanny's child, ``spawn_main``) is SIGKILLed, at most one kill per step, until
``--kills`` kills are done. Once, after a random number (≥ 2) of worker kills, the armed kill SIGKILLs the whole
run instead (client, scheduler, nannies and workers: its process group); the run is then started again on the
same cube and the worker kills go on. A run that exits non-zero for any other reason (e.g. ``KilledWorker``)
is run again and counted (``reruns``), up to ``--max-reruns``.

At the end every variable of the chaos cube is compared with the undisturbed cube's, byte for byte
(``xarray.open_zarr``; numeric arrays by ``tobytes()``, strings by equality), and so are the exported Parquet
catalogs (``pandas.DataFrame.equals``). Prints one table: worker kills per step, whole-run kills, reruns, wall
time undisturbed vs chaos, identical or not (and what differs); ``--json FILE`` writes it too. The logs of
every run are kept in ``--work`` (default a new temporary folder).

    python benchmarks/bench_chaos.py                          # 3,052 spectra, 6 worker kills (long)
    python benchmarks/bench_chaos.py --n-stars 150 --kills 5  # smoke test: 338 spectra, ~3 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # cli_process lives in the test suite (tests/conftest.py)

from survey_scale.mock import make_release  # noqa: E402
from tests.conftest import cli_process  # noqa: E402

CONFIG = """\
cube:
  shard_spectra: {shard}
  inner_chunk_spectra: {inner}
cluster:
  local:
    n_workers: {workers}
    processes: true
runner:
  lock_stale_after_s: 600
ingest:
  input: {mock}/spectra
  catalog: {mock}/catalog.csv
  crossmatch: {mock}/crossmatch.parquet
  files_per_task: 64
export:
  formats: [parquet]
"""

STEP_LINES = (
    re.compile(r"survey_scale\.[\w.]+: (?P<step>\w+): (?P<n>\d+) of \d+ chunks to compute"),
    re.compile(r"survey_scale\.[\w.]+: (?P<step>\w+): computing \("),
    re.compile(r"survey_scale\.stages\.ingest: (?P<step>inspect): (?P<total>\d+) files in \d+ blocks \((?P<done>\d+)"),
)
"""Log lines that start a step that computes on the workers (a step with nothing to compute does not count)."""


def step_started(line: str) -> str | None:
    """The step a log line starts, or None."""
    for pattern in STEP_LINES:
        match = pattern.search(line)
        if match:
            groups = match.groupdict()
            if "n" in groups and int(groups["n"]) == 0:
                return None
            if "total" in groups and int(groups["total"]) <= int(groups["done"]):
                return None
            return groups["step"]
    return None


def worker_processes(pid: int) -> list[psutil.Process]:
    """The Dask worker processes under the CLI process ``pid`` (the nannies' children; not the resource
    tracker)."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    workers = []
    for child in children:
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                workers.append(child)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return workers


@dataclass
class Chaos:
    """The kill schedule and what was killed, shared by the successive runs of the chaos run."""

    rng: random.Random
    kills: int
    run_kill_after: int
    min_delay: float
    max_delay: float
    worker_kills: list[tuple[str, float]] = field(default_factory=list)  # (step, seconds since the chaos started)
    run_kills: list[tuple[str, float]] = field(default_factory=list)
    t0: float = field(default_factory=time.perf_counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    proc: object = None  # the run being disturbed
    step: str | None = None  # the step it is in (the last step line)
    timer: threading.Timer | None = None

    def attach(self, proc) -> None:
        with self.lock:
            self.proc, self.step = proc, None

    def detach(self) -> None:
        with self.lock:
            if self.timer is not None:
                self.timer.cancel()
            self.proc, self.step, self.timer = None, None, None

    def on_step(self, step: str) -> None:
        """A step started: arm a kill at a random delay unless one is armed or all are done."""
        with self.lock:
            self.step = step
            if self.timer is not None or len(self.worker_kills) >= self.kills:
                return
            delay = self.rng.uniform(self.min_delay, self.max_delay)
            self.timer = threading.Timer(delay, self._fire, args=(self.proc,))
            self.timer.daemon = True
            self.timer.start()

    def _fire(self, proc) -> None:
        with self.lock:
            self.timer = None
            if proc is not self.proc or proc.poll() is not None:
                return
            step, now = self.step or "start", time.perf_counter() - self.t0
            if not self.run_kills and len(self.worker_kills) >= self.run_kill_after:
                os.killpg(proc.pid, signal.SIGKILL)  # the client, the scheduler, the nannies and the workers
                self.run_kills.append((step, now))
                print(f"  [{now:7.1f} s] SIGKILL of the whole run (in {step})", flush=True)
                return
            if step in {s for s, _ in self.worker_kills} or len(self.worker_kills) >= self.kills:
                return  # at most one kill per step: wait for the next step
            workers = worker_processes(proc.pid)
            if not workers:
                return
            victim = self.rng.choice(workers)
            try:
                victim.kill()
            except psutil.NoSuchProcess:
                return
            self.worker_kills.append((step, now))
            print(f"  [{now:7.1f} s] SIGKILL of worker pid {victim.pid} (in {step})", flush=True)


def run_once(config: Path, cube: Path, log_file: Path, chaos: Chaos | None = None) -> int:
    """One ``survey-scale run``; its log to ``log_file``; with ``chaos``, kills as it goes. Returns the exit
    status (negative: killed by that signal)."""
    proc = cli_process("run", "--config", str(config), "--cube", str(cube), "--no-progress")
    if chaos is not None:
        chaos.attach(proc)
    with log_file.open("w") as log:
        for line in proc.stdout:
            log.write(line)
            step = step_started(line)
            if chaos is not None and step is not None:
                chaos.on_step(step)
    rc = proc.wait(timeout=3600)
    if chaos is not None:
        chaos.detach()
    return rc


def compare_cubes(a: Path, b: Path) -> list[str]:
    """The variables (data and coordinates) of two cubes that are not identical byte for byte."""
    left, right = xr.open_zarr(str(a)), xr.open_zarr(str(b))
    names = set(left.variables) | set(right.variables)
    differing = sorted(names - (set(left.variables) & set(right.variables)))
    for name in sorted(set(left.variables) & set(right.variables)):
        x, y = left[name].values, right[name].values
        if x.shape != y.shape or x.dtype != y.dtype:
            differing.append(name)
        elif x.dtype.kind in "biufcmM":
            if x.tobytes() != y.tobytes():
                differing.append(name)
        elif not np.array_equal(x.astype(object), y.astype(object)):
            differing.append(name)
    return differing


def compare_catalogs(a: Path, b: Path) -> list[str]:
    """The Parquet catalogs of two runs whose data are not equal (or that only one run wrote)."""
    left = {p.relative_to(a) for p in a.rglob("*.parquet")}
    right = {p.relative_to(b) for p in b.rglob("*.parquet")}
    differing = sorted(str(p) for p in left ^ right)
    for path in sorted(left & right):
        if not pd.read_parquet(a / path).equals(pd.read_parquet(b / path)):
            differing.append(str(path))
    return differing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-stars", type=int, default=1400, help="stars of the mock release (default 1400)")
    parser.add_argument("--seed", type=int, default=5, help="seed of the mock release (default 5)")
    parser.add_argument("--kills", type=int, default=6, help="worker kills, at most one per step (default 6)")
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes (default 2)")
    parser.add_argument("--rng-seed", type=int, default=0, help="seed of the kill schedule (default 0)")
    parser.add_argument("--min-delay", type=float, default=0.5, help="a kill fires this long after a step starts")
    parser.add_argument("--max-delay", type=float, default=5.0, help="... at most this long (s; default 0.5-5)")
    parser.add_argument("--shard-spectra", type=int, default=1024, help="cube.shard_spectra (default 1024)")
    parser.add_argument("--max-reruns", type=int, default=5, help="reruns after a failed exit before giving up")
    parser.add_argument("--work", type=Path, help="working folder (default: a new temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.kills < 3:
        parser.error("--kills must be at least 3 (2 before the whole-run kill, 1 after)")

    work = args.work or Path(tempfile.mkdtemp(prefix="bench_chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    mock = work / "mock"
    meta = json.loads((mock / "release.json").read_text()) if (mock / "release.json").is_file() else {}
    if (meta.get("n_new_stars"), meta.get("seed")) != (args.n_stars, args.seed):
        t0 = time.perf_counter()
        make_release(mock, args.n_stars, args.seed)
        print(f"mock release: {time.perf_counter() - t0:.1f} s")
        meta = json.loads((mock / "release.json").read_text())
    inner = next(k for k in (128, 64, 32, 16, 8, 4, 2, 1) if args.shard_spectra % k == 0)
    config = work / "config.yaml"
    config.write_text(CONFIG.format(shard=args.shard_spectra, inner=inner, workers=args.workers, mock=mock))

    reference, chaotic = work / "undisturbed", work / "chaos"
    for folder in (reference, chaotic):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()

    t0 = time.perf_counter()
    rc = run_once(config, reference / "cube.zarr", work / "undisturbed.log")
    t_reference = time.perf_counter() - t0
    if rc != 0:
        sys.exit(f"the undisturbed run failed (exit {rc}): see {work / 'undisturbed.log'}")
    n_spectra = xr.open_zarr(str(reference / "cube.zarr")).sizes["spec"]
    n_chunks = -(-n_spectra // args.shard_spectra)
    print(
        f"mock: {args.n_stars} stars (seed {args.seed}), {meta['n_files']} files, {meta['n_valid_files']} valid; "
        f"cube: {n_spectra} spectra in {n_chunks} chunks of {args.shard_spectra}; {args.workers} workers"
    )
    print(f"undisturbed run: {t_reference:.1f} s")

    rng = random.Random(args.rng_seed)
    chaos = Chaos(
        rng=rng,
        kills=args.kills,
        run_kill_after=rng.randint(2, args.kills - 1),
        min_delay=args.min_delay,
        max_delay=args.max_delay,
    )
    print(f"chaos run: {args.kills} worker kills, the whole run killed after {chaos.run_kill_after} of them")
    attempts, reruns = [], 0
    t0 = chaos.t0 = time.perf_counter()
    while True:
        started = time.perf_counter()
        log_file = work / f"chaos-{len(attempts) + 1}.log"
        run_kills_before = len(chaos.run_kills)
        rc = run_once(config, chaotic / "cube.zarr", log_file, chaos)
        attempts.append({"exit": rc, "seconds": round(time.perf_counter() - started, 1), "log": str(log_file)})
        print(f"  run {len(attempts)}: exit {rc} after {attempts[-1]['seconds']:.1f} s ({log_file.name})", flush=True)
        if rc == 0:
            break
        if rc == -signal.SIGKILL and len(chaos.run_kills) > run_kills_before:
            continue  # the whole-run kill: start again on the same cube
        reruns += 1
        if reruns > args.max_reruns:
            sys.exit(f"the chaos run failed {reruns} times: see the logs in {work}")
    t_chaos = time.perf_counter() - t0

    differing = compare_cubes(reference / "cube.zarr", chaotic / "cube.zarr")
    differing_catalogs = compare_catalogs(reference / "catalogs", chaotic / "catalogs")
    n_catalogs = len(list((reference / "catalogs").rglob("*.parquet")))
    per_step: dict[str, int] = {}
    for step, _ in chaos.worker_kills:
        per_step[step] = per_step.get(step, 0) + 1
    identical = not differing and not differing_catalogs and n_catalogs > 0
    result = {
        "n_stars": args.n_stars,
        "seed": args.seed,
        "n_files": meta["n_files"],
        "n_spectra": int(n_spectra),
        "shard_spectra": args.shard_spectra,
        "workers": args.workers,
        "rng_seed": args.rng_seed,
        "worker_kills": len(chaos.worker_kills),
        "worker_kills_per_step": per_step,
        "worker_kill_times_s": [round(t, 1) for _, t in chaos.worker_kills],
        "run_kills": len(chaos.run_kills),
        "run_kill_step": chaos.run_kills[0][0] if chaos.run_kills else None,
        "restarts": len(chaos.run_kills),
        "reruns": reruns,
        "runs": attempts,
        "seconds_undisturbed": round(t_reference, 1),
        "seconds_chaos": round(t_chaos, 1),
        "time_ratio": round(t_chaos / t_reference, 2),
        "identical": identical,
        "differing_variables": differing,
        "differing_catalogs": differing_catalogs,
        "catalogs_compared": n_catalogs,
        "work": str(work),
    }

    print()
    rows = [
        ("spectra", f"{n_spectra} ({n_chunks} chunks per stage, {args.workers} workers)"),
        ("worker kills", f"{len(chaos.worker_kills)} of {args.kills} asked, in {len(per_step)} steps"),
        *((f"  in {step}", str(n)) for step, n in per_step.items()),
        ("whole-run kills", f"{len(chaos.run_kills)}" + (f" (in {chaos.run_kills[0][0]})" if chaos.run_kills else "")),
        ("reruns after a failure", str(reruns)),
        ("wall time undisturbed", f"{t_reference:.1f} s"),
        ("wall time chaos", f"{t_chaos:.1f} s ({t_chaos / t_reference:.2f}x; {len(attempts)} runs)"),
        ("time cost", f"{t_chaos - t_reference:+.1f} s"),
        ("cube identical", "yes" if not differing else f"NO: {', '.join(differing)}"),
        (
            "catalogs identical",
            f"yes ({n_catalogs} parquet)" if not differing_catalogs else f"NO: {', '.join(differing_catalogs)}",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    if len(chaos.worker_kills) < args.kills or not chaos.run_kills:
        print("note: the run ended before every kill was made (a smaller --max-delay or a larger mock helps)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    sys.exit(0 if identical else 1)


if __name__ == "__main__":
    main()
