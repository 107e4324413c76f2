"""Throughput of the batched fit against the per-spectrum ``curve_fit`` loop, and its FLOP rate.

For each architecture (per-pixel P2 network and the shared network) the benchmark

1. takes an emulator (``--emulator-perpixel/--emulator-shared PATH``, or trains one briefly on the toy grid
   with ``--train-time`` seconds: the fit's cost depends on the network size, not on how well it was
   trained),
2. makes ``--n`` spectra from it (labels uniform in the inner 80 % of the grid, Gaussian noise at
   ``--snr``) and masks the §5.3 fit windows,
3. times :func:`survey_scale.science.fitting.fit_spectra` from the grid centre → spectra/s,
4. times ``scipy.optimize.curve_fit(method='trf')`` one spectrum at a time on a subset (``--n-ref``) with
   the emulator's float64 numpy forward (as the public Payne code fits), same start, same bounds → spectra/s
   extrapolated, the speed-up, and how often curve_fit found a χ² lower than ours by > 0.1 %,
5. reports the LM loop's achieved matmul FLOP rate (forward + Jacobian + normal equations per evaluated
   spectrum, :func:`survey_scale.science.fitting.flops_per_evaluation`) against the fp32 matmul peak measured in
   the same run (a 2048³ ``torch.mm``, best of several, before and after).

Examples::

    PYTHONPATH=. python benchmarks/bench_fit.py                   # both architectures, 2000 spectra
    PYTHONPATH=. python benchmarks/bench_fit.py --arch shared --n 5000 --device cuda

Timings on a shared machine are noisy: compare figures of one run, not across runs. When other processes
load the cores, ``--threads 1`` avoids OpenMP threads waiting on a descheduled sibling (measured here: 25×
slower with 2 threads while another process held one of the 2 cores).
"""

from __future__ import annotations

import os
import sys

if "--threads" in sys.argv:
    # numpy's BLAS (the curve_fit loop's forward) reads its thread count at import: set it first, so that
    # both sides of the comparison use the same number of threads
    _n = sys.argv[sys.argv.index("--threads") + 1]
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = _n

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import curve_fit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the toy grid lives in the test suite (tests/toy_grid.py)

from survey_scale.core.masks import FIT_WINDOWS, window_mask  # noqa: E402
from survey_scale.science import emulator as E  # noqa: E402
from survey_scale.science import fitting as F  # noqa: E402
from tests.toy_grid import toy_model_grid  # noqa: E402


def matmul_peak(device: torch.device, size: int = 2048, repeat: int = 5) -> float:
    """Best fp32 GFLOP/s of a size³ matrix product on ``device``."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    best = np.inf
    for _ in range(repeat + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(3):
            a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t) / 3)
    return 2.0 * size**3 / best / 1e9


def get_emulator(arch: str, path: str | None, train_time: float, device: str | None) -> E.Emulator:
    if path:
        return E.load(path)
    hidden = E.DEFAULT_HIDDEN[arch]
    grid = toy_model_grid(1000 if arch == "perpixel" else 3000, seed=1)
    return E.train(
        grid,
        arch,
        hidden=hidden,
        epochs=10_000,
        max_time=train_time,
        patience=1000,
        lr=2e-3,
        batch_size=64 if arch == "perpixel" else 128,
        device=device,
        seed=0,
    )


def curve_fit_loop(em: E.Emulator, flux: np.ndarray, ivar: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-spectrum TRF fits with the float64 numpy forward; returns the scaled labels and the seconds."""
    out = np.empty((flux.shape[0], em.n_labels))
    t = time.perf_counter()
    for i in range(flux.shape[0]):
        good = ~mask & (ivar[i] > 0)
        sigma = 1.0 / np.sqrt(ivar[i][good])

        def model(_, *p, good=good):
            return em.forward_numpy(np.asarray(p))[good]

        out[i], _ = curve_fit(
            model,
            None,
            flux[i][good].astype(np.float64),
            p0=np.zeros(em.n_labels),
            sigma=sigma,
            bounds=(-0.5, 0.5),
            method="trf",
        )
    return out, time.perf_counter() - t


