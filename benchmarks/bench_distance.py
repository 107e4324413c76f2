"""ss.distance.posterior (SPEC §9, §12) against P1's 0.1 pc grid: agreement and speed.

Random stars (distances 0.2–16 kpc, parallax errors 0.01–0.3 mas, 30 % binaries using the parallax alone):
the largest relative difference of the mode and the 16/84 % points, and the largest absolute difference of
logdis and logdis_err, against :func:`survey_scale.science.distance.grid_posterior` on a 0.1 pc grid; then
stars per second of the vectorized posterior and of the grid, in this process (one thread).

    python benchmarks/bench_distance.py --n-check 200 --n-speed 100000
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from survey_scale.science.distance import example_stars, grid_posterior, posterior


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-check", type=int, default=200)
    parser.add_argument("--n-speed", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    stars = example_stars(args.n_check, args.seed)
    got = posterior(**stars)
    t0 = time.perf_counter()
    refs = [grid_posterior(*(stars[k][i] for k in stars)) for i in range(args.n_check)]
    grid_rate = args.n_check / (time.perf_counter() - t0)
    worst = {}
    for key in ("dis", "dis_low", "dis_high"):
        ref = np.array([r[key] for r in refs])
        # relative difference beyond the grid's own 0.1 pc quantization
        worst[key] = float(np.max(np.maximum(np.abs(got[key] - ref) - 0.05, 0) / ref))
    for key in ("logdis", "logdis_err"):
        worst[key] = float(np.max(np.abs(got[key] - np.array([r[key] for r in refs]))))
    print(f"{args.n_check} random stars ({int(stars['binary'].sum())} binaries) vs a 0.1 pc grid:")
    print(
        "  largest relative difference (beyond the grid's 0.05 pc rounding): "
        + ", ".join(f"{k} {100 * worst[k]:.4f} %" for k in ("dis", "dis_low", "dis_high"))
    )
    print(f"  largest absolute difference: logdis {worst['logdis']:.2e} dex, logdis_err {worst['logdis_err']:.2e} dex")
    many = example_stars(args.n_speed, args.seed + 1)
    t0 = time.perf_counter()
    for start in range(0, args.n_speed, 10_000):
        posterior(**{k: v[start : start + 10_000] for k, v in many.items()})
    rate = args.n_speed / (time.perf_counter() - t0)
    ratio = rate / grid_rate
    print(f"speed: {rate:,.0f} stars/s vectorized vs {grid_rate:,.1f} stars/s on the 0.1 pc grid ({ratio:,.0f}x)")


if __name__ == "__main__":
    main()
