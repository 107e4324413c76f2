"""Figures of the survey-wide reductions (SPEC §6): repeat-visit precision (P2 Fig. 10) and chi2ratio (P2 §5.2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from survey_scale.core.labels import LABEL_TEX, LABEL_UNITS
from survey_scale.products.figures.common import plt, save_png
from survey_scale.science.chi2ratio import Chi2Model
from survey_scale.science.poly2d import robust_sigma
from survey_scale.science.repeats import PRECISION_CURVE_BINS, pair_snr, pair_teff
from survey_scale.store.bookkeeping import Bookkeeping
from survey_scale.store.cube import open_cube


def _reduction(cube: Path, name: str) -> dict:
    reductions = open_cube(cube).attrs.get("reductions", {})
    if name not in reductions:
        raise FileNotFoundError(f"{cube}: no {name} reduction yet (survey-scale run makes it)")
    return reductions[name]


def plot_repeat_precision(cube: str | Path, path: str | Path) -> Path:
    """P2 Fig. 10 analogue: label differences of repeat pairs vs their mean S/N, per label.

    Pairs with Teff above the run's ``repeats.precision_teff_min`` (P2: 10,000 K); red lines: median and
    ±robust σ in S/N bins; the numbers are the precision (scatter / √2) for S/N < 50, 50–100 and > 100.
    """
    cube = Path(cube)
    record = _reduction(cube, "repeat_precision")
    pairs = Bookkeeping(cube).load_reduction("repeat_pairs", record["pairs_key"])
    if pairs is None:
        raise FileNotFoundError(f"{cube}: the repeat pairs are not stored any more; re-run survey-scale run")
    all_names = list(record["table"]["precision"])
    keep = pair_teff(pairs) > record["teff_min"]
    snr, delta = pair_snr(pairs)[keep], pairs["delta"][keep]
    # labels the emulator does not fit are NaN in every pair: no panel for them
    fitted = [k for k in range(len(all_names)) if not np.all(np.isnan(pairs["delta"][:, k]))]
    fitted = fitted or list(range(len(all_names)))
    names, delta = [all_names[k] for k in fitted], delta[:, fitted]
    edges = np.asarray(PRECISION_CURVE_BINS, float)
    centre = np.sqrt(edges[:-1] * edges[1:])
    ncol = 4
    fig, axes = plt.subplots(-(-len(names) // ncol), ncol, figsize=(13, 2.6 * -(-len(names) // ncol)), sharex=True)
    for k, (ax, name) in enumerate(zip(axes.flat, names, strict=False)):
        d = delta[:, k]
        ax.scatter(snr, d, s=2, c="0.5", rasterized=True)
        med, sig = np.full(centre.size, np.nan), np.full(centre.size, np.nan)
        for b in range(centre.size):
            sel = (snr >= edges[b]) & (snr < edges[b + 1])
            if sel.sum() >= 5:
                med[b], sig[b] = np.median(d[sel]), robust_sigma(d[sel])
        ax.plot(centre, med, c="tab:red", lw=1.2)
        ax.plot(centre, med + sig, c="tab:red", lw=0.8, ls="--")
        ax.plot(centre, med - sig, c="tab:red", lw=0.8, ls="--")
        values = [v for v in record["table"]["precision"][name]]
        text = " / ".join("–" if v is None else f"{v:.3g}" for v in values)
        ax.text(0.02, 0.95, f"{text}", transform=ax.transAxes, va="top", fontsize=7, color="tab:red",
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1.5})  # fmt: skip
        lim = 5 * np.nanmax(sig) if np.isfinite(sig).any() else 1.0
        ax.set_ylim(-lim, lim)
        ax.set_xlim(edges[0], edges[-1])  # also when there is no pair to plot
        ax.set_xscale("log")
        ax.set_xlim(edges[0], edges[-1])  # also when no pair passes (an empty log axis has no limits)
        ax.set_ylabel(f"Δ{LABEL_TEX.get(name, name)} [{LABEL_UNITS.get(name, '')}]", fontsize=8)
    for ax in axes.flat[len(names) :]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("mean S/N of the pair")
    fig.suptitle(
        f"Repeat visits (Teff > {record['teff_min']:g} K, {keep.sum()} pairs): precision for S/N < 50 / 50–100 / > 100"
    )
    fig.tight_layout()
    return save_png(fig, path)


def plot_chi2ratio(cube: str | Path, path: str | Path) -> Path:
    """P2 §5.2: reduced χ² vs S/N with the survey model's median and median + 10σ at three Teff, and the
    distribution of chi2ratio."""
    cube = Path(cube)
    model = Chi2Model.from_dict(_reduction(cube, "chi2ratio"))
    ds = open_cube(cube)
    chi2, ratio = ds.chi2_red.values, ds.chi2ratio.values
    snr = ds.snr_g.values
    teff = ds.labels.sel(label="teff").values
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.6))
    sc = ax.scatter(snr, chi2, s=2, c=np.log10(teff), cmap="viridis", rasterized=True)
    fig.colorbar(sc, ax=ax, label="log10 Teff")
    grid = np.logspace(np.log10(max(np.nanmin(snr), 1.0)), np.log10(np.nanmax(snr)), 100)
    for t, color in ((8000, "tab:blue"), (15000, "tab:orange"), (30000, "tab:red")):
        x, y = np.full(grid.size, np.log10(t)), np.log10(grid)
        ax.plot(grid, model.median_at(x, y), c=color, lw=1.2, label=f"median, Teff {t:,} K")
        ax.plot(grid, model.median_at(x, y) + 10 * model.sigma_at(x, y), c=color, lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("S/N (g)")
    ax.set_ylabel("reduced χ² of the label fit")
    ax.legend(fontsize=7, title="dashed: median + 10 σ", title_fontsize=7)
    finite = ratio[np.isfinite(ratio)]
    bx.hist(np.clip(finite, -10, 30), bins=160, color="0.4")
    bx.axvline(10, c="tab:red", ls="--")
    flagged = (finite > 10).mean() if finite.size else float("nan")
    bx.set_yscale("log")
    bx.set_xlabel("chi2ratio (clipped to −10…30)")
    bx.set_title(f"median {np.median(finite):.2f}, robust σ {robust_sigma(finite):.2f}, > 10: {100 * flagged:.2f} %")
    fig.tight_layout()
    return save_png(fig, path)
