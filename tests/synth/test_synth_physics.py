"""The synthesizer has the information structure of P2 §3 (SPEC §10): line sequences and broadenings."""

from __future__ import annotations

import numpy as np
import pytest

from survey_scale.core import masks
from survey_scale.synth import sample_labels, synthesize
from survey_scale.synth.linelists import lines_of

H_GAMMA = masks.BALMER_LINES["H_gamma"]
H_DELTA = masks.BALMER_LINES["H_delta"]
C_II_4267 = 4268.4
"""Vacuum centre of C II 4267, the only carbon line within ±70 Å (isolated by differencing [C/H])."""


def test_balmer_strength_peaks_near_9500_k(star, equivalent_width):
    teff = np.arange(7000.0, 14001.0, 250.0)
    for logg in (3.5, 4.0, 4.5):
        flux = synthesize([star(teff=t, logg=logg) for t in teff])
        for centre in (H_GAMMA, H_DELTA):
            ew = equivalent_width(flux, centre, 25.0)
            peak = teff[np.argmax(ew)]
            assert 8500.0 <= peak <= 10500.0, (logg, centre, peak)
            # and falls off clearly on both sides
            assert ew[0] < 0.7 * ew.max() and ew[-1] < 0.9 * ew.max()


def _he_line_ew(star, wave, teff, centre):
    """Equivalent width of the helium line at ``centre``: spectrum without He minus spectrum with He."""
    with_he = synthesize([star(teff=t, he_frac=0.085, vsini=50.0) for t in teff]).astype(np.float64)
    no_he = synthesize([star(teff=t, he_frac=0.0, vsini=50.0) for t in teff]).astype(np.float64)
    sel = np.abs(wave - centre) < 6.0
    return ((no_he - with_he)[:, sel] * np.gradient(wave)[sel]).sum(axis=1)


def test_he_i_appears_above_11000_k_and_peaks_near_20000_k(star, wave):
    teff = np.array([8, 9, 10, 11, 12, 13, 15, 17, 19, 21, 23, 26, 30]) * 1000.0
    for centre in (masks.HELIUM_I_LINES["HeI_4473"], masks.HELIUM_I_LINES["HeI_4027"]):
        ew = _he_line_ew(star, wave, teff, centre)
        assert np.all(ew[teff <= 10000] < 0.03), ew
        rising = ew[(teff >= 11000) & (teff <= 17000)]
        assert np.all(np.diff(rising) > 0), rising
        assert rising[-1] > 0.5
        assert 17000 <= teff[np.argmax(ew)] <= 23000, ew


def test_he_ii_4686_only_in_the_hottest_stars(star, wave):
    teff = np.array([15000, 20000, 25000, 28000, 32000, 36000, 40000.0])
    ew = _he_line_ew(star, wave, teff, masks.HELIUM_II_LINES["HeII_4687"])
    assert np.all(ew[teff <= 25000] < 0.05), ew
    assert np.all(ew[teff >= 32000] > 0.4), ew
    assert np.all(np.diff(ew[teff >= 25000]) > 0), ew


@pytest.mark.parametrize("teff", [9500.0, 15000.0])
def test_balmer_lines_widen_with_logg(star, wave, equivalent_width, teff):
    loggs = np.array([2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0])
    flux = synthesize([star(teff=teff, logg=g) for g in loggs]).astype(np.float64)
    ew = equivalent_width(flux, H_GAMMA, 40.0)
    assert np.all(np.diff(ew) > 0), ew
    sel = np.abs(wave - H_GAMMA) < 40.0
    depth = 1.0 - flux[:, sel]
    width = np.array([np.ptp(wave[sel][d > 0.2]) for d in depth])
    assert np.all(np.diff(width) > 0), width
    assert width[-1] > 2.0 * width[0]


def _carbon_line(star, wave, rows, **kwargs):
    """EW, centroid and σ of C II 4267 alone (B star): spectra at [C/H] = −5 minus the given spectra."""
    full = synthesize([star(**r) for r in rows], **kwargs).astype(np.float64)
    bare = synthesize([star(**{**r, "c_h": -5.0}) for r in rows], **kwargs).astype(np.float64)
    sel = np.abs(wave - C_II_4267) < 25.0
    depth, w = (bare - full)[:, sel], wave[sel]
    ew = (depth * np.gradient(wave)[sel]).sum(axis=1)
    centroid = (depth * w).sum(axis=1) / depth.sum(axis=1)
    sigma = np.sqrt((depth * (w - centroid[:, None]) ** 2).sum(axis=1) / depth.sum(axis=1))
    return ew, centroid, sigma


