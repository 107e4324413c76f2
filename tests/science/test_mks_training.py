"""The MKs training loop on numpy (issue 24): sets, networks, binaries out and retrained, MCMC or its fallback.

:func:`survey_scale.science.mks.train_mks_model` with tiny settings on synthetic columns and spectra; the two
callbacks (read the training spectra, predict over the test spectra) are plain numpy and record their calls.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from survey_scale.core.wavelength import wavelength_grid
from survey_scale.science import mks as m

WAVE = wavelength_grid()[::20]
N = 420
TINY = m.TrainingSettings(
    network=m.NetworkSettings(hidden=(8,), dropout=0.0, learning_rate=0.01, max_epochs=40, patience=10),
    binary_iterations=1,
    min_error_stars=30,
    mcmc_walkers=10,
    mcmc_steps=120,
    mcmc_burn=20,
)


def survey(seed: int = 0, n_binaries: int = 30) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Columns of :data:`~survey_scale.science.mks.SET_COLUMNS`, S/N, hot-star mask and spectra (n, P) of ``N``
    one-visit stars at 1 mas whose spectra encode MKs; the first ``n_binaries`` are 1.5 mag brighter in Ks
    (unresolved binaries: their spectrum says single star, their geometric MKs too bright)."""
    rng = np.random.default_rng(seed)
    true = rng.uniform(-3.0, 1.0, N)
    patterns = rng.standard_normal((3, WAVE.size))
    flux = (
        1.0
        + 0.05 * true[:, None] * patterns[0]
        + 0.02 * np.tanh(true)[:, None] * patterns[1]
        + 0.005 * rng.standard_normal((N, WAVE.size))
    )
    aks = np.full(N, 0.05)
    ks = true + aks + 10.0 - np.where(np.arange(N) < n_binaries, 1.5, 0.0)
    parallax, parallax_error = np.full(N, 1.0), np.full(N, 0.02)
    mks_geo, mks_geo_err = m.geometric_mks(ks, np.full(N, 0.02), aks, np.full(N, 0.01), parallax, parallax_error)
    cols = {
        "star_id": np.array([f"S{i:05d}" for i in range(N)]),
        "em_flag": (rng.random(N) < 0.1).astype(np.int8),
        "bad_spectrum_flag": np.zeros(N, np.int8),
        "mks_geo": mks_geo + 0.05 * rng.standard_normal(N),
        "mks_geo_err": mks_geo_err,
        "parallax": parallax,
        "parallax_error": parallax_error,
        "parallax_offset": np.zeros(N),
        "Ks": ks,
        "Ks_err": np.full(N, 0.02),
        "aks": aks,
        "aks_err": np.full(N, 0.01),
    }
    snr = np.where(rng.random(N) < 0.7, 120.0, 30.0)
    return cols, snr, np.ones(N, bool), flux.astype(np.float32)


class Callbacks:
    """``read_flux`` and ``predict`` over in-memory spectra, recording the rows they are given."""

    def __init__(self, flux: np.ndarray, star_id: np.ndarray, em_flag: np.ndarray) -> None:
        self.flux, self.star_id, self.em_flag, self.read, self.predicted = flux, star_id, em_flag, [], []

    def read_flux(self, rows: np.ndarray) -> np.ndarray:
        self.read.append(rows.copy())
        return self.flux[rows]

    def predict(self, networks, rows: np.ndarray) -> dict[str, np.ndarray]:
        self.predicted.append((tuple(networks), rows.copy()))
        mks, spread = m.predict_own_kind(networks, self.flux[rows], self.star_id[rows], self.em_flag[rows] == 1)
        return {"mks": mks, "mks_spread": spread}


def train(settings: m.TrainingSettings, **survey_args) -> tuple[m.MKsModel, Callbacks, tuple]:
    cols, snr, hot, flux = survey(**survey_args)
    calls = Callbacks(flux, cols["star_id"], cols["em_flag"])
    return m.train_mks_model(cols, snr, hot, WAVE, settings, calls.read_flux, calls.predict), calls, (cols, snr, hot)


@pytest.fixture(scope="module")
def trained() -> tuple[m.MKsModel, Callbacks, tuple]:
    return train(TINY)


def test_the_callbacks_see_the_sets(trained) -> None:
    model, calls, (cols, snr, hot) = trained
    train_rows, test_rows = m.mks_sets({k: v for k, v in cols.items()}, snr, hot, TINY)
    assert len(calls.read) == 1  # the training spectra are read once
    np.testing.assert_array_equal(calls.read[0], train_rows)
    # one prediction over the test spectra per training: the first and one per binary iteration
    assert len(calls.predicted) == TINY.binary_iterations + 1
    for names, rows in calls.predicted:
        assert names == m.NETWORKS
        np.testing.assert_array_equal(rows, test_rows)
    assert not np.isin(train_rows, test_rows).any() and (snr[train_rows] > TINY.min_snr).all()
    assert model.meta["n_train_before_binary_cuts"] == train_rows.size
    assert model.meta["n_test"] == test_rows.size


