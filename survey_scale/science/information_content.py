"""Information content of spectra: gradient spectra and the Cramér–Rao bound (SPEC §5.2; P2 §3, Eq. 3).

For a spectrum with independent pixel noise σ_λ, the Fisher information matrix of the labels is

    F_ij = Σ_λ ∂f_λ/∂l_i · ∂f_λ/∂l_j / σ_λ²        (P2 Eq. 3; P2 writes it K⁻¹)

and the Cramér–Rao bound on the label covariance is F⁻¹ (P2's K): no unbiased estimator does better, and
the full-spectrum fit attains it in the high-S/N limit with a perfect model. The gradient spectra ∂f/∂l come
from the emulator (analytic Jacobian, or central finite differences of the emulator with given steps).

Figures: :mod:`survey_scale.products.figures.emulator`.
"""

from __future__ import annotations

import numpy as np
import torch

from survey_scale.science.emulator import Emulator
from survey_scale.science.fitting import covariance_from_normal_matrix


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
    cov = covariance_from_normal_matrix(torch.from_numpy(np.ascontiguousarray(fisher[None] if one else fisher))).numpy()
    return cov[0] if one else cov


def correlation(cov: np.ndarray) -> np.ndarray:
    """Correlation matrix (..., L, L) of covariance matrices (NaN for undetermined labels)."""
    cov = np.asarray(cov, dtype=np.float64)
    sd = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = cov / (sd[..., :, None] * sd[..., None, :])
    undetermined = ~np.isfinite(sd)
    return np.where(undetermined[..., :, None] | undetermined[..., None, :], np.nan, out)
