"""Interstellar and telluric transmissions of the mock (SPEC §10, P2 §4.5)."""

from __future__ import annotations

import numpy as np
import pytest

from survey_scale.core import masks
from survey_scale.synth import interstellar_transmission, telluric_transmission
from survey_scale.synth.ism import DIB_STRENGTH, NA_D_E0, NA_D_SLOPE, TRUNCATE_SIGMA

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def _feature_support(wave: np.ndarray, resolution: float) -> np.ndarray:
    centres = [*masks.NA_I_D, masks.CA_II_K, masks.CA_II_H]
    fwhm = [0.0] * 4
    for c, w in masks.DIB_CENTRES.values():
        centres.append(c)
        fwhm.append(w)
    near = np.zeros(wave.size, dtype=bool)
    for c, w in zip(centres, fwhm, strict=True):
        sigma = np.hypot(w, c / resolution) * FWHM_TO_SIGMA
        near |= np.abs(wave - c) < TRUNCATE_SIGMA * sigma
    return near


def test_no_reddening_no_absorption(wave):
    assert np.array_equal(interstellar_transmission(0.0), np.ones((1, wave.size)))


def test_interstellar_features_only_inside_their_bands(wave):
    trans = interstellar_transmission([0.05, 0.4, 1.5])
    near = _feature_support(wave, 1800.0)
    assert np.all(trans[:, ~near] == 1.0)
    assert np.all((trans > 0.0) & (trans <= 1.0))
    # every feature is there: 17 DIBs, Na I D and Ca II
    assert np.all(trans[1:, near].min(axis=0) < 1.0)


@pytest.mark.parametrize(
    "centre",
    [
        masks.NA_I_D[0],
        masks.CA_II_K,
        masks.DIB_CENTRES["DIB_5782"][0],
        masks.DIB_CENTRES["DIB_4430"][0],
        masks.DIB_CENTRES["DIB_8623"][0],
    ],
)
def test_features_deepen_with_reddening(wave, centre):
    ebv = np.array([0.02, 0.1, 0.3, 0.8, 2.0])
    trans = interstellar_transmission(ebv)
    depth = 1.0 - trans[:, np.argmin(np.abs(wave - centre))]
    assert np.all(np.diff(depth) > 0), depth


def test_equivalent_widths_follow_the_published_relations(wave):
    ebv = np.array([0.1, 0.3, 1.0])
    absorbed = (1.0 - interstellar_transmission(ebv, resolution=1800.0)) * np.gradient(wave)
    dib = np.abs(wave - masks.DIB_CENTRES["DIB_6286"][0]) < 12.0
    # τ = W × profile: W is preserved while the band is optically thin
    np.testing.assert_allclose(absorbed[:2, dib].sum(axis=1), DIB_STRENGTH["DIB_6286"] * ebv[:2], rtol=0.06)
    na = (wave > masks.NA_I_D[0] - 8.0) & (wave < masks.NA_I_D[1] + 8.0)
    poznanski = np.log10(1.0 + ebv / NA_D_E0) / NA_D_SLOPE
    np.testing.assert_allclose(absorbed[:, na].sum(axis=1), poznanski, rtol=0.12)
    # Na I D saturates: 10 times the reddening gives far less than 10 times the absorption
    assert absorbed[2, na].sum() < 3.0 * absorbed[0, na].sum()


def test_ca_ii_uses_the_distance_when_given(wave):
    near, far = interstellar_transmission(0.3, distance=[200.0, 2000.0])
    k = np.argmin(np.abs(wave - masks.CA_II_K))
    assert far[k] < near[k] < 1.0
    assert np.array_equal(near[np.abs(wave - 5780.0) < 20], far[np.abs(wave - 5780.0) < 20])


def test_telluric_bands_only_inside_their_windows(wave):
    trans = telluric_transmission([1.0, 1.3, 2.5], pwv=[2.0, 5.0, 15.0])
    inside = masks.window_mask(wave, masks.TELLURIC_BANDS)
    assert np.all(trans[:, ~inside] == 1.0)
    assert np.all((trans > 0.0) & (trans <= 1.0))
    for band in masks.TELLURIC_BANDS:
        sel = (wave > band.lo) & (wave < band.hi)
        assert trans[0, sel].min() < 0.97, band.name


def test_telluric_absorption_grows_with_airmass_and_water(wave):
    o2_a = (wave > 7590.0) & (wave < 7710.0)
    water = (wave > 7160.0) & (wave < 7340.0)
    trans = telluric_transmission([1.0, 1.5, 2.5])
    depth = (1.0 - trans[:, o2_a]).sum(axis=1)
    assert np.all(np.diff(depth) > 0)
    assert 0.35 < trans[0, o2_a].min() < 0.7  # the A band at airmass 1, R ~ 1800
    dry, wet = telluric_transmission(1.2, pwv=[1.0, 20.0])
    assert (1.0 - wet[water]).sum() > 3.0 * (1.0 - dry[water]).sum()
    assert np.array_equal(dry[o2_a], wet[o2_a])


def test_bad_transmission_inputs_are_refused():
    with pytest.raises(ValueError, match="ebv"):
        interstellar_transmission(-0.1)
    with pytest.raises(ValueError, match="airmass"):
        telluric_transmission(0.9)
    with pytest.raises(ValueError, match="pwv"):
        telluric_transmission(1.0, pwv=-1.0)
