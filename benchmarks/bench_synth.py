"""Benchmark of the built-in synthesizer (SPEC §10): spectra per second and model-grid build time.

Run from the repository root::

    PYTHONPATH=. python benchmarks/bench_synth.py [--n 2000] [--grid-n 10000] [--repeat 3] [--seed 0]

Prints the throughput of ``synthesize`` for normalized and flux spectra of ``--n`` stars drawn like the
model grid (best and median of ``--repeat`` runs) and the wall time of ``make_model_grid(--grid-n)``. The
machine load is printed too: on a shared machine the numbers are only as good as the idle CPU behind them.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from survey_scale.synth import make_model_grid, sample_labels, synthesize


def _timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=2000, help="spectra per synthesize() call (default 2000)")
    parser.add_argument("--grid-n", type=int, default=10000, help="spectra in the model grid (default 10000)")
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the label draws (default 0)")
    args = parser.parse_args(argv)

    print(f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
          f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    labels = sample_labels(args.n, np.random.default_rng(args.seed))
    synthesize(labels[:8])  # builds the cached fine grid and curve-of-growth table
    for kind in ("normalized", "flux"):
        times = _timed(lambda kind=kind: synthesize(labels, kind=kind), args.repeat)
        rates = args.n / np.array(times)
        print(f"synthesize(kind={kind!r:12s}) n={args.n}: best {rates.max():7.0f} spectra/s, "
              f"median {np.median(rates):7.0f} spectra/s ({min(times):.2f}-{max(times):.2f} s per call)")
    start = time.perf_counter()
    grid = make_model_grid(args.grid_n, args.seed)
    elapsed = time.perf_counter() - start
    print(f"make_model_grid(n={args.grid_n}): {elapsed:.1f} s ({args.grid_n / elapsed:.0f} spectra/s incl. "
          f"normalization), flux {grid.flux.shape} {grid.flux.dtype}")
    print(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
