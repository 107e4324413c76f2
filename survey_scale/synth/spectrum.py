"""Batched synthesis of normalized and flux spectra on the common grid (SPEC §1, §10).

Pipeline for a chunk of n stars (no Python loop over stars or lines):

1. :func:`survey_scale.synth.lines.line_parameters` gives per-star equivalent widths of the narrow metal lines
   and areas/widths of the resolved lines (H, He I, He II, Ca II).
2. An oversampled grid (3 sub-pixels per pixel of the common grid, 40 pixels of margin each side, uniform in
   log λ) carries two arrays:
   - the opacity ratio η of the resolved lines, as a dense product of per-star coefficients and a fixed
     basis of far wings ∝ 1/(γ_r^p + |Δλ|^p) (BLAS), plus the exact profile minus that basis in a window
     around each line (a sparse scatter), then the depth d = d_max(λ) η/(1+η);
   - the equivalent widths of the narrow lines, deposited as area-conserving deltas (linear interpolation
     between sub-pixels).
3. Both are convolved at once by FFT (float32) with per-star kernels: rotation (Gray's profile, limb
   darkening ε = 0.6, integrated over each sub-pixel so that it stays exact down to v sin i = 0), times the
   analytic transforms of the Gaussian LSF (constant resolving power R; the pixel box of step 5 is
   subtracted from its variance so that R is the resolution of the returned pixels), for the metal lines
   also of the Gaussian of thermal + micro-turbulent motions, and a phase ramp for the radial velocity
   (an exact sub-pixel shift, ln λ_obs = ln λ + ln(1 + v/c)).
4. Sub-pixel flux (1 − K⊗d)·exp(−K'⊗m) — metal lines act multiplicatively on the hydrogen/helium profile,
   exp keeps blends positive and equals 1 − K'⊗m for weak lines;
5. averaged over the 3 sub-pixels of each pixel (pixel integration) and cut to the 3802 pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft
import scipy.sparse

from survey_scale.core.wavelength import LOG10_WAVE_START, LOG10_WAVE_STEP, N_WAVE
from survey_scale.synth import atmosphere as atm
from survey_scale.synth.linelists import BROAD_LINES, METAL_LINES
from survey_scale.synth.lines import LineParameters, max_depth

OVERSAMPLE = 3
"""Sub-pixels per pixel of the common grid (odd, so that sub-pixels are symmetric about pixel centres)."""
MARGIN = 40
"""Pixels of margin computed on each side of the common grid (≈ 2760 km s⁻¹): lines just outside the grid
still reach into it after rotation, LSF and radial-velocity shifts."""
LIMB_DARKENING = 0.6
"""Linear limb-darkening coefficient ε of the rotation kernel (P2 §4.1)."""
WINDOW_MIN = 10.0
"""Smallest half width (Å) of the window in which a resolved line's exact profile is computed."""
WINDOW_MAX = 80.0
_WINDOW_WIDTHS = 6.0
"""Window half width in units of the line's pressure half width at N_e = 10^15 cm⁻³."""
_REF_NE = 10.0**14.3
"""Electron density (cm⁻³) at which each line's reference far-wing width γ_r is set."""
_TAPER_START = 0.6
"""Fraction of the window half width after which the window correction is tapered to zero (cos²)."""
_PIX_KMS = atm.C_KMS * np.log(10.0) * LOG10_WAVE_STEP
"""Velocity width of one pixel of the common grid (≈ 69.0 km s⁻¹)."""
_SUB_KMS = _PIX_KMS / OVERSAMPLE


@dataclass(frozen=True)
class FineGrid:
    """The oversampled working grid and the fixed (star-independent) operators on it."""

    wave: np.ndarray
    """(Nf,) vacuum wavelengths of the sub-pixel centres, Å."""
    n_fft: int
    far_basis: np.ndarray
    """(N_broad, Nf) far-wing basis 1/(γ_r^p + |Δλ|^p), γ_r the line's width at N_e = 10^14.3 cm⁻³."""
    pair_line: np.ndarray
    """(N_pairs,) line index of each (line, sub-pixel) pair of the windows."""
    pair_abs_dl_p: np.ndarray
    """(N_pairs,) |Δλ|^p of each pair."""
    pair_dl2: np.ndarray
    """(N_pairs,) Δλ² of each pair."""
    pair_far: np.ndarray
    """(N_pairs,) far-basis value 1/(γ_r^p + |Δλ|^p) of each pair."""
    pair_taper: np.ndarray
    scatter: scipy.sparse.csr_matrix
    """(Nf, N_pairs) 0/1 matrix adding the pairs onto the sub-pixels."""
    deposit: scipy.sparse.csr_matrix
    """(Nf, N_metal) area-conserving deposition of unit equivalent widths (Å⁻¹)."""


