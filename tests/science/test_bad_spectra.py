"""Erroneous-spectrum evidence and rule on synthetic residual patterns (SPEC §4, P1 App. A; issue 15)."""

from __future__ import annotations

import numpy as np
import pytest

from survey_scale.core.masks import TELLURIC_BANDS, window_mask
from survey_scale.core.wavelength import wavelength_grid
from survey_scale.science.bad_spectra import (
    EVIDENCE,
    MIN_SPECTRA_FOR_LIMIT,
    REASON_BITS,
    STEP_BASELINE_PIXELS,
    STEP_BINS,
    SnrLimit,
    bad_spectrum_rule,
    continuum_steps,
    derive_snr_limit,
    fit_residual_evidence,
    flux_step_z,
    frame_offset_pixels,
    limits_from_config,
    reason_names,
    rest_frame_transmission,
    step_histogram_block,
    step_reference,
    telluric_sums_block,
    telluric_template,
    wavelength_shift_evidence,
)

WAVE = wavelength_grid()


def model_spectra(n: int, seed: int) -> np.ndarray:
    """Normalized hot-star-like models: a broad Hα, He I and metal lines of random depth (n, P)."""
    rng = np.random.default_rng(seed)
    flux = np.ones((n, WAVE.size))
    centres = np.concatenate([[4388.0, 4471.5, 4921.9, 5875.6, 6678.2, 7065.2, 7774.0], rng.uniform(3900, 8800, 25)])
    for c in centres:
        depth = rng.uniform(0.05, 0.3, (n, 1))
        flux -= depth * np.exp(-0.5 * ((WAVE - c) / rng.uniform(1.5, 3.0)) ** 2)
    for c, width in ((6564.6, 12.0), (4862.7, 10.0), (4341.7, 9.0)):
        flux -= rng.uniform(0.3, 0.6, (n, 1)) * np.exp(-0.5 * ((WAVE - c) / width) ** 2)
    return flux


