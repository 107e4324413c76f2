"""em_flag and bad_spectrum_flag against the truth of several unseen mock releases (issue 15; SPEC §4, P1 §3, App. A).

For each seed: writes a mock release (``--n-stars``, default 5,000), runs the pipeline as README's tour
does up to the ``bad_spectra`` step (ingest, normalize, PCA/emission, the label fit with the emulator given
by ``--emulator``, uniqflag, chi2ratio, erroneous spectra), joins the cube to ``truth.parquet`` by specid and
prints, for the hot stars (truth ``population == "hot"``; the mock's cool contaminants and QSOs are counted
apart)

- em_flag: recall and precision for true Hα emission with EW > 2 Å (goal ≥ 0.95 each; emission stars with
  EW ≤ 2 Å count neither as hits nor as false positives), the false-positive rate on non-emission
  spectra, what the false positives are, recall vs true EW;
- bad_spectrum_flag: recall of the corrupted spectra per kind and per S/N bin (goal ≥ 0.8 above S/N 10,
  ≥ 0.6 for wrong wavelength), false flags among clean spectra per S/N bin (goal ≤ 1 % in every bin), and
  which evidence fired (``bad_spectrum_reason``);

then the same figures over the seeds: mean, standard deviation, min and max (and the pooled value).

    python benchmarks/eval_flags.py --emulator EMU.npz --seeds 201 202 203 --out OUT
    python benchmarks/eval_flags.py --emulator EMU.npz --seeds 201 --out OUT --reuse   # evaluate again

Run it with ``OMP_NUM_THREADS=1`` (and ``nice``) on a shared machine; one seed of 5,000 stars takes
~15–60 minutes on 2 cores, most of it the mock and the label fit.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pandas as pd

from survey_scale.config import load_config
from survey_scale.core.masks import FIT_WINDOWS, TELLURIC_BANDS, window_mask
from survey_scale.core.wavelength import wavelength_grid
from survey_scale.mock import make_release
from survey_scale.pipeline import run_pipeline
from survey_scale.science.bad_spectra import REASON_BITS, frame_offset_pixels, rest_frame_transmission
from survey_scale.stages.bad_spectra import TELLURIC_FILE, emission_cores, load_telluric
from survey_scale.store.bookkeeping import Bookkeeping
from survey_scale.store.cube import open_cube

HERE = Path(__file__).resolve().parent
VISIBLE_DCHI2 = 100.0
"""A wrong segment is visible when the true shift improves its χ² against the model by more than this (10σ)."""
SNR_BINS = ((0.0, 10.0), (10.0, 30.0), (30.0, 100.0), (100.0, np.inf))
EW_BINS = (0, 1, 1.5, 2, 3, 5, 10, 20, 60)
KINDS = ("flux_jump", "artifact", "wrong_wavelength")
COLUMNS = ("specid", "snr_g", "em_flag", "bad_spectrum_flag", "bad_spectrum_reason", "halpha_excess", "pca_chi2")


def hot_rows(table: pd.DataFrame) -> np.ndarray:
    """Rows of the mock's hot stars (truth ``population == "hot"``): the contaminants (cool stars, QSOs) have no
    hot-star labels to compare with. Every row for a truth from before the contaminants (no such column)."""
    if "population" not in table:
        return np.ones(len(table), bool)
    return (table["population"] == "hot").to_numpy()


def bin_name(lo: float, hi: float) -> str:
    return f"S/N {lo:g}-{hi:g}" if np.isfinite(hi) else f"S/N > {lo:g}"


def process(seed: int, args: argparse.Namespace) -> pd.DataFrame:
    """The mock release of ``seed`` through the pipeline; the cube's flags joined to the truth."""
    out = args.out / f"seed{seed}"
    mock, cube = out / "mock", out / "cube.zarr"
    if not (args.reuse and (mock / "truth.parquet").exists()):
        t0 = time.perf_counter()
        summary = make_release(mock, args.n_stars, seed, cool_fraction=args.cool_fraction)
        print(
            f"seed {seed}: mock of {args.n_stars} stars, {summary.n_valid_files} spectra, "
            f"{time.perf_counter() - t0:.0f} s"
        )
        if cube.exists():
            shutil.rmtree(cube)
    config = load_config(
        args.config,
        {
            "cube.path": str(cube),
            "ingest.input": str(mock / "spectra"),
            "ingest.catalog": str(mock / "catalog.csv"),
            "ingest.crossmatch": str(mock / "crossmatch.parquet"),
            "emulator.path": str(args.emulator),
            "runner.progress": False,
            "cluster.local.n_workers": args.workers,
        },
    )
    t0 = time.perf_counter()
    run_pipeline(config, progress=False, until=args.until)
    print(f"seed {seed}: pipeline up to {args.until} in {time.perf_counter() - t0:.0f} s")
    ds = open_cube(cube)
    got = pd.DataFrame({c: ds[c].values for c in COLUMNS}).astype({"specid": str})
    truth = pd.read_parquet(mock / "truth.parquet")
    truth = truth[~truth["invalid"]]  # a duplicate-specid file shares its specid with the valid original
    table = got.merge(truth, on="specid", how="left", validate="one_to_one")
    assert table["emission"].notna().all(), "every ingested spectrum has a truth row"
    table["visible_dchi2"] = visible_dchi2(cube, table)  # by cube row: before any row is left out
    hot = hot_rows(table)
    for population, group in table[~hot].groupby("population"):
        print(
            f"seed {seed}: {len(group)} {population} spectra left out of the figures: em_flag "
            f"{int((group['em_flag'] == 1).sum())}, bad_spectrum_flag {int((group['bad_spectrum_flag'] == 1).sum())}"
        )
    return table[hot].reset_index(drop=True)


