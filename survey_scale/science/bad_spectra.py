"""Erroneous spectra from all the pipeline's evidence (SPEC §4, P1 §3 and Appendix A, Fig. 15).

P1 finds erroneous LAMOST spectra (bad flux over a range, artefacts, wrong wavelength calibration) by their
large χ² against the PCA reconstruction. After the label fit (SPEC §5.3) the pipeline has more evidence: a
physical model spectrum (``model_flux``) whose lines sit where the labels put them, its χ² against the
survey's expectation (``chi2ratio``, P2 §5.2), and the Hα diagnostics of §4. Each piece of evidence is a
per-spectrum statistic, larger for a worse spectrum:

=====  ==============  =====================================================================================
bit    evidence        statistic
=====  ==============  =====================================================================================
1      ``pca_chi2``    reduced χ² of the PCA reconstruction over the clean windows (§4)
2      ``pca_local``   ``pca_local_z``: the worst ~50 Å misfit of the PCA reconstruction (§4)
4      ``fit_local``   ``fit_local_z``: the worst ~50 Å misfit of the label fit against the spectrum's own
                       misfit (:func:`robust_local_z`; telluric bands left out)
8      ``chi2ratio``   the fit's χ² against the survey's median and dispersion at its Teff and S/N (P2 §5.2);
                       spectra without emission only (an emission line is not in the model)
16     ``wavelength``  ``wave_shift_z``: a segment whose lines sit shifted against the model
                       (:func:`wavelength_shift_evidence`)
32     ``halpha``      ``halpha_chi2``: the Hα region (6400–6550, 6590–6690 Å) misfit of the PCA, spectra
                       without emission only
64     ``flux_step``   ``flux_step_z``: the largest step of the pseudo-continuum over ±60 Å against the survey's
                       median step at that pixel, in units of the survey's scatter (:func:`continuum_steps`)
=====  ==============  =====================================================================================

Rule: a spectrum is erroneous (``bad_spectrum_flag = 1``) when any statistic exceeds its limit at the
spectrum's S/N, and ``bad_spectrum_reason`` is the sum of the bits of the evidence that fired (0 for a
good spectrum). The limits are derived from the survey itself, so that they hold on a release they were not
tuned on: the spectra are split into equal-count bins of log10 S/N; in each bin the limit is
median + n_sigma × scale of the statistic's transform (log10 for the positive statistics, the value itself
for ``chi2ratio`` and ``wave_shift_z``), scale = max(1.4826 MAD, (90th percentile − median) / 1.2816) — the
MAD where the bin is Gaussian, its upper tail where that is heavier (binaries and peculiar stars, which no
model describes well, make the tails of bright bins heavy); between bin centres the limit is interpolated
linearly in log10 S/N (constant beyond the end bins). A fixed limit may replace a derived one. Per S/N
because model errors, not noise, dominate the residuals of bright spectra: a good spectrum at S/N 300 has
a χ² and local misfits that would be alarming at S/N 20 (one limit flagged 1.9 % of the clean S/N > 100
spectra of a mock release and none of the corrupted ones below S/N 10).

Flux jumps
----------
A part of the spectrum scaled against the rest (P1 Fig. 15) leaves little in the normalized flux: the 50 Å
pseudo-continuum follows the jump, and its edges often fall in masked windows (the dichroic, Balmer lines,
interstellar bands). The jump is in the continuum itself, whose steps over ±60 Å the instrument and the stars'
energy distributions make alike across the survey: per pixel, the survey's median step and its scatter
(1.4826 MAD) come from a histogram reduction over the reference spectra (:func:`step_histogram_block`,
:func:`step_reference`), and ``flux_step_z`` is a spectrum's largest deviation in units of that scatter.
On two development mock releases a limit at n_sigma 3.5 found every flux jump above S/N 30 and 6 of 11 at
S/N 10–30, at 0.2 % false flags below S/N 10 and none above S/N 30.

Wrong wavelength calibration
----------------------------
A segment of the spectrum whose wavelengths are off by δ pixels shows its lines displaced against the
model: in the linear regime the residual is f − m ≈ −δ dm/dpixel, derivative-shaped; the PCA, which
reconstructs the normalized flux from the same distorted spectrum, absorbs much of it. The exact,
non-linear form of that test (LAMOST's bad segments are off by several pixels, wider than the lines) is a
scan of the model shifted by s pixels, |s| < ``max_shift``: χ²_b(s) of the data against it in each block b
of :data:`BLOCK_PIXELS` pixels, on residuals high-passed over :data:`HIGH_PASS_PIXELS` pixels (a slope or a
mismatched broad wing would otherwise pass for a shift). Against the spectrum's own shift s_g (a
radial-velocity error moves every line together; :func:`reference_shift`), each block gains
g_b(s) = min_{|s' − s_g| ≤ 1} χ²_b(s') − χ²_b(s); the wrong segment is the run of consecutive blocks with
the largest total gain at one shift |s − s_g| ≥ ``min_shift`` (Kadane's maximum-sum run), any length, and

    wave_shift_z = √(Δ / q),  Δ = its total gain,  q = max(1, its reduced χ² at that shift)

(model errors that no shift explains widen the noise instead of counting as evidence).

A segment without stellar lines gives Δ ≈ 0 whatever its shift. The telluric bands (O2 B, A, H2O) are
lines too, and the textbook check of a wavelength calibration: they are in the observed spectrum, so a
wrong segment moves them with the star's lines. The model of the scan is then the star's times the
telluric transmission (:func:`telluric_template`, the survey's mean flux / model in the observed frame,
moved into each spectrum's rest frame with its RV and scaled to its depth, :func:`rest_frame_transmission`),
and since telluric lines do not move with a star's RV error, the star's own shift is measured without the
bands and the transmission is not moved by it. On a development mock release half the wrong segments held
no stellar line the fit could see at their S/N; a scan of fixed 350 Å segments without the telluric lines
found 0.09 of them, this one 0.68 (0.82 above S/N 10) at fewer false flags.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from survey_scale.core.masks import EMISSION_WINDOWS, FIT_WINDOWS, TELLURIC_BANDS, Window, window_mask
from survey_scale.core.wavelength import LOG10_WAVE_STEP
from survey_scale.science.emission import LOCAL_WINDOW_PIXELS, MAD_TO_SIGMA

C_KMS = 299792.458

BLOCK_PIXELS = 64
"""Pixels of a block of the wavelength-shift scan (~90 Å at 6,000 Å): a wrong segment is a run of blocks."""
REFERENCE_SEGMENT_PIXELS = 256
"""Pixels of the non-overlapping segments that vote for a spectrum's own shift (:func:`reference_shift`)."""
HIGH_PASS_PIXELS = 41
"""Running-mean length removed from the residuals of the shift scan (~60 Å, the scale of the continuum)."""