def observe(model: np.ndarray, snr: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return model + rng.normal(0.0, 1.0 / snr, model.shape), np.full(model.shape, snr**2)


def shift_segment(flux: np.ndarray, lo: float, hi: float, pixels: int) -> np.ndarray:
    """The mock's wrong wavelength calibration: the pixels of [lo, hi] Å take the flux ``pixels`` bluer."""
    out = flux.copy()
    idx = np.flatnonzero((WAVE >= lo) & (WAVE <= hi))
    out[..., idx] = flux[..., np.clip(idx - pixels, idx[0], idx[-1])]
    return out


@pytest.mark.parametrize("pixels", [-12, -5, 4, 9])
def test_a_shifted_segment_fires_the_wavelength_evidence(pixels: int) -> None:
    model = model_spectra(6, seed=1)
    flux, ivar = observe(model, snr=40.0, seed=2)
    bad = shift_segment(flux, 6200.0, 7000.0, pixels)
    use = np.ones(flux.shape, bool)
    clean = wavelength_shift_evidence(flux, ivar, model, use)
    shifted = wavelength_shift_evidence(bad, ivar, model, use)
    # a clean spectrum: no segment prefers a shift; the shifted one: every spectrum, with the right shift/place
    assert np.all(clean["wave_shift_z"] < 4.0)
    assert np.all(shifted["wave_shift_z"] > 15.0)
    np.testing.assert_array_equal(shifted["wave_shift_pixels"], pixels)
    lo, hi = WAVE[shifted["wave_shift_first"]], WAVE[shifted["wave_shift_last"]]
    assert np.all((lo > 6050.0) & (lo < 6400.0) & (hi > 6600.0) & (hi < 7150.0))  # from the first to the last line


def test_a_radial_velocity_error_is_not_a_wrong_wavelength() -> None:
    model = model_spectra(6, seed=3)
    # the whole spectrum moved by 2 pixels (138 km/s): the reference shift absorbs it
    moved = np.concatenate([np.repeat(model[:, :1], 2, axis=1), model[:, :-2]], axis=1)
    flux, ivar = observe(moved, snr=80.0, seed=4)
    out = wavelength_shift_evidence(flux, ivar, model, np.ones(flux.shape, bool))
    assert np.all(out["wave_shift_z"] < 4.0)


def test_derivative_shaped_residual_in_one_segment_fires() -> None:
    """A sub-line shift (the linear regime): residual −δ dm/dλ over one segment only."""
    model = model_spectra(4, seed=5)
    flux, ivar = observe(model, snr=150.0, seed=6)
    seg = (WAVE > 4300) & (WAVE < 4950)
    flux[:, seg] -= 3.0 * np.gradient(model, axis=1)[:, seg]  # 3 pixels: at the edge of the linear regime
    out = wavelength_shift_evidence(flux, ivar, model, np.ones(flux.shape, bool))
    assert np.all(out["wave_shift_z"] > 10.0) and np.all(np.abs(out["wave_shift_pixels"]) >= 3)


def test_masked_pixels_and_lineless_segments_give_no_evidence() -> None:
    model = model_spectra(2, seed=7)
    flux, ivar = observe(model, snr=50.0, seed=8)
    bad = shift_segment(flux, 6200.0, 7000.0, 8)
    use = np.ones(flux.shape, bool)
    use[:, (WAVE > 6100) & (WAVE < 7100)] = False  # the shifted segment is not fitted: nothing to see
    assert np.all(wavelength_shift_evidence(bad, ivar, model, use)["wave_shift_z"] < 4.0)
    flat = np.ones_like(model)  # no lines at all: a shift changes nothing
    f, iv = observe(flat, 50.0, seed=9)
    lineless = wavelength_shift_evidence(shift_segment(f, 5000, 7000, 10), iv, flat, use)
    assert np.all(lineless["wave_shift_z"] < 4.0)


def telluric_bands() -> tuple[np.ndarray, np.ndarray]:
    """(P,) a transmission with O2- and H2O-like line forests in the bands, and the bands' mask."""
    telluric = window_mask(WAVE, TELLURIC_BANDS)
    rng = np.random.default_rng(20)
    t = np.ones(WAVE.size)
    for c in rng.uniform(6865, 6935, 8).tolist() + rng.uniform(7160, 7340, 15).tolist() + [7600.0, 7630.0, 7660.0]:
        t *= 1 - 0.3 * np.exp(-0.5 * ((WAVE - c) / 2.0) ** 2)
    return np.where(telluric, t, 1.0), telluric


def test_telluric_lines_show_a_wrong_segment_without_stellar_lines() -> None:
    t, telluric = telluric_bands()
    star = np.ones((3, WAVE.size))  # a star without lines in the segment: only the telluric lines can tell
    flux, ivar = observe(star * t, snr=80.0, seed=21)
    bad = shift_segment(flux, 6800.0, 7700.0, 7)
    transmission = np.broadcast_to(t, flux.shape)
    use = np.ones(flux.shape, bool)
    with_t = wavelength_shift_evidence(bad, ivar, star, use, transmission=transmission, telluric=telluric)
    assert np.all(with_t["wave_shift_z"] > 15.0) and np.all(with_t["wave_shift_pixels"] == 7)
    clean = wavelength_shift_evidence(flux, ivar, star, use, transmission=transmission, telluric=telluric)
    assert np.all(clean["wave_shift_z"] < 4.0)
    # a star with an RV error of 4 pixels: its lines move, the telluric lines do not; no evidence
    model = model_spectra(3, seed=22)
    moved = np.concatenate([np.repeat(model[:, :1], 4, axis=1), model[:, :-4]], axis=1)
    flux, ivar = observe(moved * t, snr=120.0, seed=23)
    out = wavelength_shift_evidence(flux, ivar, model, use, transmission=transmission, telluric=telluric)
    assert np.all(out["wave_shift_z"] < 4.0)


def test_telluric_template_from_the_survey_and_in_each_rest_frame() -> None:
    t, telluric = telluric_bands()
    rng = np.random.default_rng(24)
    n = 300
    rv = rng.uniform(-150.0, 150.0, n)
    offset = frame_offset_pixels(rv)
    model = np.ones((n, WAVE.size))
    # observed-frame transmission seen in each rest frame, the depth varying from night to night
    depth = rng.uniform(0.7, 1.3, n)
    seen = np.stack(
        [1 + d * (np.interp(np.arange(WAVE.size) + o, np.arange(WAVE.size), t) - 1) for d, o in zip(depth, offset)]
    )
    flux, ivar = observe(model * seen, snr=200.0, seed=25)
    data = {"norm_flux": flux, "norm_ivar": ivar, "model_flux": model, "rv": rv}
    template = telluric_template(telluric_sums_block(data, {}), telluric)
    # linear interpolation in and out of each rest frame smooths the narrow lines a little
    assert np.abs(template - t)[telluric].max() < 0.08 and np.all(template[~telluric] == 1.0)
    rest = rest_frame_transmission(template, rv, flux, ivar, model, np.ones(flux.shape, bool), telluric)
    assert np.abs(rest - seen)[:, telluric].std() < 0.01


def test_fit_local_z_sees_a_flux_jump_and_not_model_errors() -> None:
    model = model_spectra(4, seed=10)
    flux, ivar = observe(model, snr=30.0, seed=11)
    jump = flux.copy()
    jump[:, (WAVE > 5200) & (WAVE < 5600)] *= 1.15  # the part of a flux jump the 50 Å normalization leaves
    use = np.ones(flux.shape, bool)
    clean = fit_residual_evidence(flux, ivar, model, use)
    bad = fit_residual_evidence(jump, ivar, model, use)
    assert np.all(clean["fit_local_z"] < 6.0)  # the max of ~3,800 run significances of pure noise
    assert np.all(bad["fit_local_z"] > 20.0)
    # a bright star whose model is 1 % off everywhere (line depths): every run misfits, none stands out
    rng = np.random.default_rng(12)
    bright, ivar_b = observe(model * (1 + 0.01 * rng.standard_normal(model.shape)), snr=400.0, seed=13)
    assert np.all(fit_residual_evidence(bright, ivar_b, model, use)["fit_local_z"] < 6.0)


def test_snr_limit_follows_the_survey_and_flags_the_outliers() -> None:
    rng = np.random.default_rng(12)
    n = 20_000
    snr = 10 ** rng.uniform(0.5, 2.7, n)
    # a statistic whose scale grows with S/N, as model errors dominate bright spectra
    stat = (1.0 + (snr / 50.0) ** 2) * 10 ** rng.normal(0.0, 0.05, n)
    outlier = rng.random(n) < 0.01
    stat[outlier] *= 10.0
    limit = derive_snr_limit(stat, snr, 5.0, "log", min_per_bin=1000, max_bins=10)
    assert len(limit.log_snr) == 10 and np.all(np.diff(limit.log_snr) > 0)
    above = stat > limit(snr)
    assert above[outlier].mean() > 0.99
    assert above[~outlier].mean() < 0.001
    # one limit for all S/N would miss the faint outliers
    single = derive_snr_limit(stat, np.ones(n), 5.0, "log", min_per_bin=1000, max_bins=10)
    assert (stat > single(snr))[outlier & (snr < 20)].mean() < 0.1
    again = SnrLimit.from_dict(limit.to_dict())
    np.testing.assert_array_equal(again(snr), limit(snr))
    assert SnrLimit.fixed(10.0)(np.array([1.0, 1000.0])).tolist() == [10.0, 10.0]
    with pytest.raises(ValueError, match="no spectrum"):
        derive_snr_limit(np.full(5, np.nan), np.ones(5), 3.0, "log", min_per_bin=1, max_bins=2)


def test_rule_reason_bits_and_emission_only_evidence() -> None:
    snr = np.full(5, 50.0)
    evidence = {
        "pca_chi2": np.array([1.0, 9.0, 1.0, 1.0, np.nan]),
        "wave_shift_z": np.array([0.0, 0.0, 12.0, 0.0, np.nan]),
        "chi2ratio": np.array([0.0, 0.0, 0.0, 30.0, np.nan]),
        "halpha_chi2": np.array([1.0, 1.0, 1.0, 30.0, np.nan]),
    }
    limits = {name: SnrLimit.fixed(v) for name, v in (("pca_chi2", 5.0), ("wave_shift_z", 8.0), ("chi2ratio", 10.0))}
    limits["halpha_chi2"] = SnrLimit.fixed(5.0)
    flag, reason = bad_spectrum_rule(evidence, snr, np.zeros(5, np.int8), limits)
    assert flag.tolist() == [0, 1, 1, 1, 0] and flag.dtype == np.int8 and reason.dtype == np.int16
    assert reason.tolist() == [0, 1, 16, 8 | 32, 0]
    assert reason_names(int(reason[3])) == ["chi2ratio", "halpha"]
    # an emission star's chi2ratio and Hα misfit are its emission line, not an error
    flag, reason = bad_spectrum_rule(evidence, snr, np.array([0, 0, 0, 1, 0]), limits)
    assert flag[3] == 0 and reason[3] == 0
    assert set(REASON_BITS) == {bit for bit, _ in EVIDENCE.values()}


def test_limits_from_config_fixed_and_derived() -> None:
    rng = np.random.default_rng(13)
    n = 4000
    snr = 10 ** rng.uniform(0.5, 2.5, n)
    em = (rng.random(n) < 0.2).astype(np.int8)
    halpha = 10 ** rng.normal(0.0, 0.05, n)
    halpha[em == 1] *= 50.0  # emission: derived on the other spectra only
    evidence = {"halpha_chi2": halpha, "chi2ratio": rng.normal(0.0, 1.0, n)}
    n_sigma = {name: 5.0 for name in EVIDENCE}
    limits = limits_from_config(evidence, snr, em, n_sigma, {"chi2ratio": 10.0}, min_per_bin=500, max_bins=4)
    assert set(limits) == {"halpha_chi2", "chi2ratio"}
    assert limits["chi2ratio"](snr).tolist() == [10.0] * n
    assert np.all(limits["halpha_chi2"](snr) < 2.0)
    # a handful of spectra derive no limit (a fixed one still holds): that evidence flags nothing
    few = {name: values[: MIN_SPECTRA_FOR_LIMIT - 1] for name, values in evidence.items()}
    fixed_only = limits_from_config(
        few,
        snr[: MIN_SPECTRA_FOR_LIMIT - 1],
        em[: MIN_SPECTRA_FOR_LIMIT - 1],
        n_sigma,
        {"chi2ratio": 10.0},
        min_per_bin=500,
        max_bins=4,
    )
    assert set(fixed_only) == {"chi2ratio"}
    m = MIN_SPECTRA_FOR_LIMIT - 1
    flag, _ = bad_spectrum_rule({"halpha_chi2": np.full(m, 1e6)}, snr[:m], np.zeros(m), fixed_only)
    assert not flag.any()


def test_a_continuum_step_stands_out_against_the_survey_histogram() -> None:
    rng = np.random.default_rng(3)
    n, p = 400, 1200
    wave = np.linspace(4000.0, 8000.0, p)
    # smooth continua of different slopes times an instrument response with a sharp feature all spectra share
    response = 1.0 + 0.3 * (wave > 5800.0)
    flux = (wave / 6000.0) ** rng.uniform(-3.0, -1.0, (n, 1)) * response * np.exp(rng.normal(0, 0.002, (n, p)))
    norm_flux, norm_ivar = np.ones((n, p)), np.ones((n, p))
    flux[0, (wave > 5000.0) & (wave < 6000.0)] *= 0.6
    norm_ivar[1, 600:] = 0.0  # no usable pixels on one side: no step there
    steps = continuum_steps(flux, norm_flux, norm_ivar)
    assert np.isnan(steps[:, :STEP_BASELINE_PIXELS]).all() and np.isnan(steps[1, 600:]).all()
    histogram = step_histogram_block({"flux": flux, "norm_flux": norm_flux, "norm_ivar": norm_ivar}, {})
    assert histogram["step_histogram"].shape == (p, STEP_BINS.size - 1)
    assert histogram["step_histogram"].sum() == np.isfinite(steps).sum()
    median, scale = step_reference(histogram["step_histogram"])
    z = flux_step_z(steps, median, scale)
    # the shared response step is the survey's own (median removed); the jump is tens of its scatter
    assert z[0] > 2 * np.nanmax(z[2:]) and z[0] > 10, (z[0], np.nanmax(z[2:]))
    median_few, _ = step_reference(histogram["step_histogram"] * 0)
    assert np.isnan(median_few).all()


def test_shift_scan_moves_the_model_as_the_per_row_move_does() -> None:
    from survey_scale.science import bad_spectra as bs

    model = np.random.default_rng(3).random((3, 50)).astype(np.float32)
    for shift in (-70, -50, -49, -3, 0, 2, 49, 50, 70):
        out = np.empty_like(model)
        bs._move_into(out, model, shift)
        np.testing.assert_array_equal(out, bs._moved(model, shift), err_msg=str(shift))