def test_rotation_broadens_lines_and_conserves_equivalent_width(star, wave):
    vsini = np.array([0.0, 50.0, 100.0, 200.0, 300.0, 450.0])
    ew, _, sigma = _carbon_line(star, wave, [{"teff": 18000.0, "vsini": v} for v in vsini])
    assert np.all(np.diff(sigma) > 0), sigma
    # Gray's profile with ε = 0.6 has variance [(1 − ε)/4 + 2ε/15] / (1 − ε/3) = 0.225 in units of (v sin i)²
    extra = np.sqrt(sigma[-1] ** 2 - sigma[0] ** 2)
    assert extra / (C_II_4267 * 450.0 / 299792.458) == pytest.approx(np.sqrt(0.225), rel=0.05)
    assert np.all(np.abs(ew / ew[0] - 1.0) < 0.03), ew


def test_lsf_resolution_is_the_resolution_of_the_returned_pixels(star, wave):
    resolution = np.array([1200.0, 1500.0, 1800.0, 2500.0, 3500.0])
    rows = [{"teff": 18000.0, "vsini": 0.0, "vmic": 0.0}] * resolution.size
    _, _, sigma = _carbon_line(star, wave, rows, resolution=resolution)
    assert np.all(np.diff(sigma) < 0), sigma
    effective_r = C_II_4267 / (2.0 * np.sqrt(2.0 * np.log(2.0)) * sigma)
    np.testing.assert_allclose(effective_r, resolution, rtol=0.03)


@pytest.mark.parametrize("rv", [150.0, -300.0, 1000.0])
def test_radial_velocity_shifts_lines_by_the_doppler_offset(star, wave, rv):
    rows = [{"teff": 18000.0, "vsini": 0.0}]
    _, rest, _ = _carbon_line(star, wave, rows)
    _, moved, _ = _carbon_line(star, wave, rows, rv=rv)
    expected = rest[0] * rv / 299792.458
    assert abs((moved[0] - rest[0]) - expected) < 0.03


def test_microturbulence_desaturates_strong_lines_only(star, wave):
    vmic = [0.0, 15.0]
    rows = [{"teff": 18000.0, "vsini": 0.0, "vmic": v} for v in vmic]
    strong, _, _ = _carbon_line(star, wave, rows)
    weak, _, _ = _carbon_line(star, wave, [{**r, "c_h": -4.0} for r in rows])
    assert strong[1] / strong[0] > 1.5
    assert abs(weak[1] / weak[0] - 1.0) < 0.05
    assert strong[0] > 50 * weak[0]


ELEMENT_OF_LABEL = {
    "c_h": ("C",),
    "n_h": ("N",),
    "o_h": ("O",),
    "si_h": ("Si",),
    "s_h": ("S",),
    "fe_h": ("Fe", "Mg", "Ca"),
}


@pytest.mark.parametrize("teff", [9000.0, 18000.0, 30000.0])
def test_abundance_changes_only_that_elements_lines(star, wave, teff):
    rows = []
    for label in ELEMENT_OF_LABEL:
        rows += [star(teff=teff, vsini=100.0, **{label: 0.5}), star(teff=teff, vsini=100.0, **{label: -0.5})]
    flux = synthesize(rows).astype(np.float64)
    for i, (label, elements) in enumerate(ELEMENT_OF_LABEL.items()):
        diff = np.abs(flux[2 * i] - flux[2 * i + 1])
        assert diff.max() > 3e-3, (label, diff.max())
        near = np.zeros(wave.size, dtype=bool)
        for element in elements:
            centres = lines_of(element)
            near |= (np.abs(wave[:, None] - centres[None, :]) < 12.0).any(axis=1)
        if "Ca" in elements:
            # Ca II H, K and the IR triplet have damping wings: wider support
            ca_broad = [masks.CA_II_K, masks.CA_II_H, *masks.CA_II_TRIPLET]
            near |= (np.abs(wave[:, None] - np.array(ca_broad)[None, :]) < 200.0).any(axis=1)
        outside = diff[~near]
        assert outside.max() < 1e-4, (label, teff, wave[~near][np.argmax(outside)], outside.max())


def test_helium_changes_helium_lines_strongly_and_hydrogen_lines_mildly(star, wave, equivalent_width):
    flux = synthesize([star(teff=20000.0, he_frac=h) for h in (0.05, 0.15)])
    he_ew = equivalent_width(flux, masks.HELIUM_I_LINES["HeI_4473"], 6.0)
    h_ew = equivalent_width(flux, masks.BALMER_LINES["H_beta"], 40.0)
    assert he_ew[1] > 1.3 * he_ew[0]
    assert 0.0 < abs(h_ew[1] / h_ew[0] - 1.0) < 0.15


def test_normalized_spectra_are_absorption_spectra():
    flux = synthesize(sample_labels(300, np.random.default_rng(7)))
    assert flux.dtype == np.float32 and flux.shape == (300, 3802)
    assert np.all(np.isfinite(flux))
    assert flux.max() <= 1.0 + 1e-5
    assert flux.min() > 0.05