def _wing_norm(p: np.ndarray) -> np.ndarray:
    """∫ dx / (1 + |x|^p) over the real line, = 2π / (p sin(π/p))."""
    return 2.0 * np.pi / (p * np.sin(np.pi / p))


@lru_cache(maxsize=1)
def fine_grid() -> FineGrid:
    """Build (once) the oversampled grid and its fixed operators."""
    k = OVERSAMPLE
    n_fine = k * (N_WAVE + 2 * MARGIN)
    j = np.arange(n_fine)
    log_wave = LOG10_WAVE_START + LOG10_WAVE_STEP * (j / k - MARGIN - (k - 1) / (2 * k))
    wave = 10.0**log_wave
    sub_width = wave * np.log(10.0) * LOG10_WAVE_STEP / k

    p = BROAD_LINES.wing_power
    kinds = np.asarray(BROAD_LINES.kind)
    stark = BROAD_LINES.stark
    width_at = {
        "hydrogenic": lambda ne: stark * ne ** (2.0 / 3.0),
        "quadratic": lambda ne: stark * ne / 1e16,
        "damping": lambda ne: stark * np.ones_like(ne),
    }
    ref = np.select([kinds == kd for kd in width_at], [f(_REF_NE) for f in width_at.values()])
    wide = np.select([kinds == kd for kd in width_at], [f(1e15) for f in width_at.values()])
    ref = np.maximum(ref, 0.05)
    half_window = np.clip(_WINDOW_WIDTHS * wide, WINDOW_MIN, WINDOW_MAX)

    dl = wave[None, :] - BROAD_LINES.wave[:, None]
    far = 1.0 / (ref[:, None] ** p[:, None] + np.abs(dl) ** p[:, None])

    lines_idx, sub_idx = np.nonzero(np.abs(dl) <= half_window[:, None])
    pair_dl = dl[lines_idx, sub_idx]
    rel = np.abs(pair_dl) / half_window[lines_idx]
    taper = np.where(rel <= _TAPER_START, 1.0, np.cos(0.5 * np.pi * (rel - _TAPER_START) / (1.0 - _TAPER_START)) ** 2)
    scatter = scipy.sparse.csr_matrix(
        (np.ones(lines_idx.size), (sub_idx, np.arange(lines_idx.size))), shape=(n_fine, lines_idx.size)
    )

    # narrow lines: linear interpolation weights in log λ, divided by the sub-pixel width (Å) so that the
    # deposited depth integrates to the equivalent width.
    pos = (np.log10(METAL_LINES.wave) - log_wave[0]) / (LOG10_WAVE_STEP / k)
    inside = (pos >= 0) & (pos < n_fine - 1)
    left = np.floor(pos[inside]).astype(int)
    frac = pos[inside] - left
    cols = np.flatnonzero(inside)
    rows = np.concatenate([left, left + 1])
    vals = np.concatenate([(1.0 - frac) / sub_width[left], frac / sub_width[left + 1]])
    deposit = scipy.sparse.csr_matrix((vals, (rows, np.concatenate([cols, cols]))), shape=(n_fine, len(METAL_LINES)))
    return FineGrid(
        wave=wave,
        n_fft=scipy.fft.next_fast_len(n_fine + 2 * k * MARGIN, real=True),
        far_basis=far.astype(np.float32),
        pair_line=lines_idx,
        pair_abs_dl_p=(np.abs(pair_dl) ** p[lines_idx]).astype(np.float32),
        pair_dl2=(pair_dl**2).astype(np.float32),
        pair_far=far[lines_idx, sub_idx].astype(np.float32),
        pair_taper=taper.astype(np.float32),
        scatter=scatter.astype(np.float32),
        deposit=deposit,
    )


