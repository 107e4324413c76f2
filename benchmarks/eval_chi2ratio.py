"""chi2ratio as a standard score across the (Teff, S/N) plane, on mocks whose truth is known (issue 27, part 1).

For each seed: makes a mock (``survey-scale mock``), runs the pipeline to step ``chi2ratio`` (``survey-scale run
--until chi2ratio``) and prints, for the clean hot stars — truth ``population == "hot"``, no emission, not
corrupted, not a binary, a finite chi2ratio — the 3 × 3 grid of (log10 Teff, log10 S/N) tertiles (Teff: the
fitted one, ``labels[:, teff]``; S/N: ``snr_g``; tertiles of the clean hot stars themselves): count, median and
robust σ (1.4826 × MAD) of chi2ratio per cell, and the fractions flagged (chi2ratio > 10) among the clean hot
stars and among all fitted spectra. The issue's goal: in every cell with ≥ 30 spectra, robust σ within
0.8–1.25 and |median| ≤ 0.2.

A mock, its config and its cube are kept in ``--work`` and reused: a second call re-runs only what changed
(after a change of the χ² model, only step ``chi2ratio``). ``--no-run`` evaluates the cube as it is;
``--refit`` evaluates, instead of the cube's chi2ratio, the χ² model that this checkout fits
(:func:`survey_scale.science.chi2ratio.fit_chi2_model`, on the rows step chi2ratio learns from:
``hot_star_rows``) — or, with ``--model-module FILE``, that of another version of
``survey_scale/science/chi2ratio.py``: before and after a change on the same cube.

    python benchmarks/eval_chi2ratio.py --work work/chi2 --seeds 31 41 [--n-stars 2000] [--json out.json]
    git show HEAD~1:survey_scale/science/chi2ratio.py > work/chi2/chi2ratio_before.py
    python benchmarks/eval_chi2ratio.py --work work/chi2 --seeds 31 41 --no-run --refit \
        --model-module work/chi2/chi2ratio_before.py
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from survey_scale.science.chi2ratio import chi2_histogram_block, fit_chi2_model
from survey_scale.science.final_sample import HOT_STAR_EVIDENCE, hot_star_candidates
from survey_scale.science.poly2d import robust_sigma
from survey_scale.store.cube import open_cube

FLAG = 10.0
MIN_CELL = 30
GOAL_SIGMA = (0.8, 1.25)
GOAL_MEDIAN = 0.2


def prepare(work: Path, seed: int, n_stars: int, workers: int) -> Path:
    """The mock of ``seed`` and its cube processed to step chi2ratio (each made only if missing); the cube's path."""
    mock, cube, config = work / f"mock{seed}", work / f"cube{seed}.zarr", work / f"config{seed}.yaml"
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if not (mock / "truth.parquet").exists():
        cmd = ["survey-scale", "mock", str(mock), "--n-stars", str(n_stars), "--seed", str(seed)]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, env=env)
    config.write_text(
        f"cube: {{path: {cube}}}\n"
        f"ingest: {{input: {mock / 'spectra'}, catalog: {mock / 'catalog.csv'}, "
        f"crossmatch: {mock / 'crossmatch.parquet'}}}\n"
        f"cluster: {{local: {{n_workers: {workers}}}}}\n"
        "runner: {progress: false}\n"
    )
    cmd = ["survey-scale", "run", "--config", str(config), "--until", "chi2ratio"]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return cube


