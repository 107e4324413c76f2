"""What the catalogues measure of a mock star (SPEC §10): magnitudes and errors, Gaia astrometry, S/N.

Apparent magnitudes with catalogue errors and detection limits (:mod:`survey_scale.mock.photometry`),
Gaia DR2-like parallaxes (with the SPEC §8 zero point), proper motions and RUWE, and the median S/N a LAMOST
visit reaches on a star of given G.
"""

from __future__ import annotations

import numpy as np

from survey_scale.mock import photometry as ph
from survey_scale.mock.stellar import Columns

SNR_CEILING: float = 800.0
"""Flat-fielding and sky-subtraction systematics cap the S/N per pixel of the brightest stars."""


def snr_from_g(g_mag: np.ndarray, g_sky: float = 15.5, snr14: float = 76.0) -> np.ndarray:
    """Median S/N per pixel (g band) a LAMOST visit reaches on a star of apparent G in good conditions.

    Photon noise of the star plus sky background: S/N = S₀ f / √(f + b), f = 10^(−0.4 (G − 14)),
    b = 10^(−0.4 (G_sky − 14)), the sky being equivalent to a G = 15.5 star per fibre and S₀ set so that a
    G = 14 star reaches 76; combined in quadrature with a systematic ceiling of :data:`SNR_CEILING`. The
    schedule multiplies by 10^(N(0, 0.08) − Exp(0.32)) per visit (weather, seeing, fibre losses), which with
    the G distribution gives S/N per spectrum with a median near 40 and a peak of log S/N near 1.8 (P2 §2:
    median 37, peak 63).
    """
    f = 10.0 ** (-0.4 * (np.asarray(g_mag, dtype=np.float64) - 14.0))
    b = 10.0 ** (-0.4 * (g_sky - 14.0))
    s0 = snr14 * np.sqrt(1.0 + b)
    photon = s0 * f / np.sqrt(f + b)
    return 1.0 / np.sqrt(1.0 / photon**2 + 1.0 / SNR_CEILING**2)


def _photometry(rng: np.random.Generator, colour_rng: np.random.Generator, s: Columns) -> Columns:
    """Apparent magnitudes: M_system + the star's colour offsets (:func:`photometry.colour_offsets`)
    + 5 log10(d/10 pc) + R_band E(B−V) (+ disc IR excess), then errors.

    ``<band>_true`` holds the noiseless value, ``<band>`` and ``<band>_err`` the catalogue ones; faint
    2MASS and g/r/i magnitudes go missing (NaN) past the detection limits (logistic, width 0.15 mag), plus
    1 % at random (not G), as in real cross-matches.
    """
    n = s["teff"].size
    dm = 5.0 * np.log10(s["distance_pc"] / 10.0)
    excess = {"J": 0.45, "H": 0.7, "Ks": 1.0}
    out: Columns = {}
    # Real stars are off the colour table the pipeline uses (a stream of its own: the rest of the mock
    # does not change with it); the system's magnitudes take the primary's offsets.
    offsets = ph.colour_offsets(colour_rng, s["teff"], s["logg"], s["fe_h"])
    for band in ph.BANDS:
        out[f"abs_{band}"] = s[f"abs_{band}"] + offsets[band]
        out[f"colour_offset_{band}"] = offsets[band]
        mag = out[f"abs_{band}"] + dm + ph.EXTINCTION_COEFFS[band] * s["ebv"]
        if band in excess:
            mag = mag + excess[band] * s["ks_excess"]
        out[f"{band}_true"] = mag
    for band in ph.BANDS:
        true = out[f"{band}_true"]
        sigma = ph.photometric_error(band, true, r_mag=out["r_true"])
        observed = true + rng.normal(0.0, 1.0, n) * sigma
        reported = sigma * rng.uniform(0.85, 1.15, n)
        missing = rng.random(n) < 0.01
        if band in ph.DETECTION_LIMITS:
            p_miss = 1.0 / (1.0 + np.exp(-(true - ph.DETECTION_LIMITS[band]) / 0.15))
            missing |= rng.random(n) < p_miss
        if band == "G":
            missing[:] = False
        out[band] = np.where(missing, np.nan, observed)
        out[f"{band}_err"] = np.where(missing, np.nan, reported)
    return out


