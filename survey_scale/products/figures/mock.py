"""Figures of a mock release's truth (SPEC §10): where the stars are and what they are.

:func:`plot_population` draws the Galactic X–Y map (as P1 Fig. 12: Sun at X = −8.1 kpc, rings every kpc)
and the Kiel diagram (Teff–log g, as P2 Fig. 13) of the star table; :func:`plot_observations` the
G–S/N plane (P2 Fig. 2) and the reddening–distance relation of the spectra. Both write PNG files with
the non-interactive Agg backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from survey_scale.mock.population import R_SUN_GC_KPC
from survey_scale.products.figures.common import plt, save_png


def _figure(ncols: int, width: float = 11.0, height: float = 4.8):
    return plt.subplots(1, ncols, figsize=(width, height), dpi=110)


def plot_population(truth_stars: pd.DataFrame, path: str | Path) -> Path:
    """Galactic X–Y map and Kiel diagram of a mock population.

    Parameters
    ----------
    truth_stars
        The star table (``truth_stars.parquet``): needs X, Y (kpc), teff (K), logg, binary, emission.
    path
        Output PNG path.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    fig, (ax_xy, ax_kiel) = _figure(2)
    x, y = truth_stars["X"].to_numpy(), truth_stars["Y"].to_numpy()
    binary = truth_stars["binary"].to_numpy(dtype=bool)
    emission = truth_stars["emission"].to_numpy(dtype=bool)
    normal = ~binary & ~emission
    size = 4 if len(truth_stars) > 3000 else 8
    for sel, colour, label in (
        (normal, "0.35", "single"),
        (binary, "tab:blue", "binary"),
        (emission, "tab:red", "emission"),
    ):
        ax_xy.scatter(x[sel], y[sel], s=size, c=colour, lw=0, alpha=0.6, label=f"{label} ({sel.sum()})")
    theta = np.linspace(0, 2 * np.pi, 361)
    for r in range(1, 16):
        ax_xy.plot(-R_SUN_GC_KPC + r * np.cos(theta), r * np.sin(theta), ls="--", lw=0.4, c="0.75", zorder=0)
    ax_xy.plot([-R_SUN_GC_KPC], [0.0], marker="+", ms=12, mew=2, c="k", zorder=5)
    span = max(2.0, np.nanpercentile(np.hypot(x + R_SUN_GC_KPC, y), 99.5) * 1.05)
    ax_xy.set_xlim(-R_SUN_GC_KPC - span, -R_SUN_GC_KPC + span)
    ax_xy.set_ylim(-span, span)
    ax_xy.set_aspect("equal")
    ax_xy.set_xlabel("X (kpc)")
    ax_xy.set_ylabel("Y (kpc)")
    ax_xy.set_title("Galactic X–Y (Sun +, rings every kpc)")
    ax_xy.legend(loc="lower left", fontsize=8, markerscale=2)

    teff, logg = truth_stars["teff"].to_numpy(), truth_stars["logg"].to_numpy()
    sc = ax_kiel.scatter(teff, logg, s=size, c=truth_stars["mks"].to_numpy(), cmap="viridis_r", lw=0)
    ax_kiel.set_xscale("log")
    ax_kiel.set_xlim(50000, 6500)
    ax_kiel.set_ylim(5.1, 0.3)
    ticks = [7000, 10000, 15000, 20000, 30000, 45000]
    ax_kiel.set_xticks(ticks)
    ax_kiel.set_xticklabels([f"{t // 1000}k" for t in ticks])
    ax_kiel.minorticks_off()
    ax_kiel.set_xlabel(r"$T_\mathrm{eff}$ (K)")
    ax_kiel.set_ylabel(r"$\log g$")
    ax_kiel.set_title(f"Kiel diagram ({len(truth_stars)} stars)")
    fig.colorbar(sc, ax=ax_kiel, label=r"$M_{K_s}$ (mag)")
    fig.tight_layout()
    return save_png(fig, path)


def plot_observations(truth: pd.DataFrame, path: str | Path) -> Path:
    """G against S/N of the spectra (P2 Fig. 2) and E(B−V) against distance.

    Parameters
    ----------
    truth
        The per-spectrum truth (``truth.parquet``): needs G_true, snr, ebv, distance_pc, invalid.
    path
        Output PNG path.
    """
    path = Path(path)
    valid = truth[~truth["invalid"].to_numpy(dtype=bool)]
    fig, (ax_g, ax_e) = _figure(2)
    ax_g.hexbin(valid["G_true"], np.log10(valid["snr"]), gridsize=40, mincnt=1, cmap="Greys", bins="log")
    ax_g.set_xlabel("G (mag)")
    ax_g.set_ylabel("log10 S/N (g band, per pixel)")
    med = np.median(valid["snr"])
    ax_g.set_title(f"{len(valid)} spectra, median S/N {med:.0f}")
    ax_e.scatter(valid["distance_pc"] / 1000.0, valid["ebv"], s=4, c="0.3", lw=0, alpha=0.5)
    ax_e.set_xlabel("distance (kpc)")
    ax_e.set_ylabel("E(B−V) (mag)")
    ax_e.set_title("reddening grows with distance")
    fig.tight_layout()
    return save_png(fig, path)
