"""Interstellar absorption lines/bands and telluric bands at LAMOST resolution (SPEC §10, P2 §4.5).

Both transmissions are products of exp(−τ) of isolated features, each with compact support: a feature is
truncated at ±4σ of its (LSF-broadened) Gaussian, or at its telluric band limits, and the transmission is
exactly 1 elsewhere. Continuum reddening is *not* included (the mock applies an extinction curve itself).

Interstellar features (``interstellar_transmission``), equivalent widths W as functions of E(B−V):

- Na I D1 + D2: Poznanski, Prochaska & Bloom (2012, MNRAS 426, 1465, their Eq. 9),
  log10 E(B−V) = 1.17 W(D1+D2)/Å − 1.85, i.e. W = log10(E/0.0141)/1.17 Å, which saturates (the curve of
  growth of a few clouds along the sight line). We use W = log10(1 + E/0.0141)/1.17 Å, identical above
  E ≈ 0.1 and going to 0 linearly as E → 0 instead of diverging; W(D2) : W(D1) = 0.56 : 0.44.
- Ca II K and H: Megier et al. (2005, ApJ 634, 451) relate them to distance, d = 2.78 W(K)/mÅ + 95 pc and
  d = 4.58 W(H)/mÅ + 102 pc. Pass ``distance`` (pc) to use it; otherwise d = E(B−V)/(0.6 mag kpc⁻¹), a mean
  reddening rate in the Galactic plane. Their fit covers stars within ~1 kpc; beyond, W saturates
  smoothly, W = W_s (1 − exp(−W_lin/W_s)) with W_s = 0.6 Å (K) and 0.4 Å (H) (Ca II has a scale height of
  ~0.8 kpc, Smoker et al. 2003, and strong components saturate).
- Diffuse interstellar bands of :data:`survey_scale.core.masks.DIB_CENTRES` with W = a · E(B−V): a = 0.61 Å mag⁻¹
  (λ5780) and 1.26 Å mag⁻¹ (λ6284) from Yuan & Liu (2012, MNRAS 425, 1763, SDSS low-resolution spectra) and
  0.37 Å mag⁻¹ (λ8620, E(B−V) = 2.72 W, Munari et al. 2008, A&A 488, 969); the other bands have
  representative ratios of the right order (Friedman et al. 2011, ApJ 727, 33 and the DIB catalogue of
  Hobbs et al. 2008 give per-band relations), rounded — adequate for a mock, not for DIB science.

Intrinsic widths are the FWHM of the masks module (Na I, Ca II: unresolved); each feature is broadened by a
Gaussian LSF of resolving power ``resolution``. Since the features are unresolved or barely resolved at
R ~ 1800, τ = W × (area-normalized profile), which preserves W for weak features.

Telluric bands (``telluric_transmission``) are envelopes of the O₂ B (6869 Å) and A (7596 Å) band heads —
a sharp LSF-broadened edge at the head and an exponential fall-off along the P branch — and of the H₂O
bands at 7160–7340 Å and 8125–8350 Å, confined to :data:`survey_scale.core.masks.TELLURIC_BANDS`. Their optical
depths scale as airmass^0.55 (O₂; saturated band, square-root-like curve of growth) and
(airmass · PWV / 5 mm)^0.6 (H₂O), with peak transmissions at airmass 1 and PWV = 5 mm of about 0.45 (A band),
0.75 (B band), 0.85 and 0.88 (H₂O) — typical of low-resolution spectra from a mid-latitude site such as
Xinglong; these are shapes for a mock, not a radiative-transfer model of the atmosphere.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

from survey_scale.core import masks
from survey_scale.core.wavelength import wavelength_grid

DIB_STRENGTH: dict[str, float] = {
    "DIB_4430": 1.9,
    "DIB_4503": 0.10,
    "DIB_4728": 0.08,
    "DIB_4764": 0.15,
    "DIB_4883": 0.60,
    "DIB_5707": 0.08,
    "DIB_5782": 0.61,
    "DIB_5799": 0.17,
    "DIB_6198": 0.05,
    "DIB_6205": 0.16,
    "DIB_6272": 0.10,
    "DIB_6286": 1.26,
    "DIB_6381": 0.06,
    "DIB_6615": 0.20,
    "DIB_6995": 0.10,
    "DIB_7226": 0.25,
    "DIB_8623": 0.37,
}
"""Equivalent width per unit E(B−V) (Å mag⁻¹) of each band of :data:`survey_scale.core.masks.DIB_CENTRES`."""

NA_D_E0 = 10.0**-1.85
"""E(B−V) scale of the Na I D relation (Poznanski et al. 2012)."""
NA_D_SLOPE = 1.17
NA_D2_SHARE = 0.56
EBV_PER_KPC = 0.6
"""Mean reddening rate (mag kpc⁻¹) converting E(B−V) to a distance for the Ca II relation."""
CA_K_SATURATION = 0.6
CA_H_SATURATION = 0.4
"""Saturation equivalent widths (Å) of interstellar Ca II K and H."""
TRUNCATE_SIGMA = 4.0
DEFAULT_PWV = 5.0
"""Precipitable water vapour (mm) assumed when ``pwv`` is not given."""

_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def _as_column(values: float | np.ndarray, name: str) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if arr.ndim != 1 or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be a finite scalar or 1-D array")
    return arr


def _gaussian_features(
    wave: np.ndarray, centres: np.ndarray, fwhm: np.ndarray, ew: np.ndarray, resolution: float
) -> np.ndarray:
    """Optical depth (n, P) of Gaussian features of equivalent widths ``ew`` (n, F) truncated at ±4σ."""
    sigma = np.sqrt((fwhm * _FWHM_TO_SIGMA) ** 2 + (centres / resolution * _FWHM_TO_SIGMA) ** 2)
    tau = np.zeros((ew.shape[0], wave.size))
    for c, s, w in zip(centres, sigma, ew.T, strict=True):
        sel = np.flatnonzero(np.abs(wave - c) < TRUNCATE_SIGMA * s)
        profile = np.exp(-0.5 * ((wave[sel] - c) / s) ** 2) / (np.sqrt(2.0 * np.pi) * s)
        tau[:, sel] += w[:, None] * profile[None, :]
    return tau


def interstellar_features(
    ebv: np.ndarray, distance: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres (Å, vacuum), intrinsic FWHM (Å) and equivalent widths (n, F) of the interstellar features."""
    na_total = np.log10(1.0 + ebv / NA_D_E0) / NA_D_SLOPE
    d_pc = ebv / EBV_PER_KPC * 1e3 if distance is None else distance
    ca_k = CA_K_SATURATION * -np.expm1(-np.maximum(d_pc - 95.0, 0.0) / 2.78e3 / CA_K_SATURATION)
    ca_h = CA_H_SATURATION * -np.expm1(-np.maximum(d_pc - 102.0, 0.0) / 4.58e3 / CA_H_SATURATION)
    names = list(masks.DIB_CENTRES)
    centres = np.array([*masks.NA_I_D, masks.CA_II_K, masks.CA_II_H, *(masks.DIB_CENTRES[k][0] for k in names)])
    fwhm = np.array([0.0, 0.0, 0.0, 0.0, *(masks.DIB_CENTRES[k][1] for k in names)])
    ew = np.column_stack(
        [
            na_total * NA_D2_SHARE,
            na_total * (1.0 - NA_D2_SHARE),
            ca_k,
            ca_h,
            *(DIB_STRENGTH[k] * ebv for k in names),
        ]
    )
    return centres, fwhm, ew


