"""Evaluate the P1 half (SPEC §7–§9) of a processed mock release against its truth: issue 12's figures.

Usage::

    python benchmarks/eval_distances.py MOCK_DIR CUBE [--time-rows 4000] [--json OUT.json]

``MOCK_DIR`` holds the mock release (``truth.parquet``, ``truth_stars.parquet``), ``CUBE`` the cube after
``survey-scale run``. Every figure is of the hot stars (truth ``population == "hot"``: the mock's cool
contaminants and QSOs have no hot-star truth to compare with). Prints:

1. E(B−V) against the truth: bias, robust scatter and pull σ (S/N > 20, non-emission).
2. MKs against the truth for single non-emission stars per S/N bin (bias, robust scatter, pull σ), and the
   MCMC posterior (ε, δ, σ_int, σ_s^100) beside what the mock injected: its intrinsic MKs scatter and the
   (σ_int, σ_s^100) that the residuals against the truth itself give.
3. Binaries: recall by mass ratio, by ϖ/σ, and by the true brightening × ϖ/σ (highest-S/N visit of each
   star), false-positive rate among single stars with ϖ/σ > 10.
4. Distances: pull σ of log10 d, median precision (half the 16–84 % width over the mode) beside P1's 8 %
   and beside the parallax alone, and the robust scatter of d / d_true − 1.
5. Time per 1,000 spectra of the stage functions (one thread, no Dask) on ``--time-rows`` spectra of the
   cube, and of the MKs model step (training, binary iterations, MCMC) as it ran.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from itertools import pairwise
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pandas as pd

import survey_scale as ss
from survey_scale.config import Config
from survey_scale.engine.contracts import ChunkContext
from survey_scale.products.figures.truth import PARALLAX_SNR_BINS, binary_recall
from survey_scale.science.distance import posterior
from survey_scale.science.mks import PARAMETERS, MKsModel, max_likelihood
from survey_scale.science.poly2d import robust_sigma
from survey_scale.stages import distances as distances_stage
from survey_scale.stages import extinction as extinction_stage
from survey_scale.stages import mks as mks_stage
from survey_scale.store.bookkeeping import Bookkeeping

SNR_BINS = ((0, 20), (20, 50), (50, 100), (100, np.inf))
CUBE_COLUMNS = (
    "specid", "snr_g", "em_flag", "bad_spectrum_flag", "uniqflag", "ebv", "ebv_err", "mks", "mks_err", "mks_geo",
    "mks_geo_err", "parallax", "parallax_error", "parallax_offset", "binary_flag", "snr_dparallax", "dis", "dis_low",
    "dis_high", "logdis", "logdis_err", "Ks", "Ks_err", "aks", "aks_err", "X", "Y", "Z", "mks_spread",
)  # fmt: skip


def load(mock: Path, cube: Path) -> tuple[pd.DataFrame, dict]:
    ds = ss.open_cube(cube)
    data = pd.DataFrame({c: ds[c].values if c in ds else np.zeros(ds.sizes["spec"]) for c in CUBE_COLUMNS})
    data["specid"] = data["specid"].astype(str)
    truth = pd.read_parquet(mock / "truth.parquet")
    truth = truth[~truth["invalid"]]  # a duplicate-specid file shares its specid with the valid original
    if "population" in truth:  # a truth from before the contaminants has hot stars only
        others = truth.loc[truth["population"] != "hot", "population"].value_counts()
        if len(others):
            print("left out (not hot stars): " + ", ".join(f"{n} {p} spectra" for p, n in others.items()))
        truth = truth[truth["population"] == "hot"]
    stars = pd.read_parquet(mock / "truth_stars.parquet")
    truth = truth.merge(stars[["star_id", "X", "Y", "Z", "mks_scatter"]], on="star_id", how="left")
    keep = ["specid", "ebv", "mks", "mks_system", "binary", "q", "distance_pc", "emission", "corrupted", "teff"]
    merged = data.merge(truth[[*keep, "X", "Y", "Z"]], on="specid", suffixes=("", "_true"), how="inner")
    reductions = ds.attrs["reductions"]
    return merged, json.loads(reductions) if isinstance(reductions, str) else reductions


def ebv_figures(m: pd.DataFrame) -> dict:
    sel = (m["snr_g"] > 20) & ~m["emission"] & (m["em_flag"] == 0) & np.isfinite(m["ebv"])
    delta = (m["ebv"] - m["ebv_true"])[sel]
    pull = (delta / m["ebv_err"][sel]).to_numpy()
    out = {"n": int(sel.sum()), "bias": float(np.median(delta)), "robust_sigma": robust_sigma(delta.to_numpy())}
    out["pull_sigma"] = robust_sigma(pull)
    print("1. E(B-V) - truth (S/N > 20, non-emission):")
    print(f"   n {out['n']}, bias {out['bias']:+.4f} mag, robust sigma {out['robust_sigma']:.4f} mag, pull sigma "
          f"{out['pull_sigma']:.2f}")  # fmt: skip
    return out


def mks_figures(m: pd.DataFrame, reductions: dict) -> dict:
    single = ~m["binary"] & ~m["emission"] & (m["em_flag"] == 0) & ~m["corrupted"] & np.isfinite(m["mks"])
    rows = []
    print("2. MKs - truth, single non-emission stars (all spectra):")
    print(f"   {'S/N':>10} {'n':>6} {'bias':>8} {'rob.sigma':>10} {'pull sigma':>10}")
    for lo, hi in SNR_BINS:
        b = single & (m["snr_g"] >= lo) & (m["snr_g"] < hi)
        d = (m["mks"] - m["mks_true"])[b].to_numpy()
        row = {"snr": [lo, hi], "n": int(b.sum()), "bias": float(np.median(d)), "robust_sigma": robust_sigma(d)}
        row["pull_sigma"] = robust_sigma(d / m["mks_err"][b].to_numpy())
        rows.append(row)
        stats = f"{row['bias']:>+8.3f} {row['robust_sigma']:>10.3f} {row['pull_sigma']:>10.2f}"
        print(f"   {lo:>4}-{hi:<5} {row['n']:>6} {stats}")
    # What the truth says: the uncertainty model fitted to (mks - truth) itself (perfect geometric MKs), on the
    # stars the MCMC sees (parallax/error > 10, single, non-emission).
    plx_snr = (m["parallax"] + m["parallax_offset"]) / m["parallax_error"]
    use = (single & (plx_snr > 10) & np.isfinite(m["mks_spread"])).to_numpy()  # as the MCMC: stars with a spread
    truth_fit = max_likelihood(
        m["mks"][use].to_numpy(),
        m["mks_true"][use].to_numpy(),
        np.full(use.sum(), 1e-3),
        m["snr_g"][use].to_numpy(),
        m["mks_spread"][use].to_numpy(),
    )
    model = reductions.get("mks_model", {})
    post = model.get("posterior", {}).get("non_emission", {})
    print("   uncertainty model (P1 Eq. 7-14), parallax/error > 10, no training star: MCMC mean [16, 84 %] | vs the "
          "truth | injected")  # fmt: skip
    injected = {"epsilon": 0.0, "delta": 0.0, "sigma_int": 0.10, "sigma_s100": None, "kappa": None}
    for k, name in enumerate(PARAMETERS):
        p = post.get(name, {})
        inj = injected[name]
        mcmc = f"{p.get('mean', np.nan):+.3f} [{p.get('p16', np.nan):+.3f}, {p.get('p84', np.nan):+.3f}]"
        print(f"   {name:>10}: {mcmc} | {truth_fit[k]:+.3f} | {'-' if inj is None else f'{inj:+.3f}'}")
    print(f"   (injected: the mock's intrinsic MKs scatter at fixed labels, {injected['sigma_int']:.2f} mag; its noise "
          "enters through the spectra only)")  # fmt: skip
    return {"bins": rows, "posterior": post, "against_truth": dict(zip(PARAMETERS, map(float, truth_fit),
            strict=True))}  # fmt: skip


def binary_figures(m: pd.DataFrame) -> dict:
    best = m[(m["uniqflag"] == 1) & (m["binary_flag"] >= 0)]
    plx_snr = (best["parallax"] + best["parallax_offset"]) / best["parallax_error"]
    found = best["binary_flag"] == 1
    out: dict = {"by_q": [], "by_parallax_snr": []}
    print("3. binaries (highest-S/N visit of each star with a flag):")
    for lo, hi in ((0.1, 0.4), (0.4, 0.7), (0.7, 1.01)):
        b = best["binary"] & (best["q"] >= lo) & (best["q"] < hi)
        out["by_q"].append({"q": [lo, hi], "n": int(b.sum()), "recall": float(found[b].mean()) if b.any() else None})
        print(f"   recall, q {lo:.1f}-{min(hi, 1.0):.1f}: {found[b].mean():.3f} ({int(b.sum())} binaries)")
    for lo, hi in ((0, 5), (5, 10), (10, np.inf)):
        b = best["binary"] & (plx_snr >= lo) & (plx_snr < hi)
        out["by_parallax_snr"].append({"plx_snr": [lo, hi], "n": int(b.sum()), "recall": float(found[b].mean())})
        print(f"   recall, parallax/error {lo}-{hi}: {found[b].mean():.3f} ({int(b.sum())} binaries)")
    # recall against what the flag can see: the system's true brightening over the primary (P1 §6: up to
    # 0.75 mag for twins), by parallax precision — the report's figure's table
    table, false = binary_recall(m)
    print("   recall by true brightening (mag) and parallax/error: recall (binaries)")
    plx_bins = list(pairwise(PARALLAX_SNR_BINS))
    print("   " + " " * 12 + "".join(f"{f'plx/err {lo:g}-{hi:g}':>18}" for lo, hi in plx_bins))
    out["by_brightening"] = [
        {"brightening": [r.brightening_lo, r.brightening_hi], "plx_snr": [r.plx_snr_lo, r.plx_snr_hi], "n": r.n,
         "recall": None if np.isnan(r.recall) else r.recall}
        for r in table.itertuples()
    ]  # fmt: skip
    for (lo, hi), cells in table.groupby(["brightening_lo", "brightening_hi"], sort=True):
        text = [f"{'-' if np.isnan(r.recall) else f'{r.recall:.2f}'} ({r.n})" for r in cells.itertuples()]
        print(f"   {lo:.2f}-{hi:.2f} mag " + "".join(f"{c:>18}" for c in text))
    out["false_positive_rate"], out["n_singles"] = false["rate"], false["n_singles"]
    print(f"   false positives among singles with parallax/error > 10: {false['rate']:.4f} "
          f"({false['n_flagged']} of {false['n_singles']})")  # fmt: skip
    out["false_positive_rate_by_mks"] = []
    for lo, hi in ((-np.inf, -3.0), (-3.0, -1.5), (-1.5, 0.0), (0.0, np.inf)):
        b = ~best["binary"] & (best["mks_true"] >= lo) & (best["mks_true"] < hi)
        out["false_positive_rate_by_mks"].append({"mks": [lo, hi], "n": int(b.sum()), "rate": float(found[b].mean())})
        print(f"   false positives among all singles with true MKs {lo:+.1f} to {hi:+.1f}: {found[b].mean():.4f} "
              f"({int(found[b].sum())} of {int(b.sum())})")  # fmt: skip
    return out


def distance_figures(m: pd.DataFrame) -> dict:
    ok = np.isfinite(m["dis"]) & (m["uniqflag"] == 1)
    t = m[ok]
    pull = (t["logdis"] - np.log10(t["distance_pc"])) / t["logdis_err"]
    precision = 0.5 * (t["dis_high"] - t["dis_low"]) / t["dis"]
    parallax = t["parallax"] + t["parallax_offset"]
    alone = posterior(parallax, t["parallax_error"], t["mks"], t["mks_err"], t["Ks"], t["Ks_err"], t["aks"],
                      t["aks_err"], binary=np.ones(len(t), bool))  # fmt: skip
    precision_alone = 0.5 * (alone.dis_high - alone.dis_low) / alone.dis
    single = ~t["binary"]
    out = {
        "n": len(t),
        "pull_sigma_logdis": robust_sigma(pull.to_numpy()),
        "pull_sigma_logdis_singles": robust_sigma(pull[single].to_numpy()),
        "median_precision": float(np.median(precision)),
        "median_precision_parallax_alone": float(np.nanmedian(precision_alone)),
        "robust_sigma_d_over_truth": robust_sigma((t["dis"] / t["distance_pc"] - 1).to_numpy()),
        "robust_sigma_d_over_truth_parallax_alone": robust_sigma(alone.dis / t["distance_pc"].to_numpy() - 1),
    }
    print("4. distances (highest-S/N visit of each star):")
    print(f"   n {out['n']}; pull sigma of log10 d {out['pull_sigma_logdis']:.2f} (singles "
          f"{out['pull_sigma_logdis_singles']:.2f})")  # fmt: skip
    print(f"   median precision (84-16 %)/2/d: {out['median_precision']:.3f} (P1: 0.08); parallax alone "
          f"{out['median_precision_parallax_alone']:.3f}")  # fmt: skip
    print(f"   robust sigma of d/d_true - 1: {out['robust_sigma_d_over_truth']:.3f}; parallax alone "
          f"{out['robust_sigma_d_over_truth_parallax_alone']:.3f}")  # fmt: skip
    for lo, hi in ((0, 2000), (2000, 4000), (4000, 8000), (8000, 1e6)):
        b = (t["distance_pc"] >= lo) & (t["distance_pc"] < hi)
        alone_b = np.nanmedian(precision_alone[b.to_numpy()])
        print(f"   d {lo / 1e3:.0f}-{min(hi, 99999) / 1e3:.0f} kpc: n {int(b.sum()):>5}, "
              f"precision {np.median(precision[b]):.3f}, parallax alone {alone_b:.3f}")  # fmt: skip
    return out


def timings(cube: Path, n_rows: int, reductions: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    ds = ss.open_cube(cube)
    n = min(n_rows, ds.sizes["spec"])
    config = Config()
    bands = extinction_stage.usable_bands(config)
    labels = list(ds["label"].values).index("teff")
    ext = extinction_stage.extinction_stage(config.extinction, bands, labels)
    model_path = Bookkeeping(cube).model_path(mks_stage.MKS_MODEL_FILE)
    mk = mks_stage.mks_stage(model_path, "snr_g", n)
    dist = distances_stage.distances_stage(config.distance)
    out = {}
    models = {"mks": MKsModel.load(model_path)}
    print(f"5. time per 1,000 spectra (stage functions, one thread, {n} spectra of the cube):")
    for stage in (ext, mk, dist) if n else ():  # --time-rows 0: the MKs model's time alone
        inputs = {name: ds[name].values[:n] for name in stage.inputs}
        t0 = time.perf_counter()
        stage.func(inputs, stage.params, ChunkContext(0, n, models))
        seconds = time.perf_counter() - t0
        out[stage.name] = 1000.0 * seconds / n
        print(f"   {stage.name:>12}: {out[stage.name]:.3f} s")
    model = reductions.get("mks_model", {})
    if "seconds" in model:
        out["mks_model"] = model["seconds"]
        print(f"   {'mks_model':>12}: {model['seconds']:.1f} s in all for {model['n_train_before_binary_cuts']} "
              f"training and {model['n_test']} test spectra (trainings, binary iterations, MCMC)")  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mock", type=Path)
    parser.add_argument("cube", type=Path)
    parser.add_argument("--time-rows", type=int, default=4000, help="0: no stage timings")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    merged, reductions = load(args.mock, args.cube)
    print(f"{len(merged)} spectra of {merged['specid'].nunique()} in the cube matched to the truth\n")
    result = {
        "ebv": ebv_figures(merged),
        "mks": mks_figures(merged, reductions),
        "binaries": binary_figures(merged),
        "distances": distance_figures(merged),
        "timing_s_per_1000": timings(args.cube, args.time_rows, reductions),
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
