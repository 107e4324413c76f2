"""The survey-wide reductions' science (SPEC §6): polynomials, chi2ratio, uniqflag, repeat pairs, calibration."""

from __future__ import annotations

import numpy as np
import pytest

from survey_scale.science.chi2ratio import (
    BANDWIDTHS,
    LOG_CHI2_EDGES,
    Chi2Model,
    cell_statistics,
    chi2_histogram_block,
    fit_chi2_model,
)
from survey_scale.science.poly2d import Poly2D, design_matrix, fit_poly2d, n_terms, robust_sigma
from survey_scale.science.repeats import (
    ErrorCalibration,
    concat_pairs,
    fit_error_calibration,
    pair_pulls,
    precision_table,
    repeat_pairs_block,
    sort_pairs,
    uniqflag,
    usable_fits,
)

LABELS = ("teff", "logg")


def test_design_matrix_terms() -> None:
    a = design_matrix(np.array([2.0]), np.array([3.0]), 3)
    assert a.shape == (1, n_terms(3)) == (1, 10)
    assert a[0].tolist() == [1, 2, 3, 4, 6, 9, 8, 12, 18, 27]


def test_poly2d_recovers_a_cubic_despite_outliers_and_clamps_outside() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.uniform(3.9, 4.5, 400), rng.uniform(0.7, 2.5, 400)

    def truth(x, y):
        return 1 + 2 * (x - 4.2) - 0.5 * (y - 1.5) ** 2 + 0.3 * (x - 4.2) ** 3

    z = truth(x, y) + rng.normal(0, 0.01, x.size)
    z[:20] += 5.0  # gross outliers: clipped
    poly = fit_poly2d(x, y, z)
    assert poly.order == 3 and poly.n_clipped >= 20
    assert np.abs(poly(x[20:], y[20:]) - truth(x[20:], y[20:])).max() < 0.02  # noise 0.01
    assert poly(10.0, 100.0) == pytest.approx(poly(x.max(), y.max()))  # clamped, not extrapolated
    assert Poly2D.from_dict(poly.to_dict()) == poly


def test_poly2d_lowers_the_order_for_few_points() -> None:
    poly = fit_poly2d([1.0, 2.0, 3.0], [1.0, 1.5, 2.5], [1.0, 2.0, 3.0])
    assert poly.order == 1
    with pytest.raises(ValueError, match="no point"):
        fit_poly2d([np.nan], [1.0], [1.0])


def test_robust_sigma_of_a_normal_sample() -> None:
    rng = np.random.default_rng(0)
    assert robust_sigma(rng.normal(0, 2.0, 20000)) == pytest.approx(2.0, rel=0.03)
    assert np.isnan(robust_sigma([np.nan]))


def _chi2_sample(n: int, seed: int) -> dict[str, np.ndarray]:
    """χ² whose median and dispersion depend on S/N and Teff (as LAMOST's do)."""
    rng = np.random.default_rng(seed)
    teff = 10 ** rng.uniform(3.85, 4.5, n)
    snr = 10 ** rng.uniform(0.8, 2.6, n)
    median = 1.0 + 0.5 * np.log10(snr) + 0.2 * (np.log10(teff) - 4.0)
    sigma = 0.1 + 0.1 * np.log10(snr)
    chi2 = median + sigma * rng.normal(size=n)
    labels = np.stack([teff, np.full(n, 4.0)], axis=1)
    return {"labels": labels, "chi2_red": chi2, "snr_g": snr}


PARAMS = {"teff_index": 0, "snr_column": "snr_g"}


def test_chi2_histogram_is_additive_and_skips_unusable_rows() -> None:
    data = _chi2_sample(3000, 0)
    whole = chi2_histogram_block(data, PARAMS)["counts"]
    halves = (slice(0, 1000), slice(1000, None))
    parts = [chi2_histogram_block({k: v[s] for k, v in data.items()}, PARAMS)["counts"] for s in halves]
    assert np.array_equal(whole, parts[0] + parts[1])
    assert whole.sum() == 3000
    data["chi2_red"][:5] = np.nan
    data["snr_g"][5:10] = -1
    assert chi2_histogram_block(data, PARAMS)["counts"].sum() == 2990


def test_cell_statistics_match_numpy_median_and_mad() -> None:
    rng = np.random.default_rng(3)
    chi2 = rng.lognormal(0.5, 0.3, 5000)
    data = {"labels": np.full((5000, 2), 10000.0), "chi2_red": chi2, "snr_g": np.full(5000, 50.0)}
    stats = cell_statistics(chi2_histogram_block(data, PARAMS)["counts"])
    i, j = np.nonzero(stats["n"])
    assert stats["n"][i, j].tolist() == [5000]
    assert stats["median"][i, j][0] == pytest.approx(np.median(chi2), rel=0.012)
    assert stats["sigma"][i, j][0] == pytest.approx(robust_sigma(chi2), rel=0.03)
    assert LOG_CHI2_EDGES[1] - LOG_CHI2_EDGES[0] == pytest.approx(0.005)


