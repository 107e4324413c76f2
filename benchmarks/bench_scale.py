"""Scale evidence (SPEC §11): the whole pipeline on mock releases of growing size, memory per stage, and the
projected wall time of a 1.2-million-spectrum release.

For each ``--sizes`` (spectra): a mock release (``survey_scale.mock``; about 1.55 visits per star) is
written, ingested and run through every step of ``survey-scale run`` on a local Dask cluster of
``--workers`` single-threaded worker processes, with

- Dask's ``MemorySampler`` (process memory of the workers, sampled every 0.5 s) around each step: the
  peak per worker (the cluster's peak divided by the number of workers) — flat across sizes is the goal;
- the client process's resident memory (it trains the MKs networks and folds the reductions);
- each step's wall time and spectra per second.

Then each step's time is fitted as ``a + b·n`` over the sizes, and the whole run is projected to 1.2 M
spectra on this machine and on ``--nodes`` nodes of ``--cores`` cores (one worker per core): the per-spectrum
part ``b·n`` of a distributed step divides by the number of workers, its fixed part ``a`` does not, and the
steps that run in the client (the MKs training, the emulator) do not scale at all.

``--append N``: a release of N spectra, run; then a second release with 20 % more spectra (new stars and new
visits of old ones) appended and run — its time against a full run of both releases in a fresh cube — and
every per-spectrum result of the old spectra compared bit for bit (the survey-wide reductions, uniqflag,
chi2ratio and the calibrated errors, are redone with the new spectra by design).

Run on a quiet machine (nothing else using the cores):

    python benchmarks/bench_scale.py --sizes 10000 40000 160000 --append 40000
"""

from __future__ import annotations

import argparse
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from distributed import Client, LocalCluster
from distributed.diagnostics import MemorySampler

from survey_scale.config import load_config
from survey_scale.mock import make_release
from survey_scale.pipeline import run_pipeline_with_client
from survey_scale.store.cube import create_cube, open_cube

HERE = Path(__file__).resolve().parent
VISITS_PER_STAR = 1.55
SERIAL_STEPS = ("emulator", "mks_model")
"""Steps whose work runs in the client process (they do not speed up with more workers)."""
KEPT_RESULTS = (
    "norm_flux", "pca_flux", "em_flag", "labels", "label_err", "label_cov", "chi2_red",
    "model_flux", "ebv", "aks", "mks_geo", "mks", "mks_err", "parallax_s", "binary_flag", "dis", "dis_low", "X",
)  # fmt: skip


