"""The label procedure of P2 §4.4–§4.5 and §5.1 as a pure function (SPEC §5.3).

:func:`fit_labels` takes a batch of continuum-normalized spectra on one pixel grid and returns the
per-spectrum outputs of the pipeline's fit stage (no files, no Dask; the runner maps it over the cube):

1. initial Teff from the line indices of Ca II 3933, H I + Ca II 3967 and H I 4101 (P2 §4.4, Eq. 4), the
   other labels at the centre of the emulator's range (:func:`initial_teff`); an emulator that reaches cool
   stars, for which Eq. 4 is not made, gets more starts (:func:`cool_starts`), the lowest χ² kept;
2. the full fit with the §5.3 mask (:data:`survey_scale.core.masks.FIT_WINDOWS`: DIBs, Na I D, Ca II K, the
   blue and red edges, the dichroic region, telluric bands) plus bad pixels;
3. the hydrogen-masked fit (the same mask plus :data:`survey_scale.core.masks.HYDROGEN_WINDOWS`, Balmer and
   Paschen), from the same start (from the full fit's labels where step 1 added starts);
4. the re-fit of P2 footnote 4: where the two Teff straddle 9,500 K (one above, one below), the full fit is
   redone starting from the H-masked labels and replaces the first full fit;
5. the Hann-weighted combination of P2 Eq. 5–7 (:func:`hann_weight`);
6. the final-sample flags of P2 §5.1 (Teff < 7000 K, S/N < 5) and vsini reported as max(0, vsini) with the
   raw value kept.

Emulators with a subset of the labels
-------------------------------------
An emulator may fit only some of the 11 labels of :data:`survey_scale.core.labels.LABEL_NAMES` (the shipped
``physical`` emulator fits teff, logg, vsini and fe_h). The procedure needs only ``teff`` (and uses ``vsini``
when present). :func:`to_label_order` puts its outputs on all 11 labels: the labels it does not fit are NaN
in every output (labels, errors, covariances, the Table 5 correlations that involve them), and the
per-spectrum bit mask ``labels_fitted`` (:func:`labels_fitted_mask`; bit i = label i of the output order,
2047 = all 11) says which were fitted.

Wavelengths
-----------
P2 quotes air wavelengths (the index windows of §4.4); the cube's grid is in vacuum. The windows are
converted with the inverse of the Morton (2000) IAU formula (:func:`air_to_vacuum`; +1.1 Å at 3930 Å).

Covariance of the combined labels
---------------------------------
l = ω1 l_H + (1 − ω1) l_full. Both are maximum-likelihood estimates from the same spectrum, the full fit
using a superset of the H-masked fit's pixels, so the full fit is the efficient one and, in the linear
regime, Cov(l_full, l_H) = Cov(l_full) (Hausman 1978). Hence
Cov(l) = ω1² C_H + (1 − ω1²) C_full, which is C_full at ω1 = 0 and C_H at ω1 = 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from survey_scale.core.fit_flags import (
    FLAG_AT_BOUND,
    FLAG_NO_DATA,
    FLAG_NOT_CONVERGED,
    FLAG_REFIT,
    FLAG_SNR_LT_5,
    FLAG_TEFF_LT_7000,
    FLAG_VSINI_NEGATIVE,
    SNR_MIN_FLAG,
    TEFF_MIN_FLAG,
)
from survey_scale.core.labels import (  # noqa: F401 - the label bookkeeping of the fit, re-exported
    LABEL_NAMES,
    P2_TABLE5_CORRELATIONS,
    labels_fitted_mask,
    output_label_names,
    to_label_order,
)
from survey_scale.core.masks import FIT_WINDOWS, HYDROGEN_WINDOWS, window_mask
from survey_scale.core.wavelength import air_to_vacuum
from survey_scale.science.emulator import Emulator
from survey_scale.science.emulator_set import EmulatorSet
from survey_scale.science.fitting import STATUS_MAX_ITER, FitResult, fit_spectra, scaled_bounds
from survey_scale.science.information_content import correlation

HANN_CENTRE = 9500.0
"""Teff (K) where the hydrogen-line gradients reverse (A0 stars) and the Hann weight peaks (P2 §4.5)."""
HANN_LENGTH_HOT = 5000.0
"""Hann length L (K) when the full-spectrum Teff > 9,500 K: ω1 = 0 above 12,000 K (P2 §4.5)."""
HANN_LENGTH_COOL = 3000.0
"""Hann length L (K) when the full-spectrum Teff ≤ 9,500 K: ω1 = 0 below 8,000 K (P2 §4.5)."""


# ---------------------------------------------------------------------------------------------------------
# line indices and the initial Teff (P2 §4.4)
# ---------------------------------------------------------------------------------------------------------


LINE_INDEX_WINDOWS_AIR: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    # name: (line band, blue continuum window, red continuum window), air Å, P2 §4.4. P2 gives the
    # continuum windows; the line is integrated over the gap between them.
    "C3933": ((3922.0, 3946.0), (3912.0, 3922.0), (3946.0, 3956.0)),
    "C3967": ((3956.0, 3980.0), (3946.0, 3956.0), (3980.0, 3990.0)),
    "C4101": ((4090.0, 4114.0), (4080.0, 4090.0), (4114.0, 4124.0)),
}
"""Line-index windows of P2 §4.4 in **air** wavelengths (as published)."""

LINE_INDEX_WINDOWS: dict[str, tuple[tuple[float, float], ...]] = {
    name: tuple((float(air_to_vacuum(lo)), float(air_to_vacuum(hi))) for lo, hi in wins)
    for name, wins in LINE_INDEX_WINDOWS_AIR.items()
}
"""The same windows in **vacuum** Å (the cube's grid), converted with :func:`air_to_vacuum`."""

# P2 Eq. 4: log10 Teff = Σ c · C3933^i C3967^j C4101^k, (i, j, k) → c
EQ4_COEFFICIENTS: dict[tuple[int, int, int], float] = {
    (0, 0, 0): 4.71047,
    (1, 0, 0): -4.43455e-2,
    (0, 1, 0): -5.37380e-2,
    (0, 0, 1): 3.46889e-2,
    (2, 0, 0): -5.68345e-3,
    (0, 2, 0): -1.26749e-2,
    (0, 0, 2): -2.40555e-2,
    (1, 1, 0): 1.26779e-2,
    (1, 0, 1): -4.19722e-2,
    (0, 1, 1): 2.34087e-2,
    (1, 1, 1): 8.44885e-4,
    (2, 1, 0): -9.98430e-4,
    (2, 0, 1): 2.23513e-3,
    (1, 2, 0): 6.24433e-4,
    (1, 0, 2): 1.40913e-3,
    (0, 2, 1): -1.78560e-3,
    (0, 1, 2): 1.85542e-3,
    (3, 0, 0): 5.01277e-4,
    (0, 3, 0): 5.10836e-4,
    (0, 0, 3): 1.52060e-4,
}
"""Coefficients of P2 Eq. 4 (20 terms of a complete cubic in the three indices).

The typeset paper prints the 5.10836 × 10⁻⁴ term as "C²3967" next to "C³3933" and "C³4101"; a square of
C3967 already appears (−1.26749 × 10⁻²) and a third-order polynomial in three variables has exactly 20
terms, so it is read as the cube C3967³ (the missing term).
"""


def _pixel_widths(wave: np.ndarray) -> np.ndarray:
    edges = np.concatenate(
        [[1.5 * wave[0] - 0.5 * wave[1]], 0.5 * (wave[1:] + wave[:-1]), [1.5 * wave[-1] - 0.5 * wave[-2]]]
    )
    return np.diff(edges)


def line_indices(norm_flux: np.ndarray, wave: np.ndarray, norm_ivar: np.ndarray | None = None) -> np.ndarray:
    """Equivalent widths (Å) of Ca II 3933, H I + Ca II 3967 and H I 4101 (P2 §4.4).

    For each line the local continuum is the straight line through the mean fluxes of the blue and red
    continuum windows (placed at the mean wavelength of the pixels averaged); EW = Σ (1 − f/f_c) Δλ over
    the line band. Pixels with ivar = 0
    (when ``norm_ivar`` is given) or non-finite flux are skipped: the band's EW is the mean depth of the
    good pixels times the band width.

    Parameters
    ----------
    norm_flux
        (n, P) or (P,) normalized flux.
    wave
        (P,) vacuum wavelengths (Å).
    norm_ivar
        Optional (n, P) inverse variance.

    Returns
    -------
    numpy.ndarray
        (n, 3) or (3,) float64 [C3933, C3967, C4101] in Å; NaN where a window has no good pixel.
    """
    flux = np.asarray(norm_flux, dtype=np.float64)
    one = flux.ndim == 1
    flux = np.atleast_2d(flux)
    wave = np.asarray(wave, dtype=np.float64)
    good = np.isfinite(flux)
    if norm_ivar is not None:
        good &= np.atleast_2d(np.asarray(norm_ivar)) > 0
    dlam = _pixel_widths(wave)
    out = np.full((flux.shape[0], 3), np.nan)
    for j, (band, blue, red) in enumerate(LINE_INDEX_WINDOWS.values()):

        def mean_in(lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
            # mean flux of the good pixels and their mean wavelength (the abscissa of that mean)
            sel = (wave >= lo) & (wave < hi)
            g = good[:, sel]
            cnt = g.sum(1)
            with np.errstate(invalid="ignore", divide="ignore"):
                f_mean = np.where(cnt > 0, np.where(g, flux[:, sel], 0.0).sum(1) / cnt, np.nan)
                w_mean = np.where(cnt > 0, (g * wave[sel]).sum(1) / cnt, np.nan)
            return f_mean, w_mean

        (fb, cb), (fr, cr) = mean_in(*blue), mean_in(*red)
        sel = (wave >= band[0]) & (wave < band[1])
        cont = fb[:, None] + (fr - fb)[:, None] * (wave[sel] - cb[:, None]) / (cr - cb)[:, None]
        g = good[:, sel] & (cont > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            depth = np.where(g, 1.0 - flux[:, sel] / cont, 0.0)
            frac = np.where(g.any(1), (depth * dlam[sel]).sum(1) / (g * dlam[sel]).sum(1), np.nan)
        out[:, j] = frac * dlam[sel].sum()
    return out[0] if one else out


def teff_from_indices(c3933: np.ndarray, c3967: np.ndarray, c4101: np.ndarray) -> np.ndarray:
    """P2 Eq. 4: Teff (K) from the three equivalent widths (Å), without any clipping."""
    a, b, c = (np.asarray(v, dtype=np.float64) for v in (c3933, c3967, c4101))
    log_t = np.zeros(np.broadcast(a, b, c).shape)
    for (i, j, k), coef in EQ4_COEFFICIENTS.items():
        log_t = log_t + coef * a**i * b**j * c**k
    return 10.0**log_t


def initial_teff(norm_flux: np.ndarray, wave: np.ndarray, norm_ivar: np.ndarray | None = None) -> np.ndarray:
    """Initial Teff (K) of P2 §4.4: Eq. 4 applied to :func:`line_indices` (NaN where an index is missing).

    Eq. 4 is an empirical cubic fitted to LAMOST stars; far outside its calibration (e.g. emission-line
    stars, very noisy spectra) it returns extreme values, which :func:`fit_labels` clips into the
    emulator's range before using them as starting points.
    """
    idx = line_indices(norm_flux, wave, norm_ivar)
    return teff_from_indices(idx[..., 0], idx[..., 1], idx[..., 2])


# ---------------------------------------------------------------------------------------------------------
# Hann combination (P2 Eq. 5–7)
# ---------------------------------------------------------------------------------------------------------


def hann_weight(teff_hmask: np.ndarray, teff_full: np.ndarray) -> np.ndarray:
    """Weight ω1 of the H-masked labels (P2 Eq. 6); the full-spectrum labels get ω2 = 1 − ω1 (Eq. 7).

    ω1 = cos²(π x / L) for |x| ≤ L/2, else 0, with x = Teff_Hmasked − 9500 K and L = 5000 K when
    Teff_full > 9500 K, 3000 K otherwise. ω1 = 1 at Teff_H = 9500 K; ω1 = 0 for Teff_H ≥ 12,000 K (hot
    side) or ≤ 8,000 K (cool side). NaN Teff gives NaN.
    """
    th = np.asarray(teff_hmask, dtype=np.float64)
    tf = np.asarray(teff_full, dtype=np.float64)
    length = np.where(tf > HANN_CENTRE, HANN_LENGTH_HOT, HANN_LENGTH_COOL)
    x = th - HANN_CENTRE
    with np.errstate(invalid="ignore"):
        w = np.where(np.abs(x) <= 0.5 * length, np.cos(np.pi * x / length) ** 2, 0.0)
    return np.where(np.isfinite(th) & np.isfinite(tf), w, np.nan)


def straddles(teff_full: np.ndarray, teff_hmask: np.ndarray) -> np.ndarray:
    """True where the two Teff lie on opposite sides of 9,500 K (P2 footnote 4: re-fit these)."""
    tf = np.asarray(teff_full, dtype=np.float64)
    th = np.asarray(teff_hmask, dtype=np.float64)
    return ((th < HANN_CENTRE) & (tf > HANN_CENTRE)) | ((th > HANN_CENTRE) & (tf < HANN_CENTRE))


# ---------------------------------------------------------------------------------------------------------
# the procedure
# ---------------------------------------------------------------------------------------------------------


def _estimate_snr(norm_flux: np.ndarray, norm_ivar: np.ndarray, wave: np.ndarray) -> np.ndarray:
    """Median per-pixel S/N of the normalized spectrum over 4000–5500 Å (≈ SDSS g), ivar > 0 pixels."""
    sel = (wave >= 4000.0) & (wave <= 5500.0)
    if not sel.any():
        sel = np.ones(wave.shape, dtype=bool)
    snr = np.where(norm_ivar[:, sel] > 0, norm_flux[:, sel] * np.sqrt(np.clip(norm_ivar[:, sel], 0, None)), np.nan)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out = np.nanmedian(snr, axis=1)
    return np.where(np.isfinite(out), out, 0.0)


def _combine(full: FitResult, hmask: FitResult, w1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = np.where(np.isfinite(w1), w1, 0.0)
    labels = w[:, None] * hmask.labels + (1.0 - w)[:, None] * full.labels
    # a zero weight must drop its fit's covariance even where that holds inf (an undetermined label)
    w2 = (w**2)[:, None, None]
    with np.errstate(invalid="ignore"):  # 0 × inf, discarded by the where
        cov = np.where(w2 > 0, w2 * hmask.cov, 0.0) + np.where(w2 < 1, (1.0 - w2) * full.cov, 0.0)
    # where the H-masked fit failed (no data) fall back on the full fit (the full fit uses a superset of
    # its pixels, so the converse cannot happen)
    only_full = ~np.isfinite(hmask.labels).all(1) & np.isfinite(full.labels).all(1)
    labels[only_full], cov[only_full] = full.labels[only_full], full.cov[only_full]
    return labels, cov


def _pairs_corr(cov: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    idx = {n: i for i, n in enumerate(names)}
    corr = correlation(cov)
    out = np.full((cov.shape[0], len(P2_TABLE5_CORRELATIONS)), np.nan)
    for k, (a, b) in enumerate(P2_TABLE5_CORRELATIONS):
        if a in idx and b in idx:
            out[:, k] = corr[:, idx[a], idx[b]]
    return out


def _checked_inputs(
    em: Emulator, norm_flux: np.ndarray, norm_ivar: np.ndarray, wave: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 (n, P) flux and ivar and float64 wave, checked against each other and the emulator's grid."""
    flux = np.atleast_2d(np.asarray(norm_flux, dtype=np.float32))
    ivar = np.atleast_2d(np.asarray(norm_ivar, dtype=np.float32))
    wave = np.asarray(wave, dtype=np.float64)
    n_pix = flux.shape[1]
    if ivar.shape != flux.shape or wave.shape != (n_pix,):
        raise ValueError(f"fit_labels: norm_flux {flux.shape}, norm_ivar {ivar.shape}, wave {wave.shape} disagree")
    if em.n_pixels != n_pix or not np.allclose(em.wave, wave, rtol=1e-7, atol=1e-4):
        raise ValueError(
            f"fit_labels: the emulator's pixel grid ({em.n_pixels} pixels, "
            f"{em.wave[0]:.2f}–{em.wave[-1]:.2f} Å) "
            f"differs from the spectra's ({n_pix} pixels, {wave[0]:.2f}–{wave[-1]:.2f} Å)"
        )
    if "teff" not in em.label_names:
        raise ValueError("fit_labels: the emulator has no 'teff' label")
    return flux, ivar, wave


EQ4_TEFF_MIN = 7000.0
"""P2 Eq. 4 is calibrated on hot stars: for F/G/K stars it saturates (≥ 8,700 K on real F stars), a start from
which the fit of a cool-star model stalls at the top of its range."""
COOL_TEFF_STARTS = (4500.0, 6500.0)
"""Extra T_eff starts (K; the other labels at the centre of the range) of an emulator reaching below
:data:`EQ4_TEFF_MIN`. Measured on the 136 F/G/K/M stars of ``lamost_classes`` with the ``physical`` set's cool
network (then 3,500–8,500 K): from Eq. 4's start alone 80 of 136 stalled at its 8,500 K edge (χ²_red median
3.4 for F stars); with one extra start at 5,000 K, or these two, every fit reached the same minimum (F: 6,280 K,
χ²_red 1.72)."""


def cool_starts(em: Emulator, init: np.ndarray) -> np.ndarray:
    """The full fit's starts: ``init`` (n, L), with :data:`COOL_TEFF_STARTS` inside the emulator's range added as
    (k, n, L) when its T_eff range reaches below :data:`EQ4_TEFF_MIN`."""
    it = em.label_names.index("teff")
    lo, hi = em.x_min[it], em.x_max[it]
    extra = [t for t in COOL_TEFF_STARTS if lo <= t <= hi]
    if lo >= EQ4_TEFF_MIN or not extra:
        return init
    starts = [init]
    for teff in extra:
        start = np.full_like(init, np.nan)
        start[:, it] = teff
        starts.append(start)
    return np.stack(starts)


SCOUT_ITERATIONS = 5
"""Levenberg–Marquardt iterations every start of a several-start fit (:func:`cool_starts`) gets before only the
best one per spectrum, the one of lowest χ² then, goes on (:func:`fit_best_start`)."""


def fit_best_start(
    em: Emulator,
    flux: np.ndarray,
    ivar: np.ndarray,
    *,
    mask: np.ndarray,
    init: np.ndarray,
    max_iter: int,
    scout_iterations: int = SCOUT_ITERATIONS,
    **kw: Any,
) -> FitResult:
    """:func:`~survey_scale.science.fitting.fit_spectra` from the starts ``init`` ((n, L), or (k, n, L) for k
    starts), where k > 1 run to convergence from the best start only.

    Every start first gets ``scout_iterations`` iterations; a spectrum whose best start then has not converged
    goes on from that start's labels for the rest of ``max_iter`` (``n_iter`` counts both; ``start`` is the
    start that went on). Each of the cool-star check's three starts took 9–10 iterations on average (1,024
    spectra of mock 31); after 5, the start then of lowest χ² is nearly always the one that ends lowest: the
    check's CPU fell by a quarter, and 3 of the 1,024 ``teff_cool`` moved by more than 100 K.
    """
    if init.ndim == 2 or init.shape[0] == 1 or not 0 < scout_iterations < max_iter:
        return fit_spectra(em, flux, ivar, mask=mask, init=init, max_iter=max_iter, **kw)
    scout = fit_spectra(em, flux, ivar, mask=mask, init=init, max_iter=scout_iterations, **kw)
    rows = np.flatnonzero(scout.status == STATUS_MAX_ITER)
    if rows.size:
        start, n_iter = scout.start[rows], scout.n_iter[rows]
        # one start goes on: no extra random starts (``n_starts`` applies to an (n, L) init only)
        go_on = {**kw, "max_iter": max_iter - scout_iterations, "n_starts": 1}
        _fit_rows_again(em, flux, ivar, mask, rows, scout.labels[rows], scout, **go_on)
        scout.n_iter[rows] += n_iter
        scout.start[rows] = start
    return scout


def _start(
    em: Emulator,
    flux: np.ndarray,
    ivar: np.ndarray,
    wave: np.ndarray,
    pixmask: np.ndarray | None,
    bounds: tuple[Any, Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Step 1 of :func:`fit_labels`: the masks and the start.

    Returns the full-fit mask (§5.3 windows and bad pixels), ivar with bad pixels at 0, the
    (n, 3) line indices, the initial Teff (P2 Eq. 4, clipped into the fit box; NaN where an index is
    missing) and the (n, L) start (NaN → the centre of the emulator's range).
    """
    n, n_pix = flux.shape
    bad = np.zeros((n, n_pix), dtype=bool) if pixmask is None else np.asarray(pixmask) != 0
    fit_mask = window_mask(wave, FIT_WINDOWS)[None, :] | bad
    usable_ivar = np.where(bad, 0.0, ivar)  # the pixels the fits use
    idx = line_indices(flux, wave, usable_ivar)
    with np.errstate(over="ignore", invalid="ignore"):
        t0 = teff_from_indices(idx[:, 0], idx[:, 1], idx[:, 2])
    it = em.label_names.index("teff")
    lo_s, hi_s = scaled_bounds(bounds, em.n_labels)
    t_lo, t_hi = em.unscale(lo_s)[it], em.unscale(hi_s)[it]
    t0 = np.where(np.isfinite(t0), np.clip(t0, t_lo, t_hi), np.nan)
    init = np.full((n, em.n_labels), np.nan)
    init[:, it] = t0
    return fit_mask, usable_ivar, idx, t0, init


def fit_labels(
    em: Emulator,
    norm_flux: np.ndarray,
    norm_ivar: np.ndarray,
    wave: np.ndarray,
    pixmask: np.ndarray | None = None,
    device: str | torch.device | None = None,
    *,
    snr: np.ndarray | None = None,
    bounds: tuple[Any, Any] = (-0.55, 0.55),
    max_iter: int = 100,
    n_starts: int = 1,
    batch_size: int | None = None,
) -> dict[str, np.ndarray]:
    """Labels of a batch of spectra by the P2 §4.4–§4.5 procedure (SPEC §5.3). Pure function.

    Parameters
    ----------
    em
        Emulator on the spectra's pixel grid (``em.wave`` must equal ``wave``).
    norm_flux, norm_ivar
        (n, P) continuum-normalized flux and inverse variance (SPEC §3).
    wave
        (P,) vacuum rest-frame wavelengths (Å).
    pixmask
        Optional (n, P) pixel flags (the cube's uint8 ``pixmask``, or bool); any nonzero value excludes
        the pixel.
    device
        Torch device (``None``: CUDA if available, else CPU).
    snr
        Optional (n,) S/N per spectrum (the cube's ``snr_g``) for the S/N < 5 flag. Default: the median
        per-pixel S/N of the normalized spectrum over 4000–5500 Å.
    bounds
        Fit box in scaled label units (default ±0.55: 5 % extrapolation beyond the grid on each side, so
        that e.g. Teff below the grid's 7,000 K and vsini < 0 can be reached and flagged as P2 does).
    max_iter, n_starts, batch_size
        Passed to :func:`survey_scale.science.fitting.fit_spectra`.

    Returns
    -------
    dict
        Per-spectrum outputs (n spectra, L labels in ``em.label_names`` order; physical units of
        :data:`survey_scale.core.labels.LABEL_UNITS`; NaN where there is no result):

        ``labels`` (n, L)
            Combined labels l = ω1 l_H + (1 − ω1) l_full (P2 Eq. 5), with vsini reported as max(0, vsini).
        ``errors`` (n, L)
            √diag(cov).
        ``cov`` (n, L, L)
            Covariance of the combined labels, ω1² C_H + (1 − ω1²) C_full (module docstring).
        ``corr`` (n, 10)
            Correlation coefficients of the P2 Table 5 pairs, in the order of
            :data:`survey_scale.core.labels.P2_TABLE5_CORRELATIONS`.
        ``chi2``, ``chi2_red`` (n,)
            χ² and χ²/dof of the combined-label model over the full-fit pixels (dof = n_good − L).
        ``n_iter`` (n,) int32
            Total Levenberg–Marquardt iterations (full + H-masked + re-fit).
        ``converged`` (n,) bool
            Every fit that entered the result converged.
        ``flags`` (n,) uint8
            Bit mask, :data:`survey_scale.core.fit_flags.FLAG_BITS`.
        ``vsini_raw`` (n,)
            Combined vsini before clipping at 0 (km/s).
        ``teff_init`` (n,)
            Initial Teff from the line indices (K), after clipping into the fit box.
        ``line_indices`` (n, 3)
            C3933, C3967, C4101 equivalent widths (Å).
        ``w_hmask`` (n,)
            Hann weight ω1 of the H-masked labels.
        ``refit`` (n,) bool
            The footnote-4 re-fit replaced the first full fit.
        ``snr`` (n,)
            S/N used for the flag.
        ``model_flux`` (n, P) float32
            Emulator spectrum at the combined labels (with the raw, unclipped vsini).
        ``full_labels``, ``full_errors`` (n, L); ``full_cov`` (n, L, L); ``full_chi2_red``, ``full_n_iter``,
        ``full_converged`` (n,)
            The full-spectrum fit (after the re-fit where done).
        ``hmask_labels``, ``hmask_errors``, ``hmask_cov``, ``hmask_chi2_red``, ``hmask_n_iter``,
        ``hmask_converged``
            The hydrogen-masked fit.
    """
    flux, ivar, wave = _checked_inputs(em, norm_flux, norm_ivar, wave)
    n, n_pix = flux.shape
    it = em.label_names.index("teff")
    fit_mask, usable_ivar, idx, t0, init = _start(em, flux, ivar, wave, pixmask, bounds)
    h_mask = fit_mask | window_mask(wave, HYDROGEN_WINDOWS)[None, :]
    kw = {
        "device": device,
        "max_iter": max_iter,
        "n_starts": n_starts,
        "bounds": bounds,
        "batch_size": batch_size,
    }

    # 2.–3. full and hydrogen-masked fits (the latter from the full fit's labels where cool starts were added)
    starts = cool_starts(em, init)
    full = fit_best_start(em, flux, ivar, mask=fit_mask, init=starts, return_model_flux=False, **kw)
    h_init = init if starts.ndim == 2 else np.where(np.isfinite(full.labels), full.labels, init)
    hmask = fit_spectra(em, flux, ivar, mask=h_mask, init=h_init, return_model_flux=False, **kw)
    n_iter = full.n_iter.astype(np.int64) + hmask.n_iter

    # 4. footnote 4: re-fit the full spectrum from the H-masked labels where the Teff straddle 9500 K
    refit = straddles(full.labels[:, it], hmask.labels[:, it])
    if refit.any():
        sel = np.flatnonzero(refit)
        again = _fit_rows_again(em, flux, ivar, fit_mask, sel, hmask.labels[sel], full, return_model_flux=False, **kw)
        n_iter[sel] += again.n_iter

    # 5. Hann combination
    w1 = hann_weight(hmask.labels[:, it], full.labels[:, it])
    labels, cov = _combine(full, hmask, w1)

    # model at the combined labels, χ² over the full-fit pixels
    ok = np.isfinite(labels).all(1)
    model = np.full((n, n_pix), np.nan, dtype=np.float32)
    if ok.any():
        model[ok] = em.predict(labels[ok], device=device)
    w_fit = np.where(fit_mask | ~np.isfinite(flux) | ~np.isfinite(ivar), 0.0, np.clip(ivar, 0, None)).astype(np.float64)
    with np.errstate(invalid="ignore"):
        chi2 = np.where(ok, (w_fit * (np.nan_to_num(flux) - model.astype(np.float64)) ** 2).sum(1), np.nan)
    dof = (w_fit > 0).sum(1) - em.n_labels
    chi2_red = np.where(ok & (dof > 0), chi2 / np.maximum(dof, 1), np.nan)

    # 6. flags and vsini
    vsini_raw = np.full(n, np.nan)
    flags = np.zeros(n, dtype=np.uint8)
    if "vsini" in em.label_names:
        iv = em.label_names.index("vsini")
        vsini_raw = labels[:, iv].copy()
        flags[vsini_raw < 0] |= FLAG_VSINI_NEGATIVE
        labels[:, iv] = np.where(np.isfinite(vsini_raw), np.maximum(vsini_raw, 0.0), np.nan)
    snr_used = _estimate_snr(flux, usable_ivar, wave) if snr is None else np.asarray(snr, dtype=np.float64).reshape(n)
    flags[labels[:, it] < TEFF_MIN_FLAG] |= FLAG_TEFF_LT_7000
    flags[~(snr_used >= SNR_MIN_FLAG)] |= FLAG_SNR_LT_5
    converged = full.converged & (hmask.converged | ~np.isfinite(hmask.labels).all(1))
    flags[~converged] |= FLAG_NOT_CONVERGED
    flags[~ok] |= FLAG_NO_DATA
    flags[refit] |= FLAG_REFIT
    w_used = np.nan_to_num(w1)[:, None]  # the weight _combine used (NaN → full fit only)
    at_bound = (w_used > 0) & hmask.at_bound | (w_used < 1) & full.at_bound
    flags[at_bound.any(1)] |= FLAG_AT_BOUND

    with np.errstate(invalid="ignore"):
        errors = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
    return {
        "labels": labels,
        "errors": errors,
        "cov": cov,
        "corr": _pairs_corr(cov, em.label_names),
        "chi2": chi2,
        "chi2_red": chi2_red,
        "n_iter": n_iter.astype(np.int32),
        "converged": converged,
        "flags": flags,
        "vsini_raw": vsini_raw,
        "teff_init": t0,
        "line_indices": idx,
        "w_hmask": w1,
        "refit": refit,
        "snr": snr_used,
        "model_flux": model,
        "full_labels": full.labels,
        "full_errors": full.errors,
        "full_cov": full.cov,
        "full_chi2_red": full.chi2_red,
        "full_n_iter": full.n_iter,
        "full_converged": full.converged,
        "hmask_labels": hmask.labels,
        "hmask_errors": hmask.errors,
        "hmask_cov": hmask.cov,
        "hmask_chi2_red": hmask.chi2_red,
        "hmask_n_iter": hmask.n_iter,
        "hmask_converged": hmask.converged,
    }


COOL_STAR_COMPONENT = "cool"
"""Name of the cool-star component of an emulator set (the shipped ``physical``: 3,500–9,000 K)."""


def fit_cool_star(
    em: Emulator,
    norm_flux: np.ndarray,
    norm_ivar: np.ndarray,
    wave: np.ndarray,
    pixmask: np.ndarray | None = None,
    device: str | torch.device | None = None,
    *,
    bounds: tuple[Any, Any] = (-0.55, 0.55),
    max_iter: int = 100,
    n_starts: int = 1,
    batch_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """An independent cool-star T_eff: steps 1–2 of :func:`fit_labels` (start, full-spectrum fit) with a
    cool-star emulator ``em`` (P2 §5.1 uses DD-Payne for this; issue 23).

    Below 8,000 K the Hann weight of the H-masked fit is 0 (P2 Eq. 6), so the full fit *is* the procedure's
    result there. Returns (n,) T_eff (K) and the fit's reduced χ² over the full-fit pixels (NaN without data).
    """
    flux, ivar, wave = _checked_inputs(em, norm_flux, norm_ivar, wave)
    fit_mask, _, _, _, init = _start(em, flux, ivar, wave, pixmask, bounds)
    res = fit_best_start(
        em,
        flux,
        ivar,
        mask=fit_mask,
        init=cool_starts(em, init),
        device=device,
        max_iter=max_iter,
        n_starts=n_starts,
        bounds=bounds,
        batch_size=batch_size,
        return_model_flux=False,
    )
    return res.labels[:, em.label_names.index("teff")], res.chi2_red


def fit_labels_set(
    em: Emulator | EmulatorSet,
    norm_flux: np.ndarray,
    norm_ivar: np.ndarray,
    wave: np.ndarray,
    pixmask: np.ndarray | None = None,
    device: str | torch.device | None = None,
    *,
    cool_star: Emulator | None = None,
    **kw: Any,
) -> dict[str, np.ndarray]:
    """:func:`fit_labels` with every component of an emulator set, the lowest χ² kept per spectrum; and the
    cool-star check of P2 §5.1 (issue 23).

    Parameters
    ----------
    em
        An :class:`~survey_scale.science.emulator_set.EmulatorSet` (each component runs the whole procedure;
        per spectrum the result whose full-spectrum fit has the lowest ``full_chi2_red`` — the same pixels for
        all — is kept) or one emulator.
        A component's fit box ends at its own T_eff range on a side where a neighbour takes over (``bounds``
        extrapolates only at the set's two ends: a network extrapolated into its neighbour's range is
        meaningless there and could win on χ² by accident).
    cool_star
        The cool-star emulator for the check when ``em`` has no :data:`COOL_STAR_COMPONENT` (e.g. the shipped
        ``physical`` set's ``cool`` component beside the synthesizer emulator); ``None``: no check.
    kw
        ``snr``, ``bounds``, ``max_iter``, ``n_starts``, ``batch_size`` of :func:`fit_labels`.

    Returns
    -------
    dict
        :func:`fit_labels`' outputs of the kept component, and (n,):

        ``component`` int8
            Index of the kept component (0 for one emulator).
        ``teff_cool``, ``chi2_red_cool``
            T_eff (K) and reduced χ² of the cool-star model's full-spectrum fit (the set's cool component, else
            :func:`fit_cool_star` with ``cool_star``; NaN without either).
        ``chi2_red_hot``
            Reduced χ² of the full-spectrum fit of the best other model (the set's other components, or ``em``).
    """
    components = list(getattr(em, "components", [em]))
    names = list(getattr(em, "names", ["main"]))
    outs = []
    for k, component in enumerate(components):
        # a component does not extrapolate in Teff towards a neighbour that covers those temperatures
        lo, hi = scaled_bounds(kw.get("bounds", (-0.55, 0.55)), component.n_labels)
        it = component.label_names.index("teff")
        lo[it] = max(lo[it], -0.5) if k > 0 else lo[it]
        hi[it] = min(hi[it], 0.5) if k < len(components) - 1 else hi[it]
        fit_kw = {**kw, "bounds": (lo, hi)}
        outs.append(fit_labels(component, norm_flux, norm_ivar, wave, pixmask, device, **fit_kw))
    # the model is chosen by its full-spectrum fit: the combined labels of P2 Eq. 5 move off a model's own
    # optimum by design (towards the H-masked fit), which would bias the choice against the hot model near 9,500 K
    chi2 = np.stack([np.where(np.isfinite(o["full_chi2_red"]), o["full_chi2_red"], np.inf) for o in outs], axis=1)
    best = np.argmin(chi2, axis=1)
    out = {key: np.array(value, copy=True) for key, value in outs[0].items()}
    for k in range(1, len(outs)):
        rows = best == k
        for key in out:
            out[key][rows] = outs[k][key][rows]
    out["component"] = best.astype(np.int8)

    n = best.size
    hot = [o for name, o in zip(names, outs, strict=True) if name != COOL_STAR_COMPONENT]
    full_chi2 = np.stack([np.where(np.isfinite(o["full_chi2_red"]), o["full_chi2_red"], np.inf) for o in hot], axis=1)
    out["chi2_red_hot"] = np.where(np.isfinite(full_chi2.min(1)), full_chi2.min(1), np.nan)
    if COOL_STAR_COMPONENT in names:
        cool_out = outs[names.index(COOL_STAR_COMPONENT)]
        it = components[0].label_names.index("teff")
        out["teff_cool"], out["chi2_red_cool"] = cool_out["full_labels"][:, it], cool_out["full_chi2_red"]
    elif cool_star is not None:
        fit_kw = {k: v for k, v in kw.items() if k != "snr"}
        out["teff_cool"], out["chi2_red_cool"] = fit_cool_star(
            cool_star, norm_flux, norm_ivar, wave, pixmask, device, **fit_kw
        )
    else:
        out["teff_cool"], out["chi2_red_cool"] = np.full(n, np.nan), np.full(n, np.nan)
    return out


def model_spectra(
    em: Emulator | EmulatorSet,
    labels: np.ndarray,
    label_names: tuple[str, ...] | list[str],
    vsini_raw: np.ndarray | None = None,
    component: np.ndarray | None = None,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """The fit's model spectra rebuilt from its stored labels (SPEC §5.3): ``model_flux`` without keeping it.

    Parameters
    ----------
    em
        The emulator (or emulator set) of the fit.
    labels
        (n, L) labels in the order ``label_names`` (the cube's ``labels``; labels the emulator does not fit
        are ignored).
    vsini_raw
        (n,) v sin i before clipping at 0 (km s⁻¹; the cube's ``vsini_raw``): the fit's model is at the raw
        value. ``None``: the labels' own v sin i.
    component
        (n,) index of the set's component that fitted each spectrum (``fit_component``); ``None``: 0.

    Returns
    -------
    (n, P) float32 normalized model flux on the emulator's pixels; NaN where a needed label is NaN. It equals
    the fit's ``model_flux`` to float32 rounding of the labels (~1e-6 of the flux).
    """
    labels = np.asarray(labels, dtype=np.float64)
    n = labels.shape[0]
    components = list(getattr(em, "components", [em]))
    which = np.zeros(n, dtype=np.int64) if component is None else np.asarray(component, dtype=np.int64)
    out = np.full((n, components[0].n_pixels), np.nan, dtype=np.float32)
    names = list(label_names)
    for k, comp in enumerate(components):
        lab = labels[:, [names.index(name) for name in comp.label_names]]
        if vsini_raw is not None and "vsini" in comp.label_names:
            lab[:, comp.label_names.index("vsini")] = vsini_raw
        rows = (which == k) & np.isfinite(lab).all(1)
        if rows.any():
            out[rows] = comp.predict(lab[rows], device=device)
    return out


def _fit_rows_again(
    em: Emulator,
    flux: np.ndarray,
    ivar: np.ndarray,
    mask: np.ndarray,
    rows: np.ndarray,
    init: np.ndarray,
    into: FitResult,
    **kw: Any,
) -> FitResult:
    """:func:`fit_spectra` of the spectra ``rows`` (m,) of the (n, P) arrays from ``init`` (m, L), its results
    put into ``into`` (n spectra) at those rows; returns the new fits."""
    again = fit_spectra(em, flux[rows], ivar[rows], mask=mask[rows], init=init, **kw)
    _replace_rows(into, rows, again)
    return again


def _replace_rows(res: FitResult, rows: np.ndarray, new: FitResult) -> None:
    for name in (
        "labels",
        "cov",
        "errors",
        "chi2",
        "chi2_red",
        "n_iter",
        "status",
        "n_good",
        "dof",
        "labels_scaled",
        "at_bound",
        "start",
    ):
        getattr(res, name)[rows] = getattr(new, name)
    res.converged[rows] = new.converged