REASON_BITS: dict[int, str] = {
    1: "pca_chi2: PCA reconstruction chi2 over the clean windows",
    2: "pca_local: worst ~50 A misfit of the PCA reconstruction",
    4: "fit_local: worst ~50 A misfit of the label fit (model_flux)",
    8: "chi2ratio: label-fit chi2 unusual for the Teff and S/N (P2 5.2; spectra without emission)",
    16: "wavelength: a segment whose lines are shifted against the fit's model (wrong wavelength calibration)",
    32: "halpha: H-alpha region misfit of the PCA without emission",
    64: "flux_step: a step in the pseudo-continuum unlike the survey's (a flux jump between two parts of the spectrum)",
}
"""Bits of ``bad_spectrum_reason`` (which evidence fired)."""

EVIDENCE: dict[str, tuple[int, str]] = {
    "pca_chi2": (1, "log"),
    "pca_local_z": (2, "log"),
    "fit_local_z": (4, "log"),
    "chi2ratio": (8, "linear"),
    "wave_shift_z": (16, "linear"),
    "halpha_chi2": (32, "log"),
    "flux_step_z": (64, "log"),
}
"""Evidence statistic → (reason bit, transform of the robust limit)."""
NON_EMISSION_ONLY = ("chi2ratio", "halpha_chi2")
"""Evidence that an emission line would fake: used only where ``em_flag`` is 0."""

_LOG_FLOOR = 1e-3
TAIL_QUANTILE = 0.9
"""The upper quantile that sets the scale of a heavy-tailed bin (1.2816σ of a normal distribution): far enough
in the tail to see its weight, robust while fewer than 10 % of a bin's spectra are erroneous."""
TAIL_Z = 1.2816


# --- evidence from the label fit ---------------------------------------------------------------------------


def run_significance(
    resid: np.ndarray, var: np.ndarray, use: np.ndarray, width: int = LOCAL_WINDOW_PIXELS
) -> np.ndarray:
    """(n, P − width + 1) Σ resid / √(Σ var) over runs of ``width`` pixels on ``use`` pixels (NaN where a run
    has fewer than 60 % usable pixels)."""

    def run_sums(x: np.ndarray) -> np.ndarray:
        total = np.cumsum(np.where(use, x, 0.0), axis=1)
        return total[:, width - 1 :] - np.pad(total, ((0, 0), (1, 0)))[:, :-width]

    n_used, r_sum, v_sum = run_sums(np.ones_like(resid)), run_sums(resid), run_sums(var)
    ok = (n_used >= 0.6 * width) & (v_sum > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, r_sum / np.sqrt(np.where(ok, v_sum, 1.0)), np.nan)


