"""MKs from spectra (SPEC §8, P1 §5): geometric MKs, the sets, the network, the MCMC uncertainty model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from survey_scale.science import mks as m


def test_geometric_mks_and_its_error() -> None:
    # A star at 1 kpc (1 mas) with Ks = 10 and A_Ks = 0.1: MKs = 10 - 0.1 + 0 - 10 = -0.1.
    mks, err = m.geometric_mks(
        np.array([10.0, 10.0]), np.array([0.02, 0.02]), np.array([0.1, 0.1]), np.array([0.01, 0.01]),
        np.array([1.0, -0.2]), np.array([0.1, 0.1]),
    )  # fmt: skip
    assert mks[0] == pytest.approx(-0.1)
    assert err[0] == pytest.approx(np.sqrt(0.02**2 + 0.01**2 + (5 / np.log(10) * 0.1) ** 2))
    assert np.isnan(mks[1]) and np.isnan(err[1])  # a negative parallax has no geometric MKs


def test_leung_bovy_parallax_correction() -> None:
    # Leung & Bovy (2019), the configuration's default
    leung_bovy = {"offset_mas": 0.0528, "slope_mas": -0.00421, "g_ref": 12.2}
    plx, corr = m.corrected_parallax(np.array([1.0, 1.0, 1.0]), np.array([12.2, 17.2, np.nan]), **leung_bovy)
    np.testing.assert_allclose(corr, [0.0528, 0.0528 - 0.00421 * 5, 0.0528])
    np.testing.assert_allclose(plx, 1.0 + corr)


def test_training_split_is_by_star_and_stable() -> None:
    rng = np.random.default_rng(0)
    stars = np.repeat([f"J{i:06d}" for i in range(2000)], 2)
    plx_snr = np.where(rng.random(stars.size) < 0.8, 20.0, 5.0)
    snr = np.where(rng.random(stars.size) < 0.7, 80.0, 30.0)
    usable = np.ones(stars.size, bool)
    train, test = m.training_split(stars, plx_snr, snr, usable, 10.0, 50.0)
    assert not (train & test).any()
    assert ((train | test) == (plx_snr > 10)).all()  # no bright supplement here
    assert (snr[train] > 50).all() and (plx_snr[test] > 10).all()
    high = (plx_snr > 10) & (snr > 50)
    assert train[high].mean() == pytest.approx(0.8, abs=0.03)  # 4/5 of the high-S/N stars train
    # both visits of a star in the high-S/N set are on the same side
    both = high.reshape(-1, 2).all(axis=1)
    assert (train.reshape(-1, 2)[both, 0] == train.reshape(-1, 2)[both, 1]).all()
    # a star keeps its side when the release grows
    train2, _ = m.training_split(np.concatenate([stars, ["K1", "K2"]]), np.r_[plx_snr, 20, 20], np.r_[snr, 80, 80],
                                 np.ones(stars.size + 2, bool), 10.0, 50.0)  # fmt: skip
    assert (train2[: stars.size] == train).all()


def _spectra(n: int, seed: int, n_pix: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Spectra whose line depths encode MKs non-linearly (a stand-in for gravity-sensitive Balmer wings)."""
    rng = np.random.default_rng(seed)
    mks = rng.uniform(-3.0, 1.5, n)
    x = np.linspace(-1, 1, n_pix)
    depth = 0.3 + 0.1 * np.tanh(mks)[:, None]
    width = 0.1 + 0.02 * mks[:, None] ** 2
    flux = 1.0 - depth * np.exp(-0.5 * (x[None, :] / width) ** 2) + 0.002 * rng.standard_normal((n, n_pix))
    return flux, mks


def test_network_learns_mks_and_predicts_in_numpy() -> None:
    import torch

    torch.set_num_threads(1)
    flux, mks = _spectra(1500, 1)
    pixels = np.ones(flux.shape[1], bool)
    pixels[:5] = False
    settings = m.NetworkSettings(max_epochs=150, patience=20, seed=3)
    net = m.train_network(flux, mks, np.full(mks.size, 0.05), pixels, settings)
    test_flux, test_mks = _spectra(400, 2)
    pred = net.predict(test_flux)
    assert np.std(pred - test_mks) < 0.15
    # NaN in a used pixel gives NaN, in an unused one does not matter
    bad = test_flux[:2].copy()
    bad[0, 100], bad[1, 0] = np.nan, np.nan
    out = net.predict(bad)
    assert np.isnan(out[0]) and out[1] == pytest.approx(pred[1])
    # the same seed and threads give the same network
    again = m.train_network(flux, mks, np.full(mks.size, 0.05), pixels, settings)
    np.testing.assert_array_equal(again.weights[0], net.weights[0])