def test_chi2ratio_is_a_standard_score() -> None:
    data = _chi2_sample(60000, 1)
    model = fit_chi2_model(chi2_histogram_block(data, PARAMS)["counts"])
    ratio = model.chi2ratio(data["chi2_red"], data["labels"][:, 0], data["snr_g"])
    assert ratio.dtype == np.float32
    assert abs(np.median(ratio)) < 0.05
    assert robust_sigma(ratio) == pytest.approx(1.0, abs=0.06)
    assert Chi2Model.from_dict(model.to_dict()) == model
    assert np.isnan(model.chi2ratio(np.array([2.0]), np.array([np.nan]), np.array([50.0]))[0])
    few = fit_chi2_model(chi2_histogram_block(_chi2_sample(10, 2), PARAMS)["counts"], min_count=50)
    assert (np.asarray(few.bandwidth) == BANDWIDTHS[-1]).all()  # no cell reaches 50: all pooled, widest kernel
    assert np.isfinite(np.asarray(few.median)).all() and (np.asarray(few.sigma) > 0).all()
    with pytest.raises(ValueError, match="too few"):
        fit_chi2_model(chi2_histogram_block(_chi2_sample(1, 2), PARAMS)["counts"])


def test_uniqflag_ranks_visits_by_decreasing_snr() -> None:
    star = np.array([0, 1, 0, 0, 1, 2])
    snr = np.array([10.0, 5.0, 30.0, np.nan, 5.0, 1.0])
    assert uniqflag(snr, star).tolist() == [2, 1, 1, 3, 2, 1]  # NaN last; a tie keeps row order


def _pair_block() -> tuple[dict[str, np.ndarray], np.ndarray]:
    star = np.array([0, 0, 0, 1, 1, 2])
    data = {
        "specid": np.array(["c", "a", "b", "d", "e", "f"], dtype=object),
        "lmjd": np.array([1, 2, 2, 5, 5, 7]),
        "snr_g": np.array([50.0, 55.0, 52.0, 30.0, 31.0, 80.0]),
        "labels": np.array([[9000.0, 4.0], [9100, 4.1], [9050, 4.05], [20000, 3.5], [20100, 3.6], [8000, 4.2]]),
        "label_err": np.full((6, 2), 0.1) * [[1000.0, 1.0]],
        "fit_flags": np.zeros(6, np.uint8),
    }
    return data, star


def test_repeat_pairs_need_different_nights_similar_snr_and_usable_fits() -> None:
    data, star = _pair_block()
    params = {"snr_column": "snr_g", "teff_index": 0, "snr_tolerance": 0.2, "bad_flags": 4 | 8}
    pairs = sort_pairs(repeat_pairs_block(data, star, params))
    # star 0: (a, c) and (b, c) on different nights; (a, b) share a night; star 1: one night; star 2: alone
    assert pairs["snr1"].tolist() == [52.0, 55.0] and pairs["snr2"].tolist() == [50.0, 50.0]  # higher S/N first
    assert pairs["delta"][1].tolist() == [100.0, pytest.approx(0.1)]  # a − c
    assert pairs["delta"].dtype == np.float32
    data["fit_flags"][0] = 4  # c did not converge
    assert repeat_pairs_block(data, star, params)["delta"].shape == (0, 2)
    data["fit_flags"][0] = 0
    data["snr_g"][0] = 80.0  # c's S/N now differs by > 20 %
    assert repeat_pairs_block(data, star, params)["delta"].shape == (0, 2)
    both = concat_pairs(pairs, pairs)
    assert both["delta"].shape == (4, 2)
    # the same pairs in another row order give the same table
    perm = np.array([5, 2, 0, 4, 1, 3])
    data["snr_g"][0] = 50.0
    shuffled = sort_pairs(repeat_pairs_block({k: v[perm] for k, v in data.items()}, star[perm], params))
    assert all(np.array_equal(shuffled[k], pairs[k]) for k in pairs)


def test_same_star_pairs_of_many_stars() -> None:
    from survey_scale.science.repeats import _same_star_pairs

    star = np.array([3, 1, 3, 2, 3, 1, 7])
    i, j = _same_star_pairs(star)
    assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == [(0, 2), (0, 4), (1, 5), (2, 4)]


def _synthetic_pairs(n: int, seed: int, true_scale: float) -> dict[str, np.ndarray]:
    """Pairs whose formal errors are ``true_scale`` times too small."""
    rng = np.random.default_rng(seed)
    snr = 10 ** rng.uniform(1.0, 2.5, n)
    teff = 10 ** rng.uniform(3.9, 4.4, n)
    err = np.stack([3000.0 / snr, 1.0 / snr], axis=1)
    delta = rng.normal(size=(n, 2)) * np.sqrt(2) * err * true_scale
    return {
        "specid1": np.arange(n).astype(str),
        "specid2": (np.arange(n) + n).astype(str),
        "delta": delta,
        "err1": err,
        "err2": err,
        "snr1": snr,
        "snr2": snr,
        "teff1": teff,
        "teff2": teff,
    }


