"""Unresolved binaries of the mock (SPEC §10, P1 §6): the secondaries' labels and circular orbits.

The binary flag, mass ratio and secondary's Teff/log g are drawn with the candidates
(:mod:`survey_scale.mock.population`); these steps add what the spectra and the astrometry need.
"""

from __future__ import annotations

import numpy as np

from survey_scale.mock.stellar import Columns


def _secondary_labels(rng: np.random.Generator, s: Columns) -> Columns:
    """Labels of the secondaries: own vmic, vsini, He; the primary's abundances (same birth cloud)."""
    n = s["teff"].size
    binary = s["binary"]
    out: Columns = {"vmic2": np.where(binary, rng.uniform(0.0, 3.0, n), np.nan)}
    sin_i = np.sqrt(1.0 - rng.random(n) ** 2)
    out["vsini2"] = np.where(binary, np.clip(np.abs(rng.normal(150.0, 90.0, n)) * sin_i, 0.0, 420.0), np.nan)
    out["he_frac2"] = np.where(binary, np.clip(rng.normal(0.09, 0.007, n), 0.07, 0.11), np.nan)
    for name in ("c_h", "n_h", "o_h", "si_h", "s_h", "fe_h"):
        out[name + "2"] = np.where(binary, s[name], np.nan)
    return out


def _orbits(rng: np.random.Generator, s: Columns) -> Columns:
    """Circular orbits: P log-uniform in 2–5000 d (Öpik's law), isotropic inclination, random phase.

    Periods are raised so that the separation a ≥ 2.5 (R1 + R2) (no contact systems). K1 = 212.9 km/s ·
    (P/d)^(−1/3) M2 sin i / (M1 + M2)^(2/3) (masses in M_sun); K2 = K1 / q; a = 4.2084 (M1+M2)^(1/3) P^(2/3)
    R_sun.
    """
    n = s["teff"].size
    binary = s["binary"]
    m1 = s["mass"]
    m2 = np.where(binary, s["mass2"], 0.0)
    r1, r2 = s["radius"], np.where(binary, s["radius2"], 0.0)
    period = 10.0 ** rng.uniform(np.log10(2.0), np.log10(5000.0), n)
    p_min = ((2.5 * (r1 + r2)) / (4.2084 * (m1 + m2) ** (1.0 / 3.0))) ** 1.5
    period = np.maximum(period, p_min * rng.uniform(1.0, 1.5, n))
    sin_i = np.sqrt(1.0 - rng.random(n) ** 2)
    k1 = 212.9 * period ** (-1.0 / 3.0) * m2 * sin_i / (m1 + m2) ** (2.0 / 3.0)
    return {
        "period_d": np.where(binary, period, np.nan),
        "sin_i": np.where(binary, sin_i, np.nan),
        "phase0": np.where(binary, rng.uniform(0.0, 1.0, n), np.nan),
        "k1": np.where(binary, k1, 0.0),
        "k2": np.where(binary, k1 / np.where(binary, s["q"], 1.0), 0.0),
        "a_rsun": np.where(binary, 4.2084 * (m1 + m2) ** (1.0 / 3.0) * period ** (2.0 / 3.0), np.nan),
    }