def test_binaries_leave_the_training_set(trained) -> None:
    model, _, (cols, snr, hot) = trained
    train_rows, _ = m.mks_sets(cols, snr, hot, TINY)
    history = model.meta["binary_iterations"]
    assert [h["iteration"] for h in history] == [1]
    removed = history[-1]["training_binaries_removed"]
    injected = int((train_rows < 30).sum())  # the 1.5 mag too bright ones among the training spectra
    assert 0.7 * injected <= removed <= injected + 5
    assert model.meta["n_train"] == train_rows.size - removed  # the last iteration's binaries are out
    assert set(history[-1]["max_likelihood"]) == set(m.PARAMETERS)


def test_too_few_emission_test_stars_take_the_non_emission_model(trained) -> None:
    model, _, _ = trained
    post = model.meta["posterior"]
    assert post["emission"]["uses"] == "non_emission" and post["emission"]["n_stars"] < TINY.min_error_stars
    assert set(model.samples) == {"non_emission"}
    n_samples = TINY.mcmc_walkers * (TINY.mcmc_steps - TINY.mcmc_burn)
    assert model.samples["non_emission"].shape == (n_samples, len(m.PARAMETERS))
    assert model.error_model["emission"] == model.error_model["non_emission"]
    trained = post["non_emission"]["trained"]  # the training stars' spectra: their own model (maximum likelihood)
    assert trained["n_spectra"] > 50 and trained["sigma_int_trained"] > 0
    assert model.error_model["non_emission"] == {
        **{p: post["non_emission"][p]["mean"] for p in ("sigma_int", "sigma_s100", "kappa")},
        **{k: trained[k] for k in m.TRAINED_ERRORS},
    }
    assert set(model.networks) == set(m.NETWORKS) and set(model.meta["networks"]) == set(m.NETWORKS)


def test_each_network_gets_its_own_mcmc_and_training_is_reproducible(trained) -> None:
    settings = replace(TINY, binary_iterations=0, min_error_stars=5)
    model, calls, _ = train(settings)
    assert len(calls.predicted) == 1 and model.meta["binary_iterations"] == []
    assert set(model.samples) == set(m.NETWORKS)
    assert "uses" not in model.meta["posterior"]["emission"]
    assert model.meta["posterior"]["emission"]["n_stars"] >= 5
    again, _, _ = train(settings)
    for name in m.NETWORKS:
        np.testing.assert_array_equal(model.samples[name], again.samples[name])
        for net, net2 in zip(model.networks[name].networks, again.networks[name].networks, strict=True):
            for w, w2 in zip(net.weights, net2.weights, strict=True):
                np.testing.assert_array_equal(w, w2)


def test_sets_leave_out_bad_and_cool_stars_and_draw_a_seeded_subset() -> None:
    cols, snr, hot, _ = survey()
    cols = {k: (v if k == "star_id" else v.astype(np.float64)) for k, v in cols.items()}
    cols["bad_spectrum_flag"][:50] = 1
    hot[50:100] = False
    train_rows, test_rows = m.mks_sets(cols, snr, hot, TINY)
    assert not np.isin(np.arange(100), np.r_[train_rows, test_rows]).any()
    small = replace(TINY, max_train=60)
    sub, sub_test = m.mks_sets(cols, snr, hot, small)
    assert sub.size == 60 and np.isin(sub, train_rows).all() and (np.diff(sub) > 0).all()
    np.testing.assert_array_equal(sub_test, test_rows)
    np.testing.assert_array_equal(m.mks_sets(cols, snr, hot, small)[0], sub)  # the same seed, the same subset
    assert not np.array_equal(m.mks_sets(cols, snr, hot, replace(small, seed=1))[0], sub)
    # a bright star with a poorer parallax trains (P1's bright end), never tests
    cols["parallax_error"][120] = 0.2  # ϖ/σ = 5: below min_parallax_snr, above bright_min_parallax_snr
    bright_row = 120
    cols["mks_geo"][bright_row] = -2.5
    snr[bright_row] = 120.0
    with_bright, bright_test = m.mks_sets(cols, snr, hot, TINY)
    in_train_folds = m.star_fold(cols["star_id"][[bright_row]])[0] != 0
    assert (bright_row in with_bright) == in_train_folds and bright_row not in bright_test
    assert bright_row not in m.mks_sets(cols, snr, hot, replace(TINY, bright_mks=None))[0]


def test_too_few_stars_raise() -> None:
    cols, snr, _, flux = survey()
    calls = Callbacks(flux, cols["star_id"], cols["em_flag"])
    with pytest.raises(m.TooFewStars, match="at least 50 and 10"):
        m.train_mks_model(cols, snr, np.zeros(N, bool), WAVE, TINY, calls.read_flux, calls.predict)
    assert calls.read == []  # nothing read
    assert issubclass(m.TooFewStars, m.TooFewSpectra)
