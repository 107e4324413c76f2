"""Label fit on the mock (synthesizer spectra) against the truth (SPEC §5.3; issue: emulator and fitter).

Writes a mock release (seed recorded), runs the whole pipeline (ingest → normalize → PCA/emission →
emulator → fit) and compares the fitted labels of single, non-emission, uncorrupted hot stars (truth
``population == "hot"``: not the mock's cool contaminants and QSOs) with their true labels. Prints, per
label and S/N bin, the median offset and the robust scatter (1.4826 × MAD; Teff as a fraction) of
fit − truth, the median formal error and the pull scatter; writes a Kiel diagram of the fits next to the
truth.

The emulator is the shipped one (``ss.emulator.load_default()``) unless ``--emulator`` gives a file or
``--train`` asks for one trained on a synthesized model grid of ``--grid-size`` spectra.
Note the mock draws a per-fibre LSF (R scatter 8 %) while the model grid has the mean LSF, as P2's fits.

    python benchmarks/eval_fit.py --n-stars 3000 --seed 11
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from survey_scale.config import load_config
from survey_scale.mock import make_release
from survey_scale.pipeline import run_pipeline
from survey_scale.store.cube import open_cube

HERE = Path(__file__).resolve().parent
SNR_BINS = ((0, 20), (20, 50), (50, 100), (100, np.inf))


def hot_rows(table: pd.DataFrame) -> np.ndarray:
    """Rows of the mock's hot stars (truth ``population == "hot"``): the contaminants (cool stars, QSOs) have no
    hot-star labels to compare with. Every row for a truth from before the contaminants (no such column)."""
    if "population" not in table:
        return np.ones(len(table), bool)
    return (table["population"] == "hot").to_numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-stars", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--grid-size", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=2000)
    parser.add_argument("--emulator", type=Path, help="use this emulator file instead of the shipped one")
    parser.add_argument("--train", action="store_true", help="train one on a synthesized grid of --grid-size")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "fit")
    parser.add_argument("--reuse", action="store_true", help="reuse the mock and cube in --out")
    args = parser.parse_args()

    mock, cube = args.out / "mock", args.out / "cube.zarr"
    if not args.reuse:
        if cube.exists():
            shutil.rmtree(cube)
        make_release(mock, args.n_stars, args.seed)
    overrides = {
        "cube.path": str(cube),
        "ingest.input": str(mock / "spectra"),
        "ingest.catalog": str(mock / "catalog.csv"),
        "ingest.crossmatch": str(mock / "crossmatch.parquet"),
        "emulator.train": True if args.train else None,
        "emulator.grid_size": args.grid_size,
        "emulator.epochs": args.epochs,
        "emulator.path": str(args.emulator) if args.emulator else None,
    }
    t0 = time.perf_counter()
    result = run_pipeline(load_config(None, overrides), progress=False)
    fit = next(s for s in result.stages if s.stage == "fit")
    print(
        f"mock {args.n_stars} stars (seed {args.seed}); pipeline {time.perf_counter() - t0:.0f} s, "
        f"fit stage {fit.seconds:.0f} s for {open_cube(cube).sizes['spec']} spectra"
    )
    from survey_scale.science.emulator import load

    em = load(result.models["emulator"])
    print(
        f"emulator {result.models['emulator'].name}: validation σ {100 * em.meta['valid_sigma']:.3f} % all, "
        f"{100 * em.meta['valid_sigma_deep']:.3f} % flux < 0.95 "
        f"(Gaussian core {100 * em.meta['valid_sigma_gauss']:.3f} / {100 * em.meta['valid_sigma_deep_gauss']:.3f} %)"
    )

    ds = open_cube(cube)
    names = [str(n) for n in ds.label.values]
    got = pd.DataFrame(ds.labels.values, columns=names)
    err = pd.DataFrame(ds.label_err.values, columns=names)
    got["specid"], got["snr"] = ds.specid.values.astype(str), ds.snr_g.values
    got["flags"] = ds.fit_flags.values
    truth = pd.read_parquet(mock / "truth.parquet")
    truth = truth[~truth["invalid"]]
    table = got.join(err.add_suffix("_err")).merge(truth, on="specid", suffixes=("", "_true"), validate="one_to_one")
    hot = hot_rows(table)
    single = hot & ~table["binary"] & ~table["emission"] & ~table["corrupted"] & ((table["flags"] & 8) == 0)
    print(
        f"{int(single.sum())} single, non-emission, uncorrupted fitted hot-star spectra of {len(table)} "
        f"({int((~hot).sum())} contaminant spectra left out)\n"
    )
    header = f"{'label':<8}" + "".join(f"{f'S/N {lo:.0f}-{hi:.0f}':>34}" for lo, hi in SNR_BINS)
    print(header + "\n" + f"{'':<8}" + "".join(f"{'offset / scatter (err, pull σ)':>34}" for _ in SNR_BINS))
    for name in names:
        cells = []
        for lo, hi in SNR_BINS:
            sel = single & (table["snr"] >= lo) & (table["snr"] < hi)
            diff = table.loc[sel, name] - table.loc[sel, f"{name}_true"]
            scale = table.loc[sel, f"{name}_true"] if name == "teff" else 1.0
            d = diff / scale
            med = np.nanmedian(d)
            mad = 1.4826 * np.nanmedian(np.abs(d - med))
            e = np.nanmedian(table.loc[sel, f"{name}_err"] / scale)
            pull = diff / table.loc[sel, f"{name}_err"]
            pull_sigma = 1.4826 * np.nanmedian(np.abs(pull - np.nanmedian(pull)))
            fmt = ".3f" if name in ("teff", "logg", "he_frac") else ".2f"
            cells.append(f"{med:+{fmt}} / {mad:{fmt}} ({e:{fmt}}, {pull_sigma:.1f})")
        print(f"{name:<8}" + "".join(f"{c:>34}" for c in cells))
    print(
        f"(n per S/N bin: {[int((single & (table['snr'] >= lo) & (table['snr'] < hi)).sum()) for lo, hi in SNR_BINS]}; "
        "Teff as a fraction)"
    )

    ok = single & (table["snr"] > 20)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, (label, t, g) in zip(axes, (("truth", "teff_true", "logg_true"), ("fit", "teff", "logg"))):
        ax.scatter(table.loc[ok, t], table.loc[ok, g], s=3, c=table.loc[ok, "fe_h_true"], cmap="viridis")
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.set_xlabel("Teff (K)")
        ax.set_title(f"{label} ({int(ok.sum())} single stars, S/N > 20)")
    axes[0].invert_yaxis()
    axes[0].set_ylabel("log g")
    path = args.out / "kiel_truth_vs_fit.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print(f"Kiel diagram: {path}")


if __name__ == "__main__":
    main()
