"""The mock release's photometry and astrometry (SPEC §10): stars' colours, catalogue errors, Gaia parallaxes.

The bands, the extinction curve and coefficients and the Pecaut & Mamajek (2013) colour table are the
pipeline's own (:mod:`survey_scale.science.photometry`, re-exported here). Real stars do not sit on that
table: :func:`colour_offsets` gives each mock star the differences real stars show — gravity, metallicity
and star-to-star — so that the extinction stage, which uses the table, is not evaluated on its own
assumptions.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from survey_scale.science.photometry import (  # noqa: F401  (re-exported: the mock's single source)
    BANDS,
    EXTINCTION_COEFFS,
    R_V,
    SUN_MBOL,
    band_extinction_coefficient,
    bolometric_correction_ks,
    colour_table,
    dwarf_sequence,
    fitzpatrick99,
    hot_star_sed,
    intrinsic_colors,
    load_passbands,
    reddening_transmission,
)

BAND_WAVELENGTH_UM: dict[str, float] = {
    "G": 0.622,
    "BP": 0.511,
    "RP": 0.777,
    "J": 1.235,
    "H": 1.662,
    "Ks": 2.159,
    "g": 0.477,
    "r": 0.623,
    "i": 0.763,
}
"""Effective wavelengths (µm) of the bands, for the colour offsets of :func:`colour_offsets`."""

GRAVITY_COLOUR_SLOPE = 0.065
"""Colour change (mag per µm⁻¹ of inverse-wavelength baseline) per dex of log g below the dwarf sequence:
B − V reddens by 0.03 mag per dex, as B supergiants are redder than dwarfs of the same Teff."""
METALLICITY_COLOUR_SLOPE = 0.02
"""Colour change (mag per µm⁻¹) per dex of [Fe/H]: line blanketing, small for hot stars."""
COLOUR_TEFF_SCATTER = 0.015
"""Relative star-to-star difference between a star's colour temperature and its spectroscopic Teff."""
COLOUR_BAND_SCATTER = 0.01
"""Independent star-to-star scatter of each band's intrinsic magnitude (mag)."""


def colour_offsets(
    rng: np.random.Generator, teff: np.ndarray, logg: np.ndarray, fe_h: np.ndarray
) -> dict[str, np.ndarray]:
    """How much each mock star's intrinsic M_band − M_Ks differs from the table's (mag), per band.

    Three terms, each scaled by the inverse-wavelength baseline x_band − x_Ks (µm⁻¹), so that colours of
    nearby bands change little:

    - gravity: :data:`GRAVITY_COLOUR_SLOPE` per dex of log g below :func:`dwarf_logg` (giants redder);
    - metallicity: :data:`METALLICITY_COLOUR_SLOPE` per dex of [Fe/H];
    - star-to-star: the colours of a Teff differing by :data:`COLOUR_TEFF_SCATTER` (relative, Gaussian)
      from the spectroscopic one, plus :data:`COLOUR_BAND_SCATTER` mag per band, independent.

    Parameters
    ----------
    rng
        The random stream of these offsets.
    teff, logg, fe_h
        (n,) Teff (K), log g (cgs), [Fe/H] (dex).

    Returns
    -------
    dict
        band (each of :data:`BANDS`) → (n,) offset in mag; ``Ks`` → zeros.
    """
    teff = np.asarray(teff, dtype=np.float64)
    n = teff.size
    deficit = np.clip(dwarf_logg(teff) - np.asarray(logg, dtype=np.float64), 0.0, None)
    shifted = intrinsic_colors(teff * np.exp(rng.normal(0.0, COLOUR_TEFF_SCATTER, n)))
    table = intrinsic_colors(teff)
    x_ks = 1.0 / BAND_WAVELENGTH_UM["Ks"]
    out: dict[str, np.ndarray] = {}
    for band in BANDS:
        noise = rng.normal(0.0, COLOUR_BAND_SCATTER, n)
        if band == "Ks":
            out[band] = np.zeros(n)
            continue
        baseline = 1.0 / BAND_WAVELENGTH_UM[band] - x_ks
        out[band] = (
            baseline * (GRAVITY_COLOUR_SLOPE * deficit + METALLICITY_COLOUR_SLOPE * np.asarray(fe_h, np.float64))
            + (shifted[band] - table[band])
            + noise
        )
    return out


def dwarf_logg(teff: np.ndarray) -> np.ndarray:
    """Surface gravity log g (cgs) of the mean dwarf of that Teff (K).

    A cubic in log Teff fitted to log g = log g_sun + log(M/M_sun) − 2 log(R/R_sun) of the Pecaut & Mamajek
    rows F5V–O3V (6550–45900 K, rms 0.04 dex); smoothing removes the table's row-to-row jitter, which would
    otherwise show as steps in the mock's main sequence. Teff is clipped to that range.
    """
    coeffs = _dwarf_logg_coeffs()
    logt = np.log10(np.clip(np.asarray(teff, dtype=np.float64), 6550.0, 45900.0))
    return np.polyval(coeffs, logt)


@lru_cache(maxsize=1)
def _dwarf_logg_coeffs() -> np.ndarray:
    cols = colour_table()
    logg = 4.438 + np.log10(cols["Msun"]) - 2.0 * np.log10(cols["R_Rsun"])
    sel = np.isfinite(logg) & (cols["logT"] >= np.log10(6550.0) - 1e-9)
    return np.polyfit(cols["logT"][sel], logg[sel], 3)


