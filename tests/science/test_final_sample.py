"""P2 §5.1's final-sample rules, one flag each (survey_scale.science.final_sample; issue 23)."""

from __future__ import annotations

import numpy as np
import pytest

from survey_scale.core.fit_flags import FLAG_NO_DATA, FLAG_NOT_CONVERGED, FLAG_SNR_LT_5, FLAG_TEFF_LT_7000
from survey_scale.science import final_sample as F

NAN = np.nan


def rows(**changes: list) -> dict[str, np.ndarray]:
    """Eight spectra of a clean hot star, with ``changes`` per column."""
    n = 8
    base = {
        "fit_flags": np.zeros(n, np.uint8),
        "teff": np.full(n, 12000.0),
        "chi2ratio": np.zeros(n),
        "flag_chi2ratio": np.zeros(n, np.int8),
        "teff_cool": np.full(n, 8400.0),
        "chi2_red_cool": np.full(n, 3.0),
        "chi2_red_hot": np.full(n, 1.0),
        "BP": np.full(n, 12.0),
        "RP": np.full(n, 12.1),
        "ebv": np.full(n, 0.1),
        "lasp_class": np.array(["STAR"] * n, dtype=object),
        "lasp_subclass": np.array(["A0V"] * n, dtype=object),
    }
    for key, value in changes.items():
        base[key] = np.asarray(value, dtype=base[key].dtype)
    return base


def test_dereddened_colour_uses_chen_2019_coefficients() -> None:
    assert F.dereddened_bp_rp(np.array([13.0]), np.array([12.0]), np.array([0.5]))[0] == pytest.approx(1.0 - 1.33 * 0.5)
    assert np.isnan(F.dereddened_bp_rp(np.array([NAN]), np.array([12.0]), np.array([0.5]))[0])


def test_each_rule_sets_its_own_flag_and_clears_final_sample() -> None:
    cols = rows(
        fit_flags=[0, FLAG_TEFF_LT_7000, FLAG_SNR_LT_5, FLAG_NOT_CONVERGED, 0, 0, 0, FLAG_NO_DATA],
        flag_chi2ratio=[0, 0, 0, 0, 1, 0, 0, 0],
        # row 5: a cool star fitted hot, red after dereddening, and the cool model's Teff below 7,000 K
        teff_cool=[8400, 8400, 8400, 8400, 8400, 5500, 8400, 8400],
        BP=[12.0, 12.0, 12.0, 12.0, 12.0, 13.2, 12.0, 12.0],
        lasp_class=["STAR", "STAR", "STAR", "STAR", "STAR", "STAR", "QSO", "STAR"],
    )
    out = F.final_sample_flags(cols)
    expect = {
        "flag_teff_lt_7000": 1,
        "flag_snr_lt_5": 2,
        "flag_not_converged": 3,
        "flag_chi2ratio": 4,
        "flag_cool_star": 5,
        "flag_non_stellar": 6,
    }
    for name, row in expect.items():
        assert out[name].dtype == np.int16
        np.testing.assert_array_equal(np.flatnonzero(out[name]), [row], err_msg=name)
    np.testing.assert_array_equal(out["final_sample"], [1, 0, 0, 0, 0, 0, 0, 0])  # row 7: no fit at all
    assert out["bp_rp0"][5] == pytest.approx(13.2 - 12.1 - 1.33 * 0.1, abs=1e-5)


def test_cool_star_rule_from_colour_or_from_the_spectra_alone() -> None:
    # 0: red colour, cool Teff -> cool; 1: red colour but the cool model says hot -> not cool;
    # 2: no colour, the cool model fits better and says cool -> cool (spectra alone);
    # 3: no colour, the cool model fits worse -> not cool; 4: blue colour but the cool model fits better -> cool
    # (the colour of a cool star fitted hot is dereddened with a hot star's intrinsic colour);
    # 5: no colour, no cool-star check at all (NaN) -> not flagged; 6: chi2 tie -> not cool
    cols = rows(
        teff_cool=[5000, 7600, 5200, 5200, 5200, NAN, 6000, 5000],
        BP=[13.0, 13.0, NAN, NAN, 12.0, NAN, NAN, 12.0],
        chi2_red_cool=[3.0, 3.0, 0.9, 1.5, 0.9, NAN, 1.0, 3.0],
        chi2_red_hot=[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
    )
    out = F.final_sample_flags(cols)
    np.testing.assert_array_equal(out["flag_cool_star"], [1, 0, 1, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(out["final_sample"], [0, 1, 0, 1, 0, 1, 1, 1])
    # LAMOST's O and B stars: the colour clause does not apply (P2 exempts its OB-star sample), the spectra's does
    ob = F.final_sample_flags({**cols, "lasp_subclass": np.array(["B2V", "O9", " b5", "B", "O", "A0", "B1", "K5"])})
    np.testing.assert_array_equal(ob["flag_cool_star"], [0, 0, 1, 0, 1, 0, 0, 0])


def test_non_stellar_classes_whatever_their_case_and_padding() -> None:
    out = F.final_sample_flags(rows(lasp_class=["STAR", " qso", "GALAXY ", "Unknown", "", "STAR", "galaxy", "QSO"]))
    np.testing.assert_array_equal(out["flag_non_stellar"], [0, 1, 1, 0, 0, 0, 1, 1])


def test_hot_star_candidates_leave_out_what_the_fit_calls_cool() -> None:
    columns = {
        "fit_flags": np.array([0, FLAG_TEFF_LT_7000, 0, 0, 0, FLAG_NOT_CONVERGED], np.uint8),
        # row 2: the cool-star model fits better and says 5,200 K; row 3: it says 5,200 K but fits worse;
        # row 4: no cool-star check (NaN)
        "teff_cool": np.array([8500.0, 5000.0, 5200.0, 5200.0, NAN, 8500.0]),
        "chi2_red_cool": np.array([3.0, 0.8, 0.9, 1.5, NAN, 3.0]),
        "chi2_red_hot": np.ones(6),
    }
    np.testing.assert_array_equal(F.hot_star_candidates(columns), [True, False, False, True, True, True])
    # without the check's columns (a cube fitted before it): the fitted Teff alone
    only_flags = {"fit_flags": columns["fit_flags"]}
    np.testing.assert_array_equal(F.hot_star_candidates(only_flags), [True, False, True, True, True, True])
    np.testing.assert_array_equal(
        F.spectrally_cool(columns["teff_cool"], columns["chi2_red_cool"], columns["chi2_red_hot"]),
        [False, True, True, False, False, False],  # row 1 too (its fitted Teff already says cool)
    )


def test_repeat_pairs_leave_out_cool_stars() -> None:
    from survey_scale.science.repeats import repeat_pairs_block

    n = 4  # two stars, two nights each; star B is a cool star fitted hot
    data = {
        "lmjd": np.array([1, 2, 1, 2]),
        "labels": np.full((n, 2), 9000.0),
        "label_err": np.full((n, 2), 100.0),
        "fit_flags": np.zeros(n, np.uint8),
        "snr_g": np.full(n, 50.0, np.float32),
        "teff_cool": np.array([8500.0, 8500.0, 5000.0, 5000.0]),
        "chi2_red_cool": np.array([3.0, 3.0, 1.0, 1.0]),
        "chi2_red_hot": np.full(n, 2.0),
    }
    params = {"snr_column": "snr_g", "teff_index": 0, "snr_tolerance": 0.2, "bad_flags": 8}
    pairs = repeat_pairs_block(data, np.array(["A", "A", "B", "B"]), params)
    assert pairs["delta"].shape[0] == 1
