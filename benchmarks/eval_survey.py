"""Survey-wide reductions on a mock against its truth (SPEC §6; issue: reductions and the labels catalog).

Reads a cube that ``survey-scale run`` has processed to the end and the mock release it was ingested from,
and prints:

1. chi2ratio: median and robust σ (1.4826 × MAD) per (Teff, S/N) bin — ≈ 0 and ≈ 1 — and the flagged
   fraction (chi2ratio > 10), overall and for the spectra the mock corrupted or gave emission;
2. the repeat-visit precision table (scatter of repeat pairs / √2, P2 §4.6) beside P2's published numbers
   and beside the mock's true scatter — the robust σ of (fit − truth) of the single visits in the same
   S/N bins and Teff selection;
3. the robust σ of the repeat pairs' pulls Δ / √(σ₁² + σ₂²) per label, with formal and with calibrated
   errors (≈ 1 when calibrated);
4. the robust σ of the pulls against the truth, (fit − truth) / σ, per label and S/N bin, with formal and
   with calibrated errors (single, non-emission, uncorrupted stars);
5. the final sample (step ``final_sample``, SPEC §13; issue 23) against the truth's populations, per spectrum:
   the fraction of the cool contaminants with final_sample = 1 (and of those LAMOST classed A), the fraction
   of the hot stars with final_sample = 0 split by the rule responsible (each ``flag_*``: set at all, and the
   only rule set; "no fit" where no rule is set), and the QSOs in the final sample. The flags come from the
   cube, or with ``--catalog`` from an exported labels catalog (Parquet or FITS) joined by specid.

Sections 1–4 compare hot stars with hot stars: the spectra whose truth ``population`` is "hot" (a truth from
before the contaminants has no such column: every spectrum).

    survey-scale mock work/mock --n-stars 5000 --seed 1
    survey-scale ingest --input work/mock/spectra --catalog work/mock/catalog.csv \\
        --crossmatch work/mock/crossmatch.parquet --cube work/cube.zarr
    survey-scale run --cube work/cube.zarr
    python benchmarks/eval_survey.py --cube work/cube.zarr --mock work/mock [--json out.json] \\
        [--catalog work/catalogs/labels.parquet]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from survey_scale.science.final_sample import RULES
from survey_scale.science.poly2d import robust_sigma
from survey_scale.store.cube import open_cube

TEFF_BINS = ((7000, 10000), (10000, 15000), (15000, 25000), (25000, np.inf))
SNR_BINS = ((0, 20), (20, 50), (50, 100), (100, np.inf))
PRECISION_BINS = ((0, 50), (50, 100), (100, np.inf))
P2_PRECISION = {  # P2 §4.6: S/N < 50 and S/N > 100 (the paper gives no 50–100 numbers); "~" and "≳" dropped
    "teff": (700, None, 260),
    "logg": (0.19, None, 0.08),
    "vmic": (4.1, None, 0.85),
    "vsini": (51.5, None, 13.0),
    "he_frac": (0.03, None, 0.01),
    "c_h": (1.0, None, 0.20),
    "n_h": (1.0, None, 0.20),
    "o_h": (0.27, None, 0.10),
    "si_h": (0.5, None, 0.10),
    "s_h": (1.0, None, 0.20),
    "fe_h": (0.5, None, 0.10),
}


FLAG_RULES = RULES
"""The final-sample rules (those missing from a cube are skipped)."""


def hot_rows(table: pd.DataFrame) -> np.ndarray:
    """Rows of the mock's hot stars (truth ``population == "hot"``); every row for a truth without the column."""
    if "population" not in table:
        return np.ones(len(table), bool)
    return (table["population"] == "hot").to_numpy()


