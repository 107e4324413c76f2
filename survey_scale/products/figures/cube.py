"""Figures of a run, as PNG (SPEC §11 report; the paper figures that apply).

Each function reads what it needs from the cube (or a model) and writes one PNG with matplotlib's Agg
backend; :func:`survey_scale.products.figures.write_figures` groups them by kind.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.ticker
import numpy as np

from survey_scale.core.masks import HALPHA_CHI2_WINDOWS, HALPHA_EXCESS_WINDOW, clean_window_mask
from survey_scale.products.figures.common import plt, save_png
from survey_scale.science.pca import PCAModel
from survey_scale.store.cube import open_cube


def _shade_runs(ax: plt.Axes, wave: np.ndarray, mask: np.ndarray, **style) -> None:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]])))
    for lo, hi in zip(edges[0::2], edges[1::2]):
        ax.axvspan(wave[lo], wave[hi - 1], **style)


def _bad_spectra(ds) -> np.ndarray:
    """``bad_spectrum_flag == 1``; none before the ``bad_spectra`` step has run (it needs the label fit)."""
    if "bad_spectrum_flag" not in ds:
        return np.zeros(ds.sizes["spec"], dtype=bool)
    return ds.bad_spectrum_flag.values == 1


def plot_emission_diagram(cube: str | Path, model_path: str | Path, path: str | Path) -> Path:
    """P1 Fig. 3 analogue: Hα excess vs Hα-region reduced χ², the emission threshold drawn.

    The line is the threshold of a noiseless spectrum (offset + model_n_sigma × model σ, as the ``pca``
    stage ran); a spectrum's own threshold is higher by its measurement error (:mod:`survey_scale.science.emission`).
    """
    ds = open_cube(cube)
    excess = ds.halpha_excess.values
    chi2 = ds.halpha_chi2.values
    em = ds.em_flag.values == 1
    bad = _bad_spectra(ds)
    thresholds = PCAModel.load(model_path).meta["thresholds"]
    params = ds.attrs["stages"]["pca"]["params"]
    threshold = params["threshold"]
    if threshold is None:
        n_model = params.get("model_n_sigma", params["n_sigma"])
        threshold = thresholds["excess_offset"] + n_model * thresholds["excess_model_sigma"]
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
    return save_png(fig, path, tight=True)


def plot_reconstructions(cube: str | Path, path: str | Path, rows: tuple[int, int] | None = None) -> Path:
    """P1 Fig. 2 analogues: a non-emission and an emission spectrum with their PCA reconstructions, the
    clean windows shaded. Default rows: the highest-S/N spectrum of each kind."""
    ds = open_cube(cube)
    wave = ds.wave.values
    em = ds.em_flag.values == 1
    snr = ds.snr_g.values
    if rows is None:
        quiet = np.flatnonzero(~em & ~_bad_spectra(ds))
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
    return save_png(fig, path, tight=True)


def plot_example_fits(cube: str | Path, path: str | Path, rows: tuple[int, ...] | None = None) -> Path:
    """P2 Fig. 8 analogue: spectra with their best-fit emulator model, the fit's masked regions shaded
    (and, for a star with an H-masked weight, the hydrogen windows). Default: the highest-S/N B star and
    the highest-S/N early A star (Teff 8,000–11,000 K), else the two highest-S/N fitted spectra."""
    from survey_scale.core.masks import FIT_WINDOWS, HYDROGEN_WINDOWS, window_mask
    from survey_scale.products.spectra import rebuild_model_flux

    ds = open_cube(cube)
    wave = ds.wave.values
    labels = ds.labels.values
    names = list(ds.label.values)
    teff = labels[:, names.index("teff")]
    snr = np.where(np.isfinite(ds.snr_g.values), ds.snr_g.values, -1)
    if rows is None:
        picks = []
        for lo, hi in ((11000.0, 30000.0), (8000.0, 11000.0)):
            sel = np.flatnonzero((teff > lo) & (teff < hi) & (ds.em_flag.values == 0))
            if sel.size:
                picks.append(int(sel[np.argmax(snr[sel])]))
        if not picks:  # no B or early A star among the fits: the best-observed fitted spectra, whatever their Teff
            fitted = np.flatnonzero(np.isfinite(teff))
            picks = [int(r) for r in fitted[np.argsort(-snr[fitted], kind="stable")][:2]]
        if not picks:
            raise FileNotFoundError(f"{cube}: no spectrum has fitted labels to show")
        rows = tuple(picks)
    fit_mask = window_mask(wave, FIT_WINDOWS)
    h_mask = window_mask(wave, HYDROGEN_WINDOWS)
    fig, axes = plt.subplots(len(rows), 1, figsize=(11, 3.2 * len(rows)), sharex=True, squeeze=False)
    for ax, row in zip(axes[:, 0], rows):
        sp = ds.isel(spec=row).compute()
        flux = np.where(sp.norm_ivar.values > 0, sp.norm_flux.values, np.nan)
        _shade_runs(ax, wave, fit_mask, color="0.8", alpha=0.6, lw=0)
        if float(sp.w_hmask) > 0:
            _shade_runs(ax, wave, h_mask & ~fit_mask, color="tab:orange", alpha=0.15, lw=0)
        ax.plot(wave, flux, c="k", lw=0.6, label="spectrum (normalized)")
        # a cube written with cube.keep_model_flux: false has no model_flux: rebuilt from the labels
        model = sp.model_flux.values if "model_flux" in ds else rebuild_model_flux(cube, [row])[0]
        ax.plot(wave, model, c="tab:red", lw=0.8, label="best-fit model")
        lab = dict(zip(names, sp.labels.values))
        ax.set_title(
            f"{sp.specid.item()}: Teff {lab['teff']:.0f} K, log g {lab['logg']:.2f}, vsini {lab['vsini']:.0f} km/s, "
            f"[Fe/H] {lab['fe_h']:.2f}; S/N_g {float(sp.snr_g):.0f}, χ²_red {float(sp.chi2_red):.2f}, "
            f"ω_H {float(sp.w_hmask):.2f}",
            fontsize=8,
        )
        ax.set_ylim(0.3, 1.25)
        ax.set_ylabel("normalized flux")
    axes[0, 0].legend(fontsize=8, loc="lower right")
    axes[-1, 0].set_xlabel("rest-frame vacuum wavelength (Å); grey: masked in every fit; orange: H-masked fit")
    fig.suptitle("Example label fits (P2 Fig. 8 analogue)", fontsize=10)
    return save_png(fig, path, tight=True)


def plot_kiel(cube: str | Path, path: str | Path, min_snr: float = 20.0) -> Path:
    """P2 Fig. 13 analogue: Teff–log g of the fitted spectra with S/N > ``min_snr`` (P2 §5.1's final sample,
    :func:`survey_scale.products.figures.labels.good_fits`)."""
    from survey_scale.products.figures.labels import good_fits

    ds = open_cube(cube)
    names = list(ds.label.values)
    labels = ds.labels.values
    shown = [names.index(n) for n in ("teff", "logg", "fe_h")]
    ok = (ds.snr_g.values > min_snr) & good_fits(ds) & np.all(np.isfinite(labels[:, shown]), axis=1)
    teff, logg = labels[ok, names.index("teff")], labels[ok, names.index("logg")]
    fig, ax = plt.subplots(figsize=(6, 5))
    points = ax.scatter(teff, logg, s=3, c=labels[ok, names.index("fe_h")], cmap="viridis", rasterized=True)
    fig.colorbar(points, ax=ax, label="[Fe/H]")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.invert_yaxis()
    ticks = [
        t for t in (7000, 10000, 15000, 20000, 30000, 45000) if teff.size and teff.min() * 0.9 < t < teff.max() * 1.1
    ]
    ax.set_xticks(ticks, [f"{t // 1000}k" for t in ticks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("Teff (K)")
    ax.set_ylabel("log g")
    ax.set_title(f"Kiel diagram, final sample ({ok.sum()} spectra, S/N > {min_snr:.0f}; P2 Fig. 13)", fontsize=9)
    return save_png(fig, path, tight=True)
