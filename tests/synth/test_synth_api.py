"""Contract of synthesize() and sed(): shapes, validation, determinism, flux = SED × lines (SPEC §10)."""

from __future__ import annotations

import numpy as np
import pytest

from survey_scale.core.labels import LABEL_RANGES
from survey_scale.synth import SYNTH_LIMITS, draw_resolution, sample_labels, sed, synthesize
from survey_scale.synth.atmosphere import SIGMA_SB, SOLAR_HE_FRAC

C_KMS = 299792.458


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    return sample_labels(40, np.random.default_rng(11))


def test_same_inputs_give_bit_identical_outputs(labels):
    r = np.linspace(1600.0, 2000.0, labels.shape[0])
    v = np.linspace(-200.0, 200.0, labels.shape[0])
    for kind in ("normalized", "flux"):
        a = synthesize(labels, resolution=r, rv=v, kind=kind)
        b = synthesize(labels.copy(), resolution=r.copy(), rv=v.copy(), kind=kind)
        assert np.array_equal(a, b)


def test_spectra_do_not_depend_on_their_batch(labels):
    r = np.linspace(1500.0, 2500.0, labels.shape[0])
    whole = synthesize(labels, resolution=r)
    # float32 BLAS products may round differently for other batch sizes: nothing beyond that
    np.testing.assert_allclose(synthesize(labels, resolution=r, chunk_size=7), whole, rtol=0, atol=1e-6)
    np.testing.assert_allclose(synthesize(labels[5], resolution=r[5]), whole[5:6], rtol=0, atol=1e-6)


def test_shapes_and_defaults(labels, star):
    single = synthesize(star())
    assert single.shape == (1, 3802) and single.dtype == np.float32
    assert np.array_equal(synthesize(labels[:3]), synthesize(labels[:3], resolution=1800.0, rv=0.0))
    assert np.array_equal(synthesize(labels[:3], rv=None), synthesize(labels[:3], rv=np.zeros(3)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels": np.zeros((2, 10))}, "shape"),
        ({"labels": [[np.nan] * 11]}, "NaN"),
        ({"kind": "density"}, "kind"),
        ({"resolution": [1800.0, 1800.0, 1800.0]}, "resolution"),
        ({"resolution": -5.0}, "resolution"),
        ({"resolution": 6000.0}, "4000"),
        ({"rv": 5000.0}, "rv"),
    ],
)
def test_bad_arguments_are_refused(star, kwargs, message):
    call = {"labels": [star(), star()], **kwargs}
    with pytest.raises(ValueError, match=message):
        synthesize(call.pop("labels"), **call)


@pytest.mark.parametrize("name", ["teff", "he_frac", "vsini"])
def test_labels_outside_the_validity_range_are_refused(star, name):
    lo, hi = SYNTH_LIMITS[name]
    with pytest.raises(ValueError, match=name):
        synthesize(star(**{name: hi + 1.0}))
    assert lo <= LABEL_RANGES[name][0] and LABEL_RANGES[name][1] <= hi


def test_flux_is_sed_times_normalized_spectrum(labels):
    teff, logg, he = labels[:, 0], labels[:, 1], labels[:, 4]
    flux = synthesize(labels, kind="flux").astype(np.float64)
    norm = synthesize(labels).astype(np.float64)
    np.testing.assert_allclose(flux, sed(teff, logg, he_frac=he) * norm, rtol=2e-6)


def test_doppler_shifted_flux_uses_the_shifted_sed(labels, wave):
    rv = np.linspace(-400.0, 400.0, labels.shape[0])
    teff, logg, he = labels[:, 0], labels[:, 1], labels[:, 4]
    flux = synthesize(labels, rv=rv, kind="flux").astype(np.float64)
    norm = synthesize(labels, rv=rv).astype(np.float64)
    rows = zip(teff, logg, he, rv, strict=True)
    expected = np.stack([sed(t, g, wave / (1.0 + v / C_KMS), he_frac=h)[0] for t, g, h, v in rows]) * norm
    np.testing.assert_allclose(flux, expected, rtol=1e-5)


def test_sed_is_the_surface_flux_in_cgs():
    wave = np.geomspace(60.0, 2.0e5, 20000)
    teff = np.array([7000.0, 12000.0, 25000.0, 45000.0])
    f = sed(teff, np.array([4.0, 4.0, 3.5, 4.0]), wave)
    assert f.shape == (4, wave.size)
    np.testing.assert_allclose(np.trapezoid(f, wave, axis=1), SIGMA_SB * teff**4, rtol=5e-3)
    # the same star twice, a scalar call, and the solar He default
    np.testing.assert_array_equal(sed(12000.0, 4.0, wave), sed([12000.0], [4.0], wave, he_frac=SOLAR_HE_FRAC))


def test_sed_composites_scale_with_radius_squared():
    wave = np.geomspace(80.0, 2.0e5, 20000)
    hot, cool = sed([20000.0, 8000.0], [4.0, 4.2], wave)
    r_hot, r_cool = 3.0, 1.7
    composite = r_hot**2 * hot + r_cool**2 * cool
    # luminosity ratio of the two components is (R2/R1)² (T2/T1)⁴ exactly
    l_ratio = np.trapezoid(r_cool**2 * cool, wave) / np.trapezoid(r_hot**2 * hot, wave)
    assert l_ratio == pytest.approx((r_cool / r_hot) ** 2 * (8000.0 / 20000.0) ** 4, rel=5e-3)
    # the cool companion matters more in the red than in the blue
    share = r_cool**2 * cool / composite
    assert share[np.searchsorted(wave, 8500.0)] > 1.5 * share[np.searchsorted(wave, 4200.0)]


def test_sed_colours_and_balmer_jump_behave_like_hot_stars():
    # below and above the Balmer jump (smeared over ~3650–3730 Å by dissolved levels), blue and red
    wave = np.array([3550.0, 3800.0, 4000.0, 8000.0])
    teff = np.array([7000.0, 9500.0, 15000.0, 30000.0, 45000.0])
    f = sed(teff, 4.0, wave)
    colour = f[:, 2] / f[:, 3]
    assert np.all(np.diff(colour) > 0)  # hotter is bluer
    jump = f[:, 1] / f[:, 0]
    assert jump[1] > 2.0 and jump[-1] < 1.2  # large Balmer jump in A stars, ~none in O stars
    assert np.argmax(jump) in (0, 1)
    # luminosity effect of A stars: lower pressure, less H⁻, larger Balmer jump
    dwarf, supergiant = sed([8000.0, 8000.0], [4.5, 2.0], wave)
    assert supergiant[1] / supergiant[0] > 1.2 * dwarf[1] / dwarf[0]


def test_sed_refuses_bad_input():
    with pytest.raises(ValueError, match="teff"):
        sed(-1.0, 4.0)
    with pytest.raises(ValueError, match="wave"):
        sed(10000.0, 4.0, np.array([[4000.0]]))


def test_fibre_resolutions_scatter_about_the_mean_lsf():
    r = draw_resolution(5000, np.random.default_rng(3))
    assert np.median(r) == pytest.approx(1800.0, rel=0.01)
    assert np.std(np.log(r)) == pytest.approx(0.08, rel=0.1)
    assert r.min() >= 1800.0 * np.exp(-0.24) - 1e-9 and r.max() <= 1800.0 * np.exp(0.24) + 1e-9
    assert np.array_equal(r, draw_resolution(5000, np.random.default_rng(3)))
    assert synthesize(sample_labels(4, np.random.default_rng(0)), resolution=r[:4]).shape == (4, 3802)
