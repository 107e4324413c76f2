"""Diagnostic figures of the synthesizer (SPEC §10; compare P2 Fig. 3).

- :func:`plot_example_spectra`: normalized spectra along the temperature sequence with the H, He I and
  He II lines marked;
- :func:`plot_synth_gradients`: finite-difference gradient spectra ∂f/∂l × Δl of a fiducial B star, with the
  label steps of P2 Fig. 3.

Both write a PNG with matplotlib's Agg backend and return its path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from survey_scale.core import masks
from survey_scale.core.labels import LABEL_NAMES, LABEL_TEX, LABEL_UNITS
from survey_scale.core.wavelength import wavelength_grid
from survey_scale.products.figures.common import plt, save_png
from survey_scale.synth.core import synthesize
from survey_scale.synth.gradients import FIDUCIAL_B_STAR, GRADIENT_STEPS, gradient_spectra


def _mark_lines(ax: plt.Axes, y: float) -> None:
    groups = (
        ("H", (*masks.BALMER_LINES.values(), *masks.PASCHEN_LINES.values()), "tab:red"),
        ("He I", tuple(masks.HELIUM_I_LINES.values()), "tab:blue"),
        ("He II", tuple(masks.HELIUM_II_LINES.values()), "tab:green"),
    )
    for label, centres, colour in groups:
        for j, c in enumerate(centres):
            ax.plot([c, c], [y, y + 0.15], color=colour, lw=1.0, label=label if j == 0 else None)


def plot_example_spectra(
    path: str | Path, teffs: tuple[float, ...] = (7000, 9500, 12000, 15000, 20000, 25000, 30000, 35000, 40000)
) -> Path:
    """Normalized spectra (log g 4, solar, v sin i 50 km/s) from 7000 to 40,000 K, offset, lines marked.

    Parameters
    ----------
    path
        Output PNG.
    teffs
        Effective temperatures (K) to show, bottom to top.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    labels = np.array([[t, 4.0, 2.0, 50.0, 0.085, 0, 0, 0, 0, 0, 0] for t in teffs], dtype=np.float64)
    flux = synthesize(labels)
    wave = wavelength_grid()
    fig, (ax, zoom) = plt.subplots(1, 2, figsize=(16, 10), gridspec_kw={"width_ratios": [2.2, 1]})
    for i, (t, f) in enumerate(zip(teffs, flux, strict=True)):
        for a in (ax, zoom):
            a.plot(wave, f + 0.6 * i, lw=0.6, color="k")
        ax.text(wave[-1] + 30, 1.0 + 0.6 * i, f"{t:,.0f} K", va="center", fontsize=9)
    top = 1.0 + 0.6 * len(teffs)
    for a in (ax, zoom):
        _mark_lines(a, top)
        a.set_xlabel("vacuum wavelength (Å)")
    ax.set_xlim(wave[0], wave[-1] + 600)
    zoom.set_xlim(3850, 4750)
    ax.set_ylabel("normalized flux + offset")
    ax.legend(loc="upper left", ncol=3, fontsize=9)
    ax.set_title("survey_scale.synth: log g = 4, solar abundances, v sin i = 50 km/s, R = 1800")
    zoom.set_title("3850–4750 Å")
    fig.tight_layout()
    return save_png(fig, path)


def plot_synth_gradients(path: str | Path) -> Path:
    """Gradient spectra of the fiducial B star, one panel per label, in the layout of P2 Fig. 3.

    Parameters
    ----------
    path
        Output PNG.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    grad = gradient_spectra()
    wave = wavelength_grid()
    fig, axes = plt.subplots(len(LABEL_NAMES), 1, figsize=(14, 2.0 * len(LABEL_NAMES)), sharex=True)
    for ax, name, g in zip(axes, LABEL_NAMES, grad, strict=True):
        ax.plot(wave, g, lw=0.6, color="k")
        ax.axhline(0.0, color="0.6", lw=0.5)
        step = GRADIENT_STEPS[name]
        unit = LABEL_UNITS[name]
        ax.set_ylabel(f"∂f/∂{LABEL_TEX[name]}\n× {step:g} {unit if unit != 'N_He/N_tot' else ''}", fontsize=8)
        lim = max(np.abs(g).max() * 1.1, 0.002)
        ax.set_ylim(-lim, lim)
    axes[-1].set_xlabel("vacuum wavelength (Å)")
    star = FIDUCIAL_B_STAR
    axes[0].set_title(
        f"Gradient spectra, T_eff = {star['teff']:,.0f} K, log g = {star['logg']}, [Fe/H] = 0, "
        f"v sin i = {star['vsini']:g} km/s, v_mic = {star['vmic']:g} km/s, R = 1800 (cf. P2 Fig. 3)"
    )
    fig.tight_layout()
    return save_png(fig, path, dpi=100)
