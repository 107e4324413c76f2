"""Figures of the fitted labels over the survey (SPEC §5.3, P2 §5): vsini (P2 Fig. 16) and [Fe/H], [Si/H]
(P2 Fig. 17), from a cube.

Both show one visit per star (``uniqflag == 1`` where the step ran) of P2's final sample (:func:`good_fits`)
with S/N > 50, as P2 did; a plane is drawn as points for a small sample and as a log-density map for a large
one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.ticker
import numpy as np
import pandas as pd
import xarray as xr

from survey_scale.core.fit_flags import FLAG_NO_DATA, FLAG_NOT_CONVERGED, FLAG_SNR_LT_5, FLAG_TEFF_LT_7000
from survey_scale.products.figures.common import plt, save_png
from survey_scale.store.cube import open_cube

DENSITY_MIN_POINTS = 3000
"""A plane with more points than this is drawn as a log-density map (hexbin) rather than as points."""

VSINI_TEFF_RANGES = ((7000.0, 10000.0), (10000.0, 15000.0), (15000.0, 20000.0), (20000.0, np.inf))
"""The Teff ranges (K) of P2 Fig. 16's per-range vsini histograms."""


GOOD_FIT_EXCLUDES = FLAG_TEFF_LT_7000 | FLAG_SNR_LT_5 | FLAG_NOT_CONVERGED | FLAG_NO_DATA
"""``fit_flags`` bits that take a spectrum out of P2 §5.1's final sample (a negative vsini, a re-fit or a label
at the fit box's edge do not)."""


def good_fits(ds: xr.Dataset) -> np.ndarray:
    """P2 §5.1's final sample, per spectrum (bool): ``final_sample`` = 1 where step final_sample ran (every
    rule, the cool-star and non-stellar ones included); before it, finite labels, none of
    :data:`GOOD_FIT_EXCLUDES` in ``fit_flags``, and ``flag_chi2ratio`` not set where the chi2ratio step ran."""
    finite = np.all(np.isfinite(ds.labels.values), axis=1)
    if "final_sample" in ds:
        return (ds.final_sample.values == 1) & finite
    keep = ((ds.fit_flags.values.astype(np.int64) & GOOD_FIT_EXCLUDES) == 0) & finite
    if "flag_chi2ratio" in ds:
        keep &= ds.flag_chi2ratio.values != 1
    return keep


def sample(cube: str | Path, labels: Sequence[str], min_snr: float = 50.0) -> pd.DataFrame:
    """The stars of P2's label figures: the final sample (:func:`good_fits`) with S/N > ``min_snr``, the
    highest-S/N visit of each star when ``uniqflag`` exists; columns ``labels`` plus ``snr_g`` and, when the
    cube has it, ``vsini_raw`` (vsini before negative values are set to 0).

    Raises
    ------
    FileNotFoundError
        If the cube has no label fit yet.
    """
    ds = open_cube(cube)
    if "labels" not in ds:
        raise FileNotFoundError(f"{cube}: no labels yet (survey-scale fit makes them)")
    names = [str(n) for n in ds.label.values]
    values = ds.labels.values
    keep = good_fits(ds) & (ds.snr_g.values > min_snr)
    if "uniqflag" in ds:
        keep &= ds.uniqflag.values == 1
    table = pd.DataFrame({name: values[keep, names.index(name)] for name in labels})
    table["snr_g"] = ds.snr_g.values[keep]
    if "vsini_raw" in ds:
        table["vsini_raw"] = ds.vsini_raw.values[keep]
    return table


def density(ax: plt.Axes, x: np.ndarray, y: np.ndarray, extent: tuple[float, float, float, float] | None = None):
    """Draw the plane (x, y): points for a small sample, a log-scaled hexbin density above
    :data:`DENSITY_MIN_POINTS`. Returns the artist (a colour bar can be attached to a hexbin)."""
    if x.size <= DENSITY_MIN_POINTS:
        return ax.scatter(x, y, s=5, c="0.25", alpha=0.6, lw=0, rasterized=True)
    return ax.hexbin(x, y, gridsize=80, bins="log", mincnt=1, cmap="Greys", extent=extent, rasterized=True)


