"""E(B−V) from adjacent-band colour excesses (SPEC §7, P1 §4)."""

from __future__ import annotations

import numpy as np
import pytest

from survey_scale.science.extinction import COLOR_ERROR_FLOOR, ebv_from_colors, ks_extinction

R = {"g": 3.8, "BP": 3.5, "r": 2.6, "i": 1.9, "RP": 1.9 - 0.05, "J": 0.82, "H": 0.52}
INTRINSIC = {"g": -0.2, "BP": -0.1, "r": 0.0, "i": 0.1, "RP": 0.15, "J": 0.3, "H": 0.35}


def _stars(ebv: np.ndarray, err: float, seed: int) -> tuple[dict, dict, dict]:
    rng = np.random.default_rng(seed)
    n = ebv.size
    mags = {b: 12.0 + INTRINSIC[b] + R[b] * ebv + rng.normal(0, err, n) for b in R}
    errors = {b: np.full(n, err) for b in R}
    intrinsic = {b: np.full(n, INTRINSIC[b]) for b in R}
    return mags, errors, intrinsic


def test_recovers_ebv_with_a_propagated_error() -> None:
    truth = np.random.default_rng(0).uniform(0, 2, 4000)
    mags, errors, intrinsic = _stars(truth, 0.02, 1)
    ebv, ebv_err, n_colors = ebv_from_colors(mags, errors, intrinsic, R)
    assert (n_colors == 6).all()  # 7 bands, 6 adjacent colours
    pull = (ebv - truth) / ebv_err
    assert abs(np.median(ebv - truth)) < 0.003
    # adjacent colours share a band with opposite signs, so their errors partly cancel in the mean: P1's
    # propagation, which treats the colours as independent, is conservative
    assert 0.5 < np.std(pull) < 1.0


def test_missing_bands_pair_with_the_next_available_and_the_floor_applies() -> None:
    truth = np.array([0.5, 0.5, 0.5])
    mags, errors, intrinsic = _stars(truth, 0.0, 2)
    mags["r"][0] = np.nan  # star 0: BP pairs with i
    for b in R:
        if b not in ("J", "H"):
            mags[b][1] = np.nan  # star 1: J - H only
    for b in R:
        if b != "J":
            mags[b][2] = np.nan  # star 2: one band, no colour
    ebv, ebv_err, n_colors = ebv_from_colors(mags, errors, intrinsic, R)
    assert n_colors.tolist() == [5, 1, 0]
    assert ebv[:2] == pytest.approx([0.5, 0.5])
    assert ebv_err[1] == pytest.approx(COLOR_ERROR_FLOOR / (R["J"] - R["H"]))  # errors 0: the floor
    assert np.isnan(ebv[2]) and np.isnan(ebv_err[2])
    aks, aks_err = ks_extinction(ebv[:2], ebv_err[:2], 0.35)
    assert aks == pytest.approx([0.175, 0.175]) and aks_err[1] == pytest.approx(0.35 * ebv_err[1])
    with pytest.raises(ValueError, match="Ks is never used"):
        ebv_from_colors(mags, errors, intrinsic, R, bands=("J", "H", "Ks"))
