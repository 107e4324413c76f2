"""Emulator training time and validation precision for both architectures (SPEC §5.1, P2 Fig. 6).

Trains the per-pixel (P2) and the shared network on a model grid — a file (``--grid path.npz``, the format
of :mod:`survey_scale.science.model_grid`) or the analytic toy grid — and prints the training time, the number of
steps, why training stopped and the validation precision (σ of emulator − model flux over all pixels and
where flux < 0.95; P2: 0.165 % and 0.586 %). Also times the Jacobian (analytic blockwise vs autograd
forward mode) of each trained network.

Examples::

    PYTHONPATH=. python benchmarks/bench_emulator.py --n-grid 3000 --max-time 120
    PYTHONPATH=. python benchmarks/bench_emulator.py --grid grid.npz --arch shared --save-dir /tmp/em

Timings on a shared machine are noisy: compare figures of one run, not across runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the toy grid lives in the test suite (tests/toy_grid.py)

from survey_scale.science import emulator as E  # noqa: E402
from survey_scale.science.model_grid import load_model_grid  # noqa: E402
from tests.toy_grid import toy_model_grid  # noqa: E402


def jacobian_timing(em: E.Emulator, n: int, device: str | None, repeat: int = 3) -> dict[str, float]:
    """Seconds per spectrum of the analytic and the autograd (forward-mode torch.func.jvp) Jacobian."""
    x = torch.from_numpy(np.random.default_rng(0).uniform(-0.4, 0.4, (n, em.n_labels))).float()
    x = x.to(E.resolve_device(device))
    out = {}
    for method in ("analytic", "autograd"):
        em.jacobian_torch(x[:2], method=method)  # warm-up (caches the kernel layout)
        best = np.inf
        for _ in range(repeat):
            t = time.perf_counter()
            em.jacobian_torch(x, method=method)
            if x.device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t)
        out[method] = best / n
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", help="model grid .npz (default: the analytic toy grid)")
    ap.add_argument("--n-grid", type=int, default=3000, help="spectra of the toy grid (default 3000)")
    ap.add_argument("--arch", choices=["perpixel", "shared", "both"], default="both")
    ap.add_argument("--hidden-perpixel", type=int, nargs="+", help="default: (100, 100)")
    ap.add_argument("--hidden-shared", type=int, nargs="+", help="default: (300, 300, 300)")
    ap.add_argument("--activation", choices=list(E.ACTIVATIONS), help="default: the architecture's default")
    ap.add_argument("--epochs", type=int, default=2000)
    ap.add_argument("--max-time", type=float, default=300.0, help="seconds per architecture (default 300)")
    ap.add_argument("--patience", type=int, default=40)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--device", default=None, help="torch device (default: CUDA if available, else CPU)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-dir", help="write the trained emulators here (emulator_<arch>.npz)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    t = time.perf_counter()
    grid = load_model_grid(args.grid) if args.grid else toy_model_grid(args.n_grid, seed=args.seed)
    source = args.grid or f"toy_model_grid(n={args.n_grid}, seed={args.seed})"
    print(
        f"grid: {source}: {grid.n_spectra} spectra × {grid.wave.size} pixels, {len(grid.label_names)} labels "
        f"({time.perf_counter() - t:.1f} s to make/read)"
    )
    dev = E.resolve_device(args.device)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {dev}")
    archs = ["perpixel", "shared"] if args.arch == "both" else [args.arch]
    results = {}
    for arch in archs:
        hidden = (args.hidden_perpixel if arch == "perpixel" else args.hidden_shared) or E.DEFAULT_HIDDEN[arch]
        em = E.train(
            grid,
            arch,
            hidden=hidden,
            activation=args.activation,
            epochs=args.epochs,
            max_time=args.max_time,
            patience=args.patience,
            lr=args.lr,
            batch_size=args.batch_size,
            device=args.device,
            seed=args.seed,
        )
        m = em.meta
        if args.save_dir:
            path = em.save(Path(args.save_dir) / f"emulator_{arch}.npz")
            print(f"  saved {path}")
        jt = jacobian_timing(em, 64, args.device)
        results[arch] = {
            "hidden": list(hidden),
            "activation": em.activation,
            "train_seconds": m["train_seconds"],
            "n_steps": m["n_steps"],
            "n_epochs": m["n_epochs"],
            "stop_reason": m["stop_reason"],
            "valid_sigma": m["valid_sigma"],
            "valid_sigma_deep": m["valid_sigma_deep"],
            "valid_sigma_gauss": m["valid_sigma_gauss"],
            "valid_sigma_deep_gauss": m["valid_sigma_deep_gauss"],
            "jacobian_s_per_spectrum": jt,
        }
        print(
            f"\n[{arch}] hidden {tuple(hidden)} {em.activation}: trained {m['train_seconds']:.1f} s, "
            f"{m['n_steps']} steps = {m['n_epochs']:.1f} epochs, stopped by {m['stop_reason']}"
        )
        print(
            f"  validation σ: all pixels {100 * m['valid_sigma']:.3f} % (Gaussian core "
            f"{100 * m['valid_sigma_gauss']:.3f} %), flux < 0.95 {100 * m['valid_sigma_deep']:.3f} % "
            f"(core {100 * m['valid_sigma_deep_gauss']:.3f} %)   [P2: 0.165 % / 0.586 %]"
        )
        print(
            f"  Jacobian per spectrum: analytic {1e3 * jt['analytic']:.2f} ms, autograd (forward-mode jvp) "
            f"{1e3 * jt['autograd']:.2f} ms → analytic {jt['autograd'] / jt['analytic']:.1f}× faster"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"grid": source, "results": results}, indent=2))


if __name__ == "__main__":
    main()
