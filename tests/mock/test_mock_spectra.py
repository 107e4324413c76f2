"""Observed spectra: exact Doppler mapping, composites, emission, noise against ivar, S/N, defects."""

from __future__ import annotations

import numpy as np
import pytest

from survey_scale.core.labels import N_LABELS
from survey_scale.core.wavelength import N_WAVE
from survey_scale.mock import spectra as spx
from survey_scale.synth import synthesize

C = spx.C_KMS
LO, HI = spx.NATIVE_OFFSET, spx.NATIVE_OFFSET + N_WAVE


def _labels(teff: float, logg: float) -> np.ndarray:
    return np.array([teff, logg, 2.0, 80.0, 0.09, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])


def _inputs(n: int, **over) -> spx.VisitInputs:
    base = {
        "labels1": np.tile(_labels(12000.0, 4.0), (n, 1)), "labels2": np.full((n, N_LABELS), np.nan),
        "radius1": np.full(n, 3.0), "radius2": np.full(n, np.nan), "rv1": np.linspace(-40, 60, n),
        "rv2": np.full(n, np.nan), "resolution": np.full(n, 1800.0), "ebv": np.full(n, 0.4),
        "distance_pc": np.full(n, 1500.0), "v_helio_corr": np.full(n, -20.0), "airmass": np.full(n, 1.2),
        "pwv_mm": np.full(n, 6.0), "snr": np.full(n, 50.0), "g_mag": np.full(n, 14.0),
        "ha_ew": np.zeros(n), "hb_ew": np.zeros(n), "pa_ew": np.zeros(n), "em_sigma_kms": np.full(n, np.nan),
        "corrupt_kind": np.array([""] * n), "seeds": np.arange(n),
    }  # fmt: skip
    base.update(over)
    return spx.VisitInputs(**base)


def test_native_grid_and_offset() -> None:
    wave = spx.native_wavelength()
    assert wave.size == 3909 and wave[0] == pytest.approx(3699.986, abs=1e-3)
    assert spx.NATIVE_OFFSET == 58 and spx.NATIVE_SUBPIXEL_DEX == pytest.approx(3.1268e-5, abs=1e-8)


def test_doppler_mapping_is_exact() -> None:
    labels = np.stack([_labels(9500.0, 4.1), _labels(20000.0, 3.8)])
    # at v0 the synthesizer needs no shift at all: native pixel j + 58 is its rest-frame pixel j
    v0 = C * (10.0 ** (-spx.NATIVE_SUBPIXEL_DEX) - 1.0)
    assert spx.synth_velocity(np.array([v0]))[0] == pytest.approx(0.0, abs=1e-9)
    flux, _ = spx.stellar_flux_native(labels, np.full(2, v0), np.full(2, 1800.0))
    rest = synthesize(labels, kind="flux")
    np.testing.assert_allclose(flux[:, LO:HI], rest, rtol=1e-6)
    # and for any v the native pixels hold the synthesizer's spectrum at v' (no resampling)
    v = np.array([35.0, -80.0])
    flux, _ = spx.stellar_flux_native(labels, v, np.full(2, 1800.0))
    np.testing.assert_array_equal(flux[:, LO:HI], synthesize(labels, rv=spx.synth_velocity(v), kind="flux"))


def test_lines_sit_at_the_doppler_shifted_wavelength() -> None:
    wave = spx.native_wavelength()
    labels = _labels(9500.0, 4.0)[None, :]
    labels[0, 3] = 10.0  # slow rotator: a sharp line core
    for v in (-150.0, 150.0):
        flux, cont = spx.stellar_flux_native(labels, np.array([v]), np.array([1800.0]))
        near = np.abs(wave - 6564.61) < 30
        centre = wave[near][np.argmin((flux / cont)[0, near])]
        assert centre == pytest.approx(6564.61 * (1 + v / C), abs=1.2)


def test_composite_is_r1sq_f1_plus_r2sq_f2() -> None:
    n = 3
    lab1 = np.stack([_labels(15000.0, 4.0), _labels(11000.0, 3.9), _labels(20000.0, 4.1)])
    lab2 = np.stack([_labels(9000.0, 4.2), _labels(5200.0, 4.5), _labels(20000.0, 4.1)])  # 2nd: too cool
    r1, r2 = np.array([3.0, 2.5, 4.0]), np.array([1.9, 0.9, 4.0])
    rv1, rv2 = np.array([20.0, -5.0, 70.0]), np.array([-60.0, 40.0, -70.0])
    inp = _inputs(n, labels1=lab1, labels2=lab2, radius1=r1, radius2=r2, rv1=rv1, rv2=rv2)
    flux, _, light2 = spx.composite_flux(inp)
    f1 = synthesize(lab1, rv=spx.synth_velocity(rv1), kind="flux")
    hot = [0, 2]
    f2 = synthesize(lab2[hot], rv=spx.synth_velocity(rv2[hot]), kind="flux")
    expect = r1[hot, None] ** 2 * f1[hot] + r2[hot, None] ** 2 * f2
    np.testing.assert_allclose(flux[hot, LO:HI], expect, rtol=1e-5)
    cool = spx.continuum_native(lab2[1:2, 0], lab2[1:2, 1], rv2[1:2], he_frac=lab2[1:2, 4])
    np.testing.assert_allclose(flux[1, LO:HI], r1[1] ** 2 * f1[1] + r2[1] ** 2 * cool[0, LO:HI], rtol=1e-5)
    assert light2[2] == pytest.approx(0.5, abs=0.02)  # twins share the light
    assert 0.0 < light2[1] < 0.02 < light2[0] < 0.5
    obs = spx.observe(inp, 1, keep_intermediate=True)
    np.testing.assert_array_equal(obs.stellar, flux)