def test_precision_table_is_scatter_over_root_two() -> None:
    pairs = _synthetic_pairs(6000, 0, 1.0)
    table = precision_table(pairs, LABELS, bins=(10, 1000))
    expect = np.median(3000.0 / pair_snr_of(pairs))
    assert table["n_pairs"].tolist() == [6000]
    assert table["precision"][0, 0] == pytest.approx(expect, rel=0.25)
    hot = precision_table(pairs, LABELS, bins=(10, 1000), teff_min=15000)
    assert 0 < hot["n_pairs"][0] < 6000
    assert np.isnan(precision_table(pairs, LABELS, bins=(1, 2))["precision"]).all()


def pair_snr_of(pairs):
    return 0.5 * (pairs["snr1"] + pairs["snr2"])


def test_error_calibration_restores_unit_pulls() -> None:
    pairs = _synthetic_pairs(3000, 1, 2.5)
    assert robust_sigma(pair_pulls(pairs)[:, 0]) == pytest.approx(2.5, rel=0.1)
    cal = fit_error_calibration(pairs, LABELS)
    s = cal.scale(pairs["teff1"], pairs["snr1"])
    pulls = pair_pulls(pairs, s, s)
    for k in range(2):
        assert robust_sigma(pulls[:, k]) == pytest.approx(1.0, abs=0.08)
    assert ErrorCalibration.from_dict(cal.to_dict()) == cal
    assert cal.calibrate(pairs["err1"][:2], pairs["teff1"][:2], pairs["snr1"][:2]).dtype == np.float32


def test_error_calibration_with_too_few_pairs_keeps_formal_errors() -> None:
    cal = fit_error_calibration(_synthetic_pairs(10, 2, 3.0), LABELS)
    assert cal.log_scale == (None, None)
    assert np.array_equal(cal.scale(np.array([1e4]), np.array([50.0])), [[1.0, 1.0]])


def test_labels_not_fitted_do_not_spoil_repeat_pairs_calibration_or_the_catalog() -> None:
    """An emulator with a subset of the labels: NaN columns (labels not fitted) beside finite ones."""
    from survey_scale.core.labels import LABEL_NAMES
    from survey_scale.science.label_catalog import labels_catalog_block

    data, star = _pair_block()
    n = len(star)
    labels = np.full((n, len(LABEL_NAMES)), np.nan)
    err = np.full((n, len(LABEL_NAMES)), np.nan)
    labels[:, :2], err[:, :2] = data["labels"], data["label_err"]
    data.update(labels=labels, label_err=err)
    params = {"snr_column": "snr_g", "teff_index": 0, "snr_tolerance": 0.2, "bad_flags": 4 | 8}
    assert usable_fits(data, 4 | 8).all()
    pairs = sort_pairs(repeat_pairs_block(data, star, params))
    assert pairs["delta"].shape == (2, len(LABEL_NAMES))
    assert np.isfinite(pairs["delta"][:, :2]).all() and np.isnan(pairs["delta"][:, 2:]).all()
    table = precision_table(pairs, LABEL_NAMES, bins=(0, 1000))
    assert np.isnan(table["precision"][0, 2:]).all()
    calibration = fit_error_calibration(pairs, LABEL_NAMES, min_pairs=1, min_per_cell=1)
    assert all(p is None for p in calibration.log_scale[2:])
    # a failed fit (every label NaN) is still unusable
    data["labels"][0] = np.nan
    assert not usable_fits(data, 4 | 8)[0]
    # the catalog: NaN columns and labels_fitted on LABEL_NAMES' bits
    block = {
        "specid": data["specid"],
        "labels": labels,
        "label_err": err,
        "labels_fitted": np.full(n, 3, np.uint16),
        "fit_flags": np.zeros(n, np.uint8),
    }
    cat = labels_catalog_block(block, {"label_names": list(LABEL_NAMES)})
    assert np.isfinite(cat["logg"][1:]).all() and np.isnan(cat["fe_h"]).all() and np.isnan(cat["si_h_err"]).all()
    assert (cat["labels_fitted"] == 3).all()
    # a cube whose label dimension is the emulator's own order maps its bits onto LABEL_NAMES'
    own = labels_catalog_block({**block, "labels": labels[:, [1, 0]]}, {"label_names": ["logg", "teff"]})
    assert (own["labels_fitted"] == 3).all()
    del block["labels_fitted"]  # a cube fitted before labels_fitted existed: the papers' missing flag
    assert (labels_catalog_block(block, {"label_names": list(LABEL_NAMES)})["labels_fitted"] == -9).all()
