"""E(B−V) from the colour excesses of adjacent photometric bands (SPEC §7, P1 §4).

P1 §4: with N bands, the N − 1 colours of adjacent bands each give E(B−V) = (observed − intrinsic colour) /
(R_a − R_b); the estimate is their mean weighted by the inverse variances of the colours (the quadrature sum
of the two bands' errors, at least 0.014 mag), with its error propagated as for independent colours; Ks is
never used (circumstellar emission can brighten it). A_Ks = R_Ks · E(B−V). Adjacent colours share a band
with opposite signs, so their errors partly cancel in the mean and the propagated error is conservative
(by ~30 % for seven bands of equal errors, ``tests/science/test_extinction.py``).

:func:`ebv_from_colors` is that estimator for many stars at once: each star uses the bands it has (finite
magnitude and error), in the order of effective wavelength of :data:`BAND_ORDER`, and pairs each with the
next one it has. The intrinsic colours and the coefficients R_band are inputs: where they come from (a
stellar-model table; a hot-star spectrum through the Fitzpatrick 1999 curve) is the extinction stage's
business.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

COLOR_ERROR_FLOOR = 0.014
"""Smallest uncertainty of any colour, mag (P1 §4, Gaia BP−RP included)."""

BAND_ORDER: tuple[str, ...] = ("B", "g", "BP", "V", "r", "i", "RP", "J", "H")
"""Bands usable for E(B−V), by effective wavelength (Å): APASS B 4,360, g 4,770, Gaia BP 5,110, APASS V 5,450,
r 6,230, i 7,630, Gaia RP 7,770, 2MASS J 12,350, H 16,620. Ks is never used (P1 §4)."""


def ebv_from_colors(
    mags: Mapping[str, np.ndarray],
    errors: Mapping[str, np.ndarray],
    intrinsic: Mapping[str, np.ndarray],
    coefficients: Mapping[str, float],
    bands: Sequence[str] = BAND_ORDER,
    floor: float = COLOR_ERROR_FLOOR,
    model_error: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """E(B−V), its error and the number of colours used, per star (P1 §4; see the module docstring).

    Parameters
    ----------
    mags, errors
        Observed magnitudes and their errors per band, (n,) each; a band may be absent or NaN for some stars.
    intrinsic
        Intrinsic magnitudes per band on any common zero point (only their differences, the intrinsic
        colours, are used), (n,) each — from the star's Teff, log g and [Fe/H].
    coefficients
        R_band = A_band / E(B−V).
    bands
        The bands to use, in order of effective wavelength ("Ks" is refused).
    floor
        Smallest colour uncertainty (mag).
    model_error
        Uncertainty of each intrinsic colour (mag), added in quadrature to the photometric one before the
        floor: real stars scatter about any Teff–colour table by a few hundredths of a magnitude.

    Returns
    -------
    ebv, ebv_err : numpy.ndarray
        (n,) mag; NaN where fewer than two bands are available.
    n_colors : numpy.ndarray
        (n,) int16, the colours that entered the mean.
    """
    if "Ks" in bands:
        raise ValueError("ebv_from_colors: Ks is never used for E(B-V) (P1 §4: circumstellar emission)")
    usable = [b for b in bands if b in mags and b in errors and b in intrinsic and b in coefficients]
    n = int(np.asarray(next(iter(mags.values()))).shape[0]) if mags else 0
    sum_w = np.zeros(n)
    sum_wx = np.zeros(n)
    n_colors = np.zeros(n, np.int16)
    prev_mag = np.full(n, np.nan)
    prev_err = np.full(n, np.nan)
    prev_int = np.full(n, np.nan)
    prev_r = np.full(n, np.nan)
    for band in usable:
        mag = np.asarray(mags[band], np.float64)
        err = np.asarray(errors[band], np.float64)
        own = np.asarray(intrinsic[band], np.float64)
        r = float(coefficients[band])
        have = np.isfinite(mag) & np.isfinite(err) & (err >= 0) & np.isfinite(own)
        pair = have & np.isfinite(prev_mag)
        with np.errstate(invalid="ignore", divide="ignore"):
            excess = (prev_mag - mag) - (prev_int - own)
            ebv = excess / (prev_r - r)
            sigma = np.maximum(np.sqrt(prev_err**2 + err**2 + model_error**2), floor) / np.abs(prev_r - r)
        pair &= np.isfinite(ebv) & np.isfinite(sigma)
        w = np.where(pair, 1.0 / np.where(pair, sigma, 1.0) ** 2, 0.0)
        sum_w += w
        sum_wx += np.where(pair, w * ebv, 0.0)
        n_colors += pair.astype(np.int16)
        prev_mag = np.where(have, mag, prev_mag)
        prev_err = np.where(have, err, prev_err)
        prev_int = np.where(have, own, prev_int)
        prev_r = np.where(have, r, prev_r)
    with np.errstate(invalid="ignore", divide="ignore"):
        ebv = np.where(n_colors > 0, sum_wx / sum_w, np.nan)
        ebv_err = np.where(n_colors > 0, 1.0 / np.sqrt(sum_w), np.nan)
    return ebv, ebv_err, n_colors


def ks_extinction(ebv: np.ndarray, ebv_err: np.ndarray, r_ks: float) -> tuple[np.ndarray, np.ndarray]:
    """A_Ks = R_Ks · E(B−V) and its error (mag)."""
    return r_ks * np.asarray(ebv, np.float64), abs(r_ks) * np.asarray(ebv_err, np.float64)
