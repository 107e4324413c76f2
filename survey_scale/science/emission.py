"""Hα emission and erroneous-spectrum diagnostics from a PCA reconstruction (SPEC §4; P1 §3, Appendix A).

For each spectrum, with its normalized flux f, inverse variance w and the PCA reconstruction r built from
the clean windows only (so that emission cannot leak into it):

- ``halpha_excess`` = mean(f − r) over 6557–6571 Å (P1 Fig. 3, horizontal axis);
- ``halpha_excess_err``: its measurement error — the pixel noise of the window plus the uncertainty of the
  reconstruction, from the posterior variance of the PCA coefficients (it dominates at low S/N);
- ``halpha_chi2`` = reduced χ² of f vs r over 6400–6550 and 6590–6690 Å (P1 Fig. 3, vertical axis);
- ``pca_chi2`` = reduced χ² of f vs r over the clean-window pixels, the erroneous-spectrum diagnostic of
  P1 Appendix A (flux jumps, wrong wavelength calibration, artefacts);
- ``pca_local_z`` = the largest |Σ (f − r)| / √(Σ variance) over runs of :data:`LOCAL_WINDOW_PIXELS`
  consecutive pixels (≈ 50 Å) holding at least 60 % usable clean-window pixels: the significance of the
  worst local misfit. A flux defect survives the 50 Å continuum normalization (§3) only near its edges
  or as ripples on that scale, so over the whole spectrum it hardly moves ``pca_chi2``; locally it stands
  out (on the 5,000-star mock, adding it and raising the χ² limit from 10 to 20 robust σ took the recall
  of corrupted spectra from 0.48 to 0.54 and the false flags on clean spectra from 1.4 % to 0.4 %).

The χ² use a per-pixel variance 1/w + σ²_model, with σ²_model the PCA's reconstruction error measured on
its training spectra (their noise removed), so χ² stays near 1 at any S/N for a good spectrum.

Thresholds, derived from the data (P1 draws one by eye on Fig. 3). Over the high-S/N PCA candidates
(non-emission stars are the large majority) we measure the centre of the excess, ``excess_offset`` (the
median), and its scatter beyond the measurement error, ``excess_model_sigma`` = √(σ² − median err²) with
σ = median − 15.87th percentile, measured on the side emission cannot reach, so that the weak emitters
left among the candidates do not inflate it: how well the clean windows predict Hα for a typical star.
A spectrum is an emission star when

    halpha_excess > excess_offset + √((n_sigma × halpha_excess_err)² + model_n_sigma² × max(1, pca_chi2) ×
                                      excess_model_sigma²)

(n_sigma = 2.75, model_n_sigma = 4) — a robust n-sigma cut that rises with the noise at low S/N; at high
S/N, for a star the PCA describes as well as its typical training star, it is the fixed threshold
``excess_offset + model_n_sigma × excess_model_sigma`` drawn on the Fig. 3 analogue. Two multipliers
because the two terms have different tails: the measurement error is Gaussian and calibrated (the excess
of non-emission spectra below S/N 30 scatters by 1.1 of it), so a 2.75σ cut costs ~0.3 % false positives
where the noise dominates and gains the faint emitters, while the model term's tail is heavier than a
Gaussian's.

The factor max(1, ``pca_chi2``) on the model variance: the PCA predicts Hα worse for the stars it
describes worse, and ``pca_chi2`` (its χ² over the clean windows, with the typical model error in the
variance) measures by how much — at high S/N it is the ratio of the spectrum's reconstruction error
variance to the typical one, at low S/N ≈ 1 (the noise dominates). With one model σ for every star, the
false positives of a 5,000-star mock release (39 of 6,759 non-emission spectra) were stars at the edges
of the population the PCA learns from (cool, low-gravity and slowly rotating A/F stars near 7,000 K, O
stars, supergiants, binaries with a cool companion, corrupted spectra), whose Hα misfit is 1.5–3× the
bulk's; the refits, which train without what the previous pass flags, also dropped 7 % of the cool
candidates against 0.5 % of the others, so the PCA learnt them even less. With the factor (it applies to
the refits' training selection too): 20 false positives, recall unchanged within one spectrum; with the
two multipliers, on two development releases, recall 0.975 and 0.963, precision 0.972 and 0.971 (EW > 2 Å).

A fixed threshold can be configured instead (``emission.threshold``). The PCA's erroneous-spectrum
evidence, ``pca_chi2`` above 10^(median + 20 × 1.4826 × MAD of log10 χ²) of the candidates (``emission.bad_n_sigma``)
or ``pca_local_z`` above 10^(median + 4 × 1.4826 × MAD of log10 z) (``emission.bad_local_n_sigma``), drops
spectra from the refits' training set; ``bad_spectrum_flag`` itself combines it with the label fit's
evidence after the fit (:mod:`survey_scale.science.bad_spectra`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from survey_scale.core.masks import HALPHA_CHI2_WINDOWS, HALPHA_EXCESS_WINDOW, window_mask
from survey_scale.core.wavelength import wavelength_grid

MAD_TO_SIGMA = 1.4826
LOCAL_WINDOW_PIXELS = 41
"""Pixels of the ``pca_local_z`` runs: 47 Å at 5,000 Å, the scale of the continuum kernel (L = 50 Å)."""


def excess_window(wave: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of the Hα excess window (6557–6571 Å)."""
    return window_mask(wavelength_grid() if wave is None else wave, (HALPHA_EXCESS_WINDOW,))


