"""Pseudo-continuum normalization (SPEC §3; P2 Eq. 1–2; P1 Fig. 2 caption).

The pseudo-continuum of a spectrum is its masked Gaussian smoothing with L = 50 Å:

    f̄(λ_i) = Σ_j f_j w_j(λ_i) / Σ_j w_j(λ_i),   w_j(λ_i) = m_j exp(−(λ_j − λ_i)² / L²)

with m_j = 0 on hydrogen lines, other strong lines, interstellar bands, telluric bands
(:data:`survey_scale.core.masks.CONTINUUM_WINDOWS`) and bad pixels (ivar = 0), 1 elsewhere. Then
``norm_flux = flux / f̄`` and ``norm_ivar = ivar · f̄²``; normalized pixels may exceed 1.

The kernel is evaluated exactly in wavelength (the grid is log-uniform, so it is not a constant kernel in
pixels) and applied to a whole chunk at once as a block-banded matrix product: the spectrum is cut into
blocks of pixels and each block of output pixels is a dense BLAS product of the inputs within ±4 L of it
(weights beyond 4 L are below e⁻¹⁶ and dropped). Numerator and denominator are one product of the stacked
``f·m`` and ``m``. No Python loop runs over spectra.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from survey_scale.core.masks import CONTINUUM_WINDOWS, window_mask
from survey_scale.core.wavelength import wavelength_grid

CONTINUUM_LENGTH = 50.0
"""L of P2 Eq. 2, in Å."""
_CUTOFF = 4.0
_BLOCK = 128
_MIN_WEIGHT = 1e-3
"""Σ w below which the continuum is undefined (a masked stretch wider than ~2 L): ivar set to 0 there."""


@lru_cache(maxsize=8)
def _kernel_blocks(
    wave_key: tuple[float, int, float], length: float
) -> tuple[tuple[int, int, int, int, np.ndarray], ...]:
    start, n, step = wave_key
    wave = 10.0 ** (start + step * np.arange(n)) if step else wavelength_grid()
    blocks = []
    for a in range(0, n, _BLOCK):
        b = min(a + _BLOCK, n)
        lo = int(np.searchsorted(wave, wave[a] - _CUTOFF * length, side="left"))
        hi = int(np.searchsorted(wave, wave[b - 1] + _CUTOFF * length, side="right"))
        d = (wave[lo:hi][:, None] - wave[a:b][None, :]) / length
        kernel = np.exp(-(d**2)).astype(np.float32)
        kernel[np.abs(d) > _CUTOFF] = 0.0
        blocks.append((a, b, lo, hi, kernel))
    return tuple(blocks)


def _wave_key(wave: np.ndarray | None) -> tuple[float, int, float]:
    if wave is None:
        return (0.0, wavelength_grid().size, 0.0)
    logw = np.log10(np.asarray(wave, dtype=np.float64))
    step = (logw[-1] - logw[0]) / (logw.size - 1)
    if not np.allclose(np.diff(logw), step, rtol=1e-6, atol=1e-12):
        raise ValueError("normalize: wavelengths must be uniform in log10 λ")
    return (float(logw[0]), int(logw.size), float(step))


def continuum_mask(wave: np.ndarray | None = None) -> np.ndarray:
    """True on pixels that never enter the pseudo-continuum (the §3 line and band windows)."""
    return window_mask(wavelength_grid() if wave is None else wave, CONTINUUM_WINDOWS)


def pseudo_continuum(
    flux: np.ndarray,
    weight: np.ndarray,
    wave: np.ndarray | None = None,
    length: float = CONTINUUM_LENGTH,
) -> tuple[np.ndarray, np.ndarray]:
    """Masked Gaussian smoothing of a batch of spectra (P2 Eq. 1–2).

    Parameters
    ----------
    flux
        (n, P) fluxes.
    weight
        (n, P) or (P,) pixel weights m_j (1 = use, 0 = masked).
    wave
        (P,) wavelengths in Å, uniform in log λ; default the common grid.
    length
        L in Å.

    Returns
    -------
    continuum, weight_sum
        (n, P) float32 pseudo-continuum f̄ and Σ_j w_j(λ_i); f̄ is NaN where the weight sum is below
        1e-3 (no unmasked pixel within ~2 L).
    """
    flux = np.atleast_2d(np.asarray(flux, dtype=np.float32))
    n, n_pix = flux.shape
    # numerator (f·m) and denominator (m) rows stacked, so each block is one BLAS product
    stacked = np.empty((2 * n, n_pix), dtype=np.float32)
    weights = stacked[n:]
    weights[...] = np.broadcast_to(np.asarray(weight, dtype=np.float32), flux.shape)
    np.multiply(np.where(weights > 0, flux, np.float32(0.0)), weights, out=stacked[:n])
    sums = np.empty_like(stacked)
    for a, b, lo, hi, kernel in _kernel_blocks(_wave_key(wave), float(length)):
        np.matmul(stacked[:, lo:hi], kernel, out=sums[:, a:b])
    numerator, weight_sum = sums[:n], sums[n:]
    with np.errstate(invalid="ignore", divide="ignore"):
        continuum = np.divide(
            numerator, weight_sum, out=np.full_like(numerator, np.nan), where=weight_sum > _MIN_WEIGHT
        )
    return continuum, weight_sum


def normalize_continuum(
    flux: np.ndarray,
    ivar: np.ndarray,
    pixel_ok: np.ndarray | None = None,
    wave: np.ndarray | None = None,
    length: float = CONTINUUM_LENGTH,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalize a batch of spectra by their pseudo-continuum (SPEC §3).

    Parameters
    ----------
    flux, ivar
        (n, P) flux and inverse variance on ``wave``.
    pixel_ok
        Optional (n, P) boolean, False on pixels to leave out of the continuum besides ivar = 0 (e.g.
        flagged by ``pixmask``).
    wave
        (P,) wavelengths in Å (default: the common grid).
    length
        Smoothing length L in Å (P2: 50 Å).

    Returns
    -------
    norm_flux, norm_ivar, continuum
        (n, P) float32. Where the continuum is undefined or not positive, ``norm_flux`` is 1 and
        ``norm_ivar`` is 0 (the pixel carries no information).
    """
    flux = np.atleast_2d(np.asarray(flux, dtype=np.float32))
    ivar = np.atleast_2d(np.asarray(ivar, dtype=np.float32))
    good = (ivar > 0) & np.isfinite(flux) & np.isfinite(ivar)
    if pixel_ok is not None:
        good &= np.asarray(pixel_ok, dtype=bool)
    continuum, _ = pseudo_continuum(flux, good & ~continuum_mask(wave)[None, :], wave=wave, length=length)
    usable = continuum > 0  # False where NaN (undefined)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm_flux = np.divide(flux, continuum, out=np.ones_like(flux), where=usable & np.isfinite(flux))
        norm_ivar = np.multiply(ivar, continuum * continuum, out=np.zeros_like(ivar), where=usable & good)
    return norm_flux, norm_ivar, continuum
