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
4      ``fit_local``   ``fit_local_z``: the worst ~50 Å misfit of the label fit, |Σ (f − m)| / √(Σ σ²) over
                       runs of :data:`~survey_scale.science.emission.LOCAL_WINDOW_PIXELS` fitted pixels
8      ``chi2ratio``   the fit's χ² against the survey's median and dispersion at its Teff and S/N (P2 §5.2);
                       spectra without emission only (an emission line is not in the model)
16     ``wavelength``  ``wave_shift_z``: a segment whose lines sit shifted against the model
                       (:func:`wavelength_shift_evidence`)
32     ``halpha``      ``halpha_chi2``: the Hα region (6400–6550, 6590–6690 Å) misfit of the PCA, spectra
                       without emission only
=====  ==============  =====================================================================================

Rule: a spectrum is erroneous (``bad_spectrum_flag = 1``) when any statistic exceeds its limit at the
spectrum's S/N, and ``bad_spectrum_reason`` is the sum of the bits of the evidence that fired (0 for a
good spectrum). The limits are derived from the survey itself, so that they hold on a release they were not
tuned on: the spectra are split into equal-count bins of log10 S/N; in each bin the limit is
median + n_sigma × 1.4826 MAD of the statistic's transform (log10 for the positive statistics, the value
itself for ``chi2ratio`` and ``wave_shift_z``), and between bin centres it is interpolated linearly in
log10 S/N (constant beyond the end bins). A fixed limit may replace a derived one. Per S/N because model
errors, not noise, dominate the residuals of bright spectra: a good spectrum at S/N 300 has a χ² and
local misfits that would be alarming at S/N 20 (one limit flagged 1.9 % of the clean S/N > 100 spectra of
a mock release and none of the corrupted ones below S/N 10).

Wrong wavelength calibration
----------------------------
A segment of the spectrum whose wavelengths are off by δ pixels shows its lines displaced against the
model: in the linear regime the residual is f − m ≈ −δ dm/dpixel, derivative-shaped; the PCA, which
reconstructs the normalized flux from the same distorted spectrum, absorbs much of it. The exact,
non-linear form of that test (LAMOST's bad segments are off by several pixels, wider than the lines) is a
scan: in each segment of :data:`SEGMENT_PIXELS` pixels (stepped by :data:`SEGMENT_STEP`) the χ² of the data
against the model shifted by s pixels, χ²_j(s), for |s| ≤ ``max_shift``. The reference is the spectrum's own
shift s_g (a radial-velocity error moves every line together): the median best shift of the non-overlapping
segments that pin one (:func:`reference_shift`), so that a wrong segment does not drag it along;

    wave_shift_z = max_j sign(Δ_j) √(|Δ_j| / q_j),
    Δ_j = min_{|s − s_g| ≤ 1} χ²_j(s) − min_{|s − s_g| ≥ s_min} χ²_j(s)

with q_j = max(1, min_s χ²_j(s) / n_j) the segment's reduced χ² at its best shift (model errors that no
shift explains widen the noise instead of counting as evidence). A segment without lines gives Δ ≈ 0
whatever its shift: only segments with lines can show a wrong calibration, a limit of the method.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from survey_scale.science.emission import local_significance

SEGMENT_PIXELS = 256
"""Pixels of a wavelength-shift segment: 350 Å at 6,000 Å (LAMOST's bad segments span several hundred Å)."""
SEGMENT_STEP = 64
"""Step between segments, pixels."""

REASON_BITS: dict[int, str] = {
    1: "pca_chi2: PCA reconstruction chi2 over the clean windows",
    2: "pca_local: worst ~50 A misfit of the PCA reconstruction",
    4: "fit_local: worst ~50 A misfit of the label fit (model_flux)",
    8: "chi2ratio: label-fit chi2 unusual for the Teff and S/N (P2 5.2; spectra without emission)",
    16: "wavelength: a segment whose lines are shifted against the fit's model (wrong wavelength calibration)",
    32: "halpha: H-alpha region misfit of the PCA without emission",
}
"""Bits of ``bad_spectrum_reason`` (which evidence fired)."""