def interstellar_transmission(
    ebv: float | np.ndarray,
    wave: np.ndarray | None = None,
    *,
    distance: float | np.ndarray | None = None,
    resolution: float = 1800.0,
) -> np.ndarray:
    """Transmission of interstellar Na I D, Ca II K/H and diffuse bands (SPEC §10; no continuum reddening).

    Parameters
    ----------
    ebv
        Colour excess E(B−V) in mag, scalar or (n,), ≥ 0.
    wave
        (P,) vacuum wavelengths (Å) in the observer's frame of the interstellar medium; default the common
        grid.
    distance
        Distance in pc for the Ca II lines (Megier et al. 2005), broadcast against ``ebv``; default from
        E(B−V).
    resolution
        Resolving power of the Gaussian LSF the features are broadened with.

    Returns
    -------
    numpy.ndarray
        (n, P) transmission in (0, 1]; exactly 1 farther than 4σ from every feature.
    """
    ebv_a = _as_column(ebv, "ebv")
    if np.any(ebv_a < 0):
        raise ValueError("interstellar_transmission: ebv must be >= 0")
    dist = None
    if distance is not None:
        ebv_a, dist = np.broadcast_arrays(ebv_a, _as_column(distance, "distance"))
    wave_a = wavelength_grid() if wave is None else np.asarray(wave, dtype=np.float64)
    centres, fwhm, ew = interstellar_features(ebv_a, dist)
    return np.exp(-_gaussian_features(wave_a, centres, fwhm, ew, resolution))