def dwarf_from_mass(mass: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Teff (K), log g and radius (R_sun) of the mean dwarf of a given mass (M_sun), by interpolation.

    Masses beyond the table (0.105–59 M_sun) are clipped to its ends.
    """
    cols = colour_table()
    ok = np.isfinite(cols["Msun"]) & np.isfinite(cols["R_Rsun"])
    logm_tab = np.log10(cols["Msun"][ok])
    order = np.argsort(logm_tab, kind="stable")
    logm_tab = logm_tab[order]
    logm = np.log10(np.clip(np.asarray(mass, dtype=np.float64), 10 ** logm_tab[0], 10 ** logm_tab[-1]))
    logt = np.interp(logm, logm_tab, cols["logT"][ok][order])
    log_r = np.interp(logm, logm_tab, np.log10(cols["R_Rsun"][ok][order]))
    logg = 4.438 + logm - 2.0 * log_r
    return 10.0**logt, logg, 10.0**log_r


# --- photometric errors ----------------------------------------------------------------------------------

# sigma(m)^2 = floor^2 + (s1 10^{0.2 (m - m_ref)})^2 + (s2 10^{0.4 (m - m_ref)})^2: calibration floor,
# source photon noise and background-limited noise. Anchors: Gaia DR2 (Evans et al. 2018, Fig. 9-10:
# G ~ 1-2 mmag at 17, ~ 15 mmag at 20; BP/RP ~ 10 mmag at 17, ~ 0.1 mag at 20); 2MASS (Skrutskie et al.
# 2006: 10 sigma at J = 15.8, H = 15.1, Ks = 14.3); XSTPS-GAC g, r, i (Liu et al. 2014: ~ 0.02 mag at
# r = 17, limit ~ 19), saturating at r < 13 where APASS values (~ 0.04 mag) replace them (P1 §4).
_ERROR_MODEL: dict[str, tuple[float, float, float, float]] = {
    # band: (floor, s1, s2, m_ref)
    "G": (0.0003, 0.0010, 0.0010, 17.0),
    "BP": (0.0020, 0.0050, 0.0050, 17.0),
    "RP": (0.0020, 0.0050, 0.0050, 17.0),
    "J": (0.020, 0.010, 0.060, 15.8),
    "H": (0.020, 0.010, 0.060, 15.1),
    "Ks": (0.020, 0.010, 0.060, 14.3),
    "g": (0.010, 0.008, 0.015, 17.0),
    "r": (0.010, 0.008, 0.015, 17.0),
    "i": (0.010, 0.008, 0.015, 17.0),
}

DETECTION_LIMITS: dict[str, float] = {"J": 16.8, "H": 16.0, "Ks": 15.3, "g": 19.5, "r": 19.0, "i": 18.7}
"""Magnitudes (50 % completeness) beyond which a band is usually missing in the cross-match."""

APASS_BRIGHT_LIMIT: float = 13.0
"""r magnitude above which XSTPS-GAC saturates and APASS-like errors (0.04 mag floor) apply (P1 §4)."""


def photometric_error(band: str, mag: np.ndarray, r_mag: np.ndarray | None = None) -> np.ndarray:
    """Typical catalogue uncertainty (mag) of a magnitude ``mag`` in ``band``.

    Parameters
    ----------
    band
        One of :data:`BANDS`.
    mag
        (n,) magnitudes.
    r_mag
        (n,) r magnitudes; for g, r, i, stars brighter than :data:`APASS_BRIGHT_LIMIT` get the APASS floor.

    Returns
    -------
    numpy.ndarray
        (n,) 1σ errors in mag.
    """
    floor, s1, s2, m_ref = _ERROR_MODEL[band]
    mag = np.asarray(mag, dtype=np.float64)
    sigma = np.sqrt(floor**2 + (s1 * 10 ** (0.2 * (mag - m_ref))) ** 2 + (s2 * 10 ** (0.4 * (mag - m_ref))) ** 2)
    if band in ("g", "r", "i") and r_mag is not None:
        sigma = np.where(np.asarray(r_mag) < APASS_BRIGHT_LIMIT, np.hypot(sigma, 0.04), sigma)
    return sigma


def gaia_parallax_error(g_mag: np.ndarray) -> np.ndarray:
    """Gaia DR2-like parallax uncertainty (mas) as a function of G.

    0.04 mas for G < 15, 0.1 mas at G = 17, ~0.8 mas at G = 20 (Lindegren et al. 2018, Gaia DR2 astrometric
    solution, Sect. 5): σ_ϖ = √(0.04² + (0.1 · 10^{0.3 (G − 17)})²).
    """
    g_mag = np.asarray(g_mag, dtype=np.float64)
    return np.sqrt(0.04**2 + (0.1 * 10 ** (0.3 * (g_mag - 17.0))) ** 2)


PARALLAX_ZP_OFFSET_MAS: float = -0.0528
PARALLAX_ZP_SLOPE_MAS: float = 0.00421
PARALLAX_ZP_G_REF: float = 12.2


def parallax_zero_point(g_mag: np.ndarray) -> np.ndarray:
    """Gaia DR2 parallax zero point ϖ_obs − ϖ_true (mas) of Leung & Bovy (2019) used by SPEC §8.

    ϖ_obs = ϖ_true − 0.0528 + 0.00421 (G − 12.2) mas, i.e. the pipeline's correction
    ϖ_corr = ϖ + 0.0528 − 0.00421 (G − 12.2) recovers the truth.
    """
    return PARALLAX_ZP_OFFSET_MAS + PARALLAX_ZP_SLOPE_MAS * (np.asarray(g_mag, dtype=np.float64) - PARALLAX_ZP_G_REF)
