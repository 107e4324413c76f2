"""The Hα emission threshold (SPEC §4, P1 §3; issue 15): per spectrum, from its noise and from how well the
PCA describes it."""

from __future__ import annotations

import numpy as np
import pytest

from survey_scale.science.emission import emission_flags, excess_threshold


def test_threshold_rises_for_spectra_the_pca_describes_poorly() -> None:
    stats = {"halpha_excess_err": np.full(3, 0.002), "pca_chi2": np.array([0.7, 1.0, 9.0])}
    thresholds = {"excess_offset": 0.0, "excess_model_sigma": 0.01}
    limit = excess_threshold(stats, thresholds, 3.5)
    assert limit[0] == pytest.approx(limit[1]) == pytest.approx(3.5 * np.hypot(0.002, 0.01))
    assert limit[2] == pytest.approx(3.5 * np.hypot(0.002, 0.03))  # 3x the typical reconstruction error
    # without pca_chi2 (older cubes) the model variance is not scaled
    assert excess_threshold({"halpha_excess_err": stats["halpha_excess_err"]}, thresholds, 3.5)[2] == limit[1]


def test_noise_and_model_terms_have_their_own_multipliers() -> None:
    thresholds = {"excess_offset": 0.001, "excess_model_sigma": 0.01}
    noisy = {"halpha_excess_err": np.array([0.1]), "pca_chi2": np.array([1.0])}  # S/N ~ 5: the noise dominates
    bright = {"halpha_excess_err": np.array([1e-4]), "pca_chi2": np.array([1.0])}  # the model error dominates
    assert excess_threshold(noisy, thresholds, 2.75, 4.0)[0] == pytest.approx(0.001 + np.hypot(0.275, 0.04))
    assert excess_threshold(bright, thresholds, 2.75, 4.0)[0] == pytest.approx(0.041, rel=1e-3)
    stats = {
        "halpha_excess": np.array([0.2, 0.035]),
        "halpha_excess_err": np.array([0.06, 1e-3]),
        "pca_chi2": np.array([1.0, 1.0]),
        "pca_local_z": np.array([3.0, 3.0]),
    }
    limits = {**thresholds, "bad_chi2_threshold": 5.0, "bad_local_z_threshold": 15.0}
    em, bad = emission_flags(stats, limits, 2.75, model_n_sigma=4.0)
    assert em.tolist() == [1, 0] and bad.tolist() == [0, 0]  # a faint emitter at 3.3σ; a bright star at 3.4 model σ
    em, _ = emission_flags(stats, limits, 3.5)  # one multiplier for both: the faint emitter is lost
    assert em.tolist() == [0, 0]
