"""Figures of an emulator's information content (SPEC §5.2): gradient spectra (P2 Fig. 3 analogue) and the
Cramér–Rao bound with the label correlations (P2 Figs. 4–5 analogue), PNG via matplotlib's Agg backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from survey_scale.core.labels import LABEL_UNITS
from survey_scale.products.figures.common import plt, save_png
from survey_scale.science.emulator import Emulator
from survey_scale.science.information_content import correlation, cramer_rao, gradient_spectra

# display multipliers of P2 Fig. 3: gradient spectra are shown per 1000 K in Teff, 5 km/s in vmic,
# 20 km/s in vsini, 0.05 in N_He/N_tot and per 1 dex otherwise
GRADIENT_DISPLAY_STEP = {"teff": 1000.0, "vmic": 5.0, "vsini": 20.0, "he_frac": 0.05}


def _display_step(em: Emulator, name: str, i: int) -> tuple[float, str]:
    if name in GRADIENT_DISPLAY_STEP:
        step = GRADIENT_DISPLAY_STEP[name]
    elif name in LABEL_UNITS and LABEL_UNITS[name].startswith("dex"):
        step = 1.0
    else:
        step = 0.1 * float(em.x_max[i] - em.x_min[i])
    unit = LABEL_UNITS.get(name, "")
    return step, f"{step:g} {unit}".strip()


def plot_emulator_gradients(
    em: Emulator,
    labels: np.ndarray,
    path: str | Path,
    device: str | torch.device | None = None,
    reference: np.ndarray | None = None,
    reference_name: str = "model grid (finite differences)",
) -> Path:
    """Plot the gradient spectra ∂f/∂l × Δl of every label at ``labels`` (P2 Fig. 3 analogue), PNG.

    Δl is P2's display step (1000 K, 5 km/s for vmic, 20 km/s for vsini, 0.05 for N_He/N_tot, 1 dex for
    log g and abundances; 10 % of the range for other labels). ``reference`` (n_labels, n_wave), the same
    gradients of the models the emulator learnt (P2: Kurucz's, by finite differences), is drawn in black
    under the emulator's (red), as in P2 Fig. 3.
    """
    lab = np.asarray(labels, dtype=np.float64).ravel()
    grad = gradient_spectra(em, lab, device=device)
    n_lab = em.n_labels
    fig, axes = plt.subplots(n_lab, 1, figsize=(11, 1.25 * n_lab + 1), sharex=True)
    axes = np.atleast_1d(axes)
    for i, (ax, name) in enumerate(zip(axes, em.label_names, strict=True)):
        step, text = _display_step(em, name, i)
        if reference is not None:
            ax.plot(em.wave, reference[i], lw=1.2, color="k", label=reference_name)
        ax.plot(em.wave, grad[:, i] * step, lw=0.6, color="tab:red" if reference is not None else "k",
                label="emulator")  # fmt: skip
        ax.axhline(0.0, color="0.7", lw=0.5)
        ax.set_ylabel(f"{name}\n×{text}", fontsize=7)
        ax.tick_params(labelsize=7)
    if reference is not None:
        axes[0].legend(fontsize=7, loc="lower right", ncol=2)
    axes[-1].set_xlabel("wavelength (vacuum, Å)")
    desc = ", ".join(f"{n}={v:.4g}" for n, v in zip(em.label_names, lab, strict=True))
    axes[0].set_title(f"gradient spectra ∂f/∂l × Δl at {desc}", fontsize=8)
    fig.tight_layout()
    return save_png(fig, path)


def plot_cramer_rao(
    em: Emulator,
    labels: np.ndarray,
    path: str | Path,
    snr: float = 100.0,
    mask: np.ndarray | None = None,
    device: str | torch.device | None = None,
) -> Path:
    """Plot the Cramér–Rao precision √diag(F⁻¹) per label at S/N ``snr`` and the correlation matrix
    (P2 Figs. 4–5 analogue), PNG. Teff is shown in units of 1000 K as in P2 Fig. 4."""
    lab = np.asarray(labels, dtype=np.float64).ravel()
    cov = cramer_rao(em, lab, snr, mask=mask, device=device)
    sd = np.sqrt(np.diag(cov))
    shown = np.array([s / 1000.0 if n == "teff" else s for n, s in zip(em.label_names, sd, strict=True)])
    names = [f"{n} (kK)" if n == "teff" else n for n in em.label_names]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [1.3, 1]})
    x = np.arange(em.n_labels)
    ax1.semilogy(x, np.where(np.isfinite(shown), shown, np.nan), "o", color="k")
    ax1.set_xticks(x, names, rotation=60, fontsize=8)
    ax1.set_ylabel("Cramér–Rao bound √K_ii (label units)")
    ax1.set_title(f"S/N = {snr:g} per pixel", fontsize=9)
    ax1.grid(alpha=0.3, which="both")
    corr = correlation(cov)
    im = ax2.imshow(corr, vmin=-1, vmax=1, cmap="RdBu_r")
    ax2.set_xticks(x, em.label_names, rotation=60, fontsize=7)
    ax2.set_yticks(x, em.label_names, fontsize=7)
    for i in range(em.n_labels):
        for j in range(em.n_labels):
            if np.isfinite(corr[i, j]):
                ax2.text(j, i, f"{corr[i, j]:.2f}", ha="center", va="center", fontsize=5)
    fig.colorbar(im, ax=ax2, fraction=0.046, label="correlation coefficient")
    fig.tight_layout()
    return save_png(fig, path)