def visible_dchi2(cube: Path, table: pd.DataFrame) -> np.ndarray:
    """How visible each wrong-wavelength segment is to any test against the fit's model: χ² at zero shift minus
    χ² at the true shift, over the true segment (its observed-frame range moved to the rest frame), on the
    pixels and with the model (times the telluric transmission) that the ``fit_residuals`` stage uses. NaN
    for the other spectra."""
    out = np.full(len(table), np.nan)
    rows = np.flatnonzero(table["corrupted"].to_numpy(bool) & (table["corrupt_kind"] == "wrong_wavelength").to_numpy())
    if rows.size == 0:
        return out
    ds = open_cube(cube)
    wave = wavelength_grid()
    telluric = window_mask(wave, TELLURIC_BANDS)
    fit_mask = window_mask(wave, [w for w in FIT_WINDOWS if w.kind != "telluric"])
    template = load_telluric(str(Bookkeeping(cube).model_path(TELLURIC_FILE)))
    get = {v: ds[v].values[rows] for v in ("norm_flux", "norm_ivar", "model_flux", "pixmask", "em_flag", "rv")}
    use = ~fit_mask[None, :] & (get["pixmask"] == 0) & (get["norm_ivar"] > 0) & np.isfinite(get["norm_flux"])
    use &= ~((get["em_flag"] == 1)[:, None] & emission_cores(wave)[None, :])
    flux, ivar = get["norm_flux"].astype(np.float64), get["norm_ivar"].astype(np.float64)
    model = get["model_flux"].astype(np.float64)
    fitted = np.all(np.isfinite(model), axis=1)
    model = np.where(fitted[:, None], model, 1.0)
    model = model * rest_frame_transmission(template, get["rv"], flux, ivar, model, use, telluric)
    offset = frame_offset_pixels(get["rv"])
    pixels = np.arange(wave.size)
    for j, row in enumerate(rows):
        lo, hi = table["corrupt_lo"].iat[row], table["corrupt_hi"].iat[row]
        seg = use[j] & (wave * 10 ** (offset[j] * 1e-4) >= lo) & (wave * 10 ** (offset[j] * 1e-4) <= hi)
        shift = round(float(table["corrupt_amount"].iat[row]))
        moved = model[j, np.clip(pixels - shift, 0, wave.size - 1)]
        chi2_zero = np.sum(ivar[j, seg] * (flux[j, seg] - model[j, seg]) ** 2)
        chi2_true = np.sum(ivar[j, seg] * (flux[j, seg] - moved[seg]) ** 2)
        out[row] = chi2_zero - chi2_true if fitted[j] else np.nan
    return out