def chi2_numpy(em: E.Emulator, x: np.ndarray, flux: np.ndarray, ivar: np.ndarray, mask: np.ndarray) -> np.ndarray:
    w = np.where(mask, 0.0, ivar.astype(np.float64))
    return np.array([np.sum(w[i] * (flux[i] - em.forward_numpy(x[i])) ** 2) for i in range(x.shape[0])])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="spectra for fit_spectra (default 2000)")
    ap.add_argument(
        "--n-ref",
        type=int,
        nargs=2,
        default=[20, 50],
        metavar=("PERPIXEL", "SHARED"),
        help="spectra for the curve_fit loop, per architecture (default 20 50)",
    )
    ap.add_argument("--arch", choices=["perpixel", "shared", "both"], default="both")
    ap.add_argument("--emulator-perpixel", help="emulator file to use for the per-pixel architecture")
    ap.add_argument("--emulator-shared", help="emulator file to use for the shared architecture")
    ap.add_argument("--train-time", type=float, default=60.0, help="seconds of toy training without a file")
    ap.add_argument("--snr", type=float, default=50.0)
    ap.add_argument("--device", default=None, help="torch device (default: CUDA if available, else CPU)")
    ap.add_argument("--batch-size", type=int, default=None, help="fit_spectra active-set size")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = E.resolve_device(args.device)
    print(f"torch {torch.__version__}, device {dev}, threads {torch.get_num_threads()}")
    peak0 = matmul_peak(dev)
    print(f"fp32 matmul peak (2048³ torch.mm, best of 6): {peak0:.1f} GFLOP/s")
    archs = ["perpixel", "shared"] if args.arch == "both" else [args.arch]
    results = {}
    for arch in archs:
        path = args.emulator_perpixel if arch == "perpixel" else args.emulator_shared
        t = time.perf_counter()
        em = get_emulator(arch, path, args.train_time, args.device)
        print(f"\n[{arch}] {em} ({'loaded' if path else 'toy-trained'} in {time.perf_counter() - t:.0f} s)")
        rng = np.random.default_rng(7)
        x_true = rng.uniform(-0.4, 0.4, (args.n, em.n_labels))
        clean = em.predict(em.unscale(x_true), device=dev)
        flux = (clean + rng.standard_normal(clean.shape) / args.snr).astype(np.float32)
        ivar = np.full(flux.shape, args.snr**2, np.float32)
        mask = window_mask(em.wave, FIT_WINDOWS)
        F.fit_spectra(em, flux[:8], ivar[:8], mask=mask, device=dev)  # warm-up: kernel layout, allocator
        peak_a = matmul_peak(dev)
        res = F.fit_spectra(em, flux, ivar, mask=mask, device=dev, batch_size=args.batch_size)
        peak_b = matmul_peak(dev)
        peak = max(peak0, peak_a, peak_b)
        info = res.info
        rate = args.n / info["seconds"]
        gflops = info["flops"] / info["seconds_lm"] / 1e9
        fl = F.flops_per_evaluation(em, info["n_pixels_used"])
        print(
            f"  fit_spectra: {args.n} spectra in {info['seconds']:.2f} s → {rate:.1f} spectra/s "
            f"(LM loop {info['seconds_lm']:.2f} s; {info['rows_evaluated']} spectrum-evaluations, "
            f"median {np.median(res.n_iter):.0f} / 90 % {np.percentile(res.n_iter, 90):.0f} iterations, "
            f"{100 * res.converged.mean():.1f} % converged, batch {info['batch_size']}, "
            f"pixel block {info['pixel_block']})"
        )
        print(
            f"  FLOPs per spectrum-evaluation: {fl['total'] / 1e6:.1f} M (forward {fl['forward'] / 1e6:.1f}, "
            f"Jacobian {fl['jacobian'] / 1e6:.1f}, normal equations {fl['normal'] / 1e6:.2f}) on "
            f"{info['n_pixels_used']} pixels"
        )
        print(
            f"  LM loop: {gflops:.1f} GFLOP/s = {100 * gflops / peak:.0f} % of the matmul peak {peak:.1f} "
            f"(peaks measured {peak0:.0f}/{peak_a:.0f}/{peak_b:.0f})"
        )
        n_ref = min(args.n, args.n_ref[0] if arch == "perpixel" else args.n_ref[1])
        x_cf, t_cf = curve_fit_loop(em, flux[:n_ref], ivar[:n_ref], mask)
        rate_cf = n_ref / t_cf
        c_ref = chi2_numpy(em, x_cf, flux[:n_ref], ivar[:n_ref], mask)
        c_us = chi2_numpy(em, res.labels_scaled[:n_ref], flux[:n_ref], ivar[:n_ref], mask)
        worse = int(np.sum(c_us > c_ref * (1 + 1e-3)))
        better = int(np.sum(c_ref > c_us * (1 + 1e-3)))
        print(
            f"  curve_fit loop (TRF, float64 numpy forward): {n_ref} spectra in {t_cf:.1f} s → "
            f"{rate_cf:.2f} spectra/s; fit_spectra is {rate / rate_cf:.0f}× faster"
        )
        print(
            f"  same optimum: curve_fit χ² lower by > 0.1 % in {worse}/{n_ref}, ours lower by > 0.1 % in "
            f"{better}/{n_ref}"
        )
        results[arch] = {
            "emulator": repr(em),
            "n": args.n,
            "spectra_per_s": rate,
            "seconds": info["seconds"],
            "seconds_lm": info["seconds_lm"],
            "rows_evaluated": info["rows_evaluated"],
            "median_iter": float(np.median(res.n_iter)),
            "converged": float(res.converged.mean()),
            "gflops": gflops,
            "peak_gflops": peak,
            "fraction_of_peak": gflops / peak,
            "n_ref": n_ref,
            "curve_fit_spectra_per_s": rate_cf,
            "speedup": rate / rate_cf,
            "curve_fit_better": worse,
            "ours_better": better,
            "flops_per_evaluation": fl,
        }
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
