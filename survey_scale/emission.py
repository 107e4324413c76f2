"""Hα emission and erroneous-spectrum diagnostics from a PCA reconstruction (SPEC §4; P1 §3, Appendix A).

For each spectrum, with its normalized flux f, inverse variance w and the PCA reconstruction r built from
the clean windows only (so that emission cannot leak into it):

- ``halpha_excess`` = mean(f − r) over 6557–6571 Å (P1 Fig. 3, horizontal axis), with
  ``halpha_excess_err`` from the pixel noise and the reconstruction's own error;
- ``halpha_chi2`` = reduced χ² of f vs r over 6400–6550 and 6590–6690 Å (P1 Fig. 3, vertical axis);
- ``pca_chi2`` = reduced χ² of f vs r over all clean-window pixels, the erroneous-spectrum diagnostic of
  P1 Appendix A (flux jumps, wrong wavelength calibration).

The variance of every residual is 1/w + σ²_model, where σ²_model is the reconstruction error of the PCA
measured on its training spectra (noise removed), so χ² stays near 1 at any S/N for a good spectrum.

Flags. ``em_flag = 1`` when the excess is above a threshold **and** at least ``min_significance`` times its
error. The default threshold is derived from the data: median + 5 × 1.4826 × MAD of the excess of the
high-S/N PCA candidates (emission stars are a minority there, so the robust statistics describe the
non-emission majority), i.e. a robust 5σ cut. ``bad_spectrum_flag = 1`` when ``pca_chi2`` exceeds median +
10 × 1.4826 × MAD of log10 χ² over the same candidates ("very large", P1 Appendix A). Both thresholds are
stored with the PCA model that produced them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from survey_scale.grid import wavelength_grid
from survey_scale.masks import HALPHA_CHI2_WINDOWS, HALPHA_EXCESS_WINDOW, window_mask

MAD_TO_SIGMA = 1.4826


def _masks(wave: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    wave = wavelength_grid() if wave is None else wave
    return window_mask(wave, (HALPHA_EXCESS_WINDOW,)), window_mask(wave, HALPHA_CHI2_WINDOWS)


def residual_statistics(
    norm_flux: np.ndarray,
    norm_ivar: np.ndarray,
    reconstruction: np.ndarray,
    model_var: np.ndarray,
    clean: np.ndarray,
    wave: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Hα excess, its error, Hα-region χ² and clean-window χ² of a batch of spectra.

    Parameters
    ----------
    norm_flux, norm_ivar
        (n, P) normalized flux and inverse variance (ivar = 0: pixel not used).
    reconstruction
        (n, P) PCA reconstruction from the clean-window coefficients.
    model_var
        (P,) variance of the reconstruction error (normalized flux units squared).
    clean
        (P,) boolean clean-window mask.
    wave
        (P,) wavelengths in Å (default: the common grid).

    Returns
    -------
    dict
        ``halpha_excess``, ``halpha_excess_err``, ``halpha_chi2``, ``pca_chi2`` (each (n,) float32; NaN where
        no pixel of the window is usable).
    """
    excess_window, chi2_windows = _masks(wave)
    good = (norm_ivar > 0) & np.isfinite(norm_flux)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.where(good, 1.0 / np.where(good, norm_ivar, 1.0) + model_var[None, :], np.inf)
        resid = np.where(good, norm_flux - reconstruction, 0.0)
        chi = resid**2 / var

        g = good & excess_window
        n = g.sum(axis=1)
        excess = np.where(g, resid, 0.0).sum(axis=1) / n
        excess_err = np.sqrt(np.where(g, var, 0.0).sum(axis=1)) / n

        def reduced(window: np.ndarray) -> np.ndarray:
            use = good & window
            return np.where(use, chi, 0.0).sum(axis=1) / use.sum(axis=1)

        out = {
            "halpha_excess": excess,
            "halpha_excess_err": excess_err,
            "halpha_chi2": reduced(chi2_windows),
            "pca_chi2": reduced(clean),
        }
    return {k: v.astype(np.float32) for k, v in out.items()}


def robust_threshold(values: np.ndarray, n_sigma: float) -> float:
    """median + n_sigma × 1.4826 × MAD of the finite ``values``."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("robust_threshold: no finite values")
    median = np.median(values)
    return float(median + n_sigma * MAD_TO_SIGMA * np.median(np.abs(values - median)))


def derive_thresholds(stats: Mapping[str, np.ndarray], n_sigma: float, bad_n_sigma: float) -> dict[str, float]:
    """Default thresholds from the diagnostics of the PCA candidates (see module docstring)."""
    log_chi2 = np.log10(np.clip(np.asarray(stats["pca_chi2"], dtype=np.float64), 1e-6, None))
    return {
        "halpha_excess_threshold": robust_threshold(stats["halpha_excess"], n_sigma),
        "bad_chi2_threshold": float(10.0 ** robust_threshold(log_chi2, bad_n_sigma)),
    }


def emission_flags(
    stats: Mapping[str, np.ndarray], excess_threshold: float, min_significance: float, bad_chi2_threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """``em_flag`` and ``bad_spectrum_flag`` (int8, 0/1) from the diagnostics and thresholds."""
    excess = np.asarray(stats["halpha_excess"])
    with np.errstate(invalid="ignore", divide="ignore"):
        significant = excess / np.asarray(stats["halpha_excess_err"]) > min_significance
        em = (excess > excess_threshold) & significant
        bad = np.asarray(stats["pca_chi2"]) > bad_chi2_threshold
    return em.astype(np.int8), bad.astype(np.int8)