def test_warm_started_network_continues_its_init() -> None:
    import torch

    torch.set_num_threads(1)
    flux, mks = _spectra(600, 6, n_pix=50)
    pixels, err = np.ones(50, bool), np.full(mks.size, 0.05)
    settings = m.NetworkSettings(hidden=(16, 16), learning_rate=0.01, max_epochs=300, patience=20)
    cold = m.train_network(flux, mks, err, pixels, settings)
    # a few stars fewer, as after a binary iteration: the same standardization, far fewer epochs
    keep = np.arange(mks.size) % 10 != 3
    warm = m.train_network(flux[keep], mks[keep], err[keep], pixels, settings, init=cold)
    again = m.train_network(flux[keep], mks[keep], err[keep], pixels, settings)
    assert warm.meta["warm_start"] and not again.meta["warm_start"]
    np.testing.assert_array_equal(warm.x_mean, cold.x_mean)
    assert (warm.y_mean, warm.y_scale) == (cold.y_mean, cold.y_scale)
    assert warm.meta["epochs"] < 0.7 * again.meta["epochs"], (warm.meta["epochs"], again.meta["epochs"])
    test_flux, test_mks = _spectra(400, 7, n_pix=50)
    assert np.std(warm.predict(test_flux) - test_mks) <= 1.1 * np.std(again.predict(test_flux) - test_mks)
    with pytest.raises(ValueError, match="init has layers"):
        m.train_network(flux, mks, err, pixels, replace(settings, hidden=(8,)), init=cold)
    with pytest.raises(ValueError, match="init uses 50 pixels"):
        m.train_network(flux, mks, err, np.arange(50) > 0, settings, init=cold)


