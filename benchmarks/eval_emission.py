"""Emission and erroneous-spectrum flags against the mock truth (SPEC §4; issue: normalization/PCA/emission).

Writes a mock release (default 5,000 stars, seed recorded in the output), runs ingest → normalize →
PCA/emission with the default configuration, joins the cube to ``truth.parquet`` by specid and prints, for
the hot stars (truth ``population == "hot"``; the mock's cool contaminants and QSOs apart):

- recall and precision of ``em_flag`` for true Hα emission with EW > 2 Å (goal ≥ 0.95 each; emission stars
  with EW ≤ 2 Å are neither counted as hits nor as false positives in the precision);
- the false-positive rate on non-emission spectra;
- recall as a function of the true EW;
- how many contaminant spectra (cool stars, QSOs) em_flag sets.

``bad_spectrum_flag`` is decided after the label fit: ``benchmarks/eval_flags.py`` evaluates both flags on
several seeds.

    python benchmarks/eval_emission.py --n-stars 5000 --seed 2026
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from survey_scale.config import load_config
from survey_scale.mock import make_release
from survey_scale.pipeline import run_pipeline
from survey_scale.store.cube import open_cube

HERE = Path(__file__).resolve().parent


def hot_rows(table: pd.DataFrame) -> np.ndarray:
    """Rows of the mock's hot stars (truth ``population == "hot"``): the contaminants (cool stars, QSOs) have no
    hot-star labels to compare with. Every row for a truth from before the contaminants (no such column)."""
    if "population" not in table:
        return np.ones(len(table), bool)
    return (table["population"] == "hot").to_numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-stars", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", type=Path, default=HERE / "out" / "emission")
    parser.add_argument("--reuse", action="store_true", help="reuse an existing mock and cube in --out")
    args = parser.parse_args()

    mock, cube = args.out / "mock", args.out / "cube.zarr"
    if not args.reuse:
        if cube.exists():
            shutil.rmtree(cube)
        t0 = time.perf_counter()
        summary = make_release(mock, args.n_stars, args.seed)
        print(
            f"mock: {args.n_stars} stars, seed {args.seed}: {summary.n_valid_files} spectra "
            f"in {time.perf_counter() - t0:.0f} s"
        )
    config = load_config(
        None,
        {
            "cube.path": str(cube),
            "ingest.input": str(mock / "spectra"),
            "ingest.catalog": str(mock / "catalog.csv"),
            "ingest.crossmatch": str(mock / "crossmatch.parquet"),
            "runner.progress": False,
        },
    )
    t0 = time.perf_counter()
    run_pipeline(config, progress=False, until="pca")
    print(f"pipeline (ingest, normalize, PCA/emission) in {time.perf_counter() - t0:.0f} s")

    ds = open_cube(cube)
    cols = ["specid", "em_flag", "halpha_excess", "snr_g"]
    got = pd.DataFrame({c: ds[c].values for c in cols}).astype({"specid": str})
    truth = pd.read_parquet(mock / "truth.parquet")
    truth = truth[~truth["invalid"]]  # a duplicate-specid file shares its specid with the valid original
    table = got.merge(truth, on="specid", how="left", validate="one_to_one")
    assert table["emission"].notna().all(), "every ingested spectrum has a truth row"
    hot = hot_rows(table)
    others = table[~hot]
    if len(others):
        for population, group in others.groupby("population"):
            print(f"em_flag on {population} spectra: {int((group['em_flag'] == 1).sum())} of {len(group)}")
    table = table[hot].reset_index(drop=True)  # the figures below: hot stars only
    flag = table["em_flag"] == 1
    ew = table["ha_ew"].fillna(0.0).where(table["emission"], 0.0)
    strong, quiet = ew > 2.0, ~table["emission"].astype(bool)
    tp = (flag & strong).sum()
    recall = tp / strong.sum()
    precision = tp / (flag & (strong | quiet)).sum()
    print(
        f"\n{len(table):,} hot-star spectra; {int(table['emission'].sum())} with Hα emission "
        f"({int(strong.sum())} with EW > 2 Å)"
    )
    print(f"em_flag, EW > 2 Å: recall {recall:.3f}, precision {precision:.3f}  (goal >= 0.95 each)")
    print(
        f"false-positive rate on non-emission spectra: {(flag & quiet).sum() / quiet.sum():.4f} "
        f"({int((flag & quiet).sum())} of {int(quiet.sum())})"
    )
    print("recall vs true EW(Hα):")
    edges = [0, 1, 1.5, 2, 3, 5, 10, 20, 60]
    for lo, hi in itertools.pairwise(edges):
        sel = table["emission"].astype(bool) & (ew > lo) & (ew <= hi)
        if sel.any():
            print(f"  {lo:5.1f}-{hi:<5.1f} Å: {flag[sel].mean():.3f}  (n = {int(sel.sum())})")


if __name__ == "__main__":
    main()