def robust_local_z(resid: np.ndarray, var: np.ndarray, use: np.ndarray, width: int = LOCAL_WINDOW_PIXELS) -> np.ndarray:
    """(n,) the worst ~50 Å misfit against the spectrum's own misfit: max |z − median z| / max(1, 1.4826 MAD z).

    z are the run significances of :func:`run_significance`. Model errors spread over the whole spectrum
    (a bright star's residuals are its model's, everywhere) raise every run and the MAD with them; a flux
    defect raises a few runs only. 0 without a usable run.
    """
    z = run_significance(resid, var, use, width)
    has = np.isfinite(z).any(axis=1)
    z = np.where(has[:, None], z, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(z, axis=1, keepdims=True)
        mad = MAD_TO_SIGMA * np.nanmedian(np.abs(z - med), axis=1)
        worst = np.nanmax(np.abs(z - med), axis=1)
    return np.where(has, worst / np.maximum(mad, 1.0), 0.0)


PINNED_DCHI2 = 25.0
"""A segment pins its shift when moving the model 3 pixels either way from its best shift raises its χ² by
more than this (5σ): such segments vote for the reference shift."""


def reference_shift(chi2: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """(n,) the spectrum's own shift: the best shifts of its non-overlapping segments that pin one, their
    median weighted by how firmly each pins it.

    ``chi2`` (n_shifts, n, n_segments) of non-overlapping segments at ``shifts`` (consecutive integers). A
    segment pins its best shift when moving the model 3 pixels either way raises its χ² by more than
    :data:`PINNED_DCHI2`; that rise is its weight. A radial-velocity error moves every line together; the
    weighted median is not dragged by a wrong segment unless it holds most of the lines (0 without any
    pinning segment).
    """
    best_at = np.argmin(chi2, axis=0)  # (n, n_seg)
    best = np.take_along_axis(chi2, best_at[None], axis=0)[0]
    below = np.take_along_axis(chi2, np.clip(best_at - 3, 0, shifts.size - 1)[None], axis=0)[0]
    above = np.take_along_axis(chi2, np.clip(best_at + 3, 0, shifts.size - 1)[None], axis=0)[0]
    rise = np.minimum(below, above) - best
    weight = np.where(rise > PINNED_DCHI2, rise, 0.0)
    order = np.argsort(shifts[best_at], axis=1, kind="stable")
    votes = np.take_along_axis(shifts[best_at], order, axis=1)
    cumulative = np.cumsum(np.take_along_axis(weight, order, axis=1), axis=1)
    total = cumulative[:, -1:]
    at = np.argmax(cumulative >= 0.5 * total, axis=1)
    return np.where(total[:, 0] > 0, votes[np.arange(votes.shape[0]), at], 0).astype(np.int64)


def _moved(model: np.ndarray, shift: np.ndarray | int) -> np.ndarray:
    """(n, P) ``model`` moved by ``shift`` pixels to the red (one int, or one per row), ends repeated."""
    n, p = model.shape
    src = np.clip(np.arange(p)[None, :] - np.reshape(shift, (-1, 1)), 0, p - 1)
    return np.take_along_axis(model, np.broadcast_to(src, (n, p)), axis=1)


def _move_into(out: np.ndarray, model: np.ndarray, shift: int) -> None:
    """:func:`_moved` by one shift for every row, written into ``out`` (n, P) by slicing."""
    p = model.shape[1]
    if shift >= p or shift <= -p:
        out[:] = model[:, :1] if shift > 0 else model[:, -1:]
    elif shift >= 0:
        out[:, shift:] = model[:, : p - shift]
        out[:, :shift] = model[:, :1]
    else:
        out[:, :shift] = model[:, -shift:]
        out[:, shift:] = model[:, -1:]


def _block_chi2(
    flux: np.ndarray, weight: np.ndarray, model: np.ndarray, shifts: np.ndarray, block: int, smooth: int
) -> np.ndarray:
    """(n_shifts, n, n_blocks) χ² of ``flux`` against ``model`` moved by each shift, per block of pixels.

    The residual is high-passed first (minus its weighted running mean over ``smooth`` pixels): a shift moves
    lines, while a slope or a broad-wing mismatch of the model would otherwise pass for one.
    """
    n, p = flux.shape
    n_blocks = -(-p // block)
    width = n_blocks * block
    pad = ((0, 0), (0, width - p))
    f, w = np.pad(flux, pad), np.pad(weight, pad)
    on = (w > 0).astype(np.float32)
    half = smooth // 2
    on_sum = np.cumsum(np.pad(on, ((0, 0), (half + 1, half))), axis=1)
    on_run = np.maximum(on_sum[:, smooth:] - on_sum[:, :-smooth], 1.0)
    out = np.empty((shifts.size, n, n_blocks))
    # buffers reused by every shift (41 by default): the moved model, edge-padded to whole blocks, and the
    # residual inside the zero margins of its running sum
    moved = np.empty((n, width), dtype=np.float32)
    padded = np.zeros((n, width + smooth), dtype=np.float32)
    r = padded[:, half + 1 : half + 1 + width]
    r_sum = np.empty_like(padded)
    hp, chi2 = np.empty_like(f), np.empty_like(f)
    for k, s in enumerate(shifts):
        _move_into(moved[:, :p], model, int(s))
        moved[:, p:] = moved[:, p - 1 : p]
        np.subtract(f, moved, out=r)
        r *= on
        if smooth > 1:  # hp = (r − running sum / on_run) · on, in place
            np.cumsum(padded, axis=1, out=r_sum)
            np.subtract(r_sum[:, smooth:], r_sum[:, :-smooth], out=hp)
            hp /= on_run
            np.subtract(r, hp, out=hp)
            hp *= on
        else:
            hp[:] = r
        np.multiply(w, hp, out=chi2)
        chi2 *= hp
        out[k] = chi2.reshape(n, n_blocks, block).sum(axis=2, dtype=np.float64)
    return out


def _best_region(gain: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximum-sum run of consecutive blocks (Kadane) of ``gain`` (..., n_blocks): sum, first, last block."""
    best = np.zeros(gain.shape[:-1])
    run = np.zeros_like(best)
    first = np.zeros(best.shape, dtype=np.int64)
    last = np.zeros_like(first)
    run_first = np.zeros_like(first)
    for b in range(gain.shape[-1]):
        fresh = run <= 0.0
        run_first = np.where(fresh, b, run_first)
        run = np.where(fresh, gain[..., b], run + gain[..., b])
        better = run > best
        best = np.where(better, run, best)
        first = np.where(better, run_first, first)
        last = np.where(better, b, last)
    return best, first, last


def wavelength_shift_evidence(
    norm_flux: np.ndarray,
    norm_ivar: np.ndarray,
    model_flux: np.ndarray,
    use: np.ndarray,
    *,
    transmission: np.ndarray | None = None,
    telluric: np.ndarray | None = None,
    max_shift: int = 20,
    min_shift: int = 3,
    block: int = BLOCK_PIXELS,
    smooth: int = HIGH_PASS_PIXELS,
) -> dict[str, np.ndarray]:
    """The wrong-wavelength statistic of the module docstring for a batch of spectra.

    Parameters
    ----------
    norm_flux, norm_ivar, model_flux
        (n, P) normalized flux, its inverse variance and the fit's model spectrum on the same grid.
    use
        (n, P) bool, the pixels that count (fitted, usable; emission-line cores left out for emission stars).
    transmission, telluric
        (n, P) telluric transmission in each spectrum's frame and (P,) bool, the telluric bands; when given,
        the bands count (the model is the star's times the transmission), the star's own shift is measured
        without them and the transmission is not moved by it (telluric lines do not move with a star's
        radial-velocity error; both move in a wrongly calibrated segment).
    max_shift, min_shift
        Shifts scanned (|s| < ``max_shift`` pixels) and the smallest shift, relative to the spectrum's own,
        that counts as a wrong calibration (1 pixel = 1e-4 dex = 69 km/s).
    block, smooth
        Block length (the resolution of the segment found) and high-pass length, pixels.

    Returns
    -------
    dict
        ``wave_shift_z`` (n,) float32 (0 where no segment gains); ``wave_shift_pixels`` (n,) int16, the
        segment's shift relative to the spectrum's own (+ = the data's lines redder than the model's);
        ``wave_shift_first``, ``wave_shift_last`` (n,) int32, the segment's first and last pixel.
    """
    flux = np.asarray(norm_flux, dtype=np.float32)
    n, p = flux.shape
    good = use & np.isfinite(flux) & np.isfinite(model_flux) & (np.asarray(norm_ivar) > 0)
    weight = np.where(good, norm_ivar, 0.0).astype(np.float32)
    flux = np.where(good, flux, 0.0).astype(np.float32)
    model = np.where(np.isfinite(model_flux), model_flux, 1.0).astype(np.float32)
    shifts = np.arange(-max_shift, max_shift + 1)
    per_segment = REFERENCE_SEGMENT_PIXELS // block

    def reference(chi2: np.ndarray) -> np.ndarray:
        n_seg = chi2.shape[2] // per_segment
        if n_seg == 0:
            return np.zeros(n, dtype=np.int64)
        segments = chi2[:, :, : n_seg * per_segment].reshape(shifts.size, n, n_seg, per_segment).sum(axis=3)
        return reference_shift(segments, shifts)

    if transmission is not None and telluric is not None:
        star = np.where(telluric[None, :], 0.0, weight).astype(np.float32)
        s_star = reference(_block_chi2(flux, star, model, shifts, block, smooth))
        model = _moved(model, s_star) * np.asarray(transmission, dtype=np.float32)
        chi2 = _block_chi2(flux, weight, model, shifts, block, smooth)
        s_ref = np.zeros(n, dtype=np.int64)
    else:
        chi2 = _block_chi2(flux, weight, model, shifts, block, smooth)
        s_ref = reference(chi2)
    counts = (weight > 0).astype(np.float64)
    counts = np.pad(counts, ((0, 0), (0, chi2.shape[2] * block - p))).reshape(n, -1, block).sum(axis=2)
    offset = np.abs(shifts[:, None] - s_ref[None, :])  # (n_shifts, n)
    null = np.where((offset <= 1)[:, :, None], chi2, np.inf).min(axis=0)  # (n, n_blocks)
    alternative = (offset >= min_shift) & (np.abs(shifts)[:, None] < max_shift)  # a minimum inside the scan
    gain, first, last = _best_region(null[None] - chi2)
    gain = np.where(alternative, gain, 0.0)
    k = np.argmax(gain, axis=0)
    rows = np.arange(n)
    delta, a, b = gain[k, rows], first[k, rows], last[k, rows]
    chi2_sum = np.pad(np.cumsum(chi2[k, rows], axis=1), ((0, 0), (1, 0)))
    count_sum = np.pad(np.cumsum(counts, axis=1), ((0, 0), (1, 0)))
    region_chi2 = chi2_sum[rows, b + 1] - chi2_sum[rows, a]
    region_n = count_sum[rows, b + 1] - count_sum[rows, a]
    q = np.maximum(1.0, region_chi2 / np.maximum(region_n - 1.0, 1.0))
    z = np.sqrt(np.maximum(delta, 0.0) / q)
    return {
        "wave_shift_z": z.astype(np.float32),
        "wave_shift_pixels": np.where(delta > 0, shifts[k] - s_ref, 0).astype(np.int16),
        "wave_shift_first": (a * block).astype(np.int32),
        "wave_shift_last": np.minimum((b + 1) * block - 1, p - 1).astype(np.int32),
    }


def fit_residual_evidence(
    norm_flux: np.ndarray,
    norm_ivar: np.ndarray,
    model_flux: np.ndarray,
    use: np.ndarray,
    *,
    transmission: np.ndarray | None = None,
    telluric: np.ndarray | None = None,
    max_shift: int = 20,
    min_shift: int = 3,
) -> dict[str, np.ndarray]:
    """``fit_local_z`` (:func:`robust_local_z`, telluric bands left out) and the wrong-wavelength statistics of
    :func:`wavelength_shift_evidence` for a batch (see the module docstring); arguments as there."""
    flux = np.asarray(norm_flux, dtype=np.float64)
    ivar = np.asarray(norm_ivar, dtype=np.float64)
    model = np.asarray(model_flux, dtype=np.float64)
    good = use & (ivar > 0) & np.isfinite(flux) & np.isfinite(model)
    if telluric is not None:
        good_star = good & ~telluric[None, :]
    else:
        good_star = good
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.where(good_star, 1.0 / np.where(good_star, ivar, 1.0), 0.0)
        resid = np.where(good_star, flux - np.where(good_star, model, 0.0), 0.0)
    out = {"fit_local_z": robust_local_z(resid, var, good_star).astype(np.float32)}
    out.update(
        wavelength_shift_evidence(
            flux,
            ivar,
            model,
            good,
            transmission=transmission,
            telluric=telluric,
            max_shift=max_shift,
            min_shift=min_shift,
        )
    )
    return out


EMISSION_CORE_HALF_WIDTH = 20.0
"""Å around each hydrogen line left out for ``em_flag = 1`` spectra: the emission fills the core, the
absorption wings still fix the wavelength."""


def emission_cores(wave: np.ndarray) -> np.ndarray:
    """(P,) bool: the emission windows, hydrogen ones narrowed to ±:data:`EMISSION_CORE_HALF_WIDTH` Å."""
    windows = [
        Window(
            w.name,
            0.5 * (w.lo + w.hi) - EMISSION_CORE_HALF_WIDTH,
            0.5 * (w.lo + w.hi) + EMISSION_CORE_HALF_WIDTH,
            "core",
        )
        if w.kind == "hydrogen"
        else w
        for w in EMISSION_WINDOWS
    ]
    return window_mask(wave, windows)


def evidence_pixels(wave: np.ndarray, pixmask: np.ndarray, em_flag: np.ndarray) -> np.ndarray:
    """(n, P) bool: the pixels the fit's evidence uses — the label fit's (its masked windows out, the telluric
    bands kept: they count for the wavelength test; unflagged ``pixmask``), less the cores of the emission
    lines (:func:`emission_cores`) for ``em_flag = 1`` spectra."""
    emission = np.asarray(em_flag) == 1
    fit_mask = window_mask(wave, [w for w in FIT_WINDOWS if w.kind != "telluric"])
    use = ~fit_mask[None, :] & (np.asarray(pixmask) == 0)
    return use & ~(emission[:, None] & emission_cores(wave)[None, :])


def fit_residual_columns(
    flux: np.ndarray,
    norm_flux: np.ndarray,
    norm_ivar: np.ndarray,
    pixmask: np.ndarray,
    model_flux: np.ndarray,
    em_flag: np.ndarray,
    rv: np.ndarray,
    *,
    wave: np.ndarray,
    telluric_template: np.ndarray,
    step_median: np.ndarray,
    step_scale: np.ndarray,
    max_shift: int,
    min_shift: int,
) -> dict[str, np.ndarray]:
    """The columns of stage ``fit_residuals`` for a batch of spectra (n, P) on the wavelengths ``wave`` (Å).

    :func:`fit_residual_evidence` over :func:`evidence_pixels`, with the observed-frame ``telluric_template``
    in each spectrum's rest frame (:func:`rest_frame_transmission`), and :func:`flux_step_z` against the survey's
    ``step_median``, ``step_scale`` (:func:`step_reference`). Spectra without a fit (a non-finite ``model_flux``)
    get NaN (``wave_shift_pixels`` 0); the range of the shifted segment (``wave_shift_lo``, ``_hi``, Å) is NaN
    where there is none. Returns ``fit_local_z``, ``wave_shift_z``, ``wave_shift_pixels`` (int16),
    ``wave_shift_lo``, ``wave_shift_hi``, ``flux_step_z`` (float32 otherwise).
    """
    norm_flux, norm_ivar = np.asarray(norm_flux), np.asarray(norm_ivar)
    telluric = window_mask(wave, TELLURIC_BANDS)
    use = evidence_pixels(wave, pixmask, em_flag)
    fitted = np.all(np.isfinite(model_flux), axis=1)
    model = np.where(fitted[:, None], model_flux, 1.0)
    transmission = rest_frame_transmission(telluric_template, rv, norm_flux, norm_ivar, model, use, telluric)
    out = fit_residual_evidence(
        norm_flux,
        norm_ivar,
        model,
        use,
        transmission=transmission,
        telluric=telluric,
        max_shift=max_shift,
        min_shift=min_shift,
    )
    shifted = fitted & (out["wave_shift_pixels"] != 0)
    step_z = flux_step_z(continuum_steps(flux, norm_flux, norm_ivar), step_median, step_scale)
    return {
        "fit_local_z": np.where(fitted, out["fit_local_z"], np.nan).astype(np.float32),
        "wave_shift_z": np.where(fitted, out["wave_shift_z"], np.nan).astype(np.float32),
        "wave_shift_pixels": np.where(fitted, out["wave_shift_pixels"], 0).astype(np.int16),
        "wave_shift_lo": np.where(shifted, wave[out["wave_shift_first"]], np.nan).astype(np.float32),
        "wave_shift_hi": np.where(shifted, wave[out["wave_shift_last"]], np.nan).astype(np.float32),
        "flux_step_z": step_z.astype(np.float32),
    }


# --- the telluric transmission (a survey-wide reduction) ---------------------------------------------------


def frame_offset_pixels(rv_kms: np.ndarray) -> np.ndarray:
    """(n,) pixels of 1e-4 dex between a spectrum's rest frame and the observed frame: log10(1 + v/c) / 1e-4."""
    return np.log10(1.0 + np.asarray(rv_kms, dtype=np.float64) / C_KMS) / LOG10_WAVE_STEP


def _interpolate_rows(values: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """(n, P) out[i, k] = values[i, k − offset[i]] by linear interpolation (ends repeated)."""
    p = values.shape[1]
    src = np.arange(p)[None, :] - np.reshape(offset, (-1, 1))
    lo = np.clip(np.floor(src).astype(np.int64), 0, p - 2)
    frac = np.clip(src - lo, 0.0, 1.0)
    return np.take_along_axis(values, lo, axis=1) * (1.0 - frac) + np.take_along_axis(values, lo + 1, axis=1) * frac


def telluric_sums_block(data: Mapping[str, np.ndarray], params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Sums of flux / model in the observed frame over a block of fitted spectra (a reduction's block).

    ``data``: ``norm_flux``, ``norm_ivar``, ``model_flux``, ``rv`` (km/s, the rest-frame shift the ingest
    made). Spectra without a model or a finite RV are left out; ratios are clipped to [0, 2].
    """
    flux = np.asarray(data["norm_flux"], dtype=np.float64)
    model = np.asarray(data["model_flux"], dtype=np.float64)
    rv = np.asarray(data["rv"], dtype=np.float64)
    keep = np.all(np.isfinite(model), axis=1) & np.isfinite(rv)
    ok = keep[:, None] & (np.asarray(data["norm_ivar"]) > 0) & np.isfinite(flux) & (model > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(ok, np.clip(flux / np.where(ok, model, 1.0), 0.0, 2.0), 0.0)
    offset = frame_offset_pixels(np.where(np.isfinite(rv), rv, 0.0))
    return {
        "sum": _interpolate_rows(ratio, offset).sum(axis=0),
        "count": _interpolate_rows(ok.astype(np.float64), offset).sum(axis=0),
    }


def telluric_template(sums: Mapping[str, np.ndarray], telluric: np.ndarray, min_count: float = 20.0) -> np.ndarray:
    """(P,) the mean transmission in the observed frame from :func:`telluric_sums_block` sums: flux / model in
    the telluric bands (1 outside them and where fewer than ``min_count`` spectra contribute)."""
    count = np.asarray(sums["count"], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(count >= min_count, sums["sum"] / count, 1.0)
    return np.where(telluric, np.clip(mean, 0.0, 1.5), 1.0)


def rest_frame_transmission(
    template: np.ndarray,
    rv_kms: np.ndarray,
    norm_flux: np.ndarray,
    norm_ivar: np.ndarray,
    model_flux: np.ndarray,
    use: np.ndarray,
    telluric: np.ndarray,
) -> np.ndarray:
    """(n, P) each spectrum's telluric transmission in its rest frame: 1 + a (T − 1), with T the observed-
    frame ``template`` moved by the spectrum's RV and a ∈ [0, 3] its depth (least squares over the bands at
    zero shift; the amount of water and air varies from night to night)."""
    n = np.shape(norm_flux)[0]
    offset = frame_offset_pixels(np.where(np.isfinite(rv_kms), rv_kms, 0.0))
    t = _interpolate_rows(np.broadcast_to(np.asarray(template, dtype=np.float64), (n, template.size)), -offset)
    ok = use & telluric[None, :] & (np.asarray(norm_ivar) > 0) & np.isfinite(norm_flux) & np.isfinite(model_flux)
    x = np.where(ok, model_flux * (t - 1.0), 0.0)
    y = np.where(ok, norm_flux - model_flux, 0.0)
    w = np.where(ok, norm_ivar, 0.0)
    depth = np.clip((w * x * y).sum(axis=1) / np.maximum((w * x * x).sum(axis=1), 1e-12), 0.0, 3.0)
    return 1.0 + depth[:, None] * (t - 1.0)


# --- steps in the pseudo-continuum (a survey-wide reduction) -----------------------------------------------


STEP_BASELINE_PIXELS = 43
"""Half the baseline of a continuum step, pixels (~60 Å at 6,000 Å): a step is log10 f̄(λ + 60 Å) − log10 f̄(λ − 60 Å),
wider than the 50 Å smoothing of the pseudo-continuum (SPEC §3), which spreads a jump over about that much."""
STEP_EDGE_PIXELS = 100
"""Pixels at each end of the spectrum where the steps are not looked at (the continuum is one-sided there)."""
STEP_BINS = np.linspace(-0.3, 0.3, 601)
"""Edges of the per-pixel histogram of the survey's steps, dex (0.001 dex wide; values beyond go to the end bins)."""
STEP_SCALE_FLOOR = 1e-3
"""Smallest per-pixel scale of the steps, dex (the histogram's resolution)."""


def continuum_steps(flux: np.ndarray, norm_flux: np.ndarray, norm_ivar: np.ndarray) -> np.ndarray:
    """(n, P) the steps of each spectrum's pseudo-continuum f̄ = flux / norm_flux (SPEC §3), dex.

    ``step[i] = log10 f̄[i + d] − log10 f̄[i − d]`` with d = :data:`STEP_BASELINE_PIXELS`; NaN within d of the ends
    and where either side has no usable pixel (``norm_ivar`` 0, non-positive flux). A LAMOST flux jump (P1 App.
    A, Fig. 15: one part of the spectrum scaled against the rest) is absorbed by the normalization away from its
    edges, and near them it sits in the continuum itself: a step of 0.15–0.4 dex where the instrument and the
    star's energy distribution change by a few hundredths.
    """
    flux = np.asarray(flux, dtype=np.float64)
    norm_flux = np.asarray(norm_flux, dtype=np.float64)
    ok = (np.asarray(norm_ivar) > 0) & (flux > 0) & (norm_flux > 0) & np.isfinite(flux) & np.isfinite(norm_flux)
    log_continuum = np.where(ok, np.log10(np.divide(flux, norm_flux, out=np.ones_like(flux), where=ok)), np.nan)
    d = STEP_BASELINE_PIXELS
    steps = np.full(log_continuum.shape, np.nan)
    steps[:, d:-d] = log_continuum[:, 2 * d :] - log_continuum[:, : -2 * d]
    return steps


def step_histogram_block(data: Mapping[str, np.ndarray], params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Per-pixel histogram (P, len(:data:`STEP_BINS`) − 1) of the continuum steps of a block (a reduction's
    block; ``data``: ``flux``, ``norm_flux``, ``norm_ivar``)."""
    steps = continuum_steps(data["flux"], data["norm_flux"], data["norm_ivar"])
    n_bins = STEP_BINS.size - 1
    finite = np.isfinite(steps)
    which = np.clip(np.searchsorted(STEP_BINS, np.where(finite, steps, 0.0), side="right") - 1, 0, n_bins - 1)
    pixel = np.broadcast_to(np.arange(steps.shape[1]), steps.shape)
    flat = (pixel * n_bins + which)[finite]
    counts = np.bincount(flat, minlength=steps.shape[1] * n_bins).reshape(steps.shape[1], n_bins)
    return {"step_histogram": counts.astype(np.int64)}


def _weighted_median(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per row, the median of ``values`` (P, B) weighted by ``counts`` (P, B); NaN for rows without counts."""
    order = np.argsort(values, axis=1)
    v = np.take_along_axis(values, order, axis=1)
    cum = np.cumsum(np.take_along_axis(counts, order, axis=1), axis=1)
    total = cum[:, -1]
    k = np.argmax(cum >= 0.5 * total[:, None], axis=1)
    return np.where(total > 0, v[np.arange(v.shape[0]), k], np.nan)


def step_reference(histogram: np.ndarray, min_count: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """The survey's median step and its scale (1.4826 MAD, at least :data:`STEP_SCALE_FLOOR`) at each pixel, dex,
    from :func:`step_histogram_block` counts; NaN where fewer than ``min_count`` spectra contribute."""
    counts = np.asarray(histogram, dtype=np.float64)
    centres = np.broadcast_to(0.5 * (STEP_BINS[1:] + STEP_BINS[:-1]), counts.shape)
    median = _weighted_median(centres, counts)
    scale = 1.4826 * _weighted_median(np.abs(centres - median[:, None]), counts)
    few = counts.sum(axis=1) < min_count
    return np.where(few, np.nan, median), np.where(few, np.nan, np.maximum(scale, STEP_SCALE_FLOOR))


def flux_step_z(steps: np.ndarray, median: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(n,) the largest |step − survey median| / survey scale of each spectrum away from its ends (NaN: none)."""
    z = np.abs(steps - median[None, :]) / scale[None, :]
    edge = STEP_EDGE_PIXELS
    z = z[:, edge:-edge]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
        return np.nanmax(z, axis=1)


# --- S/N-dependent limits and the rule ---------------------------------------------------------------------


@dataclass(frozen=True)
class SnrLimit:
    """A limit that depends on S/N: values at bin centres in log10 S/N, interpolated linearly between them.

    ``values`` are in the statistic's transform (log10 of it for ``transform == "log"``).
    """

    log_snr: tuple[float, ...]
    values: tuple[float, ...]
    transform: str

    def __call__(self, snr: np.ndarray) -> np.ndarray:
        """The limit, in the statistic's own units, at each S/N (NaN S/N: the lowest bin's)."""
        x = np.log10(np.clip(np.nan_to_num(np.asarray(snr, dtype=np.float64), nan=1e-3), 1e-3, None))
        v = np.interp(x, self.log_snr, self.values)
        return 10.0**v if self.transform == "log" else v

    def to_dict(self) -> dict[str, Any]:
        return {"log_snr": list(self.log_snr), "values": list(self.values), "transform": self.transform}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SnrLimit:
        return cls(tuple(float(v) for v in d["log_snr"]), tuple(float(v) for v in d["values"]), str(d["transform"]))

    @classmethod
    def fixed(cls, value: float) -> SnrLimit:
        """A limit that does not depend on S/N."""
        return cls((0.0,), (float(value),), "linear")


def _transform(values: np.ndarray, transform: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return np.log10(np.clip(values, _LOG_FLOOR, None)) if transform == "log" else values


def snr_bin_edges(log_snr: np.ndarray, min_per_bin: int, max_bins: int) -> np.ndarray:
    """Edges of equal-count bins of log10 S/N: as many as allow ``min_per_bin`` spectra each, at most ``max_bins``."""
    n_bins = int(np.clip(log_snr.size // max(min_per_bin, 1), 1, max_bins))
    edges = np.quantile(log_snr, np.linspace(0.0, 1.0, n_bins + 1))
    return np.unique(edges)


MIN_SPECTRA_FOR_LIMIT = 50
"""Fewest spectra with a finite evidence from which its limit is derived."""


def derive_snr_limit(
    values: np.ndarray, snr: np.ndarray, n_sigma: float, transform: str, *, min_per_bin: int, max_bins: int
) -> SnrLimit:
    """median + ``n_sigma`` × 1.4826 MAD of the transformed ``values`` per equal-count bin of log10 S/N.

    Spectra with a non-finite value or a non-positive S/N do not count.

    Raises
    ------
    ValueError
        If no spectrum counts.
    """
    values = np.asarray(values, dtype=np.float64)
    snr = np.asarray(snr, dtype=np.float64)
    ok = np.isfinite(values) & np.isfinite(snr) & (snr > 0)
    if not ok.any():
        raise ValueError("no spectrum with a finite statistic and S/N")
    x, y = np.log10(snr[ok]), _transform(values[ok], transform)
    edges = snr_bin_edges(x, min_per_bin, max_bins)
    which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, max(edges.size - 2, 0))
    centres, limits = [], []
    for b in range(max(edges.size - 1, 1)):
        sel = which == b
        if not sel.any():
            continue
        med = float(np.median(y[sel]))
        mad = float(1.4826 * np.median(np.abs(y[sel] - med)))
        tail = (float(np.quantile(y[sel], TAIL_QUANTILE)) - med) / TAIL_Z
        centres.append(float(np.median(x[sel])))
        limits.append(med + n_sigma * max(mad, tail))
    return SnrLimit(tuple(centres), tuple(limits), transform)


def bad_spectrum_rule(
    evidence: Mapping[str, np.ndarray], snr: np.ndarray, em_flag: np.ndarray, limits: Mapping[str, SnrLimit]
) -> tuple[np.ndarray, np.ndarray]:
    """``bad_spectrum_flag`` (int8 0/1) and ``bad_spectrum_reason`` (int16, :data:`REASON_BITS`) of a batch.

    ``evidence`` maps the names of :data:`EVIDENCE` that are available to (n,) statistics; ``limits`` the
    same names to their :class:`SnrLimit`. A NaN statistic (e.g. no fit) is no evidence; the evidence of
    :data:`NON_EMISSION_ONLY` counts only where ``em_flag`` is 0.
    """
    snr = np.asarray(snr, dtype=np.float64)
    emission = np.asarray(em_flag) == 1
    reason = np.zeros(snr.shape, dtype=np.int16)
    for name, limit in limits.items():
        if name not in evidence:
            continue
        bit = EVIDENCE[name][0]
        value = np.asarray(evidence[name], dtype=np.float64)
        with np.errstate(invalid="ignore"):
            fired = np.isfinite(value) & (value > limit(snr))
        if name in NON_EMISSION_ONLY:
            fired &= ~emission
        reason |= np.where(fired, bit, 0).astype(np.int16)
    return (reason != 0).astype(np.int8), reason


def reference_rows(
    snr: np.ndarray, chi2_red: np.ndarray, em_flag: np.ndarray, hot: np.ndarray, min_snr: float
) -> np.ndarray:
    """Rows of the survey references (the telluric transmission, the continuum steps): fitted (finite
    ``chi2_red``) hot-star spectra (``hot``, bool) without emission with S/N above ``min_snr``."""
    snr = np.asarray(snr, dtype=np.float64)
    chi2 = np.asarray(chi2_red, dtype=np.float64)
    emission = np.asarray(em_flag) == 1
    return np.flatnonzero((snr > min_snr) & ~emission & np.isfinite(chi2) & hot)


def reason_counts(reason: np.ndarray) -> dict[str, int]:
    """The number of spectra each evidence flagged, by its name (:data:`REASON_BITS`), from
    ``bad_spectrum_reason`` values."""
    return {REASON_BITS[bit].split(":")[0]: int(((reason & bit) != 0).sum()) for bit in REASON_BITS}


def reason_names(reason: int) -> list[str]:
    """The evidence names of a ``bad_spectrum_reason`` value."""
    return [text.split(":")[0] for bit, text in REASON_BITS.items() if reason & bit]


def limits_from_config(
    evidence: Mapping[str, np.ndarray],
    snr: np.ndarray,
    em_flag: np.ndarray,
    n_sigma: Mapping[str, float],
    fixed: Mapping[str, float | None],
    *,
    min_per_bin: int,
    max_bins: int,
    names: Sequence[str] | None = None,
    min_spectra: int = MIN_SPECTRA_FOR_LIMIT,
) -> dict[str, SnrLimit]:
    """The limit of each evidence: ``fixed[name]`` when given, else derived from the survey's ``evidence``.

    The evidence of :data:`NON_EMISSION_ONLY` is derived on the spectra without ``em_flag``. An evidence
    with fewer than ``min_spectra`` finite values (a handful of real files) gets no derived limit: it is left
    out of the result, and so cannot flag a spectrum, rather than judged against its own few values.
    """
    emission = np.asarray(em_flag) == 1
    out: dict[str, SnrLimit] = {}
    for name in names or EVIDENCE:
        if name not in evidence:
            continue
        if fixed.get(name) is not None:
            out[name] = SnrLimit.fixed(float(fixed[name]))  # type: ignore[arg-type]
            continue
        values = np.asarray(evidence[name], dtype=np.float64)
        sel = ~emission if name in NON_EMISSION_ONLY else np.ones(values.shape, bool)
        if np.count_nonzero(np.isfinite(values[sel])) < min_spectra:
            continue
        out[name] = derive_snr_limit(
            values[sel],
            np.asarray(snr)[sel],
            n_sigma[name],
            EVIDENCE[name][1],
            min_per_bin=min_per_bin,
            max_bins=max_bins,
        )
    return out


def summary_lines(reductions: Mapping[str, Any]) -> list[str]:
    """``survey-scale info`` lines of the erroneous-spectrum counts and limits (``reductions['bad_spectra']``);
    none before step ``bad_spectra``."""
    bad = reductions.get("bad_spectra")
    if not bad:
        return []
    counts = ", ".join(f"{name} {n:,}" for name, n in bad["n_by_evidence"].items())
    lines = [
        f"    erroneous spectra: {bad['n_flagged']:,} of {bad['n_spectra']:,} flagged ({counts}), updated "
        f"{bad.get('updated')}",
        "      limits at " + bad["snr_column"] + " 10 / 30 / 100 / 300 (n_sigma, or fixed):",
    ]
    for name, d in bad["limits"].items():
        values = SnrLimit.from_dict(d)(np.array([10.0, 30.0, 100.0, 300.0]))
        how = f"fixed {bad['fixed'][name]:g}" if name in bad.get("fixed", {}) else f"n_sigma {bad['n_sigma'][name]:g}"
        lines.append(f"        {name:<13} " + " / ".join(f"{v:.3g}" for v in values) + f"  ({how})")
    for name in bad.get("not_derived", []):
        lines.append(f"        {name:<13} no limit: too few spectra with this evidence (it flags none)")
    return lines
