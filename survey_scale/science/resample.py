"""Flux-conserving resampling of a spectrum onto the common grid, with error propagation (SPEC §2).

Each input pixel is a constant over its extent in log λ (edges halfway between pixel centres). An output
pixel's flux is the average of the input over the output pixel, i.e. a weighted mean of the overlapping
input pixels with weights ``w_k`` = overlap fraction. Because it is linear in independent inputs, its
variance is exact: ``var_out = Σ w_k² var_k / (Σ w_k)²`` (neighbouring output pixels become correlated; the
per-pixel ivar is still correct, and a Monte-Carlo test checks it).

Bad input pixels (ivar ≤ 0, non-finite flux, and — by default — a non-zero LAMOST and-mask) get zero
weight. An output pixel keeps a real ivar while good pixels cover at least ``min_good_fraction`` of its
covered part; otherwise its flux is interpolated over the gap from the nearest good pixels, its ivar is 0
and it gets the ``INTERPOLATED`` bit. Pixels less than half covered by the spectrum get ``NO_COVERAGE``,
flux 0 and ivar 0. The ``ANDMASK`` / ``ORMASK`` bits are set when any overlapping input pixel has them.
"""

from __future__ import annotations

import numpy as np

from survey_scale.core.wavelength import PIXMASK_BITS, log10_pixel_edges, wavelength_grid

C_KMS = 299792.458


def _edges(log_centres: np.ndarray) -> np.ndarray:
    mid = 0.5 * (log_centres[1:] + log_centres[:-1])
    return np.concatenate([[2 * log_centres[0] - mid[0]], mid, [2 * log_centres[-1] - mid[-1]]])


def resample_to_grid(
    wave_rest: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    andmask: np.ndarray | None = None,
    ormask: np.ndarray | None = None,
    *,
    min_good_fraction: float = 0.5,
    mask_andmask: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Resample one spectrum onto the common grid.

    Parameters
    ----------
    wave_rest
        (n_in,) strictly increasing rest-frame wavelengths (Å) of the input pixel centres.
    flux, ivar
        (n_in,) flux and inverse variance.
    andmask, ormask
        (n_in,) LAMOST bit masks (0 = good), optional.
    min_good_fraction
        Fraction of an output pixel's covered part that good input pixels must cover to keep its ivar.
    mask_andmask
        Treat input pixels with a non-zero and-mask as bad.

    Returns
    -------
    flux, ivar, pixmask, coverage
        (3802,) float32, float32, uint8 on the common grid, and the fraction of grid pixels covered.
    """
    log_in = np.log10(np.asarray(wave_rest, dtype=np.float64))
    flux = np.asarray(flux, dtype=np.float64)
    ivar = np.asarray(ivar, dtype=np.float64)
    n_in = log_in.size
    andmask = np.zeros(n_in, np.uint32) if andmask is None else np.asarray(andmask)
    ormask = np.zeros(n_in, np.uint32) if ormask is None else np.asarray(ormask)
    good = (ivar > 0) & np.isfinite(ivar) & np.isfinite(flux)
    if mask_andmask:
        good &= andmask == 0

    in_edges = _edges(log_in)
    out_edges = log10_pixel_edges()
    out_lo, out_hi = out_edges[:-1], out_edges[1:]
    width = out_hi - out_lo
    first = np.clip(np.searchsorted(in_edges, out_lo, side="right") - 1, 0, n_in - 1)
    last = np.clip(np.searchsorted(in_edges, out_hi, side="left") - 1, 0, n_in - 1)
    n_over = int((last - first).max()) + 1

    n_out = out_lo.size
    cover = np.zeros(n_out)
    good_w = np.zeros(n_out)
    sum_wf = np.zeros(n_out)
    sum_w2v = np.zeros(n_out)
    any_and = np.zeros(n_out, dtype=bool)
    any_or = np.zeros(n_out, dtype=bool)
    safe_var = np.where(good, 1.0 / np.where(good, ivar, 1.0), 0.0)
    safe_flux = np.where(good, flux, 0.0)
    for m in range(n_over):
        k = first + m
        valid = k <= last
        k = np.minimum(k, n_in - 1)
        overlap = np.minimum(out_hi, in_edges[k + 1]) - np.maximum(out_lo, in_edges[k])
        w = np.where(valid, np.clip(overlap, 0.0, None) / width, 0.0)
        touched = w > 0
        cover += w
        gw = w * good[k]
        good_w += gw
        sum_wf += gw * safe_flux[k]
        sum_w2v += gw**2 * safe_var[k]
        any_and |= touched & (andmask[k] != 0)
        any_or |= touched & (ormask[k] != 0)

    covered = cover >= 0.5
    keep = covered & (good_w >= min_good_fraction * np.maximum(cover, 1e-12)) & (good_w > 0)
    out_flux = np.zeros(n_out)
    out_ivar = np.zeros(n_out)
    out_flux[keep] = sum_wf[keep] / good_w[keep]
    var = sum_w2v[keep] / good_w[keep] ** 2
    out_ivar[keep] = np.where(var > 0, 1.0 / np.where(var > 0, var, 1.0), 0.0)

    gap = covered & ~keep
    if gap.any():
        if good.any():
            out_flux[gap] = np.interp(np.log10(wavelength_grid()[gap]), log_in[good], flux[good])
        else:
            out_flux[gap] = 0.0

    pixmask = np.zeros(n_out, dtype=np.uint8)
    pixmask[any_and] |= PIXMASK_BITS["ANDMASK"]
    pixmask[any_or] |= PIXMASK_BITS["ORMASK"]
    pixmask[~covered] |= PIXMASK_BITS["NO_COVERAGE"]
    pixmask[gap] |= PIXMASK_BITS["INTERPOLATED"]
    return out_flux.astype(np.float32), out_ivar.astype(np.float32), pixmask, float(covered.mean())


def rest_frame(wave_observed: np.ndarray, rv_kms: float) -> np.ndarray:
    """Shift observed (heliocentric) wavelengths to the star's rest frame: λ_rest = λ_obs / (1 + rv/c)."""
    return np.asarray(wave_observed, dtype=np.float64) / (1.0 + rv_kms / C_KMS)


def grid_coverage(wave_min_rest: np.ndarray, wave_max_rest: np.ndarray) -> np.ndarray:
    """Fraction of the common grid's pixels inside [wave_min_rest, wave_max_rest] (vectorized)."""
    grid = wavelength_grid()
    lo = np.searchsorted(grid, np.asarray(wave_min_rest, dtype=np.float64), side="left")
    hi = np.searchsorted(grid, np.asarray(wave_max_rest, dtype=np.float64), side="right")
    return np.clip(hi - lo, 0, None) / grid.size