def load_module(path: Path):
    """A version of survey_scale/science/chi2ratio.py from a file."""
    spec = importlib.util.spec_from_file_location("chi2ratio_under_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def refitted_chi2ratio(ds, module=None) -> np.ndarray:
    """chi2ratio from the χ² model fitted to the cube's hot-star rows as step chi2ratio does: by this checkout's
    :func:`fit_chi2_model`, or by ``module``'s (its histogram too)."""
    names = [str(n) for n in ds.label.values]
    labels = ds.labels.values
    data = {"labels": labels, "chi2_red": ds.chi2_red.values, "snr_g": ds.snr_g.values}
    evidence = {name: ds[name].values for name in HOT_STAR_EVIDENCE if name in ds}
    rows = hot_star_candidates(evidence)
    params = {"teff_index": names.index("teff"), "snr_column": "snr_g"}
    histogram, fit = (chi2_histogram_block, fit_chi2_model) if module is None else (
        module.chi2_histogram_block, module.fit_chi2_model)  # fmt: skip
    model = fit(histogram({k: v[rows] for k, v in data.items()}, params)["counts"])
    return model.chi2ratio(data["chi2_red"], labels[:, params["teff_index"]], data["snr_g"])


def evaluate(cube: Path, mock: Path, refit: bool, module=None) -> dict:
    """The tertile table of the clean hot stars' chi2ratio and the flagged fractions (printed and returned)."""
    ds = open_cube(cube)
    names = [str(n) for n in ds.label.values]
    table = pd.DataFrame(
        {
            "specid": ds.specid.values.astype(str),
            "teff_fit": ds.labels.values[:, names.index("teff")],
            "snr_fit": ds.snr_g.values,
            "chi2ratio": refitted_chi2ratio(ds, module) if refit else ds.chi2ratio.values,
        }
    )
    truth = pd.read_parquet(mock / "truth.parquet")
    truth = truth[~truth["invalid"]]
    cols = ["specid", "population", "emission", "corrupted", "binary"]
    table = table.merge(truth[[c for c in cols if c in truth]], on="specid", how="left", validate="one_to_one")
    ratio = table["chi2ratio"].to_numpy(np.float64)
    usable = np.isfinite(ratio) & (table["teff_fit"] > 0).to_numpy() & (table["snr_fit"] > 0).to_numpy()
    hot = (table["population"] == "hot").to_numpy() if "population" in table else np.ones(len(table), bool)

    def no(col: str) -> np.ndarray:
        return ~table[col].fillna(True).astype(bool).to_numpy() if col in table else np.ones(len(table), bool)

    clean = usable & hot & no("emission") & no("corrupted") & no("binary")
    x = np.log10(table["teff_fit"].to_numpy(np.float64))
    y = np.log10(table["snr_fit"].to_numpy(np.float64))
    tx = np.quantile(x[clean], [1 / 3, 2 / 3])
    ty = np.quantile(y[clean], [1 / 3, 2 / 3])
    ix, iy = np.searchsorted(tx, x), np.searchsorted(ty, y)
    out: dict = {
        "n_clean_hot": int(clean.sum()),
        "teff_tertiles_K": [float(10**t) for t in tx],
        "snr_tertiles": [float(10**t) for t in ty],
        "cells": [],
    }
    print(
        f"clean hot stars with a chi2ratio: {int(clean.sum())}; Teff tertile edges {10 ** tx[0]:,.0f}, "
        f"{10 ** tx[1]:,.0f} K; S/N tertile edges {10 ** ty[0]:.1f}, {10 ** ty[1]:.1f}"
    )
    print(f"chi2ratio per cell: n, median, robust σ (* where outside the goal in a cell of ≥ {MIN_CELL}), % > {FLAG:g}")
    teff_names = (f"< {10 ** tx[0]:,.0f}", f"{10 ** tx[0]:,.0f}-{10 ** tx[1]:,.0f}", f"> {10 ** tx[1]:,.0f}")
    snr_names = (f"< {10 ** ty[0]:.1f}", f"{10 ** ty[0]:.1f}-{10 ** ty[1]:.1f}", f"> {10 ** ty[1]:.1f}")
    print(f"{'Teff [K] | S/N':<16}" + "".join(f"{s:>32}" for s in snr_names))
    worst_sigma, worst_median, passed = 1.0, 0.0, True
    for i in range(3):
        line = []
        for j in range(3):
            r = ratio[clean & (ix == i) & (iy == j)]
            med, sig = (float(np.median(r)), robust_sigma(r)) if r.size else (np.nan, np.nan)
            ok = r.size < MIN_CELL or (GOAL_SIGMA[0] <= sig <= GOAL_SIGMA[1] and abs(med) <= GOAL_MEDIAN)
            if r.size >= MIN_CELL:
                passed &= ok
                worst_sigma = sig if abs(np.log(sig)) > abs(np.log(worst_sigma)) else worst_sigma
                worst_median = med if abs(med) > abs(worst_median) else worst_median
            flag = float(np.mean(r > FLAG)) if r.size else np.nan
            line.append(f"{r.size:5d} {med:+6.2f} {sig:5.2f}{' ' if ok else '*'} {100 * flag:4.1f}%")
            out["cells"].append({"teff": teff_names[i], "snr": snr_names[j], "n": int(r.size), "median": med,
                                 "sigma": sig, "flagged": flag})  # fmt: skip
        print(f"{teff_names[i]:<16}" + "".join(f"{c:>32}" for c in line))
    flagged = ratio > FLAG
    out["flagged_clean_hot"] = float(flagged[clean].mean())
    out["flagged_all_fitted"] = float(flagged[usable].mean())
    out["worst_sigma"], out["worst_median"], out["goal_met"] = worst_sigma, worst_median, bool(passed)
    print(
        f"flagged (chi2ratio > {FLAG:g}): {100 * out['flagged_clean_hot']:.2f} % of the clean hot stars, "
        f"{100 * out['flagged_all_fitted']:.2f} % of all {int(usable.sum())} spectra with a chi2ratio"
    )
    print(
        f"worst cell: robust σ {worst_sigma:.2f}, median {worst_median:+.2f}; goal (σ {GOAL_SIGMA[0]}-"
        f"{GOAL_SIGMA[1]}, |median| ≤ {GOAL_MEDIAN} in cells of ≥ {MIN_CELL}) {'met' if passed else 'NOT met'}"
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="folder of the mocks, configs and cubes")
    parser.add_argument("--seeds", type=int, nargs="+", default=[31, 41])
    parser.add_argument("--n-stars", type=int, default=2000, help="hot stars of each mock (~2.2 spectra each)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-run", action="store_true", help="evaluate the cubes as they are (no pipeline run)")
    parser.add_argument("--refit", action="store_true", help="evaluate the chi2 model refitted from the cube")
    parser.add_argument("--model-module", type=Path, help="with --refit: this version of science/chi2ratio.py")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results = {}
    module = load_module(args.model_module) if args.model_module else None
    what = f"refitted by {args.model_module or 'this checkout'}" if args.refit else "the cube's column"
    for seed in args.seeds:
        cube = args.work / f"cube{seed}.zarr"
        if not args.no_run:
            cube = prepare(args.work, seed, args.n_stars, args.workers)
        elif not cube.exists():
            sys.exit(f"{cube} does not exist: run without --no-run first")
        print(f"\n== seed {seed} (chi2ratio: {what}) ==")
        results[seed] = evaluate(cube, args.work / f"mock{seed}", args.refit, module)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