def final_sample_table(ds, catalog: Path | None) -> pd.DataFrame | None:
    """specid, final_sample and the flag_* columns: from the exported labels catalog, else the cube (None when
    neither has final_sample: step final_sample not run)."""
    if catalog is not None:
        if catalog.suffix == ".parquet":
            frame = pd.read_parquet(catalog)
        else:
            from astropy.table import Table

            frame = Table.read(catalog).to_pandas()
        if "final_sample" not in frame:
            return None
        cols = ["specid", "final_sample", *(c for c in FLAG_RULES if c in frame)]
        frame = frame[cols].copy()
        frame["specid"] = frame["specid"].map(lambda v: v.decode() if isinstance(v, bytes) else str(v)).str.strip()
        return frame
    if "final_sample" not in ds:
        return None
    cols = ["final_sample", *(c for c in FLAG_RULES if c in ds)]
    frame = pd.DataFrame({c: ds[c].values for c in cols})
    frame.insert(0, "specid", ds.specid.values.astype(str))
    return frame


def final_sample_figures(flags: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Section 5: the final sample against the truth's populations (printed; returned for --json)."""
    table = flags.merge(truth, on="specid", how="inner", validate="one_to_one")
    rules = [c for c in FLAG_RULES if c in table]
    final = table["final_sample"] == 1
    population = table["population"] if "population" in table else pd.Series("hot", index=table.index)
    out: dict = {"n_spectra": len(table), "final_sample_spectra": int(final.sum())}
    print(f"\n5. final sample (per spectrum, {len(table)} spectra joined to the truth): {int(final.sum())} in it")
    cool = (population == "cool_contaminant").to_numpy()
    if cool.any():
        classed_a = cool & table.get("misclassified", pd.Series(False, index=table.index)).fillna(False).to_numpy(bool)
        out["cool_in_final_sample"] = float(final[cool].mean())
        out["cool_classed_a_in_final_sample"] = float(final[classed_a].mean()) if classed_a.any() else None
        print(
            f"   cool contaminants with final_sample = 1: {out['cool_in_final_sample']:.4f} "
            f"({int(final[cool].sum())} of {int(cool.sum())}); of those LAMOST classed A: "
            + (f"{final[classed_a].mean():.4f} ({int(final[classed_a].sum())} of {int(classed_a.sum())})"
               if classed_a.any() else "none")
        )  # fmt: skip
        for rule in rules:
            out[f"cool_{rule}"] = float((table.loc[cool, rule] == 1).mean())
        print("   rules set on cool contaminants: " + ", ".join(
            f"{r} {100 * out[f'cool_{r}']:.1f} %" for r in rules
        ))  # fmt: skip
    hot = hot_rows(table) if "population" in table else np.ones(len(table), bool)
    out_hot = hot & ~final.to_numpy()
    out["hot_not_in_final_sample"] = float(out_hot.sum() / max(hot.sum(), 1))
    print(
        f"   hot stars with final_sample = 0: {out['hot_not_in_final_sample']:.4f} ({int(out_hot.sum())} of "
        f"{int(hot.sum())}), by rule (set / the only rule set), as fractions of all hot-star spectra:"
    )
    flag_matrix = np.column_stack([(table[r] == 1).to_numpy() for r in rules]) if rules else np.zeros((len(table), 0))
    n_set = flag_matrix.sum(axis=1)
    out["hot_by_rule"] = {}
    for k, rule in enumerate(rules):
        is_set = hot & flag_matrix[:, k]
        only = is_set & (n_set == 1)
        out["hot_by_rule"][rule] = [float(is_set.sum() / max(hot.sum(), 1)), float(only.sum() / max(hot.sum(), 1))]
        print(f"     {rule:<20} {100 * out['hot_by_rule'][rule][0]:6.2f} % / {100 * out['hot_by_rule'][rule][1]:6.2f} %"
              f"  ({int(is_set.sum())} / {int(only.sum())})")  # fmt: skip
    no_fit = out_hot & (n_set == 0)
    out["hot_by_rule"]["no fit (no rule set)"] = [float(no_fit.sum() / max(hot.sum(), 1))] * 2
    print(f"     {'no fit (no rule set)':<20} {100 * no_fit.sum() / max(hot.sum(), 1):6.2f} %  ({int(no_fit.sum())})")
    qso = (population == "qso").to_numpy()
    out["qso_in_final_sample"] = int(final[qso].sum())
    out["qso_spectra"] = int(qso.sum())
    non_stellar = int((table.loc[qso, "flag_non_stellar"] == 1).sum()) if "flag_non_stellar" in table else "-"
    print(
        f"   QSOs in the final sample: {out['qso_in_final_sample']} of {out['qso_spectra']} QSO spectra "
        f"(flag_non_stellar set on {non_stellar})"
    )
    return out


def _bin(lo: float, hi: float) -> str:
    return f"< {hi:g}" if lo == 0 else (f"> {lo:g}" if not np.isfinite(hi) else f"{lo:g}-{hi:g}")


def _fmt(v: float | None) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cube", type=Path, required=True)
    parser.add_argument("--mock", type=Path, required=True, help="the mock release (its truth.parquet)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument(
        "--catalog", type=Path, help="section 5 from this exported labels catalog (Parquet or FITS), not the cube"
    )
    args = parser.parse_args()

    ds = open_cube(args.cube)
    names = [str(n) for n in ds.label.values]
    table = pd.DataFrame(ds.labels.values, columns=names)
    formal = pd.DataFrame(ds.label_err.values, columns=names)
    calibrated = pd.DataFrame({n: ds[f"{n}_err"].values for n in names})
    table["specid"] = ds.specid.values.astype(str)
    table["snr"] = ds.snr_g.values
    table["chi2ratio"] = ds.chi2ratio.values
    table["flags"] = ds.fit_flags.values
    table["uniqflag"] = ds.uniqflag.values
    truth = pd.read_parquet(args.mock / "truth.parquet")
    truth = truth[~truth["invalid"]]
    table = table.merge(truth, on="specid", how="left", suffixes=("", "_true"), validate="one_to_one")
    hot = hot_rows(table)  # sections 1-4: hot stars against their truth
    fitted = np.isfinite(table["teff"]) & ((table["flags"] & 8) == 0) & hot
    out: dict = {"n_spectra": len(table), "n_hot_spectra": int(hot.sum()), "n_fitted": int(fitted.sum())}

    # 1. chi2ratio per (Teff, S/N) bin
    print(
        f"1. chi2ratio ({int(fitted.sum())} fitted hot-star spectra of {int(hot.sum())}; {int((~hot).sum())} "
        "contaminant spectra left out of sections 1-4): median / robust σ (n)"
    )
    print(f"{'Teff':<14}" + "".join(f"{'S/N ' + _bin(*b):>22}" for b in SNR_BINS))
    out["chi2ratio"] = {}
    for tlo, thi in TEFF_BINS:
        cells = []
        for slo, shi in SNR_BINS:
            sel = fitted & table["teff"].between(tlo, thi, inclusive="left") & table["snr"].between(slo, shi, "left")
            r = table.loc[sel, "chi2ratio"].to_numpy()
            r = r[np.isfinite(r)]
            med, sig = (np.median(r), robust_sigma(r)) if r.size >= 5 else (np.nan, np.nan)
            cells.append(f"{med:+.2f} / {sig:.2f} ({r.size})")
            out["chi2ratio"][f"teff {_bin(tlo, thi)}, snr {_bin(slo, shi)}"] = [med, sig, int(r.size)]
        print(f"{_bin(tlo, thi):<14}" + "".join(f"{c:>22}" for c in cells))
    r = table["chi2ratio"].to_numpy()
    flagged = np.isfinite(r) & (r > 10)
    corrupted, emission = table["corrupted"].fillna(False).astype(bool), table["emission"].fillna(False).astype(bool)
    clean = fitted & ~corrupted & ~emission
    out["flagged_fraction"] = float(flagged[fitted].mean())
    print(
        f"flagged (chi2ratio > 10): {100 * flagged[fitted].mean():.2f} % of fitted spectra; "
        f"{100 * flagged[clean].mean():.2f} % of clean ones, {100 * flagged[fitted & corrupted].mean():.1f} % of "
        f"corrupted ({int((fitted & corrupted).sum())}), {100 * flagged[fitted & emission].mean():.1f} % of emission "
        f"({int((fitted & emission).sum())})\n"
    )

    # 2. repeat precision beside P2 and the truth
    record = ds.attrs["reductions"]["repeat_precision"]
    precision = record["table"]
    teff_min = record["teff_min"]
    single = fitted & ~table["binary"].fillna(True).astype(bool) & ~corrupted & ~emission
    print(
        f"2. repeat precision, scatter/√2 of {sum(precision['n_pairs'])} pairs with Teff > {teff_min:g} K "
        f"({record['n_pairs']} pairs in all): this run | P2 §4.6 | mock truth σ(fit − truth) of single visits"
    )
    print(f"{'label':<9}" + "".join(f"{'S/N ' + _bin(*b):>32}" for b in PRECISION_BINS))
    print(f"{'n pairs':<9}" + "".join(f"{n:>32}" for n in precision["n_pairs"]))
    out["precision"] = {}
    for name in names:
        cells = []
        for b, (lo, hi) in enumerate(PRECISION_BINS):
            sel = single & (table["teff"] > teff_min) & table["snr"].between(lo, hi, inclusive="left")
            true_sigma = robust_sigma((table.loc[sel, name] - table.loc[sel, f"{name}_true"]).to_numpy())
            ours = precision["precision"][name][b]
            p2 = P2_PRECISION.get(name, (None,) * 3)[b]
            cells.append(f"{_fmt(ours)} | {_fmt(p2)} | {_fmt(true_sigma)}")
            out["precision"][f"{name} snr {_bin(lo, hi)}"] = [ours, p2, true_sigma]
        print(f"{name:<9}" + "".join(f"{c:>32}" for c in cells))

    # 3. pulls of repeat pairs
    pulls = record["pull_sigma"]
    print("\n3. repeat pairs: robust σ of Δ/√(σ1² + σ2²), formal → calibrated errors")
    print("   " + ", ".join(f"{n} {pulls[n]['formal']:.2f} → {pulls[n]['calibrated']:.2f}" for n in names))
    out["pair_pulls"] = pulls

    # 4. pulls against the truth per S/N bin
    print("\n4. (fit − truth)/σ, robust σ per S/N bin (single, non-emission, uncorrupted): formal → calibrated")
    print(f"{'label':<9}" + "".join(f"{'S/N ' + _bin(*b):>18}" for b in SNR_BINS))
    out["truth_pulls"] = {}
    for name in names:
        cells = []
        for lo, hi in SNR_BINS:
            sel = single & table["snr"].between(lo, hi, inclusive="left")
            diff = (table.loc[sel, name] - table.loc[sel, f"{name}_true"]).to_numpy()
            before = robust_sigma(diff / formal.loc[sel, name].to_numpy())
            after = robust_sigma(diff / calibrated.loc[sel, name].to_numpy())
            cells.append(f"{before:.2f} → {after:.2f}")
            out["truth_pulls"][f"{name} snr {_bin(lo, hi)}"] = [before, after]
        print(f"{name:<9}" + "".join(f"{c:>18}" for c in cells))
    print(f"(n per S/N bin: {[int((single & table['snr'].between(lo, hi, 'left')).sum()) for lo, hi in SNR_BINS]})")

    # 5. the final sample against the truth's populations
    flags = final_sample_table(ds, args.catalog)
    if flags is None:
        print(f"\n5. final sample: no final_sample in {args.catalog or args.cube} (run step final_sample / export)")
    else:
        out["final_sample"] = final_sample_figures(flags, truth)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