def broad_opacity(params: LineParameters, fg: FineGrid) -> np.ndarray:
    """η of the resolved lines on the fine grid, (n, Nf) float32."""
    p = BROAD_LINES.wing_power
    gamma = 0.5 * params.broad_fwhm
    wing = params.broad_mix * params.broad_area * gamma ** (p - 1.0) / _wing_norm(p)
    eta = wing.astype(np.float32) @ fg.far_basis

    # window corrections: exact pseudo-Voigt minus the far-wing basis, tapered (float32, in place)
    lp = fg.pair_line
    window = (gamma**p).astype(np.float32)[:, lp]
    window += fg.pair_abs_dl_p
    np.reciprocal(window, out=window)
    window -= fg.pair_far
    window *= wing.astype(np.float32)[:, lp]
    core = (-4.0 * np.log(2.0) / params.broad_fwhm**2).astype(np.float32)[:, lp]
    core *= fg.pair_dl2
    np.exp(core, out=core)
    core *= (
        (1.0 - params.broad_mix) * params.broad_area * (2.0 * np.sqrt(np.log(2.0) / np.pi)) / params.broad_fwhm
    ).astype(np.float32)[:, lp]
    window += core
    window *= fg.pair_taper
    eta += (fg.scatter @ window.T).T
    return eta


def _rotation_cdf(x: np.ndarray) -> np.ndarray:
    """Cumulative integral of Gray's rotation profile (limb darkening ε) in units of x = Δv / v sin i."""
    eps = LIMB_DARKENING
    x = np.clip(x, -1.0, 1.0)
    ellipse = 0.5 * (x * np.sqrt(1.0 - x**2) + np.arcsin(x))
    parabola = x - x**3 / 3.0
    return (2.0 * (1.0 - eps) * ellipse + 0.5 * np.pi * eps * parabola) / (np.pi * (1.0 - eps / 3.0))


def rotation_kernel(vsini: np.ndarray, n_fft: int) -> np.ndarray:
    """Rotation kernels integrated over each sub-pixel, laid out circularly on ``n_fft`` points, (n, n_fft).

    Integrating the profile over sub-pixel bins keeps it exact for any v sin i, down to 0 (a delta).
    """
    v_sub = np.maximum(np.asarray(vsini, dtype=np.float64) / _SUB_KMS, 1e-9)
    half = int(np.ceil(v_sub.max() + 0.5))
    offsets = np.arange(-half, half + 1)
    kernel = _rotation_cdf((offsets[None, :] + 0.5) / v_sub[:, None]) - _rotation_cdf(
        (offsets[None, :] - 0.5) / v_sub[:, None]
    )
    out = np.zeros((v_sub.size, n_fft), dtype=np.float32)
    out[:, offsets % n_fft] = kernel
    return out


def lsf_sigma_pixels(resolution: np.ndarray) -> np.ndarray:
    """σ (pixels of the common grid) of a Gaussian LSF of resolving power R = λ/FWHM."""
    return 1.0 / (
        np.asarray(resolution, dtype=np.float64) * 2.0 * np.sqrt(2.0 * np.log(2.0)) * np.log(10.0) * LOG10_WAVE_STEP
    )