def reasons(values: pd.Series) -> str:
    counts = {text.split(":")[0]: int(((values.to_numpy() & bit) != 0).sum()) for bit, text in REASON_BITS.items()}
    return ", ".join(f"{k} {v}" for k, v in counts.items() if v) or "-"


def evaluate(table: pd.DataFrame, seed: int | str) -> dict[str, float]:
    """Print one release's figures; return them flat (name -> value) for the summary over seeds."""
    fig: dict[str, float] = {}
    flag = table["em_flag"] == 1
    emission = table["emission"].astype(bool)
    ew = table["ha_ew"].fillna(0.0).where(emission, 0.0)
    strong, quiet = ew > 2.0, ~emission
    tp = int((flag & strong).sum())
    fig["em_recall"] = tp / strong.sum()
    fig["em_precision"] = tp / (flag & (strong | quiet)).sum()
    fig["em_fp_rate"] = (flag & quiet).sum() / quiet.sum()
    bad = table["bad_spectrum_flag"] == 1
    usable = ~bad  # what a user keeps: em_flag among the spectra not flagged erroneous
    fig["em_precision_not_bad"] = (flag & strong & usable).sum() / (flag & (strong | quiet) & usable).sum()
    print(
        f"\n=== seed {seed}: {len(table):,} spectra; {int(emission.sum())} with Hα emission "
        f"({int(strong.sum())} EW > 2 Å)"
    )
    print(
        f"em_flag, EW > 2 Å: recall {fig['em_recall']:.3f}, precision {fig['em_precision']:.3f} (goal >= 0.95 each); "
        f"false-positive rate on non-emission spectra {fig['em_fp_rate']:.4f} ({int((flag & quiet).sum())} of "
        f"{int(quiet.sum())}); precision among spectra not flagged erroneous {fig['em_precision_not_bad']:.3f}"
    )
    fp = table[flag & quiet]
    print(
        f"  false positives: {int(fp['corrupted'].sum())} corrupted, {int((fp['binary'] & ~fp['corrupted']).sum())} "
        f"binaries, {int((fp['teff'] < 8000).sum())} with Teff < 8000 K, median S/N {fp['snr_g'].median():.0f}"
    )
    print("  recall vs true EW(Hα):")
    for lo, hi in itertools.pairwise(EW_BINS):
        sel = emission & (ew > lo) & (ew <= hi)
        if sel.any():
            fig[f"em_recall_ew_{lo}_{hi}"] = flag[sel].mean()
            print(f"    {lo:5.1f}-{hi:<5.1f} Å: {flag[sel].mean():.3f}  (n = {int(sel.sum())})")

    corrupted = table["corrupted"].astype(bool)
    snr = table["snr_g"]
    above10 = corrupted & (snr >= 10)
    fig["bad_recall"] = bad[corrupted].mean()
    fig["bad_recall_snr_gt_10"] = bad[above10].mean()
    fig["bad_false_rate"] = bad[~corrupted].mean()
    print(
        f"\nbad_spectrum_flag: recall of corrupted spectra {fig['bad_recall']:.3f} ({int((bad & corrupted).sum())} of "
        f"{int(corrupted.sum())}), above S/N 10 {fig['bad_recall_snr_gt_10']:.3f} (goal >= 0.8; n = "
        f"{int(above10.sum())}); flagged clean spectra {int((bad & ~corrupted).sum())} ({fig['bad_false_rate']:.4f})"
    )
    header = "".join(f"{bin_name(lo, hi):>16}" for lo, hi in SNR_BINS)
    print(f"  recall            {header}       all   S/N > 10")
    for kind in KINDS:
        k = corrupted & (table["corrupt_kind"] == kind)
        cells = []
        for lo, hi in SNR_BINS:
            sel = k & (snr >= lo) & (snr < hi)
            cells.append(f"{bad[sel].mean():.2f} ({int(sel.sum()):3d})" if sel.any() else "   - (  0)")
            fig[f"bad_recall_{kind}_{lo:g}"] = bad[sel].mean() if sel.any() else np.nan
        fig[f"bad_recall_{kind}"] = bad[k].mean() if k.any() else np.nan
        fig[f"bad_recall_{kind}_snr_gt_10"] = bad[k & (snr >= 10)].mean() if (k & (snr >= 10)).any() else np.nan
        cells_text = "".join(f"{c:>16}" for c in cells)
        print(f"  {kind:<18}{cells_text}  {fig[f'bad_recall_{kind}']:8.2f}  {fig[f'bad_recall_{kind}_snr_gt_10']:8.2f}")
    cells = []
    for lo, hi in SNR_BINS:
        sel = ~corrupted & (snr >= lo) & (snr < hi)
        fig[f"bad_false_{lo:g}"] = bad[sel].mean()
        cells.append(f"{bad[sel].mean():.4f} ({int(sel.sum())})")
    print("  false flags, clean" + "".join(f"{c:>16}" for c in cells) + "   (goal <= 0.01 each)")
    wrong = corrupted & (table["corrupt_kind"] == "wrong_wavelength")
    visible = wrong & (table["visible_dchi2"] > VISIBLE_DCHI2)
    fig["wrong_wavelength_visible_fraction"] = visible.sum() / max(wrong.sum(), 1)
    fig["bad_recall_wrong_wavelength_visible"] = bad[visible].mean() if visible.any() else np.nan
    print(
        f"  wrong wavelength: {int(visible.sum())} of {int(wrong.sum())} segments visible against the model (the "
        f"true shift improves their chi2 by > {VISIBLE_DCHI2:g}; above S/N 10: {int((visible & (snr >= 10)).sum())} "
        f"of {int((wrong & (snr >= 10)).sum())}); recall among them {fig['bad_recall_wrong_wavelength_visible']:.2f}"
    )
    print(f"  evidence that fired, corrupted: {reasons(table.loc[corrupted & bad, 'bad_spectrum_reason'])}")
    clean_bad = table[~corrupted & bad]
    print(
        f"  evidence that fired, clean: {reasons(clean_bad['bad_spectrum_reason'])} ({int(clean_bad['binary'].sum())} "
        f"binaries, {int(clean_bad['emission'].sum())} emission stars)"
    )
    missed = table[corrupted & ~bad & (snr >= 10)]
    if len(missed):
        print("  missed above S/N 10: " + "; ".join(
            f"{r.corrupt_kind} {r.corrupt_lo:.0f}-{r.corrupt_hi:.0f} Å ({r.corrupt_amount:g}) S/N {r.snr_g:.0f}"
            for r in missed.itertuples()
        ))  # fmt: skip
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--emulator", type=Path, required=True, help="a trained emulator file (emulator.path)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[201, 202, 203])
    parser.add_argument("--n-stars", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=HERE / "out" / "flags")
    parser.add_argument("--config", type=Path, default=None, help="a configuration file (default: the defaults)")
    parser.add_argument("--workers", type=int, default=None, help="Dask workers (default: one per core)")
    parser.add_argument("--reuse", action="store_true", help="reuse the mock releases (and cubes) in --out")
    parser.add_argument("--until", default="bad_spectra", help="last pipeline step (final_sample: for eval_survey.py)")
    parser.add_argument(
        "--cool-fraction", type=float, default=0.3, help="cool contaminants among the stars (0: hot stars only)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the figures per seed to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("distributed", "numcodecs", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    figures, tables = {}, []
    for seed in args.seeds:
        table = process(seed, args)
        figures[seed] = evaluate(table, seed)
        tables.append(table.assign(seed=seed))
    frame = pd.DataFrame(figures).T
    if len(args.seeds) > 1:
        print(f"\n=== over seeds {', '.join(map(str, args.seeds))}: mean ± std [min, max], and pooled")
        for name in frame.columns:
            v = frame[name].astype(float)
            if v.notna().any():
                print(f"  {name:<34} {v.mean():.3f} ± {v.std(ddof=1):.3f}  [{v.min():.3f}, {v.max():.3f}]")
    if len(args.seeds) > 1:
        # the small cells (~20 wrong-wavelength spectra per release) are clearer pooled
        evaluate(pd.concat(tables, ignore_index=True), "s " + " + ".join(map(str, args.seeds)) + " pooled")
    if args.json:
        args.json.write_text(json.dumps({str(k): v for k, v in figures.items()}, indent=1, default=float))


if __name__ == "__main__":
    main()