class ClientMemory:
    """Peak resident memory of this process per label, sampled by a thread."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval, self.label, self.peaks = interval, None, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        process = psutil.Process()
        while not self._stop.wait(self.interval):
            if self.label is not None:
                self.peaks[self.label] = max(self.peaks.get(self.label, 0), process.memory_info().rss)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def pipeline_config(workdir: Path, release: Path, emulator: str | None, workers: int):
    values = {
        "cube.path": str(workdir / "cube.zarr"),
        "ingest.input": str(release / "spectra"),
        "ingest.catalog": str(release / "catalog.csv"),
        "ingest.crossmatch": str(release / "crossmatch.parquet"),
        "cluster.local.n_workers": workers,
        "runner.progress": False,
        "emulator.path": emulator,
    }
    return load_config(None, values)


def run_measured(config, client: Client, client_memory: ClientMemory) -> tuple[dict, dict, dict]:
    """Run the pipeline; per step: seconds, the workers' peak process memory (sum), the client's peak RSS."""
    sampler = MemorySampler()

    def sample(name: str):
        client_memory.label = name
        return sampler.sample(name, client=client, measure="process", interval=0.5)

    if not Path(config.cube.path).exists():  # the second release of an append goes into the same cube
        create_cube(config.cube.path, config.cube)
    summary = run_pipeline_with_client(config, client, progress=False, step_context=sample)
    client_memory.label = None
    frame = sampler.to_pandas(align=False)
    peaks = {name: float(frame[name].max()) for name in frame.columns}
    return summary.seconds, peaks, dict(client_memory.peaks)


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).rjust(w) for c, w in zip(r, widths)) for r in [header, *rows]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def scale_runs(args: argparse.Namespace, client: Client, client_memory: ClientMemory) -> None:
    measured = {}
    for size in args.sizes:
        workdir = args.out / f"scale-{size}"
        shutil.rmtree(workdir, ignore_errors=True)
        t0 = time.perf_counter()
        release = make_release(workdir / "mock", round(size / VISITS_PER_STAR), seed=args.seed, release="SCALE")
        mock_s = time.perf_counter() - t0
        config = pipeline_config(workdir, release.outdir, args.emulator, args.workers)
        seconds, peaks, client_peaks = run_measured(config, client, client_memory)
        n = open_cube(config.cube.path).sizes["spec"]
        measured[size] = (n, seconds, peaks, client_peaks)
        print(f"\n== {n:,} spectra ({release.n_stars:,} stars; mock written in {mock_s:.0f} s) ==")
        rows = [
            [
                step,
                f"{s:.1f}",
                f"{n / s:,.0f}" if s > 0 else "-",
                f"{peaks.get(step, np.nan) / args.workers / 2**20:,.0f}",
                f"{client_peaks.get(step, 0) / 2**20:,.0f}",
            ]
            for step, s in seconds.items()
        ]
        rows.append(["total", f"{sum(seconds.values()):.1f}", f"{n / sum(seconds.values()):,.1f}", "", ""])
        print(table(rows, ["step", "seconds", "spectra/s", "peak MiB/worker", "client peak MiB"]))

    sizes = sorted(measured)
    steps = list(measured[sizes[-1]][1])
    print("\n== peak process memory per worker (MiB) by size: flat means bounded by the chunk, not the cube ==")
    rows = [
        [step, *(f"{measured[s][2].get(step, np.nan) / args.workers / 2**20:,.0f}" for s in sizes)] for step in steps
    ]
    print(table(rows, ["step", *(f"{measured[s][0]:,}" for s in sizes)]))
    if len(sizes) < 2:
        return
    n_values = np.array([measured[s][0] for s in sizes], float)
    total_here, total_nodes = 0.0, 0.0
    workers_nodes = args.nodes * args.cores
    rows = []
    for step in steps:
        t = np.array([measured[s][1].get(step, 0.0) for s in sizes])
        b, a = np.polyfit(n_values, t, 1)
        a, b = max(a, 0.0), max(b, 0.0)
        here = a + b * args.project
        nodes = here if step in SERIAL_STEPS else a + b * args.project * args.workers / workers_nodes
        total_here, total_nodes = total_here + here, total_nodes + nodes
        rows.append([step, f"{a:.1f}", f"{b * 1e3:.3f}", f"{here / 3600:.2f}", f"{nodes / 3600:.2f}"])
    rows.append(["total", "", "", f"{total_here / 3600:.2f}", f"{total_nodes / 3600:.2f}"])
    print(
        f"\n== projection to {args.project:,} spectra: t = a + b n per step; this machine ({args.workers} workers) "
        f"and {args.nodes} nodes x {args.cores} cores ({workers_nodes} workers) =="
    )
    print(table(rows, ["step", "a (s)", "b (ms/spectrum)", "hours here", f"hours on {args.nodes} nodes"]))


def append_run(args: argparse.Namespace, client: Client, client_memory: ClientMemory) -> None:
    workdir = args.out / f"append-{args.append}"
    shutil.rmtree(workdir, ignore_errors=True)
    first = make_release(workdir / "mock1", round(args.append / VISITS_PER_STAR), seed=args.seed, release="REL1")
    config = pipeline_config(workdir / "incremental", first.outdir, args.emulator, args.workers)
    seconds_first, _, _ = run_measured(config, client, client_memory)
    before = open_cube(config.cube.path)
    n_old = before.sizes["spec"]
    old = {name: before[name].values.copy() for name in KEPT_RESULTS if name in before}
    # 20 % more spectra: 5 % of the old stars revisited (1-2 visits each), the rest from new stars
    revisits = 0.05 * first.n_stars * 1.5
    second = make_release(
        workdir / "mock2",
        round((0.2 * n_old - revisits) / VISITS_PER_STAR),
        seed=args.seed + 1,
        release="REL2",
        previous=first.outdir,
        revisit_fraction=0.05,
    )
    config2 = pipeline_config(workdir / "incremental", second.outdir, args.emulator, args.workers)
    seconds_append, _, _ = run_measured(config2, client, client_memory)
    after = open_cube(config2.cube.path)
    n_new = after.sizes["spec"] - n_old
    changed = [
        name for name, values in old.items() if not np.array_equal(after[name].values[:n_old], values, equal_nan=True)
    ]

    # the same two releases in a fresh cube, in one go (both ingested, then one run)
    fresh = pipeline_config(workdir / "fresh", first.outdir, args.emulator, args.workers)
    create_cube(fresh.cube.path, fresh.cube)
    t0 = time.perf_counter()
    run_pipeline_with_client(fresh, client, progress=False, until="ingest")
    fresh2 = pipeline_config(workdir / "fresh", second.outdir, args.emulator, args.workers)
    seconds_fresh, _, _ = run_measured(fresh2, client, client_memory)
    full = time.perf_counter() - t0
    incremental = sum(seconds_append.values())
    print(f"\n== append: {n_new:,} new spectra ({100 * n_new / n_old:.0f} %) on {n_old:,} ==")
    rows = [[step, f"{seconds_append[step]:.1f}", f"{seconds_fresh.get(step, 0.0):.1f}"] for step in seconds_append]
    rows.append(["total", f"{incremental:.1f}", f"{full:.1f}"])
    print(table(rows, ["step", "append run (s)", "full run of both (s)"]))
    print(f"append / full = {incremental / full:.3f} ({full / incremental:.1f}x faster); first release alone: "
          f"{sum(seconds_first.values()):.1f} s")  # fmt: skip
    print(
        "old spectra's per-spectrum results unchanged bit for bit: "
        + ("yes, all of " + ", ".join(old) if not changed else f"NO: {', '.join(changed)} changed")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 40_000, 160_000], help="spectra per mock")
    parser.add_argument("--append", type=int, default=0, help="also measure an append of 20 %% to N spectra")
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes (one thread each)")
    parser.add_argument("--emulator", help="emulator file (default: the configuration's default)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--project", type=int, default=1_200_000, help="spectra of the projected release")
    parser.add_argument("--nodes", type=int, default=10, help="nodes of the projected cluster")
    parser.add_argument("--cores", type=int, default=32, help="cores per node of the projected cluster")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "scale")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    client_memory = ClientMemory()
    with (
        LocalCluster(n_workers=args.workers, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        if args.sizes:
            scale_runs(args, client, client_memory)
        if args.append:
            append_run(args, client, client_memory)
    client_memory.close()


if __name__ == "__main__":
    main()
