"""The three-layer plateau of the shared sigmoid emulator, before and after the initialization fix (SPEC §5.1).

Trains the same network (default: three layers of 300 sigmoid units, Adam 1e-3, batch 256, the early-stopping
schedule) on a model grid twice, with ``init="uniform"`` (±1/√fan_in, torch's default: the weights before
the fix) and ``init="scaled"`` (the data-dependent initialization, now the default), for a fixed number of
epochs, and prints the validation σ every ``--every`` epochs, the number of epochs spent at the mean spectrum
(validation σ above 0.98 of the mean spectrum's) and the final precision overall and where flux < 0.95.

Examples::

    PYTHONPATH=. python benchmarks/eval_emulator_plateau.py --n-grid 4000 --epochs 200
    PYTHONPATH=. python benchmarks/eval_emulator_plateau.py --grid grid.npz --epochs 60 --threads 1

A grid of ``--n-grid`` spectra is synthesized with ``--grid-seed`` (the demo's grid: 4,000, seed 0; the
pipeline's: 10,000, seed 0) unless ``--grid`` gives a file.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

from survey_scale.science import emulator as E
from survey_scale.science.model_grid import load_model_grid
from survey_scale.synth import make_model_grid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", help="model grid .npz (default: synthesize one)")
    ap.add_argument("--n-grid", type=int, default=4000, help="spectra of the synthesized grid (default 4000)")
    ap.add_argument("--grid-seed", type=int, default=0)
    ap.add_argument("--hidden", type=int, nargs="+", default=[300, 300, 300])
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--every", type=int, default=10, help="print the validation σ every this many epochs")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--json", help="also write the per-epoch validation σ to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    grid = load_model_grid(args.grid) if args.grid else make_model_grid(args.n_grid, args.grid_seed)
    print(f"grid: {args.grid or f'make_model_grid({args.n_grid}, {args.grid_seed})'}: {grid.n_spectra} spectra")
    mean_sigma = float(np.std(grid.flux - grid.flux.mean(0)))
    print(f"mean spectrum: σ {100 * mean_sigma:.3f} %; network {tuple(args.hidden)}, {args.epochs} epochs")
    out = {}
    for init in ("uniform", "scaled"):
        t0 = time.perf_counter()
        em = E.train(
            grid,
            "shared",
            hidden=args.hidden,
            epochs=args.epochs,
            patience=args.epochs,  # run every epoch: the comparison is at a fixed budget
            lr=args.lr,
            batch_size=args.batch_size,
            init=init,
            seed=0,
        )
        sigma = [math.sqrt(v) for _, v in em.meta["history"]]
        at_mean = sum(s > 0.98 * mean_sigma for s in sigma)
        shown = " ".join(f"{100 * s:.2f}" for s in sigma[args.every - 1 :: args.every])
        print(
            f"init={init:8s} σ every {args.every} epochs (%): {shown}\n"
            f"               epochs no better than the mean spectrum: {at_mean}; "
            f"final {100 * em.meta['valid_sigma']:.3f} % overall, {100 * em.meta['valid_sigma_deep']:.3f} % "
            "where flux < 0.95; "
            f"{time.perf_counter() - t0:.0f} s"
        )
        out[init] = {"sigma": sigma, "epochs_at_mean": at_mean}
        out[init].update({k: em.meta[k] for k in ("valid_sigma", "valid_sigma_deep")})
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"mean_sigma": mean_sigma, "runs": out}, fh, indent=1)


if __name__ == "__main__":
    main()