def test_noise_matches_ivar_and_snr_is_the_target() -> None:
    n = 8
    snr = np.array([8.0, 15.0, 30.0, 50.0, 80.0, 120.0, 200.0, 40.0])
    g = np.array([17.0, 16.0, 15.0, 14.0, 13.0, 12.0, 11.0, 14.5])
    obs = spx.observe(_inputs(n, snr=snr, g_mag=g), 7)
    good = obs.ivar > 0
    good[:, -31:] = False  # the zeroed red tail (as real files) keeps its ivar
    chi2 = ((obs.flux - obs.model) ** 2 * obs.ivar)[good]
    assert chi2.mean() == pytest.approx(1.0, abs=0.04)
    gwin = spx._WINDOWS["g"]
    for i in range(n):
        sel = gwin & (obs.ivar[i] > 0)
        assert np.median(obs.model[i, sel] * np.sqrt(obs.ivar[i, sel])) == pytest.approx(snr[i], rel=0.02)
        assert obs.snr_bands[i, 1] == pytest.approx(snr[i], rel=0.1)
    # brighter stars get more flux units (LAMOST-like relative calibration)
    level = np.median(obs.model[:, gwin], axis=1)
    assert level[6] > level[0] * 100


def test_same_seed_same_spectrum_independent_of_batch() -> None:
    a = spx.observe(_inputs(4), 3)
    np.testing.assert_array_equal(spx.observe(_inputs(4), 3).flux, a.flux)
    full = _inputs(4)
    single = _inputs(1, rv1=full.rv1[2:3], seeds=np.array([2]))  # visit 2 alone, same seed
    # the same noise and defects; the synthesizer's batched FFTs may differ in the last float32 bit
    np.testing.assert_allclose(spx.observe(single, 3).flux[0], a.flux[2], rtol=1e-5)
    assert not np.array_equal(spx.observe(_inputs(4), 4).flux, a.flux)


def test_emission_line_equivalent_width() -> None:
    n = 2
    inp = _inputs(n, ha_ew=np.array([20.0, 3.0]), hb_ew=np.array([4.0, 0.0]), em_sigma_kms=np.full(n, 120.0))
    _, cont, _ = spx.composite_flux(inp)
    em = spx.emission_spectrum(inp, cont)
    wave = spx.native_wavelength()
    dlam = np.gradient(wave)
    for i, (centre, ew) in enumerate([(6564.61, 20.0), (6564.61, 3.0)]):
        win = np.abs(wave - centre) < 60
        measured = np.sum(em[i, win] / cont[i, win] * dlam[win])
        assert measured == pytest.approx(ew * (1 + inp.rv1[i] / C), rel=0.02)
    hb = np.abs(wave - 4862.69) < 60
    assert np.sum(em[0, hb] / cont[0, hb] * dlam[hb]) == pytest.approx(4.0 * (1 + inp.rv1[0] / C), rel=0.02)
    assert np.all(em[1, hb] == 0)


def test_masks_bad_pixels_and_tail() -> None:
    obs = spx.observe(_inputs(12), 11)
    assert np.all(np.isin(obs.andmask, [0, 1, 2, 16])) and np.all(obs.ormask >= obs.andmask)
    flagged = obs.ormask > 0
    bad_centres = flagged & (obs.ormask != spx.MASK_BITS["BRIGHTSKY"])
    assert np.all(obs.ivar[bad_centres] == 0)
    assert np.all(obs.flux[:, -12:] == 0) and np.all(obs.ivar[:, -12:] > 0)
    assert np.all(np.isfinite(obs.flux)) and np.all(obs.ivar >= 0)


@pytest.mark.parametrize("kind", ["flux_jump", "artifact", "wrong_wavelength"])
def test_corruptions_are_visible(kind: str) -> None:
    inp = _inputs(1, snr=np.array([150.0]), corrupt_kind=np.array([kind]))
    obs = spx.observe(inp, 5)
    info = obs.corrupt_info[0]
    wave = spx.native_wavelength()
    seg = (wave >= info["corrupt_lo"]) & (wave <= info["corrupt_hi"]) & (obs.ivar[0] > 0)
    chi2_seg = np.mean((obs.flux[0, seg] - obs.model[0, seg]) ** 2 * obs.ivar[0, seg])
    assert chi2_seg > 3.0  # a chi2 flag catches it
    outside = ~((wave >= info["corrupt_lo"]) & (wave <= info["corrupt_hi"])) & (obs.ivar[0] > 0)
    outside[-31:] = False
    assert np.mean((obs.flux[0, outside] - obs.model[0, outside]) ** 2 * obs.ivar[0, outside]) < 1.2
