"""The array logic of stage ``fit_residuals`` on numpy (issue 24): the pixels of the fit's evidence (emission
cores out for em_flag = 1), the columns of a chunk, the reference rows and the counts per evidence."""

from __future__ import annotations

import numpy as np

from survey_scale.core.masks import EMISSION_WINDOWS, FIT_WINDOWS, TELLURIC_BANDS, window_mask
from survey_scale.core.wavelength import wavelength_grid
from survey_scale.science.bad_spectra import (
    EMISSION_CORE_HALF_WIDTH,
    REASON_BITS,
    emission_cores,
    evidence_pixels,
    fit_residual_columns,
    reason_counts,
    reference_rows,
    step_histogram_block,
    step_reference,
)

WAVE = wavelength_grid()


def near(lam: float) -> int:
    return int(np.argmin(np.abs(WAVE - lam)))


def test_emission_cores_narrow_the_hydrogen_windows_only() -> None:
    cores = emission_cores(WAVE)
    halpha = next(w for w in EMISSION_WINDOWS if w.name == "H_alpha")
    centre = 0.5 * (halpha.lo + halpha.hi)
    assert halpha.hi - centre > EMISSION_CORE_HALF_WIDTH + 5  # the window is wider than its core
    assert cores[near(centre)] and cores[near(centre + EMISSION_CORE_HALF_WIDTH - 3)]
    assert not cores[near(centre + EMISSION_CORE_HALF_WIDTH + 5)]  # the wing is back in
    for w in EMISSION_WINDOWS:
        if w.kind != "hydrogen":  # the other emission windows are left out whole
            inside = (WAVE >= w.lo) & (WAVE <= w.hi)
            assert cores[inside].all()
    assert cores.sum() < window_mask(WAVE, EMISSION_WINDOWS).sum()


def test_evidence_pixels_follow_the_fit_mask_the_pixmask_and_the_emission_cores() -> None:
    pixmask = np.zeros((3, WAVE.size), np.int32)
    pixmask[2, 100:110] = 4
    use = evidence_pixels(WAVE, pixmask, np.array([0, 1, 0], np.int8))
    assert use.shape == (3, WAVE.size)
    interstellar = window_mask(WAVE, [w for w in FIT_WINDOWS if w.kind == "interstellar"])
    telluric = window_mask(WAVE, TELLURIC_BANDS) & ~window_mask(WAVE, [w for w in FIT_WINDOWS if w.kind != "telluric"])
    assert not use[:, interstellar].any() and use[0, telluric].all()  # the telluric bands count (wavelengths)
    cores = emission_cores(WAVE)
    assert not use[1, cores].any() and use[0, cores & use[0]].all() and use[0, cores].any()
    np.testing.assert_array_equal(use[1] | (cores & use[0]), use[0])  # em_flag = 1 loses the cores only
    assert not use[2, 100:110].any()
    np.testing.assert_array_equal(np.delete(use[2], range(100, 110)), np.delete(use[0], range(100, 110)))


def test_fit_residual_columns_of_a_chunk() -> None:
    rng = np.random.default_rng(0)
    n = 4
    model = np.ones((n, WAVE.size))
    for c in rng.uniform(4000, 8800, 30):
        model -= rng.uniform(0.1, 0.3, (n, 1)) * np.exp(-0.5 * ((WAVE - c) / 2.5) ** 2)
    norm_flux = model + rng.normal(0.0, 0.01, model.shape)
    norm_ivar = np.full(model.shape, 1e4)
    continuum = np.linspace(2.0, 1.0, WAVE.size)[None, :] * np.ones((n, 1))
    flux = norm_flux * continuum
    seg = (WAVE > 6200) & (WAVE < 7000)
    idx = np.flatnonzero(seg)
    norm_flux[1, idx] = norm_flux[1, np.clip(idx - 8, idx[0], idx[-1])]  # a wrong wavelength segment
    flux[1] = norm_flux[1] * continuum[1]
    model_flux = model.copy()
    model_flux[3] = np.nan  # no label fit
    steps = step_histogram_block({"flux": flux, "norm_flux": norm_flux, "norm_ivar": norm_ivar}, {})
    median, scale = step_reference(steps["step_histogram"] * 10, min_count=20)
    out = fit_residual_columns(
        flux, norm_flux, norm_ivar, np.zeros(model.shape, np.int32), model_flux, np.zeros(n, np.int8),
        np.zeros(n), wave=WAVE, telluric_template=np.ones(WAVE.size), step_median=median, step_scale=scale,
        max_shift=20, min_shift=3,
    )  # fmt: skip
    names = ("fit_local_z", "wave_shift_z", "wave_shift_pixels", "wave_shift_lo", "wave_shift_hi", "flux_step_z")
    assert sorted(out) == sorted(names)
    assert out["wave_shift_pixels"].dtype == np.int16
    assert all(out[k].dtype == np.float32 for k in out if k != "wave_shift_pixels")
    assert out["wave_shift_pixels"][1] == 8 and out["wave_shift_z"][1] > 10 > out["wave_shift_z"][0]
    assert 6000 < out["wave_shift_lo"][1] < out["wave_shift_hi"][1] < 7200
    # without a shifted segment: no range; without a fit: NaN evidence, no shift
    assert np.isnan(out["wave_shift_lo"][3]) and np.isnan(out["fit_local_z"][3]) and out["wave_shift_pixels"][3] == 0
    assert (out["wave_shift_pixels"][0] == 0) == np.isnan(out["wave_shift_lo"][0])
    assert np.isfinite(out["fit_local_z"][:3]).all() and np.isfinite(out["flux_step_z"]).all()


def test_reference_rows_and_reason_counts() -> None:
    snr = np.array([80.0, 80.0, 80.0, 80.0, 20.0, np.nan])
    chi2 = np.array([1.0, np.nan, 1.0, 1.0, 1.0, 1.0])
    em_flag = np.array([0, 0, 1, 0, 0, 0], np.int8)
    hot = np.array([True, True, True, False, True, True])
    np.testing.assert_array_equal(reference_rows(snr, chi2, em_flag, hot, 50.0), [0])
    counts = reason_counts(np.array([0, 1, 3, 64, 65], np.int16))
    assert list(counts) == [text.split(":")[0] for text in REASON_BITS.values()]
    assert counts["pca_chi2"] == 3 and counts["pca_local"] == 1 and counts["flux_step"] == 2
    assert counts["chi2ratio"] == 0
