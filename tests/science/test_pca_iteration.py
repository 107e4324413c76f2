"""The iterated PCA on numpy (issue 24): refits without the candidates each pass flags, with small callbacks.

:func:`survey_scale.science.pca.iterated_pca` with (1) made-up statistics, to follow the rule pass by pass,
and (2) the real fit and diagnostics on in-memory spectra (:func:`survey_scale.science.pca.fit_pca_arrays`,
:func:`survey_scale.science.pca.diagnostics_block`), where the emission stars leave the training set.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from survey_scale.core.masks import clean_window_mask
from survey_scale.core.wavelength import wavelength_grid
from survey_scale.science.emission import derive_thresholds
from survey_scale.science.pca import (
    PCAModel,
    RefitSettings,
    diagnostics_block,
    fit_pca_arrays,
    iterated_pca,
    training_candidates,
)

ROWS = np.arange(0, 240, 2)  # 120 candidates among the survey's rows
EMITTERS, ERRONEOUS, OWNER = ROWS[:8], ROWS[8:10], ROWS[10]


def dummy_model(n: int) -> PCAModel:
    z = np.zeros(1)
    return PCAModel(z, z + 1, z > 0, z[:, None], z + 1, z[:, None], z[:, None], z + 1, z, z, {"pass": n})


class Passes:
    """``fit`` and ``statistics`` callbacks: each pass's model and training rows are recorded; the statistics
    flag :data:`EMITTERS` (Hα excess), :data:`ERRONEOUS` (χ²) always, and :data:`OWNER` (a component of its own)
    under the models listed in ``owner_passes``."""

    def __init__(self, owner_passes: tuple[int, ...] = (1,)) -> None:
        self.trained: list[np.ndarray] = []
        self.owner_passes = owner_passes
        rng = np.random.default_rng(3)
        self.base = {
            "halpha_excess": 0.01 * rng.standard_normal(ROWS.size),
            "halpha_excess_err": np.full(ROWS.size, 0.01),
            "halpha_chi2": np.ones(ROWS.size),
            "pca_chi2": 10 ** (0.05 * rng.standard_normal(ROWS.size)),
            "pca_local_z": 2.0 * 10 ** (0.05 * rng.standard_normal(ROWS.size)),
        }

    def fit(self, n: int, train: np.ndarray) -> PCAModel:
        assert n == len(self.trained) + 1
        self.trained.append(train.copy())
        return dummy_model(n)

    def statistics(self, model: PCAModel) -> dict[str, np.ndarray]:
        stats = {k: v.copy() for k, v in self.base.items()}
        stats["halpha_excess"][np.isin(ROWS, EMITTERS)] = 1.0
        stats["pca_chi2"][np.isin(ROWS, ERRONEOUS)] = 1e4
        share = np.full(ROWS.size, 0.01)
        if model.meta["pass"] in self.owner_passes:
            share[ROWS == OWNER] = 0.5
        return {**stats, "component_share": share}


def test_each_refit_drops_what_the_previous_pass_flagged() -> None:
    passes = Passes(owner_passes=(1,))
    model = iterated_pca(ROWS, passes.fit, passes.statistics, RefitSettings(n_refits=2))
    flagged = np.r_[EMITTERS, ERRONEOUS]
    np.testing.assert_array_equal(passes.trained[0], ROWS)  # pass 1: every candidate
    np.testing.assert_array_equal(passes.trained[1], ROWS[~np.isin(ROWS, [*flagged, OWNER])])
    # pass 2's model no longer has a component of OWNER's own: it is back in pass 3's training set
    np.testing.assert_array_equal(passes.trained[2], ROWS[~np.isin(ROWS, flagged)])
    assert model.meta["pass"] == 3 and model.meta["final_pass"] == 3
    # the thresholds are those of the final pass's unflagged candidates
    stats = passes.statistics(model)
    keep = ~np.isin(ROWS, flagged)
    stats.pop("component_share")
    assert model.meta["thresholds"] == derive_thresholds({k: v[keep] for k, v in stats.items()}, 20.0, 4.0)
    assert f"measured on the {keep.sum()} candidates" in model.meta["threshold_rule"]


def test_the_refits_stop_when_the_training_set_no_longer_changes() -> None:
    passes = Passes(owner_passes=())
    model = iterated_pca(ROWS, passes.fit, passes.statistics, RefitSettings(n_refits=5))
    assert len(passes.trained) == 2 and model.meta["final_pass"] == 2  # pass 2 flags what pass 1 did
    one = Passes()
    assert iterated_pca(ROWS, one.fit, one.statistics, RefitSettings(n_refits=0)).meta["final_pass"] == 1
    assert len(one.trained) == 1


def test_fixed_thresholds_and_the_component_share_rule() -> None:
    passes = Passes(owner_passes=(1, 2))
    settings = RefitSettings(n_refits=1, max_component_share=0.6, threshold=2.0, bad_chi2_threshold=1e5)
    iterated_pca(ROWS, passes.fit, passes.statistics, settings)
    assert len(passes.trained) == 1  # nothing beyond the fixed limits: the training set is final
    passes = Passes(owner_passes=(1, 2))
    iterated_pca(ROWS, passes.fit, passes.statistics, replace(settings, max_component_share=0.4))
    np.testing.assert_array_equal(passes.trained[1], ROWS[ROWS != OWNER])


def test_training_candidates_take_the_good_spectra_and_a_seeded_subset() -> None:
    rng = np.random.default_rng(0)
    snr, clean = rng.uniform(0, 200, 1000), rng.uniform(0.8, 1.0, 1000)
    rows = training_candidates(snr, clean, 50.0, 0.95, None, 0)
    np.testing.assert_array_equal(rows, np.flatnonzero((snr > 50) & (clean >= 0.95)))
    sub = training_candidates(snr, clean, 50.0, 0.95, 100, 0)
    assert sub.size == 100 and np.isin(sub, rows).all() and (np.diff(sub) > 0).all()
    np.testing.assert_array_equal(sub, training_candidates(snr, clean, 50.0, 0.95, 100, 0))
    assert not np.array_equal(sub, training_candidates(snr, clean, 50.0, 0.95, 100, 1))


def test_emission_stars_leave_the_training_set_of_a_real_fit() -> None:
    """The real fit and diagnostics on in-memory spectra: the Hα emitters of pass 1 are out of pass 2."""
    wave = wavelength_grid()
    rng = np.random.default_rng(1)
    n = 160
    teff = rng.uniform(0.0, 1.0, n)
    flux = np.ones((n, wave.size))
    for c, width in ((4341.7, 9.0), (4862.7, 10.0), (6564.6, 12.0), (4102.9, 8.0), (3970.1, 8.0)):
        flux -= (0.3 + 0.3 * teff)[:, None] * np.exp(-0.5 * ((wave - c) / width) ** 2)
    for c in rng.uniform(4000, 8800, 20):
        flux -= (0.05 + 0.1 * (1 - teff))[:, None] * np.exp(-0.5 * ((wave - c) / 2.0) ** 2)
    emitters = np.arange(n) % 10 == 0
    flux[emitters] += 0.8 * np.exp(-0.5 * ((wave - 6564.6) / 3.0) ** 2)
    flux += rng.normal(0.0, 0.01, flux.shape)
    ivar = np.full(flux.shape, 1e4)
    rows = np.arange(n)
    clean = clean_window_mask(wave)
    trained: list[np.ndarray] = []

    def fit(k: int, train: np.ndarray) -> PCAModel:
        trained.append(train)
        return fit_pca_arrays(flux[train], ivar[train], clean, 5, {"pass": k})

    def statistics(model: PCAModel) -> dict[str, np.ndarray]:
        return diagnostics_block({"norm_flux": flux[rows], "norm_ivar": ivar[rows]}, {"model": model})

    model = iterated_pca(rows, fit, statistics, RefitSettings(n_refits=1, max_component_share=1.0))
    assert model.meta["final_pass"] == 2 and model.meta["n_train"] == trained[1].size
    assert not np.isin(np.flatnonzero(emitters), trained[1]).any()  # every emitter is out of the refit
    assert trained[1].size >= 0.8 * n  # and few others
    assert {"excess_offset", "excess_model_sigma", "bad_chi2_threshold"} <= set(model.meta["thresholds"])