# name: (vacuum head or centre Å, peak τ at airmass 1 / PWV 5 mm, kind, scale Å)
_TELLURIC_SHAPES: dict[str, tuple[float, float, str, float]] = {
    "O2_B": (6869.1, 0.29, "head", 18.0),
    "H2O_7200": (7245.0, 0.16, "band", 45.0),
    "O2_A": (7596.1, 0.80, "head", 30.0),
    "H2O_8200": (8235.0, 0.13, "band", 55.0),
}
_O2_AIRMASS_POWER = 0.55
_H2O_POWER = 0.6
_EDGE_TAPER = 4.0
"""Å over which each band's envelope is tapered to zero inside its band limits."""


def telluric_transmission(
    airmass: float | np.ndarray,
    wave: np.ndarray | None = None,
    pwv: float | np.ndarray | None = None,
    *,
    resolution: float = 1800.0,
) -> np.ndarray:
    """Transmission of the O₂ A/B and H₂O bands at LAMOST resolution (SPEC §10).

    Parameters
    ----------
    airmass
        Airmass ≥ 1, scalar or (n,).
    wave
        (P,) vacuum wavelengths (Å) in the observatory frame; default the common grid.
    pwv
        Precipitable water vapour in mm, broadcast against ``airmass``; default 5 mm.
    resolution
        Resolving power that sets the sharpness of the O₂ band heads.

    Returns
    -------
    numpy.ndarray
        (n, P) transmission in (0, 1]; exactly 1 outside :data:`survey_scale.core.masks.TELLURIC_BANDS`.
    """
    x = _as_column(airmass, "airmass")
    if np.any(x < 1.0):
        raise ValueError("telluric_transmission: airmass must be >= 1")
    x, water = np.broadcast_arrays(x, _as_column(DEFAULT_PWV if pwv is None else pwv, "pwv"))
    if np.any(water < 0):
        raise ValueError("telluric_transmission: pwv must be >= 0")
    wave_a = wavelength_grid() if wave is None else np.asarray(wave, dtype=np.float64)
    tau = np.zeros((x.size, wave_a.size))
    for band in masks.TELLURIC_BANDS:
        centre, peak, kind, scale = _TELLURIC_SHAPES[band.name]
        sel = np.flatnonzero((wave_a > band.lo) & (wave_a < band.hi))
        w = wave_a[sel]
        if kind == "head":
            sigma = centre / resolution * _FWHM_TO_SIGMA
            edge = 0.5 * (1.0 + erf((w - centre) / (np.sqrt(2.0) * sigma)))
            shape = edge * np.exp(-np.clip(w - centre, 0.0, None) / scale)
            amount = x**_O2_AIRMASS_POWER
        else:
            shape = np.exp(-0.5 * ((w - centre) / scale) ** 2)
            amount = (x * water / DEFAULT_PWV) ** _H2O_POWER
        taper = np.clip(np.minimum(w - band.lo, band.hi - w) / _EDGE_TAPER, 0.0, 1.0)
        tau[:, sel] += amount[:, None] * (peak * shape * np.sin(0.5 * np.pi * taper) ** 2)[None, :]
    return np.exp(-tau)