def test_training_copies_only_the_networks_pixels_of_its_rows(monkeypatch) -> None:
    import tracemalloc

    import torch

    torch.set_num_threads(1)
    monkeypatch.setattr(m, "_BLOCK", 256)
    flux, mks = _spectra(4000, 8, n_pix=400)
    flux = flux.astype(np.float32)
    rows, pixels = np.arange(0, 4000, 2), np.arange(400) % 4 != 0
    job = (rows, mks[rows], np.full(rows.size, 0.05), pixels, m.NetworkSettings(hidden=(8,), max_epochs=2))
    m.train_job(flux, *job)  # torch's first-call allocations out of the measurement
    tracemalloc.start()
    try:
        net = m.train_job(flux, *job)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # one float32 copy of 2,000 spectra x 300 pixels (2.4 MB) and blocks of 256 spectra: not the float64 copies
    # of every row and pixel the training took before (~7x that)
    assert peak < 2.0 * rows.size * pixels.sum() * 4, peak
    np.testing.assert_allclose(net.x_mean, flux[rows][:, pixels].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(net.x_scale, flux[rows][:, pixels].astype(np.float64).std(axis=0), rtol=1e-6)


def test_network_pixels_leave_out_the_bands() -> None:
    wave = np.arange(3750.0, 9000.0, 1.0)
    full = m.network_pixels(wave, emission=False)
    assert not full[(wave > 5720) & (wave < 6050)].any() and full[(wave > 4000) & (wave < 4100)].all()
    clean = m.network_pixels(wave, emission=True)
    assert not clean[(wave > 6540) & (wave < 6590)].any()  # H-alpha is never a clean window
    assert clean.sum() < full.sum()


def _error_model_data(
    n: int, seed: int, eps: float, delta: float, s_int: float, s100: float, kappa: float
) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    mg_true = rng.uniform(-4, 1.5, n)
    snr = 10 ** rng.uniform(1.0, 2.5, n)
    geo_err = rng.uniform(0.05, 0.2, n)
    spread = rng.gamma(2.0, 0.1, n)  # the networks' disagreement: mostly ~0.2 mag, a tail to ~1 mag
    mg = mg_true + geo_err * rng.standard_normal(n)
    sigma = np.sqrt(s_int**2 + (s100 / (snr / 100)) ** 2 + (kappa * spread) ** 2)
    ms = (1 + eps) * mg_true + delta + sigma * rng.standard_normal(n)
    return ms, mg, geo_err, snr, spread


def test_mcmc_recovers_the_injected_uncertainty_model() -> None:
    truth = {"epsilon": -0.05, "delta": 0.1, "sigma_int": 0.25, "sigma_s100": 0.10, "kappa": 1.5}
    data = _error_model_data(3000, 4, *truth.values())
    samples, summary = m.sample_uncertainty_model(*data, n_walkers=16, n_steps=1500, n_burn=500, seed=1)
    assert samples.shape == (16 * 1000, len(m.PARAMETERS)) and tuple(truth) == m.PARAMETERS
    for name, value in truth.items():
        s = summary[name]
        width = s["p84"] - s["p16"]
        assert s["p2_5"] - width < value < s["p97_5"] + width, (name, s)
        assert abs(s["mean"] - value) < 3 * width
    assert 0.15 < summary["acceptance_fraction"] < 0.8
    # the same seed gives the same chain
    again, _ = m.sample_uncertainty_model(*data, n_walkers=16, n_steps=1500, n_burn=500, seed=1)
    np.testing.assert_array_equal(again, samples)


def test_errors_that_ignore_the_networks_disagreement_are_too_small_where_they_disagree() -> None:
    """Without κ the large-disagreement stars' pulls are far wider than 1 (the false binaries of issue 27);
    with the fitted κ they are 1 everywhere."""
    ms, mg, geo_err, snr, spread = _error_model_data(4000, 5, 0.0, 0.0, 0.2, 0.1, 1.5)
    fitted = dict(zip(m.PARAMETERS, m.max_likelihood(ms, mg, geo_err, snr, spread), strict=True))
    assert abs(fitted["kappa"] - 1.5) < 0.15 and abs(fitted["sigma_int"] - 0.2) < 0.03
    disagree = spread > 0.4
    for kappa, expect in ((0.0, (2.0, 10.0)), (fitted["kappa"], (0.9, 1.1))):
        err = np.hypot(m.mks_error(fitted["sigma_int"], fitted["sigma_s100"], snr, kappa, spread), geo_err)
        pull = np.std((ms - mg)[disagree] / err[disagree])
        assert expect[0] < pull < expect[1], (kappa, pull)


def test_cross_fit_predicts_a_training_star_with_the_network_that_never_saw_it() -> None:
    flux, mks = _spectra(400, 5, n_pix=50)
    ids = np.array([f"S{i:04d}" for i in range(400)])
    fold = m.star_fold(ids)
    train = fold != 0  # fold 0 tests, as in training_split
    settings = m.NetworkSettings(hidden=(16,), learning_rate=0.01, max_epochs=60, patience=10)
    rows = np.flatnonzero(train)
    jobs = m.cross_fit_jobs(rows, mks[train], np.full(rows.size, 0.05), np.ones(50, bool), settings, ids[train])
    cross = m.CrossFitNetworks(m.train_serially(flux, jobs), np.unique(ids[train]))
    assert len(cross.networks) == len(m.TRAINING_FOLDS)
    for k, held_out in enumerate(m.TRAINING_FOLDS):  # network k trained on every training star but fold k's
        meta = cross.networks[k].meta
        assert meta["n_train"] + meta["n_validation"] == (train & (fold != held_out)).sum()
        assert meta["settings"]["seed"] == settings.seed + k
    np.testing.assert_array_equal(cross.trained_stars, np.sort(ids[train]))
    out, spread = cross.predict(flux, ids.astype(np.dtypes.StringDType()))  # as zarr reads the cube's star_id
    for k, held_out in enumerate(m.TRAINING_FOLDS):
        rows = fold == held_out
        np.testing.assert_allclose(out[rows], cross.networks[k].predict(flux[rows]), rtol=0, atol=1e-12)
    each = np.stack([net.predict(flux) for net in cross.networks])
    np.testing.assert_allclose(out[~train], each.mean(0)[~train], rtol=0, atol=1e-12)  # the test stars: the mean
    np.testing.assert_allclose(spread[~train], each.std(0, ddof=1)[~train], rtol=0, atol=1e-12)
    assert (spread[~train] > 0).all() and np.isnan(spread[train]).all()  # three networks fitted a training star
    assert np.std(out - mks) < 0.3  # out-of-fold: every MKs is a prediction for a star its network never saw
    some = np.array([5, 0, 299, 17, 42])
    np.testing.assert_allclose(np.stack(cross.predict(flux, ids, some)), np.stack((out, spread))[:, some], atol=1e-12)


def test_cross_fit_networks_run_only_where_needed() -> None:
    """A trained star's spectrum costs one network (its held-out one), any other spectrum all of them; each kind
    predicts only its own spectra."""
    flux, mks = _spectra(200, 5, n_pix=50)
    ids = np.array([f"S{i:04d}" for i in range(200)])
    seen: list[int] = []

    class Counted(m.MKsNetwork):
        def predict(self, flux, rows=None, block=4096):
            seen.append(len(flux) if rows is None else len(rows))
            return super().predict(flux, rows, block)

    settings = m.NetworkSettings(max_epochs=2)
    nets = [
        Counted(**vars(m.train_network(flux, mks, np.full(200, 0.05), np.ones(50, bool), replace(settings, seed=k))))
        for k in range(4)
    ]
    cross = m.CrossFitNetworks(nets, np.sort(ids[:150]))
    cross.predict(flux, ids)
    assert sum(seen) == 150 + 4 * 50  # not 4 * 200
    seen.clear()
    emission = np.arange(200) % 3 == 0
    other = m.CrossFitNetworks([m.MKsNetwork(**vars(n)) for n in nets], cross.trained_stars)
    both, _ = m.predict_own_kind({"emission": cross, "non_emission": other}, flux, ids, emission)
    assert sum(seen) == emission[:150].sum() + 4 * emission[150:].sum()  # the emission spectra alone
    np.testing.assert_allclose(both[~emission], other.predict(flux, ids)[0][~emission], rtol=0, atol=1e-12)
    assert np.isnan(m.predict_own_kind({"emission": cross}, flux, ids, emission)[0][~emission]).all()


def test_mks_error_and_model_roundtrip(tmp_path) -> None:
    np.testing.assert_allclose(
        m.mks_error(0.25, 0.1, np.array([100.0, 50.0])), [np.hypot(0.25, 0.1), np.hypot(0.25, 0.2)]
    )
    np.testing.assert_allclose(
        m.mks_error(0.25, 0.1, np.array([100.0, 50.0]), 2.0, np.array([0.1, 0.3])),
        [np.sqrt(0.25**2 + 0.1**2 + 0.2**2), np.sqrt(0.25**2 + 0.2**2 + 0.6**2)],
    )
    flux, mks = _spectra(300, 5, n_pix=50)
    ids = np.array([f"S{i:04d}" for i in range(300)])
    settings = m.NetworkSettings(max_epochs=5)
    nets = [
        m.train_network(flux, mks, np.full(mks.size, 0.05), np.ones(50, bool), replace(settings, seed=k))
        for k in range(4)
    ]
    cross = m.CrossFitNetworks(nets, np.sort(ids[:150]))
    model = m.MKsModel(
        networks={"non_emission": cross, "emission": cross},
        error_model={
            "non_emission": {
                "sigma_int": 0.2,
                "sigma_s100": 0.1,
                "kappa": 1.0,
                "sigma_int_trained": 0.3,
                "sigma_s100_trained": 0.2,
            },
            "emission": {"sigma_int": 0.4, "sigma_s100": 0.1},  # a model from before κ: P1's model for all
        },
        samples={"non_emission": np.zeros((10, 4))},
        meta={"key": "k"},
    )
    model.save(tmp_path / "mks.npz")
    back = m.MKsModel.load(tmp_path / "mks.npz")
    rows = np.array([0, 1, 200, 201])  # two trained stars, two others
    out = back.predict(flux[rows], np.array([0, 1, 0, 1]), np.array([100.0, 100.0, 50.0, 50.0]), ids[rows])
    mks_rows, spread_rows = cross.predict(flux[rows], ids[rows])
    np.testing.assert_allclose(out["mks"], mks_rows)
    np.testing.assert_allclose(out["mks_spread"], spread_rows)
    np.testing.assert_array_equal(back.networks["emission"].trained_stars, cross.trained_stars)
    assert np.isnan(spread_rows[:2]).all() and (spread_rows[2:] > 0).all()
    np.testing.assert_allclose(
        out["mks_err"],
        [np.hypot(0.3, 0.2), np.hypot(0.4, 0.1), np.sqrt(0.2**2 + 0.2**2 + spread_rows[2] ** 2), np.hypot(0.4, 0.2)],
    )  # the trained star of the non-emission kind: the training stars' model; the other: P1's model with κ s
    assert out["mks_network"].tolist() == [0, 1, 0, 1]
    assert back.meta == {"key": "k"} and back.samples["non_emission"].shape == (10, 4)
    # an untrained model (too few stars) predicts NaN
    empty = m.MKsModel(networks={}, error_model={}, meta={"untrained": "3 training spectra"})
    assert np.isnan(empty.predict(flux[:2], np.array([0, 1]), np.array([50.0, 50.0]), ids[:2])["mks"]).all()


def test_balancing_weights_lift_the_rare_luminous_stars() -> None:
    rng = np.random.default_rng(0)
    mks = np.concatenate([rng.normal(0.5, 0.5, 1000), rng.uniform(-6, -3, 30), [np.nan]])
    w = m.balancing_weights(mks)
    assert w[-1] == 1.0  # no MKs, no reweighting
    assert np.median(w[1000:1030]) > 3 * np.median(w[:1000])
    assert w[:-1].min() >= 0.3 and w[:-1].max() <= 5.0


def test_training_stars_spectra_take_their_own_error_model() -> None:
    """A training star's spectrum has no networks' disagreement (NaN: three networks fitted the star) and is
    predicted by one network: its errors come from the training stars' own model, without κ."""
    model = {"sigma_int": 0.2, "sigma_s100": 0.1, "kappa": 2.0, "sigma_int_trained": 0.4, "sigma_s100_trained": 0.3}
    snr = np.array([100.0, 50.0, 100.0])
    sigma_int, sigma_s = m.error_terms(model, snr, np.array([0.1, 0.3, np.nan]))
    np.testing.assert_allclose(sigma_int, [0.2, 0.2, 0.4])
    np.testing.assert_allclose(sigma_s, [np.hypot(0.1, 0.2), np.hypot(0.2, 0.6), 0.3])
    # a model from before κ and the training stars' terms: the test stars' P1 model for every spectrum
    sigma_int, sigma_s = m.error_terms({"sigma_int": 0.2, "sigma_s100": 0.1}, snr, np.array([0.1, 0.3, np.nan]))
    np.testing.assert_allclose(sigma_int, 0.2)
    np.testing.assert_allclose(sigma_s, [0.1, 0.2, 0.1])


def test_the_error_model_fits_a_capped_seeded_subset_and_loses_nothing_measurable() -> None:
    """``mks.max_error_stars``: the client's O(n) error fits are bounded; a 10× smaller subset gives the same
    model within its statistical width (measured here on 40,000 synthetic stars: 4,000 of them)."""
    use = np.ones(40_000, bool)
    use[::7] = False
    subset = m.at_most(use, 4_000, seed=3)
    assert subset.sum() == 4_000 and not (subset & ~use).any()
    np.testing.assert_array_equal(subset, m.at_most(use, 4_000, seed=3))  # seeded: the same rows each time
    assert m.at_most(use, 10**6, seed=3) is use  # below the cap: every row
    data = _error_model_data(40_000, 8, -0.05, 0.1, 0.25, 0.10, 1.5)
    every = m.max_likelihood(*data)
    _, posterior = m.sample_uncertainty_model(*(d[subset] for d in data), n_walkers=16, n_steps=600, n_burn=200)
    some = np.array([posterior[p]["median"] for p in m.PARAMETERS])
    width = np.array([posterior[p]["p84"] - posterior[p]["p16"] for p in m.PARAMETERS]) / 2
    assert (np.abs(some - every) < 3 * width).all(), (some, every, width)  # within 3σ of the subset's posterior
