"""Model grids for training the emulator from the built-in synthesizer (SPEC §5.1, §10; P2 §4.1, Table 1).

Label sampling (:func:`sample_labels`) is an analytic stand-in for P2's equal-EEP draws from MIST
isochrones, documented here so that it can be replaced by real isochrones:

- T_eff log-uniform over the grid's range (7000–45,000 K): equal-EEP sampling of a mass grid that is
  roughly uniform in log M puts comparable numbers of models per decade of T_eff on the upper main sequence.
- log g given T_eff, a mixture of
  * 65 % main sequence: uniform between the TAMS, log g_TAMS = 3.75 − 0.5 max(log T_eff − 4, 0), and the
    ZAMS, log g_ZAMS = 4.30 − 0.4 max(log T_eff − 4.3, 0) (≈ 4.3 for B/A dwarfs, ≈ 4.15 at 45,000 K);
  * 25 % giants and supergiants: uniform between the lower limit log g_min and the TAMS;
  * 10 % uniform between log g_min and 5 (subdwarfs, and coverage of the whole box for the emulator);
  the lower limit log g_min = 3.6 log T_eff − 13.45 (0.4 at 7000 K, 1.0 at 10,000 K, 2.0 at 20,000 K, 3.3 at
  45,000 K) rises with T_eff like the Humphreys–Davidson/Eddington boundary of real hot supergiants
  (g ∝ T_eff⁴ at a fixed L/M near the Eddington limit).
- [Fe/H] uniform over its range (MIST isochrones come at evenly spaced [Fe/H]);
- v_mic, v sin i, N_He/N_tot and the other [X/H] independently uniform within
  :data:`survey_scale.core.labels.LABEL_RANGES` (P2 Table 1).

Spectra (:func:`make_model_grid`) are noiseless flux spectra at the mean LSF (R = 1800), rest frame,
normalized exactly as the pipeline normalizes observed spectra:
:func:`survey_scale.science.normalize.normalize_continuum` with ivar = 1 (SPEC §3).
"""

from __future__ import annotations

import numpy as np

from survey_scale._version import __version__
from survey_scale.core.labels import LABEL_NAMES, LABEL_RANGES
from survey_scale.core.wavelength import wavelength_grid
from survey_scale.science.model_grid import ModelGrid
from survey_scale.science.normalize import CONTINUUM_LENGTH, normalize_continuum
from survey_scale.synth.core import DEFAULT_RESOLUTION, synthesize

MAIN_SEQUENCE_SHARE = 0.65
EVOLVED_SHARE = 0.25


def logg_zams(teff: np.ndarray) -> np.ndarray:
    """log g of the zero-age main sequence (analytic approximation), dex."""
    return 4.30 - 0.4 * np.maximum(np.log10(teff) - 4.3, 0.0)


def logg_tams(teff: np.ndarray) -> np.ndarray:
    """log g at the end of the main sequence (analytic approximation), dex."""
    return 3.75 - 0.5 * np.maximum(np.log10(teff) - 4.0, 0.0)


def logg_min(teff: np.ndarray) -> np.ndarray:
    """Lowest log g of hot supergiants at ``teff`` (≈ Eddington / Humphreys–Davidson boundary), dex."""
    return np.clip(3.6 * np.log10(teff) - 13.45, LABEL_RANGES["logg"][0], None)