EVIDENCE: dict[str, tuple[int, str]] = {
    "pca_chi2": (1, "log"),
    "pca_local_z": (2, "log"),
    "fit_local_z": (4, "log"),
    "chi2ratio": (8, "linear"),
    "wave_shift_z": (16, "linear"),
    "halpha_chi2": (32, "log"),
}
"""Evidence statistic → (reason bit, transform of the robust limit)."""
NON_EMISSION_ONLY = ("chi2ratio", "halpha_chi2")
"""Evidence that an emission line would fake: used only where ``em_flag`` is 0."""

_LOG_FLOOR = 1e-3
TAIL_QUANTILE = 0.97725
"""The upper quantile that sets the scale of a heavy-tailed bin: 2σ of a normal distribution."""
TAIL_Z = 2.0


# --- evidence from the label fit ---------------------------------------------------------------------------


PINNED_DCHI2 = 25.0
"""A segment pins its shift when moving the model 3 pixels either way from its best shift raises its χ² by
more than this (5σ): such segments vote for the reference shift."""


def reference_shift(chi2: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """(n,) the spectrum's own shift: the median best shift of its non-overlapping segments that pin one.

    ``chi2`` (n_shifts, n, n_segments) of non-overlapping segments at ``shifts`` (consecutive integers). A
    radial-velocity error moves every line together; the median over the segments with lines is not dragged
    by a wrong segment unless it holds most of them (0 without any such segment).
    """
    best_at = np.argmin(chi2, axis=0)  # (n, n_seg)
    best = np.take_along_axis(chi2, best_at[None], axis=0)[0]
    below = np.take_along_axis(chi2, np.clip(best_at - 3, 0, shifts.size - 1)[None], axis=0)[0]
    above = np.take_along_axis(chi2, np.clip(best_at + 3, 0, shifts.size - 1)[None], axis=0)[0]
    pinned = np.minimum(below, above) - best > PINNED_DCHI2
    votes = np.where(pinned, shifts[best_at].astype(np.float64), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: no segment pins a shift
        median = np.nanmedian(votes, axis=1)
    return np.where(np.isfinite(median), np.round(median), 0.0).astype(np.int64)


def wavelength_shift_evidence(
    norm_flux: np.ndarray,
    norm_ivar: np.ndarray,
    model_flux: np.ndarray,
    use: np.ndarray,
    *,
    max_shift: int = 20,
    min_shift: int = 3,
    segment: int = SEGMENT_PIXELS,
    step: int = SEGMENT_STEP,
) -> dict[str, np.ndarray]:
    """The wrong-wavelength statistic of the module docstring for a batch of spectra.

    Parameters
    ----------
    norm_flux, norm_ivar, model_flux
        (n, P) normalized flux, its inverse variance and the fit's model spectrum on the same grid.
    use
        (n, P) bool, the pixels that count (fitted, usable; emission windows left out for emission stars).
    max_shift, min_shift
        Shifts scanned (|s| ≤ ``max_shift`` pixels) and the smallest shift, relative to the whole
        spectrum's, that counts as a wrong calibration (1 pixel = 1e-4 dex = 69 km/s).
    segment, step
        Segment length and step, pixels (``segment`` a multiple of ``step``). The model is extended by its
        end values where a shift moves it past the grid's ends.

    Returns
    -------
    dict
        ``wave_shift_z`` (n,) float32 (0 where no segment has enough usable pixels); ``wave_shift_pixels``
        (n,) int16, the best shift of the worst segment relative to the spectrum's own (pixels, + = the
        data's lines redder than the model's); ``wave_shift_segment`` (n,) int32, its first pixel.
    """
    if segment % step:
        raise ValueError(f"segment ({segment}) must be a multiple of step ({step})")
    flux = np.asarray(norm_flux, dtype=np.float32)
    n, p = flux.shape
    good = use & np.isfinite(flux) & np.isfinite(model_flux) & (np.asarray(norm_ivar) > 0)
    n_blocks = -(-p // step)
    width = n_blocks * step
    w = np.zeros((n, width), np.float32)
    w[:, :p] = np.where(good, norm_ivar, 0.0)
    f = np.zeros((n, width), np.float32)
    f[:, :p] = np.where(good, flux, 0.0)
    pad = ((0, 0), (max_shift, max_shift + width - p))
    model = np.pad(np.where(np.isfinite(model_flux), model_flux, 1.0).astype(np.float32), pad, mode="edge")
    per_segment = segment // step
    n_seg = max(n_blocks - per_segment + 1, 1)
    shifts = np.arange(-max_shift, max_shift + 1)

    def segment_sums(x: np.ndarray) -> np.ndarray:
        blocks = x.reshape(n, n_blocks, step).sum(axis=2, dtype=np.float64)
        total = np.pad(np.cumsum(blocks, axis=1), ((0, 0), (1, 0)))
        if n_blocks < per_segment:  # a spectrum shorter than one segment: one segment
            return total[:, -1:]
        return total[:, per_segment : per_segment + n_seg] - total[:, :n_seg]

    chi2 = np.empty((shifts.size, n, n_seg))
    for k, s in enumerate(shifts):
        r = f - model[:, max_shift - s : max_shift - s + width]
        chi2[k] = segment_sums(w * r * r)
    n_used = segment_sums((w > 0).astype(np.float32))
    s_g = reference_shift(chi2[:, :, ::per_segment], shifts)  # (n,)
    offset = np.abs(shifts[:, None, None] - s_g[None, :, None])  # (n_shifts, n, 1)
    near = np.where(offset <= 1, chi2, np.inf).min(axis=0)
    far_chi2 = np.where(offset >= min_shift, chi2, np.inf)
    far, far_at = far_chi2.min(axis=0), np.argmin(far_chi2, axis=0)
    q = np.maximum(1.0, chi2.min(axis=0) / np.maximum(n_used - 1.0, 1.0))
    enough = (n_used >= segment // 4) & np.isfinite(far)
    delta = np.where(enough, near - np.where(enough, far, 0.0), 0.0)
    z = np.sign(delta) * np.sqrt(np.abs(delta) / q)
    worst = np.argmax(z, axis=1)
    rows = np.arange(n)
    return {
        "wave_shift_z": z[rows, worst].astype(np.float32),
        "wave_shift_pixels": (shifts[far_at[rows, worst]] - s_g).astype(np.int16),
        "wave_shift_segment": (worst * step).astype(np.int32),
    }


def fit_residual_evidence(
    norm_flux: np.ndarray,
    norm_ivar: np.ndarray,
    model_flux: np.ndarray,
    use: np.ndarray,
    *,
    max_shift: int = 20,
    min_shift: int = 3,
) -> dict[str, np.ndarray]:
    """``fit_local_z`` and the wrong-wavelength statistics of a batch (see the module docstring).

    ``use`` (n, P) bool: the fitted, usable pixels (the fit's mask; for emission stars also without the
    emission windows). ``fit_local_z`` is 0 where no ~50 Å run has enough usable pixels.
    """
    flux = np.asarray(norm_flux, dtype=np.float64)
    ivar = np.asarray(norm_ivar, dtype=np.float64)
    model = np.asarray(model_flux, dtype=np.float64)
    good = use & (ivar > 0) & np.isfinite(flux) & np.isfinite(model)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.where(good, 1.0 / np.where(good, ivar, 1.0), 0.0)
        resid = np.where(good, flux - np.where(good, model, 0.0), 0.0)
    out = {"fit_local_z": local_significance(resid, var, good).astype(np.float32)}
    out.update(wavelength_shift_evidence(flux, ivar, model, good, max_shift=max_shift, min_shift=min_shift))
    return out


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
) -> dict[str, SnrLimit]:
    """The limit of each evidence: ``fixed[name]`` when given, else derived from the survey's ``evidence``.

    The evidence of :data:`NON_EMISSION_ONLY` is derived on the spectra without ``em_flag``.
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
        out[name] = derive_snr_limit(
            values[sel],
            np.asarray(snr)[sel],
            n_sigma[name],
            EVIDENCE[name][1],
            min_per_bin=min_per_bin,
            max_bins=max_bins,
        )
    return out