def _astrometry(rng: np.random.Generator, s: Columns) -> Columns:
    """Gaia DR2-like parallax, proper motions, RUWE and source_id.

    ϖ_obs = 1000/d + zero point (SPEC §8, :func:`photometry.parallax_zero_point`) + N(0, σ_ϖ(G)); 2 % of
    parallaxes missing (two-parameter solutions), half of those fainter than G = 19. Proper motions get
    1.5 σ_ϖ errors. RUWE: log-normal around 1 (σ = 0.07) for single stars, 3 % astrometric outliers
    (1.4–3); binaries add the photocentre wobble a·|B − β| (B = q/(1+q) mass fraction, β the secondary's
    G-band light fraction) seen against a per-transit error of 4 σ_ϖ, damped for periods longer than the
    22-month DR2 baseline: RUWE = √(1 + (wobble/σ_al)²) — equal-mass pairs keep RUWE ≈ 1 (P1 §6).
    """
    n = s["teff"].size
    g = s["G_true"]
    plx_true = 1000.0 / s["distance_pc"]
    sigma = ph.gaia_parallax_error(g) * rng.uniform(0.9, 1.2, n)
    zp = ph.parallax_zero_point(g)
    plx = plx_true + zp + rng.normal(0.0, 1.0, n) * sigma
    missing = (rng.random(n) < 0.02) | ((g > 19.0) & (rng.random(n) < 0.5))
    sig_pm = 1.5 * sigma
    out: Columns = {
        "parallax_true": plx_true,
        "parallax_zp": zp,
        "parallax": np.where(missing, np.nan, plx),
        "parallax_error": np.where(missing, np.nan, sigma),
        "pmra": np.where(missing, np.nan, s["pmra_true"] + rng.normal(0.0, 1.0, n) * sig_pm),
        "pmdec": np.where(missing, np.nan, s["pmdec_true"] + rng.normal(0.0, 1.0, n) * sig_pm),
        "pmra_error": np.where(missing, np.nan, sig_pm),
        "pmdec_error": np.where(missing, np.nan, sig_pm),
    }
    binary = s["binary"]
    q = np.where(binary, s["q"], 0.0)
    beta = np.nan_to_num(np.where(binary, 1.0 / (1.0 + 10.0 ** (-0.4 * (s["abs_G_2"] - s["abs_G_1"]))), 0.0))
    a_mas = np.where(binary, s["a_rsun"] / 215.03 * plx_true, 0.0)
    damping = np.minimum(1.0, 670.0 / np.where(binary, s["period_d"], 1.0))
    wobble = np.nan_to_num(a_mas * np.abs(q / (1.0 + q) - beta) * damping)
    ruwe = np.exp(rng.normal(0.0, 0.07, n)) * np.sqrt(1.0 + (wobble / (4.0 * sigma)) ** 2)
    outlier = rng.random(n) < 0.03
    ruwe = np.where(outlier, rng.uniform(1.4, 3.0, n), ruwe)
    out["ruwe"] = np.where(missing, np.nan, ruwe)
    out["photocentre_wobble_mas"] = wobble
    # A Gaia-like 64-bit id: a coarse sky cell in the high bits (as Gaia's HEALPix level-12 index) and the
    # star index in the low 35 bits, so ids are unique and stable across releases.
    cell = (np.floor(s["ra"] / 360.0 * 4096).astype(np.int64) << 11) + np.floor(
        (s["dec"] + 90.0) / 180.0 * 2048
    ).astype(np.int64)
    out["gaia_source_id"] = (cell << 35) + s["star_index"].astype(np.int64)
    return out