def normalized_chunk(
    params: LineParameters,
    teff: np.ndarray,
    vmic: np.ndarray,
    vsini: np.ndarray,
    resolution: np.ndarray,
    rv: np.ndarray,
) -> np.ndarray:
    """Normalized spectra (true continuum = 1) of one chunk of stars on the common grid, (n, 3802) float32.

    ``resolution`` (n,) must lie where the LSF is resolved by the working grid (R ≤ 4000, see
    :data:`survey_scale.synth.core.RESOLUTION_RANGE`); ``rv`` (n,) in km s⁻¹.
    """
    fg = fine_grid()
    n = teff.size
    k = OVERSAMPLE
    n_fine = fg.wave.size

    eta = broad_opacity(params, fg)
    depth = max_depth(fg.wave.astype(np.float32), teff.astype(np.float32)) * (eta / (1.0 + eta))
    metal = (fg.deposit @ params.metal_ew.T).T

    stack = np.zeros((2 * n, fg.n_fft), dtype=np.float32)
    stack[:n, :n_fine] = depth
    stack[n:, :n_fine] = metal
    spec = scipy.fft.rfft(stack, axis=1)
    rot = scipy.fft.rfft(rotation_kernel(vsini, fg.n_fft), axis=1)

    # Variances in sub-pixels²: the LSF minus the pixel box (1/12 px²) that the final binning adds; metal
    # lines add the Gaussian of thermal (Si-like mass) and micro-turbulent motions.
    sig_lsf2 = k**2 * (lsf_sigma_pixels(resolution) ** 2 - 1.0 / 12.0)
    v_th2 = 2.0 * atm.K_BOLTZ * teff / (28.0 * atm.AMU) * 1e-10
    sig_mic2 = (v_th2 + vmic**2) / 2.0 / _SUB_KMS**2
    # Frequencies where even the narrowest LSF of the chunk has damped the signal below 1e-12 are dropped.
    f_max = np.sqrt(np.log(1e12) / (2.0 * np.pi**2 * sig_lsf2.min()))
    n_freq = min(spec.shape[1], int(np.ceil(f_max * fg.n_fft)) + 1)
    freq = (np.arange(n_freq) / fg.n_fft).astype(np.float32)
    two_pi2_f2 = (2.0 * np.pi**2) * freq[None, :] ** 2
    common = rot[:, :n_freq]
    if np.any(rv != 0.0):
        shift = np.log10(1.0 + rv / atm.C_KMS) / (LOG10_WAVE_STEP / k)
        common = common * np.exp((-2j * np.pi) * freq[None, :] * shift[:, None].astype(np.float32))
    spec = spec[:, :n_freq]
    spec[:n] *= common * np.exp(-two_pi2_f2 * sig_lsf2[:, None].astype(np.float32))
    spec[n:] *= common * np.exp(-two_pi2_f2 * (sig_lsf2 + sig_mic2)[:, None].astype(np.float32))
    conv = scipy.fft.irfft(spec, n=fg.n_fft, axis=1)[:, :n_fine]

    flux_sub = (1.0 - conv[:n]) * np.exp(-conv[n:])
    flux = flux_sub.reshape(n, N_WAVE + 2 * MARGIN, k).mean(axis=2)
    return flux[:, MARGIN : MARGIN + N_WAVE]


def broaden_fine(depth: np.ndarray, vsini: np.ndarray, resolution: np.ndarray) -> np.ndarray:
    """Rotation and LSF applied to spectra given on the working grid, for model grids made outside the
    synthesizer (e.g. :mod:`survey_scale.synth.cannon_grid`); (n, Nf) → (n, Nf) float32.

    The kernels of :func:`normalized_chunk`: Gray's rotation profile (ε = :data:`LIMB_DARKENING`) integrated
    over sub-pixels, times a Gaussian LSF of resolving power ``resolution`` whose variance leaves room for the
    final pixel binning of :func:`fine_to_pixels` (1/12 px²) and for the sub-pixel box of inputs that were
    averaged into sub-pixels (1/12 sub-pixel²). ``depth`` should vanish in the continuum (e.g. 1 − f): the
    FFT is circular over the margins.
    """
    fg = fine_grid()
    k = OVERSAMPLE
    n_fine = fg.wave.size
    depth = np.atleast_2d(np.asarray(depth, dtype=np.float32))
    if depth.shape[1] != n_fine:
        raise ValueError(f"broaden_fine: spectra have {depth.shape[1]} sub-pixels, the working grid {n_fine}")
    stack = np.zeros((depth.shape[0], fg.n_fft), dtype=np.float32)
    stack[:, :n_fine] = depth
    spec = scipy.fft.rfft(stack, axis=1)
    rot = scipy.fft.rfft(rotation_kernel(np.asarray(vsini, dtype=np.float64), fg.n_fft), axis=1)
    sig_lsf2 = k**2 * (lsf_sigma_pixels(resolution) ** 2 - 1.0 / 12.0) - 1.0 / 12.0
    freq = (np.arange(spec.shape[1]) / fg.n_fft).astype(np.float32)
    spec *= rot * np.exp(-(2.0 * np.pi**2) * freq[None, :] ** 2 * sig_lsf2[:, None].astype(np.float32))
    return scipy.fft.irfft(spec, n=fg.n_fft, axis=1)[:, :n_fine].astype(np.float32)


def fine_to_pixels(fine: np.ndarray) -> np.ndarray:
    """Average (n, Nf) working-grid spectra into the 3802 pixels of the common grid, (n, 3802)."""
    fine = np.atleast_2d(fine)
    return fine.reshape(fine.shape[0], N_WAVE + 2 * MARGIN, OVERSAMPLE).mean(axis=2)[:, MARGIN : MARGIN + N_WAVE]