def sample_labels(n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` label vectors as described in the module docstring.

    Parameters
    ----------
    n
        Number of label vectors.
    rng
        Random generator (``np.random.default_rng(seed)``).

    Returns
    -------
    numpy.ndarray
        (n, 11) physical labels in :data:`survey_scale.core.labels.LABEL_NAMES` order.
    """
    labels = np.empty((n, len(LABEL_NAMES)))
    col = {name: i for i, name in enumerate(LABEL_NAMES)}
    t_lo, t_hi = LABEL_RANGES["teff"]
    teff = 10.0 ** rng.uniform(np.log10(t_lo), np.log10(t_hi), n)
    g_hi = LABEL_RANGES["logg"][1]
    lo_lim, tams, zams = logg_min(teff), logg_tams(teff), logg_zams(teff)
    branch = rng.uniform(size=n)
    u = rng.uniform(size=n)
    on_ms = branch < MAIN_SEQUENCE_SHARE
    evolved = (~on_ms) & (branch < MAIN_SEQUENCE_SHARE + EVOLVED_SHARE)
    logg = np.where(
        on_ms, tams + u * (zams - tams), np.where(evolved, lo_lim + u * (tams - lo_lim), lo_lim + u * (g_hi - lo_lim))
    )
    labels[:, col["teff"]] = teff
    labels[:, col["logg"]] = logg
    for name in LABEL_NAMES:
        if name not in ("teff", "logg"):
            lo, hi = LABEL_RANGES[name]
            labels[:, col[name]] = rng.uniform(lo, hi, n)
    return labels


def normalized_model_spectra(
    labels: np.ndarray, resolution: float = DEFAULT_RESOLUTION, chunk_size: int = 1024
) -> np.ndarray:
    """Noiseless spectra of ``labels`` normalized like observed spectra (SPEC §3), (n, 3802) float32."""
    labels = np.atleast_2d(labels)
    out = np.empty((labels.shape[0], wavelength_grid().size), dtype=np.float32)
    for a in range(0, labels.shape[0], chunk_size):
        flux = synthesize(labels[a : a + chunk_size], resolution=resolution, kind="flux")
        out[a : a + chunk_size] = normalize_continuum(flux, np.ones_like(flux))[0]
    return out


def make_model_grid(n: int, seed: int, *, resolution: float = DEFAULT_RESOLUTION, chunk_size: int = 1024) -> ModelGrid:
    """A model grid of ``n`` synthetic spectra for training the emulator (SPEC §5.1, §10).

    Parameters
    ----------
    n
        Number of spectra.
    seed
        Seed of ``np.random.default_rng`` for the label draws. The same (n, seed, resolution, chunk_size)
        give bit-identical grids; another ``chunk_size`` may change the normalized flux by rounding
        (~1e-6) in the BLAS products of the normalization.
    resolution
        Resolving power of the LSF (default the mean LAMOST LSF, R = 1800).
    chunk_size
        Spectra synthesized and normalized per batch.

    Returns
    -------
    survey_scale.science.model_grid.ModelGrid
        Labels (n, 11), ``label_min``/``label_max`` = :data:`survey_scale.core.labels.LABEL_RANGES`, the common
        wavelength grid, pseudo-continuum normalized flux (n, 3802) float32 and ``meta`` recording the
        producer, seed, LSF, normalization and sampling.
    """
    if n < 1:
        raise ValueError("make_model_grid: n must be >= 1")
    labels = sample_labels(n, np.random.default_rng(seed))
    flux = normalized_model_spectra(labels, resolution=resolution, chunk_size=chunk_size)
    # The module paths in these texts are those of earlier versions, kept as they were: the text is part of the
    # grid file, whose hash keys the emulator trained on it.
    meta = {
        "producer": f"survey_scale.synth.make_model_grid (survey_scale {__version__})",
        "seed": int(seed),
        "n_spectra": int(n),
        "resolution": float(resolution),
        "lsf": f"Gaussian, constant resolving power R = {float(resolution):g} (mean LAMOST LSF at 5000 Å), "
        "no fibre-to-fibre scatter",
        "normalization": f"survey_scale.normalize.normalize_continuum (SPEC §3, L = {CONTINUUM_LENGTH:g} Å) "
        "of the flux spectrum with ivar = 1",
        "sampling": "survey_scale.synth.modelgrid.sample_labels: analytic stand-in for MIST equal-EEP "
        "(T_eff log-uniform; log g 65% main sequence, 25% evolved to the Eddington-like limit, "
        "10% uniform to 5); other labels uniform in LABEL_RANGES",
        "noise": "none",
        "rv_km_s": 0.0,
        "synthesizer": "survey_scale.synth (one-layer LTE Milne-Eddington synthesizer; see its docstring)",
    }
    lo = np.array([LABEL_RANGES[k][0] for k in LABEL_NAMES])
    hi = np.array([LABEL_RANGES[k][1] for k in LABEL_NAMES])
    return ModelGrid(labels, LABEL_NAMES, lo, hi, wavelength_grid(), flux, meta)
