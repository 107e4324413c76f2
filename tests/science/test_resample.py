"""Resampling onto the common grid with error propagation and mask bits (SPEC §2)."""

from __future__ import annotations

import numpy as np
import pytest

from survey_scale.core.wavelength import wavelength_grid
from survey_scale.science.resample import C_KMS, grid_coverage, resample_to_grid, rest_frame
from survey_scale.store.cube import PIXMASK_BITS

GRID = wavelength_grid()
LAMOST_NATIVE = 10.0 ** (3.5682 + 1e-4 * np.arange(3909))


def _gauss(wave: np.ndarray, centre: float, sigma: float = 3.0, depth: float = 0.5) -> np.ndarray:
    return 1.0 - depth * np.exp(-0.5 * ((wave - centre) / sigma) ** 2)


def test_identity_on_the_grid() -> None:
    flux = _gauss(GRID, 5000.0) * 2.0
    out, ivar, mask, coverage = resample_to_grid(GRID, flux, np.full(GRID.size, 9.0))
    np.testing.assert_allclose(out, flux, rtol=1e-6)
    np.testing.assert_allclose(ivar, 9.0, rtol=1e-5)
    assert coverage == 1.0 and not mask.any()


def test_known_spectrum_from_native_lamost_grid() -> None:
    # A smooth spectrum sampled on LAMOST's native grid: resampled values follow the function.
    func = lambda w: 1.0 + 0.3 * np.sin(w / 300.0)  # noqa: E731
    out, ivar, _, coverage = resample_to_grid(LAMOST_NATIVE, func(LAMOST_NATIVE), np.ones(3909))
    np.testing.assert_allclose(out, func(GRID), atol=2e-4)
    assert coverage == 1.0 and np.all(ivar > 0)


@pytest.mark.parametrize("rv", [-250.0, -30.0, 0.0, 47.0, 400.0])
def test_shifted_line_lands_at_rest_wavelength(rv: float) -> None:
    rest_centre = 6564.61
    observed = LAMOST_NATIVE
    flux = _gauss(observed, rest_centre * (1 + rv / C_KMS), sigma=2.5 * (1 + rv / C_KMS))
    out, _, _, _ = resample_to_grid(rest_frame(observed, rv), flux, np.ones(observed.size))
    window = np.abs(GRID - rest_centre) < 15
    absorption = 1 - out[window]
    centroid = np.sum(GRID[window] * absorption) / absorption.sum()
    assert centroid == pytest.approx(rest_centre, abs=0.02)


def test_gap_is_interpolated_with_zero_ivar_and_partial_bad_pixels_keep_ivar() -> None:
    flux = 1.0 + 0.001 * np.arange(3909)
    ivar = np.full(3909, 4.0)
    ivar[2000:2010] = 0.0  # a ten-pixel gap
    andmask = np.zeros(3909, np.uint32)
    andmask[1000] = 4  # one bad pixel by mask
    ormask = np.zeros(3909, np.uint32)
    ormask[1500] = 1
    out, out_ivar, mask, _ = resample_to_grid(LAMOST_NATIVE * (1 + 3e-5), flux, ivar, andmask, ormask)
    gap = (mask & PIXMASK_BITS["INTERPOLATED"]) > 0
    assert 8 <= gap.sum() <= 11
    assert np.all(out_ivar[gap] == 0)
    # interpolated flux stays on the smooth ramp
    expected = np.interp(GRID[gap], LAMOST_NATIVE * (1 + 3e-5), flux)
    np.testing.assert_allclose(out[gap], expected, rtol=1e-3)
    and_pixels = np.flatnonzero(mask & PIXMASK_BITS["ANDMASK"])
    assert 1 <= and_pixels.size <= 2
    # a pixel partly covered by the bad one keeps an ivar from its good part (worse than neighbours')
    assert np.all(out_ivar[and_pixels] >= 0)
    assert (mask & PIXMASK_BITS["ORMASK"]).sum() >= 1
    assert not np.any(mask & PIXMASK_BITS["NO_COVERAGE"])


def test_no_coverage_outside_the_spectrum() -> None:
    wave = 10.0 ** (np.log10(5000.0) + 1e-4 * np.arange(1000))  # 5000–6292 Å only
    out, ivar, mask, coverage = resample_to_grid(wave, np.ones(1000), np.ones(1000))
    outside = (GRID < wave[0] - 1.0) | (GRID > wave[-1] + 1.0)
    assert np.all(mask[outside] & PIXMASK_BITS["NO_COVERAGE"])
    assert np.all(ivar[outside] == 0) and np.all(out[outside] == 0)
    assert coverage == pytest.approx(1000 / 3802, abs=2e-3)
    assert grid_coverage(np.array([5000.0]), np.array([wave[-1]]))[0] == pytest.approx(coverage, abs=2e-3)


def test_ivar_propagation_matches_monte_carlo() -> None:
    rng = np.random.default_rng(20261121)
    wave = LAMOST_NATIVE * (1 + 37.0 / C_KMS)  # a non-integer pixel shift
    ivar_in = rng.uniform(0.5, 5.0, wave.size)
    truth = 1.0 + 0.2 * np.sin(wave / 50.0)
    draws = np.array(
        [resample_to_grid(wave, truth + rng.normal(size=wave.size) / np.sqrt(ivar_in), ivar_in)[0] for _ in range(3000)]
    )
    _, ivar_out, _, _ = resample_to_grid(wave, truth, ivar_in)
    ratio = draws.var(axis=0, ddof=1) * ivar_out
    # per pixel, the MC variance of 3000 draws scatters by sqrt(2/3000) ~ 2.6 %
    assert ratio.mean() == pytest.approx(1.0, abs=0.01)
    assert np.percentile(ratio, 1) > 0.9 and np.percentile(ratio, 99) < 1.1