def residual_statistics(
    norm_flux: np.ndarray,
    norm_ivar: np.ndarray,
    reconstruction: np.ndarray,
    model_var: np.ndarray,
    clean: np.ndarray,
    n_components: int,
    recon_excess_var: np.ndarray,
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
    n_components
        K, the degrees of freedom the projection takes from the clean-window χ².
    recon_excess_var
        (n,) variance of the reconstruction's mean over the excess window, from the coefficients' posterior
        variance (:func:`survey_scale.science.pca.project`).
    wave
        (P,) wavelengths in Å (default: the common grid).

    Returns
    -------
    dict
        ``halpha_excess``, ``halpha_excess_err``, ``halpha_chi2``, ``pca_chi2``, ``pca_local_z`` (each (n,)
        float32; NaN where no pixel of the window is usable; ``pca_local_z`` is 0 without a usable run).
    """
    wave = wavelength_grid() if wave is None else wave
    in_excess, in_chi2 = excess_window(wave), window_mask(wave, HALPHA_CHI2_WINDOWS)
    good = (norm_ivar > 0) & np.isfinite(norm_flux)
    with np.errstate(divide="ignore", invalid="ignore"):
        noise_var = np.where(good, 1.0 / np.where(good, norm_ivar, 1.0), 0.0)
        resid = np.where(good, norm_flux - reconstruction, 0.0)
        chi = np.where(good, resid**2 / (noise_var + model_var[None, :]), 0.0)

        g = good & in_excess
        n = g.sum(axis=1)
        excess = np.where(g, resid, 0.0).sum(axis=1) / n
        excess_err = np.sqrt(np.where(g, noise_var, 0.0).sum(axis=1) / n**2 + recon_excess_var)
        n_chi2 = (good & in_chi2).sum(axis=1)
        n_clean = (good & clean).sum(axis=1)
        out = {
            "halpha_excess": excess,
            "halpha_excess_err": excess_err,
            "halpha_chi2": np.where(in_chi2, chi, 0.0).sum(axis=1) / n_chi2,
            "pca_chi2": chi[:, clean].sum(axis=1) / (n_clean - n_components),
            "pca_local_z": local_significance(resid, noise_var + model_var[None, :], good & clean[None, :]),
        }
    return {k: v.astype(np.float32) for k, v in out.items()}


def local_significance(resid: np.ndarray, var: np.ndarray, use: np.ndarray) -> np.ndarray:
    """(n,) max over runs of :data:`LOCAL_WINDOW_PIXELS` pixels of |Σ resid| / √(Σ var) on ``use`` pixels."""
    width = LOCAL_WINDOW_PIXELS

    def run_sums(x: np.ndarray) -> np.ndarray:
        total = np.cumsum(np.where(use, x, 0.0), axis=1)
        return total[:, width - 1 :] - np.pad(total, ((0, 0), (1, 0)))[:, :-width]

    n_used, r_sum, v_sum = run_sums(np.ones_like(resid)), run_sums(resid), run_sums(var)
    ok = n_used >= 0.6 * width
    z = np.abs(r_sum) / np.sqrt(np.where(ok, v_sum, 1.0))
    return np.where(ok, z, 0.0).max(axis=1, initial=0.0)


def robust_center_scale(values: np.ndarray) -> tuple[float, float]:
    """Median and 1.4826 × MAD of the finite ``values``."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("robust statistics of an empty selection")
    median = float(np.median(values))
    return median, float(MAD_TO_SIGMA * np.median(np.abs(values - median)))


def _log_limit(values: np.ndarray, n_sigma: float) -> float:
    """10^(median + n_sigma × 1.4826 MAD) of log10 ``values``."""
    centre, spread = robust_center_scale(np.log10(np.clip(np.asarray(values, dtype=np.float64), 1e-6, None)))
    return float(10.0 ** (centre + n_sigma * spread))


def derive_thresholds(
    stats: Mapping[str, np.ndarray], bad_n_sigma: float, bad_local_n_sigma: float
) -> dict[str, float]:
    """Emission and erroneous-spectrum thresholds from the diagnostics of the PCA candidates (module doc)."""
    excess = np.asarray(stats["halpha_excess"], dtype=np.float64)
    offset = float(np.nanmedian(excess))
    # the scatter from the side emission cannot reach: median − 15.87th percentile (1 σ for a Gaussian)
    scale = offset - float(np.nanpercentile(excess, 100 * 0.158655))
    err2 = float(np.nanmedian(np.asarray(stats["halpha_excess_err"], dtype=np.float64) ** 2))
    return {
        "excess_offset": offset,
        "excess_model_sigma": float(np.sqrt(max(scale**2 - err2, 0.0))),
        "bad_chi2_threshold": _log_limit(stats["pca_chi2"], bad_n_sigma),
        "bad_local_z_threshold": _log_limit(stats["pca_local_z"], bad_local_n_sigma),
    }


def model_scale(stats: Mapping[str, np.ndarray]) -> np.ndarray:
    """(n,) the factor on the Hα prediction's model variance: max(1, ``pca_chi2``) (module docstring).

    1 where ``pca_chi2`` is absent or NaN.
    """
    if "pca_chi2" not in stats:
        return np.ones(np.shape(stats["halpha_excess_err"]))
    chi2 = np.asarray(stats["pca_chi2"], dtype=np.float64)
    return np.where(np.isfinite(chi2), np.maximum(chi2, 1.0), 1.0)


def excess_threshold(
    stats: Mapping[str, np.ndarray],
    thresholds: Mapping[str, float],
    n_sigma: float,
    model_n_sigma: float | None = None,
) -> np.ndarray:
    """Per-spectrum Hα-excess threshold: offset + √((n_sigma err)² + model_n_sigma² max(1, pca_chi2) model σ²).

    ``model_n_sigma`` defaults to ``n_sigma``.
    """
    err = np.asarray(stats["halpha_excess_err"], dtype=np.float64)
    n_model = n_sigma if model_n_sigma is None else model_n_sigma
    model_var = model_scale(stats) * thresholds["excess_model_sigma"] ** 2
    return thresholds["excess_offset"] + np.sqrt((n_sigma * err) ** 2 + n_model**2 * model_var)


def emission_flags(
    stats: Mapping[str, np.ndarray],
    thresholds: Mapping[str, float],
    n_sigma: float,
    fixed_threshold: float | None = None,
    bad_chi2_threshold: float | None = None,
    bad_local_z_threshold: float | None = None,
    model_n_sigma: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``em_flag`` and the PCA's erroneous-spectrum evidence (int8, 0/1) from the diagnostics and thresholds.

    ``fixed_threshold``, ``bad_chi2_threshold``, ``bad_local_z_threshold`` (configuration) replace the
    derived ones when given; ``n_sigma`` and ``model_n_sigma`` as in :func:`excess_threshold`.
    """
    excess = np.asarray(stats["halpha_excess"], dtype=np.float64)
    limit = (
        fixed_threshold if fixed_threshold is not None else excess_threshold(stats, thresholds, n_sigma, model_n_sigma)
    )
    chi2_limit = bad_chi2_threshold if bad_chi2_threshold is not None else thresholds["bad_chi2_threshold"]
    z_limit = bad_local_z_threshold if bad_local_z_threshold is not None else thresholds["bad_local_z_threshold"]
    with np.errstate(invalid="ignore"):
        em = excess > limit
        bad = (np.asarray(stats["pca_chi2"]) > chi2_limit) | (np.asarray(stats["pca_local_z"]) > z_limit)
    return em.astype(np.int8), bad.astype(np.int8)
