"""Stellar relations of the mock population (SPEC §10): mass, luminosity, MKs, radius, subclass.

Pure functions of Teff (K) and log g (cgs dex), vectorized over stars, with no random draws: dwarfs follow the
Pecaut & Mamajek (2013) sequence (:mod:`survey_scale.mock.photometry`), evolved stars the flux-weighted
gravity–luminosity relation (Kudritzki et al. 2003, 2008). :mod:`survey_scale.mock.population` draws the
labels; these relations turn them into masses, radii and magnitudes.
"""

from __future__ import annotations

import numpy as np

from survey_scale.mock import photometry as ph

Columns = dict[str, np.ndarray]
"""A star table as columns (name → one value per star), as the population's drawing steps pass it on."""


LOGG_SUN: float = 4.438
TEFF_SUN: float = 5772.0

# log M / M_sun as a quadratic in x = log(L_spec / L_spec,sun) = 4 log(Teff/Teff_sun) - (log g - log g_sun),
# least-squares fit to the Pecaut & Mamajek (2013) dwarfs F1V-O3V (rms 0.03 dex); see mass_from_labels.
_DWARF_LOGM_COEFFS: tuple[float, float, float] = (0.06670, 0.11429, 0.11894)  # x^2, x, 1
# Evolved stars: the flux-weighted gravity-luminosity relation of Kudritzki et al. (2003, 2008),
# M_bol = 3.41 (log g_F - 1.5) - 8.02, log g_F = log g - 4 log(Teff / 10^4 K),
# which is log L = 1.364 x - 0.21.
_FGLR_LOGL: tuple[float, float] = (1.364, -0.206)


# --- stellar relations -----------------------------------------------------------------------------------


def spectroscopic_luminosity(teff: np.ndarray, logg: np.ndarray) -> np.ndarray:
    """x = log10(ℒ/ℒ_sun) with ℒ = Teff⁴/g (Kudritzki's spectroscopic luminosity), dimensionless."""
    return 4.0 * np.log10(np.asarray(teff, dtype=np.float64) / TEFF_SUN) - (np.asarray(logg) - LOGG_SUN)


def evolved_weight(teff: np.ndarray, logg: np.ndarray) -> np.ndarray:
    """Weight (0–1) of the evolved-star branch of the mass relation.

    0 on and above the main sequence, 1 for log g ≥ 1.3 dex below the mean dwarf of that Teff, a smoothstep
    (continuous first derivative) in between, starting 0.3 dex below the mean dwarf.
    """
    delta = ph.dwarf_logg(teff) - np.asarray(logg, dtype=np.float64)
    t = np.clip((delta - 0.3) / 1.0, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def log_mass_from_labels(teff: np.ndarray, logg: np.ndarray) -> np.ndarray:
    """log10 of the mass (M_sun) of a star of given Teff (K) and log g: a smooth function of both.

    Dwarfs follow a quadratic fit of log M against x = log(ℒ/ℒ_sun) to the Pecaut & Mamajek (2013) dwarf
    sequence; evolved stars follow the flux-weighted gravity–luminosity relation (FGLR, Kudritzki et al.
    2003, 2008), log L = 1.364 x − 0.21, i.e. log M = 0.364 x − 0.21 (L = M ℒ in solar units). The two are
    blended by :func:`evolved_weight`. The FGLR keeps giants and supergiants from the runaway masses that
    the dwarf quadratic gives when extrapolated to large ℒ.
    """
    x = spectroscopic_luminosity(teff, logg)
    a2, a1, a0 = _DWARF_LOGM_COEFFS
    dwarf = a2 * x**2 + a1 * x + a0
    evolved = (_FGLR_LOGL[0] - 1.0) * x + _FGLR_LOGL[1]
    w = evolved_weight(teff, logg)
    return (1.0 - w) * dwarf + w * evolved


def absolute_mag_ks(teff: np.ndarray, logg: np.ndarray, log_mass: np.ndarray | None = None) -> np.ndarray:
    """MKs (mag) of a star from Teff (K), log g and its mass: the mock's MKs relation (SPEC §10).

    MKs = M_bol,sun − 2.5 log10(L/L_sun) − BC_Ks(Teff), with L = M ℒ (ℒ = Teff⁴/g in solar units, i.e.
    L = 4πR²σTeff⁴ with R² = GM/g), M from :func:`log_mass_from_labels` unless given, and the bolometric
    correction BC_Ks = BC_V + (V − Ks) of the Pecaut & Mamajek (2013) dwarf sequence. It reproduces that
    table's M_Ks for O9V–F1V to ≈ 0.1 mag rms. The population adds 0.1 mag of intrinsic scatter.
    """
    if log_mass is None:
        log_mass = log_mass_from_labels(teff, logg)
    log_l = log_mass + spectroscopic_luminosity(teff, logg)
    return ph.SUN_MBOL - 2.5 * log_l - ph.bolometric_correction_ks(teff)


def radius_from_mass(log_mass: np.ndarray, logg: np.ndarray) -> np.ndarray:
    """Radius (R_sun) from log mass (M_sun) and log g: R² = G M / g."""
    return np.sqrt(10.0 ** (np.asarray(log_mass) + LOGG_SUN - np.asarray(logg)))


def logg_lower_limit(teff: np.ndarray) -> np.ndarray:
    """Lowest log g allowed at a Teff: a line parallel to the Eddington limit, 1.2 dex at 10,000 K."""
    return 4.0 * (np.log10(np.asarray(teff, dtype=np.float64)) - 4.0) + 1.2


def spectral_subclass(teff: np.ndarray) -> np.ndarray:
    """LAMOST-like SUBCLASS strings ("O", "B2", "A7", "F0") from Teff via the dwarf table."""
    table = ph.dwarf_sequence()
    logt = np.log10(table["Teff"])
    idx = np.clip(np.searchsorted(logt, np.log10(np.asarray(teff, dtype=np.float64))), 0, len(logt) - 1)
    lower = np.clip(idx - 1, 0, len(logt) - 1)
    pick = np.where(np.abs(logt[idx] - np.log10(teff)) < np.abs(logt[lower] - np.log10(teff)), idx, lower)
    out = []
    for spt in table["SpT"][pick]:
        spt = str(spt).rstrip("V")
        out.append("O" if spt.startswith("O") else spt.split(".")[0])
    return np.array(out)


def _combine_mags(m1: np.ndarray, m2: np.ndarray) -> np.ndarray:
    """Magnitude of the summed flux of two components; NaN in ``m2`` means no secondary."""
    m2 = np.where(np.isfinite(m2), m2, np.inf)
    return -2.5 * np.log10(10.0 ** (-0.4 * m1) + 10.0 ** (-0.4 * m2))