def _teff_axis(ax: plt.Axes, teff: np.ndarray) -> None:
    ax.set_xscale("log")
    ticks = [
        t for t in (7000, 10000, 15000, 20000, 30000, 45000) if teff.size and 0.9 * teff.min() < t < 1.1 * teff.max()
    ]
    ax.set_xticks(ticks, [f"{t // 1000}k" for t in ticks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.invert_xaxis()
    ax.set_xlabel("Teff [K]")


def plot_vsini(cube: str | Path, path: str | Path, min_snr: float = 50.0) -> Path:
    """P2 Fig. 16 analogue: the vsini distribution of stars with S/N > ``min_snr`` and log g < 5 — overall, per
    Teff range, against Teff and against [Fe/H]. Negative (extrapolated) values are kept, as in P2: their tail
    shows the measurement uncertainty."""
    d = sample(cube, ("teff", "logg", "vsini", "fe_h"), min_snr)
    d = d[d["logg"] < 5.0]
    vsini = (d["vsini_raw"] if "vsini_raw" in d else d["vsini"]).to_numpy()
    teff, fe_h = d["teff"].to_numpy(), d["fe_h"].to_numpy()
    top = max(100.0, float(np.nanpercentile(vsini, 99.5)) * 1.05) if vsini.size else 400.0
    bins = np.linspace(min(-100.0, float(np.nanmin(vsini, initial=0.0))), top, 50)
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5))
    ax = axes[0, 0]
    ax.hist(vsini, bins=bins, color="0.3", histtype="step", lw=1.4)
    ax.axvline(0, c="0.6", lw=0.8)
    ax.set_xlabel("vsini [km/s]")
    ax.set_ylabel("stars")
    ax.set_title(f"{len(d)} stars, median {np.nanmedian(vsini):.0f} km/s" if len(d) else "no stars", fontsize=10)
    ax = axes[0, 1]
    for (lo, hi), colour in zip(VSINI_TEFF_RANGES, ("tab:red", "tab:orange", "tab:green", "tab:blue"), strict=True):
        sel = (teff >= lo) & (teff < hi)
        name = f"Teff > {lo / 1000:.0f}k" if not np.isfinite(hi) else f"{lo / 1000:.0f}k–{hi / 1000:.0f}k"
        ax.hist(vsini[sel], bins=bins[::2], histtype="step", color=colour, lw=1.4, density=sel.sum() > 0,
                label=f"{name} K ({sel.sum()})")  # fmt: skip
    ax.axvline(0, c="0.6", lw=0.8)
    ax.set_xlabel("vsini [km/s]")
    ax.set_ylabel("normalized number")
    ax.legend(fontsize=8)
    ax.set_title("per Teff range", fontsize=10)
    ax = axes[1, 0]
    density(ax, teff, vsini)
    _teff_axis(ax, teff)
    ax.set_ylabel("vsini [km/s]")
    ax.set_ylim(bins[0], top)
    ax = axes[1, 1]
    density(ax, fe_h, vsini)
    ax.set_xlabel("[Fe/H] [dex]")
    ax.set_ylabel("vsini [km/s]")
    ax.set_ylim(bins[0], top)
    fig.suptitle(f"vsini of the final sample, S/N > {min_snr:g}, log g < 5, one visit per star (P2 Fig. 16)")
    fig.tight_layout()
    return save_png(fig, path)


def plot_abundances(cube: str | Path, path: str | Path, min_snr: float = 50.0, si_teff_min: float = 8000.0) -> Path:
    """P2 Fig. 17 analogue: stars with S/N > ``min_snr`` in the Teff–[Fe/H] plane, and in the [Fe/H]–[Si/H] plane
    for Teff ≥ ``si_teff_min`` (P2 drops cooler stars, whose [Si/H] is less reliable); the 1:1 line drawn."""
    d = sample(cube, ("teff", "fe_h", "si_h"), min_snr)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.8))
    density(ax, d["teff"].to_numpy(), d["fe_h"].to_numpy())
    _teff_axis(ax, d["teff"].to_numpy())
    ax.axhline(0.0, c="tab:red", lw=0.8, ls="--")
    ax.set_ylabel("[Fe/H] [dex]")
    ax.set_title(f"{len(d)} stars with S/N > {min_snr:g}", fontsize=10)
    hot = d[d["teff"] >= si_teff_min]
    density(bx, hot["fe_h"].to_numpy(), hot["si_h"].to_numpy())
    lim = (
        [
            float(np.nanmin([hot["fe_h"].min(), hot["si_h"].min()])),
            float(np.nanmax([hot["fe_h"].max(), hot["si_h"].max()])),
        ]
        if len(hot)
        else [-1.0, 1.0]
    )
    bx.plot(lim, lim, c="tab:red", lw=0.8, ls="--", label="1:1")
    bx.set_xlabel("[Fe/H] [dex]")
    bx.set_ylabel("[Si/H] [dex]")
    bx.legend(fontsize=8, loc="upper left")
    r = np.corrcoef(hot["fe_h"], hot["si_h"])[0, 1] if len(hot) > 2 else float("nan")
    bx.set_title(f"{len(hot)} stars with Teff ≥ {si_teff_min:,.0f} K; correlation {r:.2f}", fontsize=10)
    fig.suptitle("[Fe/H] against Teff, and [Si/H] against [Fe/H] (P2 Fig. 17)")
    fig.tight_layout()
    return save_png(fig, path)
