"""Figures of a run, as PNG (SPEC §11 report; the paper figures that apply).

Each function reads what it needs from the cube (or a model) and writes one PNG with matplotlib's Agg
backend; ``survey-scale figures`` calls them.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from survey_scale.cube import open_cube
from survey_scale.masks import HALPHA_CHI2_WINDOWS, HALPHA_EXCESS_WINDOW, clean_window_mask
from survey_scale.pca import PCAModel


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _shade_runs(ax: plt.Axes, wave: np.ndarray, mask: np.ndarray, **style) -> None:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]])))
    for lo, hi in zip(edges[0::2], edges[1::2]):
        ax.axvspan(wave[lo], wave[hi - 1], **style)


def plot_emission_diagram(cube: str | Path, model_path: str | Path, path: str | Path) -> Path:
    """P1 Fig. 3 analogue: Hα excess vs Hα-region reduced χ², the emission threshold drawn.

    The line is the threshold of a noiseless spectrum (offset + n_sigma × model σ, n_sigma as the ``pca``
    stage ran); a spectrum's own threshold is higher by its measurement error (:mod:`survey_scale.emission`).
    """
    ds = open_cube(cube)
    excess = ds.halpha_excess.values
    chi2 = ds.halpha_chi2.values
    em = ds.em_flag.values == 1
    bad = ds.bad_spectrum_flag.values == 1
    thresholds = PCAModel.load(model_path).meta["thresholds"]
    params = ds.attrs["stages"]["pca"]["params"]
    threshold = params["threshold"]
    if threshold is None:
        threshold = thresholds["excess_offset"] + params["n_sigma"] * thresholds["excess_model_sigma"]
    fig, ax = plt.subplots(figsize=(6.5, 5))
    quiet = ~em & ~bad
    ax.scatter(excess[quiet], chi2[quiet], s=3, c="0.4", label=f"no emission ({quiet.sum()})", rasterized=True)
    ax.scatter(excess[em], chi2[em], s=5, c="tab:red", label=f"em_flag = 1 ({em.sum()})", rasterized=True)
    ax.scatter(excess[bad], chi2[bad], s=12, marker="x", c="tab:blue", label=f"bad_spectrum_flag = 1 ({bad.sum()})")
    ax.axvline(threshold, ls="--", c="tab:red", lw=1)
    ax.text(
        threshold,
        0.98,
        f" threshold {threshold:.3f}",
        transform=ax.get_xaxis_transform(),
        va="top",
        color="tab:red",
        fontsize=8,
    )
    ax.set_yscale("log")
    ax.set_xlabel(f"Hα excess: mean(observed − PCA), {HALPHA_EXCESS_WINDOW.lo:.0f}–{HALPHA_EXCESS_WINDOW.hi:.0f} Å")
    windows = ", ".join(f"{w.lo:.0f}–{w.hi:.0f}" for w in HALPHA_CHI2_WINDOWS)
    ax.set_ylabel(f"reduced χ², {windows} Å")
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title("Emission-line identification (P1 Fig. 3 analogue)", fontsize=10)
    return _save(fig, path)


def plot_reconstructions(cube: str | Path, path: str | Path, rows: tuple[int, int] | None = None) -> Path:
    """P1 Fig. 2 analogues: a non-emission and an emission spectrum with their PCA reconstructions, the
    clean windows shaded. Default rows: the highest-S/N spectrum of each kind."""
    ds = open_cube(cube)
    wave = ds.wave.values
    em = ds.em_flag.values == 1
    snr = ds.snr_g.values
    if rows is None:
        quiet = np.flatnonzero(~em & (ds.bad_spectrum_flag.values == 0))
        emission = np.flatnonzero(em)
        rows = (
            int(quiet[np.nanargmax(snr[quiet])]),
            int(emission[np.nanargmax(snr[emission])]) if emission.size else -1,
        )
    clean = clean_window_mask(wave)
    fig, axes = plt.subplots(len([r for r in rows if r >= 0]), 1, figsize=(11, 6), sharex=True, squeeze=False)
    for ax, row in zip(axes[:, 0], [r for r in rows if r >= 0]):
        sp = ds.isel(spec=row).compute()
        flux = np.where(sp.norm_ivar.values > 0, sp.norm_flux.values, np.nan)
        _shade_runs(ax, wave, clean, color="tab:blue", alpha=0.12, lw=0)
        ax.plot(wave, flux, c="k", lw=0.6, label="observed (normalized)")
        ax.plot(wave, sp.pca_flux.values, c="tab:red", lw=0.8, label="PCA reconstruction")
        kind = "emission" if em[row] else "non-emission"
        ax.set_title(
            f"{sp.specid.item()}  ({kind}, S/N_g = {float(sp.snr_g):.0f}, Hα excess = {float(sp.halpha_excess):.3f})",
            fontsize=9,
        )
        ax.set_ylabel("normalized flux")
        top = np.nanpercentile(flux, 99.5)
        ax.set_ylim(0.2, max(1.3, min(top * 1.1, 4)))
    axes[0, 0].legend(fontsize=8, loc="lower right")
    axes[-1, 0].set_xlabel("rest-frame vacuum wavelength (Å); clean windows shaded")
    fig.suptitle("PCA reconstruction from the clean windows (P1 Fig. 2 analogue)", fontsize=10)
    return _save(fig, path)
