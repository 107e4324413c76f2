"""Information content of spectra: gradient spectra and the Cramér–Rao bound (SPEC §5.2; P2 §3, Eq. 3).

For a spectrum with independent pixel noise σ_λ, the Fisher information matrix of the labels is

    F_ij = Σ_λ ∂f_λ/∂l_i · ∂f_λ/∂l_j / σ_λ²        (P2 Eq. 3; P2 writes it K⁻¹)

and the Cramér–Rao bound on the label covariance is F⁻¹ (P2's K): no unbiased estimator does better, and
the full-spectrum fit attains it in the high-S/N limit with a perfect model. The gradient spectra ∂f/∂l come
from the emulator (analytic Jacobian, or central finite differences of the emulator with given steps).

Plots: :func:`plot_gradient_spectra` (P2 Fig. 3 analogue) and :func:`plot_cramer_rao` (P2 Figs. 4–5
analogue: √diag of the bound per label and the correlation matrix), PNG files via matplotlib's Agg backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from survey_scale.emulator import Emulator
from survey_scale.fitting import _covariance
from survey_scale.labels import LABEL_UNITS

# display multipliers of P2 Fig. 3: gradient spectra are shown per 1000 K in Teff, 5 km/s in vmic,
# 20 km/s in vsini, 0.05 in N_He/N_tot and per 1 dex otherwise
GRADIENT_DISPLAY_STEP = {"teff": 1000.0, "vmic": 5.0, "vsini": 20.0, "he_frac": 0.05}


def gradient_spectra(
    em: Emulator,
    labels: np.ndarray,
    steps: np.ndarray | float | None = None,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Gradient spectra ∂f/∂l of the emulator at ``labels`` (SPEC §5.2).

    Parameters
    ----------
    em
        Emulator.
    labels
        (L,) or (n, L) physical labels.
    steps
        ``None``: analytic derivatives of the network (exact up to float32 rounding). Otherwise central
        finite differences with these steps in physical units (scalar or (L,)): (f(l + h) − f(l − h)) / 2h,
        as P2 computes them from model grids.
    device
        Torch device (default: CUDA if available, else CPU).

    Returns
    -------
    numpy.ndarray
        (P, L) or (n, P, L) float64 derivatives of the normalized flux per physical unit of each label.
    """
    lab = np.asarray(labels, dtype=np.float64)
    one = lab.ndim == 1
    lab = np.atleast_2d(lab)
    if steps is None:
        _, jac = em.jacobian(lab, device=device)
        out = jac.astype(np.float64)
    else:
        h = np.broadcast_to(np.asarray(steps, dtype=np.float64), (em.n_labels,))
        n, n_lab = lab.shape
        pts = np.repeat(lab[:, None, :], 2 * n_lab, axis=1)
        for i in range(n_lab):
            pts[:, 2 * i, i] += h[i]
            pts[:, 2 * i + 1, i] -= h[i]
        f = em.predict(pts.reshape(-1, n_lab), device=device).astype(np.float64).reshape(n, n_lab, 2, -1)
        out = np.transpose((f[:, :, 0] - f[:, :, 1]) / (2.0 * h[None, :, None]), (0, 2, 1))
    return out[0] if one else out


def _noise_ivar(em: Emulator, ivar_or_snr: np.ndarray | float, n: int) -> np.ndarray:
    v = np.asarray(ivar_or_snr, dtype=np.float64)
    if v.ndim == 0:
        # S/N per pixel of the continuum: σ = 1/(S/N) in normalized flux units
        return np.full((n, em.n_pixels), float(v) ** 2)
    if v.shape[-1] != em.n_pixels:
        raise ValueError(f"cramer_rao: ivar has {v.shape[-1]} pixels, the emulator has {em.n_pixels}")
    return np.broadcast_to(v, (n, em.n_pixels))


