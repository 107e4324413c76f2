"""CPU per spectrum of ``survey-scale run``, measured from outside (issue 25): the client process and the Dask
workers apart, per step, at two release sizes, fitted as ``a + b·n`` and projected to 1.2 M spectra.

For each ``--sizes`` (stars; a mock release has ~2.2 spectra per star with its contaminants) a mock release is
written (kept in ``--workdir`` and reused), then:

1. a Dask scheduler and ``--workers`` single-threaded workers are started as processes of their own
   (``dask scheduler`` / ``dask worker --nthreads 1``, on 127.0.0.1 only), with the environment every
   cluster kind of survey_scale gives its workers (:data:`survey_scale.engine.cluster.WORKER_ENV`; with
   ``--dask-malloc-trim``, Dask's own ``MALLOC_TRIM_THRESHOLD_=65536`` instead, to measure what that costs);
2. ``survey-scale run`` runs against them (``cluster.kind: address``) in a fresh cube;
3. a sampler thread reads, every 0.2 s, the CPU seconds (user + system) of the client process and of every
   worker process tree (psutil); after the run each step's interval (its record in the cube's bookkeeping:
   ``finished`` − ``seconds`` .. ``finished``) gives that step's client and worker CPU.

A fixed single-thread matmul workload is timed before, between and after the runs (:func:`reference_seconds`):
its spread shows how much this shared host's speed drifted, and the per-spectrum figures are also given in
its units.

Printed: per size, the CPU seconds per step (client, workers) and in all; then per step and in all the fit
``a + b·n`` (ms of CPU per spectrum for the workers and for the client); per step how busy the workers were
(their CPU over workers × the step's wall time); the peak resident memory of the client and of each worker;
and the projections to 1.2 M spectra — on this machine (all CPU on ``--workers`` cores) and on
``--project-workers`` workers (the client's CPU serial, its MKs error model following the training and test
stars, each capped at ``mks.max_error_stars``; the MKs networks' training, whose CPU follows the training-set
size capped at ``mks.max_train``, on no more workers than it has tasks, :data:`TRAINING_TASKS`; the rest
divided among all). Issue 25's goals: workers ≤ 25 ms, client ≤ 0.3 ms per spectrum.

Run on a quiet machine (set thread counts; nothing else on the cores):

    OMP_NUM_THREADS=1 python benchmarks/bench_cpu.py --sizes 1400 2800 --workdir /tmp/bench_cpu
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import psutil
import yaml

from survey_scale.engine.cluster import WORKER_ENV
from survey_scale.mock import make_release
from survey_scale.science.mks import NETWORKS, TRAINING_FOLDS
from survey_scale.stages.mks import MKsConfig
from survey_scale.store.cube import open_cube

RELEASE = 1_200_000
TRAINING_TASKS = len(NETWORKS) * len(TRAINING_FOLDS)
"""Networks the MKs step trains at once (two kinds, each cross-fitted on its folds)."""


def reference_seconds(repeats: int = 3) -> float:
    """CPU seconds of a fixed single-thread workload shaped like the fit's (torch matmuls of an emulator layer
    over a batch of spectra): the best of ``repeats``. This host's speed drifts by tens of percent; the
    per-spectrum figures are also given in these units, which drift with it."""
    import torch

    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(256, 3800, generator=gen), torch.randn(3800, 300, generator=gen)
    best = np.inf
    for _ in range(repeats):
        t = time.process_time()
        for _ in range(40):
            (a @ b).sum()
        best = min(best, time.process_time() - t)
    return float(best)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_usage(proc: psutil.Process) -> tuple[float, float]:
    """(user + system CPU seconds, resident memory in bytes) of a process and its descendants now (0 for what
    has ended)."""
    cpu = rss = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            cpu += t.user + t.system
            rss += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return cpu, rss


class CpuSampler:
    """Samples, every ``interval`` seconds in a thread, the CPU seconds of the client and of each worker
    (``samples``: time, client, worker 1, …) and their resident memory (``rss``, bytes, the same columns but
    time), and keeps each one's peak (``peak_rss``)."""

    def __init__(self, client: psutil.Process, workers: list[psutil.Process], interval: float = 0.2) -> None:
        self.client, self.workers, self.interval = client, workers, interval
        self.samples: list[tuple[float, ...]] = []
        self.rss: list[tuple[float, ...]] = []
        self.peak_rss = np.zeros(1 + len(workers))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        usage = [tree_usage(p) for p in (self.client, *self.workers)]
        if not self.client.is_running() and self.samples:  # the client has ended: its last CPU reading stays
            usage[0] = (self.samples[-1][1], 0.0)
        self.peak_rss = np.maximum(self.peak_rss, [rss for _, rss in usage])
        self.samples.append((time.time(), *(cpu for cpu, _ in usage)))
        self.rss.append(tuple(rss for _, rss in usage))

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self._sample()
            except psutil.Error:
                pass
            time.sleep(self.interval)

    def close(self) -> np.ndarray:
        self.stop.set()
        self.thread.join()
        return np.array(self.samples)


