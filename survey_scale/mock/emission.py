"""Emission-line stars of the mock (SPEC §10, P1 §3): who emits, line strengths and near-IR excess."""

from __future__ import annotations

import numpy as np

from survey_scale.mock.stellar import Columns


def _emission_probability(teff: np.ndarray, fraction: float) -> np.ndarray:
    """Per-star emission probability: Be stars peak near B2 (18,000 K), Herbig Ae/Be near 9,000 K."""
    logt = np.log10(teff)
    w = (
        0.2
        + np.exp(-0.5 * ((logt - np.log10(18000.0)) / 0.12) ** 2)
        + 0.4 * np.exp(-0.5 * ((logt - np.log10(9000.0)) / 0.05) ** 2)
    )
    return np.clip(fraction * w / w.mean(), 0.0, 1.0)


def _emission_lines(rng: np.random.Generator, s: Columns) -> Columns:
    """Emission-line strengths (equivalent widths in Å, positive for emission, stellar rest frame).

    Hα EW log-uniform in 1–50 Å; Hβ in 70 % of emitters at 0.1–0.3 × Hα; Paschen lines (Pa11–Pa20) in 30 %
    at 0.02–0.08 × Hα each; intrinsic Gaussian line width σ_v 60–200 km/s (disc rotation). Near-IR excess
    from circumstellar discs (P1 §4: Ks "contaminated by emission from surrounding gas and dust"):
    ΔKs = −(0.05 + 0.25 log10(EW_Hα)/1.7) × U(0.5, 1.5), ΔH = 0.7 ΔKs, ΔJ = 0.45 ΔKs.
    """
    n = s["teff"].size
    em = s["emission"]
    ha = 10.0 ** rng.uniform(0.0, np.log10(50.0), n)
    has_hb = rng.random(n) < 0.7
    has_pa = rng.random(n) < 0.3
    dks = -(0.05 + 0.25 * np.log10(ha) / 1.7) * rng.uniform(0.5, 1.5, n)
    return {
        "ha_ew": np.where(em, ha, 0.0),
        "hb_ew": np.where(em & has_hb, ha * rng.uniform(0.1, 0.3, n), 0.0),
        "pa_ew": np.where(em & has_pa, ha * rng.uniform(0.02, 0.08, n), 0.0),
        "em_sigma_kms": np.where(em, rng.uniform(60.0, 200.0, n), np.nan),
        "ks_excess": np.where(em, dks, 0.0),
    }
