"""Pseudo-continuum normalization (SPEC §3; P2 Eq. 1–2)."""

from __future__ import annotations

import numpy as np
import pytest

from survey_scale.core.masks import BALMER_LINES, CONTINUUM_WINDOWS, window_mask
from survey_scale.core.wavelength import wavelength_grid
from survey_scale.science.normalize import continuum_mask, normalize_continuum, pseudo_continuum

WAVE = wavelength_grid()


def _lines(depths: dict[float, float], sigma: float = 1.5) -> np.ndarray:
    out = np.ones_like(WAVE)
    for centre, depth in depths.items():
        out *= 1 - depth * np.exp(-0.5 * ((WAVE - centre) / sigma) ** 2)
    return out


def exact_continuum(flux: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """P2 Eq. 1–2 evaluated literally, one spectrum (the reference for the batched product)."""
    kernel = np.exp(-((WAVE[None, :] - WAVE[:, None]) ** 2) / 50.0**2)
    return (kernel @ (flux * weight)) / (kernel @ weight)


def test_batched_product_equals_the_formula() -> None:
    rng = np.random.default_rng(3)
    flux = 1 + 0.2 * rng.random((3, WAVE.size))
    weight = (rng.random((3, WAVE.size)) > 0.2).astype(float)
    continuum, _ = pseudo_continuum(flux, weight)
    for i in range(3):
        np.testing.assert_allclose(continuum[i], exact_continuum(flux[i], weight[i]), rtol=2e-6)


def test_known_continuum_times_lines_returns_the_lines() -> None:
    # a smooth continuum (slowly varying over ≫ L) times narrow metal lines outside the masked windows
    continuum = 2.0 + 0.5 * (WAVE / 9000.0) ** 2 + 0.1 * np.sin(WAVE / 3000.0)
    centres = {4233.0: 0.3, 5018.0: 0.2, 5169.0: 0.25, 6347.0: 0.3, 7000.0: 0.2, 8000.0: 0.2}
    lines = _lines(centres)
    norm, norm_ivar, _ = normalize_continuum(continuum * lines, np.full(WAVE.size, 100.0))
    inner = (WAVE > 3950) & (WAVE < 8700)
    # The continuum is removed: the result does not depend on it (to < 0.3 %, the bias of a masked,
    # locally one-sided 50 Å smoothing of a curved continuum) ...
    flat, _, _ = normalize_continuum(lines, np.full(WAVE.size, 100.0))
    assert np.percentile(np.abs(norm[0, inner] - flat[0, inner]), 99) < 0.003
    # ... and the lines come back with their depths; the pseudo-continuum sits slightly below the true one
    # near lines (each line's equivalent width diluted over the kernel), so normalized pixels may exceed 1.
    for centre in centres:
        core = np.argmin(np.abs(WAVE - centre))
        assert 1 - norm[0, core] == pytest.approx(1 - lines[core], abs=0.015)
    assert np.abs(norm[0, inner] - lines[inner]).max() < 0.02
    assert np.all(norm_ivar[0, inner] > 0)


def test_masked_windows_do_not_enter_the_continuum() -> None:
    flux = np.ones(WAVE.size)
    spiked = flux.copy()
    hbeta = window_mask(WAVE, [w for w in CONTINUUM_WINDOWS if w.name == "H_beta"])
    spiked[hbeta] = 0.1  # a deep hydrogen line: masked, so the continuum stays at 1
    bad = np.zeros(WAVE.size)
    bad[2000:2005] = 1  # bad pixels (ivar = 0) with absurd flux
    spiked[2000:2005] = 1e6
    norm, norm_ivar, cont = normalize_continuum(spiked, np.where(bad > 0, 0.0, 1.0))
    np.testing.assert_allclose(cont[0, np.isfinite(cont[0])], 1.0, rtol=1e-5)
    assert norm[0, np.argmin(np.abs(WAVE - BALMER_LINES["H_beta"]))] == pytest.approx(0.1, rel=1e-5)
    assert np.all(norm_ivar[0, 2000:2005] == 0)
    assert continuum_mask().sum() == window_mask(WAVE, CONTINUUM_WINDOWS).sum()


def test_ivar_scales_with_continuum_squared_and_undefined_continuum() -> None:
    flux = np.full((1, WAVE.size), 3.0)
    ivar = np.full((1, WAVE.size), 4.0)
    ivar[0, 1000:1800] = 0.0  # an 800-pixel hole: ~1,100 Å, wider than 2 L: no continuum in its middle
    norm, norm_ivar, cont = normalize_continuum(flux, ivar)
    good = np.isfinite(cont[0])
    np.testing.assert_allclose(norm_ivar[0, good & (ivar[0] > 0)], 4.0 * 9.0, rtol=1e-5)
    assert not good[1400] and norm[0, 1400] == 1.0 and norm_ivar[0, 1400] == 0.0


def test_normalization_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    flux = 1 + rng.random((5, WAVE.size)).astype(np.float32)
    a = normalize_continuum(flux, np.ones_like(flux))
    b = normalize_continuum(flux.copy(), np.ones_like(flux))
    for x, y in zip(a, b):
        assert x.tobytes() == y.tobytes()