def start_cluster(n_workers: int, log_dir: Path, dask_malloc_trim: bool = False) -> tuple[str, list[subprocess.Popen]]:
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    if not dask_malloc_trim:
        env.update(WORKER_ENV)
    log = (log_dir / "cluster.log").open("w")
    procs = [
        subprocess.Popen(
            ["dask", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", "127.0.0.1:0"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
    ]  # fmt: skip
    time.sleep(3)
    for _ in range(n_workers):
        procs.append(
            subprocess.Popen(
                ["dask", "worker", address, "--nthreads", "1", "--host", "127.0.0.1", "--dashboard-address",
                 "127.0.0.1:0", "--memory-limit", "0"],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            )
        )  # fmt: skip
    time.sleep(5)
    return address, procs


def step_intervals(cube: Path) -> dict[str, tuple[float, float]]:
    """Each step's (start, end) epoch seconds from its last run record (finished at 1-s resolution)."""
    out = {}
    for path in sorted((cube / "_survey_scale" / "steps").glob("*.json")):
        runs = json.loads(path.read_text()).get("runs") or []
        if runs and "finished" in runs[-1]:
            end = datetime.fromisoformat(runs[-1]["finished"]).timestamp() + 1.0
            out[path.stem] = (end - float(runs[-1].get("seconds", 0.0)) - 1.0, end)
    return dict(sorted(out.items(), key=lambda kv: kv[1][0]))


def measure(stars: int, args: argparse.Namespace) -> dict:
    root = args.workdir / f"stars{stars}"
    mock = root / "mock"
    if not (mock / "catalog.csv").exists():
        make_release(mock, stars, args.seed)
    cube = root / "cube.zarr"
    subprocess.run(["rm", "-rf", str(cube), str(root / "catalogs")], check=True)
    address, procs = start_cluster(args.workers, root, args.dask_malloc_trim)
    config = {
        "cube": {"path": str(cube)},
        "cluster": {"kind": "address", "address": {"scheduler": address}},
        "ingest": {"input": str(mock / "spectra"), "catalog": str(mock / "catalog.csv"),
                   "crossmatch": str(mock / "crossmatch.parquet")},
        "export": {"out": str(root / "catalogs")},
        "runner": {"progress": False},
    }  # fmt: skip
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    try:
        workers = [psutil.Process(p.pid) for p in procs[1:]]
        client = psutil.Popen(
            [sys.executable, "-m", "survey_scale.cli", "run", "--config", str(root / "config.yaml")],
            stdout=(root / "run.log").open("w"), stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
        sampler = CpuSampler(client, workers)
        start = time.time()
        rc = client.wait()
        wall = time.time() - start
        samples = sampler.close()
        if rc != 0:
            raise SystemExit(f"survey-scale run failed (rc {rc}); see {root / 'run.log'}")
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
    t, client_cpu, per_worker = samples[:, 0], samples[:, 1], samples[:, 2:]
    rss = np.array(sampler.rss)
    worker_cpu = per_worker.sum(1)
    steps = {}
    for name, (lo, hi) in step_intervals(cube).items():
        c0, c1 = np.interp([lo, hi], t, client_cpu)
        each = [float(np.diff(np.interp([lo, hi], t, w))[0]) for w in per_worker.T]
        # how busy the workers were: their CPU over (workers × the step's wall time); 1 = every core all along
        steps[name] = {"client_s": c1 - c0, "workers_s": sum(each), "each_worker_s": each,
                       "utilization": sum(each) / (len(each) * max(hi - lo, 1e-9))}  # fmt: skip
        inside = (t >= lo) & (t <= hi)
        if inside.any():  # the step's peak resident memory: the client's, and the largest worker's
            steps[name]["peak_rss_client_mb"] = float(rss[inside, 0].max() / 2**20)
            steps[name]["peak_rss_worker_mb"] = float(rss[inside, 1:].max() / 2**20)
    reductions = open_cube(cube).attrs.get("reductions", {})
    reductions = json.loads(reductions) if isinstance(reductions, str) else reductions
    return {
        "stars": stars,
        "n_spectra": int(open_cube(cube).sizes["spec"]),
        "n_mks_train": int(reductions.get("mks_model", {}).get("n_train_before_binary_cuts", 0)),
        "n_mks_test": int(reductions.get("mks_model", {}).get("n_test", 0)),
        "wall_s": wall,
        "client_s": float(client_cpu[-1] - client_cpu[0]),
        "workers_s": float(worker_cpu[-1] - worker_cpu[0]),
        "peak_rss_client_mb": float(sampler.peak_rss[0] / 2**20),
        "peak_rss_workers_mb": [float(x / 2**20) for x in sampler.peak_rss[1:]],
        "steps": steps,
    }


def linear(n: list[int], y: list[float]) -> tuple[float, float]:
    """(a, b) of y = a + b·n through two or more sizes (least squares)."""
    b, a = np.polyfit(np.asarray(n, float), np.asarray(y, float), 1)
    return float(a), float(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1400, 2800], help="stars per mock release")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--dask-malloc-trim",
        action="store_true",
        help="workers with Dask's MALLOC_TRIM_THRESHOLD_=65536 (as before issue 25) instead of WORKER_ENV",
    )
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=Path("bench_cpu"))
    parser.add_argument("--project-workers", type=int, default=320)
    parser.add_argument("--json", type=Path, help="write the measurements and projections here")
    parser.add_argument("--replay", type=Path, help="print the figures of an earlier --json instead of measuring")
    args = parser.parse_args()
    if len(args.sizes) < 2 and not args.replay:
        parser.error("--sizes needs two or more sizes for the a + b·n fit")
    if args.replay:
        earlier = json.loads(args.replay.read_text())
        runs, reference = earlier["runs"], earlier["reference_s"]
    else:
        args.workdir.mkdir(parents=True, exist_ok=True)
        reference = [reference_seconds()]
        runs = []
        for stars in args.sizes:
            runs.append(measure(stars, args))
            reference.append(reference_seconds())
        if args.json:  # the measurements first: the figures below can be printed again with --replay
            args.json.write_text(json.dumps({"runs": runs, "reference_s": reference}, indent=1))
    n = [r["n_spectra"] for r in runs]
    for r in runs:
        print(f"{r['n_spectra']:,} spectra ({r['stars']:,} stars): wall {r['wall_s']:.0f} s, CPU client "
              f"{r['client_s']:.1f} s, workers {r['workers_s']:.1f} s")  # fmt: skip
    print(f"\n{'step':<14}" + "".join(f"{'client/workers s @' + format(x, ','):>26}" for x in n)
          + f"{'client ms/sp':>14}{'workers ms/sp':>15}")  # fmt: skip
    names = [s for s in runs[-1]["steps"] if all(s in r["steps"] for r in runs)]
    fits = {}
    for name in [*names, "all"]:
        cells, client, workers = [], [], []
        for r in runs:
            c = r["client_s"] if name == "all" else r["steps"][name]["client_s"]
            w = r["workers_s"] if name == "all" else r["steps"][name]["workers_s"]
            cells.append(f"{c:.1f} / {w:.1f}")
            client.append(c)
            workers.append(w)
        fits[name] = {"client": linear(n, client), "workers": linear(n, workers)}
        print(f"{name:<14}" + "".join(f"{c:>26}" for c in cells)
              + f"{1e3 * fits[name]['client'][1]:>14.2f}{1e3 * fits[name]['workers'][1]:>15.2f}")  # fmt: skip
    print(f"\n{'step':<14}" + "".join(f"{'worker use @' + format(x, ','):>20}" for x in n)
          + "   (worker CPU / (workers x step wall): 1 = every core busy all along)")  # fmt: skip
    for name in names:
        print(f"{name:<14}" + "".join(f"{r['steps'][name]['utilization']:>20.2f}" for r in runs))
    print(f"\n{'step':<14}" + "".join(f"{'peak MB client/worker @' + format(x, ','):>32}" for x in n))
    for name in names:
        cells = [
            f"{r['steps'][name]['peak_rss_client_mb']:.0f} / {r['steps'][name]['peak_rss_worker_mb']:.0f}"
            if "peak_rss_worker_mb" in r["steps"][name]
            else "-"
            for r in runs
        ]
        print(f"{name:<14}" + "".join(f"{c:>32}" for c in cells))
    for r in runs:
        print(f"peak memory @ {r['n_spectra']:,} spectra: client {r['peak_rss_client_mb']:.0f} MB, workers "
              + ", ".join(f"{m:.0f}" for m in r["peak_rss_workers_mb"]) + " MB")  # fmt: skip

    (ca, cb), (wa, wb) = fits["all"]["client"], fits["all"]["workers"]
    # The MKs networks train on at most mks.max_train spectra, in TRAINING_TASKS tasks at a time: their CPU
    # follows the training-set size (capped), and on a cluster they use no more workers than there are tasks.
    max_train = MKsConfig().max_train
    mks_cpu = {"a": 0.0, "per_train": 0.0, "release_s": 0.0}
    if "mks_model" in fits and all(r["n_mks_train"] for r in runs):
        a_m, b_m = linear([r["n_mks_train"] for r in runs], [r["steps"]["mks_model"]["workers_s"] for r in runs])
        n_train = min(max_train, runs[-1]["n_mks_train"] / n[-1] * RELEASE)
        linear_s = fits["mks_model"]["workers"][0] + fits["mks_model"]["workers"][1] * RELEASE
        mks_cpu = {"a": a_m, "per_train": b_m, "n_train": n_train, "release_s": a_m + b_m * n_train}
        mks_cpu["linear_s"] = linear_s
    other_s = wa + wb * RELEASE - mks_cpu.get("linear_s", 0.0)
    # The client's MKs work (the error model's maximum-likelihood fits and MCMC) follows the training and test
    # stars, each capped at mks.max_error_stars (the training set itself at mks.max_train)
    client_mks = {"release_s": 0.0, "linear_s": 0.0}
    if "mks_model" in fits and all(r.get("n_mks_test") for r in runs):
        cap = MKsConfig().max_error_stars
        stars = [r["n_mks_train"] + r["n_mks_test"] for r in runs]
        a_c, b_c = linear(stars, [r["steps"]["mks_model"]["client_s"] for r in runs])
        n_test = runs[-1]["n_mks_test"] / n[-1] * RELEASE
        n_error = min(cap, mks_cpu.get("n_train", 0.0)) + min(cap, n_test)
        client_mks = {"a": a_c, "per_star": b_c, "n_error_stars": n_error, "release_s": a_c + b_c * n_error}
        client_mks["linear_s"] = fits["mks_model"]["client"][0] + fits["mks_model"]["client"][1] * RELEASE
    client_s = ca + cb * RELEASE - client_mks["linear_s"] + client_mks["release_s"]
    here = (client_s + other_s + mks_cpu["release_s"]) / args.workers
    cluster = (
        client_s + other_s / args.project_workers + mks_cpu["release_s"] / min(args.project_workers, TRAINING_TASKS)
    )
    print(f"\nall steps: client {1e3 * cb:.2f} ms/spectrum + {ca:.0f} s, workers {1e3 * wb:.2f} ms/spectrum + "
          f"{wa:.0f} s (goals: client <= 0.3 ms, workers <= 25 ms)")  # fmt: skip
    unit = float(np.mean(reference))
    print(f"reference workload: {', '.join(f'{r:.2f}' for r in reference)} s (before, between and after the runs; "
          f"its spread is this host's speed drift); workers {wb / unit * 1e3:.1f} and client {cb / unit * 1e3:.2f} "
          "reference workloads per 1,000 spectra")  # fmt: skip
    if "n_train" in mks_cpu:
        print(f"MKs networks: {1e3 * mks_cpu['per_train']:.0f} ms of worker CPU per training spectrum "
              f"({', '.join(str(r['n_mks_train']) for r in runs)} training spectra); at 1.2 M spectra "
              f"{mks_cpu['n_train']:,.0f} training spectra (mks.max_train {max_train:,}): "
              f"{mks_cpu['release_s'] / 3600:.1f} h of CPU in {TRAINING_TASKS} parallel tasks, "
              f"{mks_cpu['release_s'] / TRAINING_TASKS / 60:.0f} min of wall on any cluster")  # fmt: skip
    if "n_error_stars" in client_mks:
        print(f"MKs error model on the client: {1e3 * client_mks['per_star']:.2f} ms per training + test star; at "
              f"1.2 M spectra {client_mks['n_error_stars']:,.0f} of them (each kind capped at mks.max_error_stars "
              f"{MKsConfig().max_error_stars:,}): {client_mks['release_s'] / 60:.1f} min (a straight line in the "
              f"spectra would say {client_mks['linear_s'] / 60:.1f} min); the client in all {client_s / 60:.1f} min, "
              f"{1e3 * client_s / RELEASE:.2f} ms per spectrum")  # fmt: skip
    workers_release = (other_s + mks_cpu["release_s"]) / RELEASE
    print(f"workers at 1.2 M spectra: {1e3 * workers_release:.1f} ms of CPU per spectrum (the slope above with the "
          "MKs training at its mks.max_train cap; goal <= 25 ms)")  # fmt: skip
    print(f"1.2 M spectra projected: {here / 3600:.1f} h on this machine ({args.workers} cores; goal <= 4 h), "
          f"{cluster / 60:.0f} min on {args.project_workers} workers (goal <= 10 min; the client's CPU serial, the "
          f"MKs training on {TRAINING_TASKS} workers, the rest spread over all)")  # fmt: skip
    if args.json:
        result = {"runs": runs, "fits": fits, "reference_s": reference, "projected_here_h": here / 3600,
                  "projected_cluster_min": cluster / 60, "workers_ms_at_release": 1e3 * workers_release,
                  "mks_training": mks_cpu, "mks_client": client_mks}  # fmt: skip
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