def fisher_matrix(
    em: Emulator,
    labels: np.ndarray,
    ivar_or_snr: np.ndarray | float,
    mask: np.ndarray | None = None,
    steps: np.ndarray | float | None = None,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Fisher matrix F = ∇fᵀ C⁻¹ ∇f (P2 Eq. 3, independent pixels), physical label units.

    Parameters are those of :func:`cramer_rao`. Returns (L, L) or (n, L, L).
    """
    lab = np.asarray(labels, dtype=np.float64)
    one = lab.ndim == 1
    lab = np.atleast_2d(lab)
    grad = gradient_spectra(em, lab, steps=steps, device=device)  # (n, P, L)
    w = _noise_ivar(em, ivar_or_snr, lab.shape[0]).copy()
    if mask is not None:
        w = np.where(np.asarray(mask, dtype=bool), 0.0, w)
    fisher = np.einsum("npi,np,npj->nij", grad, w, grad)
    return fisher[0] if one else fisher


def cramer_rao(
    em: Emulator,
    labels: np.ndarray,
    ivar_or_snr: np.ndarray | float,
    mask: np.ndarray | None = None,
    steps: np.ndarray | float | None = None,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Cramér–Rao bound on the label covariance, F⁻¹ with F of P2 Eq. 3 (SPEC §5.2).

    Parameters
    ----------
    em
        Emulator.
    labels
        (L,) or (n, L) physical labels of the fiducial spectrum (spectra).
    ivar_or_snr
        A scalar S/N per pixel (σ = 1/(S/N) in normalized flux, the same at every pixel), or the inverse
        variance per pixel, (P,) or (n, P), e.g. a real spectrum's ``norm_ivar``.
    mask
        Optional (P,) or (n, P) bool, True = pixel excluded (e.g. the §5.3 fit mask).
    steps
        Finite-difference steps for the gradient spectra (see :func:`gradient_spectra`); ``None`` =
        analytic.
    device
        Torch device.

    Returns
    -------
    numpy.ndarray
        (L, L) or (n, L, L) float64 covariance bound in physical units; √diag is the best attainable label
        precision. A label without information gets infinite variance.
    """
    fisher = fisher_matrix(em, labels, ivar_or_snr, mask=mask, steps=steps, device=device)
    one = fisher.ndim == 2
    # the fit's robust batched inverse (eigen-decomposition of the unit-diagonal scaled matrix)
    cov = _covariance(torch.from_numpy(np.ascontiguousarray(fisher[None] if one else fisher))).numpy()
    return cov[0] if one else cov


def correlation(cov: np.ndarray) -> np.ndarray:
    """Correlation matrix (..., L, L) of covariance matrices (NaN for undetermined labels)."""
    cov = np.asarray(cov, dtype=np.float64)
    sd = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = cov / (sd[..., :, None] * sd[..., None, :])
    undetermined = ~np.isfinite(sd)
    return np.where(undetermined[..., :, None] | undetermined[..., None, :], np.nan, out)


def _display_step(em: Emulator, name: str, i: int) -> tuple[float, str]:
    if name in GRADIENT_DISPLAY_STEP:
        step = GRADIENT_DISPLAY_STEP[name]
    elif name in LABEL_UNITS and LABEL_UNITS[name].startswith("dex"):
        step = 1.0
    else:
        step = 0.1 * float(em.x_max[i] - em.x_min[i])
    unit = LABEL_UNITS.get(name, "")
    return step, f"{step:g} {unit}".strip()


def plot_gradient_spectra(
    em: Emulator, labels: np.ndarray, path: str | Path, device: str | torch.device | None = None
) -> Path:
    """Plot the gradient spectra ∂f/∂l × Δl of every label at ``labels`` (P2 Fig. 3 analogue), PNG.

    Δl is P2's display step (1000 K, 5 km/s for vmic, 20 km/s for vsini, 0.05 for N_He/N_tot, 1 dex for
    log g and abundances; 10 % of the range for other labels).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lab = np.asarray(labels, dtype=np.float64).ravel()
    grad = gradient_spectra(em, lab, device=device)
    n_lab = em.n_labels
    fig, axes = plt.subplots(n_lab, 1, figsize=(11, 1.25 * n_lab + 1), sharex=True)
    axes = np.atleast_1d(axes)
    for i, (ax, name) in enumerate(zip(axes, em.label_names, strict=True)):
        step, text = _display_step(em, name, i)
        ax.plot(em.wave, grad[:, i] * step, lw=0.6, color="k")
        ax.axhline(0.0, color="0.7", lw=0.5)
        ax.set_ylabel(f"{name}\n×{text}", fontsize=7)
        ax.tick_params(labelsize=7)
    axes[-1].set_xlabel("wavelength (vacuum, Å)")
    desc = ", ".join(f"{n}={v:.4g}" for n, v in zip(em.label_names, lab, strict=True))
    axes[0].set_title(f"gradient spectra ∂f/∂l × Δl at {desc}", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
