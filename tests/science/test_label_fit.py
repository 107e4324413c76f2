"""The P2 §4.4–§4.5 label procedure as a pure function (SPEC §5.3)."""

from __future__ import annotations

import numpy as np
import pytest

from survey_scale.core.labels import LABEL_NAMES, P2_TABLE5_CORRELATIONS
from survey_scale.core.masks import FIT_WINDOWS, HYDROGEN_WINDOWS, window_mask
from survey_scale.core.wavelength import air_to_vacuum, vacuum_to_air, wavelength_grid
from survey_scale.science import emulator as E
from survey_scale.science import label_fit as Pr
from survey_scale.science.fitting import FitResult
from tests.toy_grid import toy_model_grid, toy_spectra

WAVE = wavelength_grid()
L = len(LABEL_NAMES)
IT, IV = LABEL_NAMES.index("teff"), LABEL_NAMES.index("vsini")

# ------------------------------------------------------------------------------------------ Hann weights


def test_hann_weights_at_documented_points():
    hot, cool = 10000.0, 9000.0  # Teff of the full fit selects L = 5000 K / 3000 K
    assert Pr.hann_weight(9500.0, hot) == 1.0 and Pr.hann_weight(9500.0, cool) == 1.0
    # |x| ≥ L/2 → 0: 12,000 K on the hot side, 8,000 K on the cool side (P2 §4.5)
    assert Pr.hann_weight(12000.0, hot) == pytest.approx(0.0, abs=1e-15)
    assert Pr.hann_weight(7000.0, hot) == pytest.approx(0.0, abs=1e-15)
    assert Pr.hann_weight(8000.0, cool) == pytest.approx(0.0, abs=1e-15)
    assert Pr.hann_weight(11000.0, cool) == pytest.approx(0.0, abs=1e-15)
    for th, tf in ((12500.0, hot), (20000.0, hot), (7900.0, cool), (5000.0, cool)):
        assert Pr.hann_weight(th, tf) == 0.0
    assert Pr.hann_weight(11999.0, hot) > 0 and Pr.hann_weight(8001.0, cool) > 0
    # x = L/4 → cos²(π/4) = 1/2; symmetric in x
    assert Pr.hann_weight(9500.0 + 1250.0, hot) == pytest.approx(0.5)
    assert Pr.hann_weight(9500.0 - 750.0, cool) == pytest.approx(0.5)
    assert Pr.hann_weight(9500.0 + 750.0, cool) == pytest.approx(0.5)
    w = Pr.hann_weight(np.array([9500.0, 10750.0, np.nan]), np.array([9600.0, 9600.0, 9600.0]))
    np.testing.assert_allclose(w[:2], [1.0, 0.5])
    assert np.isnan(w[2])


def test_straddles():
    tf = np.array([9000.0, 10000.0, 9000.0, 12000.0, 9500.0, np.nan])
    th = np.array([10000.0, 9000.0, 8000.0, 11000.0, 9000.0, 9000.0])
    np.testing.assert_array_equal(Pr.straddles(tf, th), [True, True, False, False, False, False])


# ------------------------------------------------------------------------------------ line indices, Eq. 4


def test_eq4_reproduces_hand_computed_value():
    a, b, c = 1.5, 8.0, 10.0  # C3933, C3967, C4101 in Å
    # P2 Eq. 4 typed term by term from the paper (the C3967 cubic term is printed with exponent 2, a typo:
    # it is the missing cubic term of a complete third-order polynomial, see label_fit.EQ4_COEFFICIENTS)
    log_t = (
        4.71047
        - 4.43455e-2 * a
        - 5.37380e-2 * b
        + 3.46889e-2 * c
        - 5.68345e-3 * a**2
        - 1.26749e-2 * b**2
        - 2.40555e-2 * c**2
        + 1.26779e-2 * a * b
        - 4.19722e-2 * a * c
        + 2.34087e-2 * b * c
        + 8.44885e-4 * a * b * c
        - 9.98430e-4 * a**2 * b
        + 2.23513e-3 * a**2 * c
        + 6.24433e-4 * a * b**2
        + 1.40913e-3 * a * c**2
        - 1.78560e-3 * b**2 * c
        + 1.85542e-3 * b * c**2
        + 5.01277e-4 * a**3
        + 5.10836e-4 * b**3
        + 1.52060e-4 * c**3
    )
    assert Pr.teff_from_indices(a, b, c) == pytest.approx(10**log_t, rel=1e-12)
    assert len(Pr.EQ4_COEFFICIENTS) == 20
    # zero indices give 10^4.71047 K
    assert Pr.teff_from_indices(0.0, 0.0, 0.0) == pytest.approx(10**4.71047)


def test_index_windows_are_vacuum():
    for name, air in Pr.LINE_INDEX_WINDOWS_AIR.items():
        for (lo_a, hi_a), (lo_v, hi_v) in zip(air, Pr.LINE_INDEX_WINDOWS[name], strict=True):
            assert 1.05 < lo_v - lo_a < 1.2 and 1.05 < hi_v - hi_a < 1.2  # ~1.1 Å near 4000 Å
            assert vacuum_to_air(lo_v) == pytest.approx(lo_a, abs=1e-4)
    # Ca II K: 3933.66 Å in air is the masks module's vacuum 3934.77 Å
    assert air_to_vacuum(3933.66) == pytest.approx(3934.77, abs=0.01)


def _box_spectrum(depths: dict[str, float], slope: float = 0.0) -> tuple[np.ndarray, dict[str, float]]:
    """A linear continuum with a box absorption of given depth filling the middle half of each line band;
    returns the spectrum and the exact equivalent widths (Σ depth Δλ over the box pixels)."""
    cont = 1.0 + slope * (WAVE - 4000.0)
    flux = cont.copy()
    edges = np.concatenate([[WAVE[0]], 0.5 * (WAVE[1:] + WAVE[:-1]), [WAVE[-1]]])
    dlam = np.diff(edges)
    dlam[0], dlam[-1] = 2 * dlam[0], 2 * dlam[-1]
    truth = {}
    for name, depth in depths.items():
        lo, hi = Pr.LINE_INDEX_WINDOWS[name][0]
        q = 0.25 * (hi - lo)
        sel = (WAVE >= lo + q) & (WAVE < hi - q)
        flux[sel] *= 1.0 - depth
        truth[name] = depth * dlam[sel].sum()
    return flux, truth


def test_line_indices_recover_equivalent_widths():
    flux, truth = _box_spectrum({"C3933": 0.2, "C3967": 0.6, "C4101": 0.45}, slope=2e-4)
    idx = Pr.line_indices(flux, WAVE)
    np.testing.assert_allclose(idx, [truth["C3933"], truth["C3967"], truth["C4101"]], rtol=1e-9)
    # bad pixels are skipped: the band EW is the mean depth of the good pixels times the band width
    ivar = np.ones_like(flux)
    lo, hi = Pr.LINE_INDEX_WINDOWS["C4101"][1]
    ivar[(WAVE >= lo) & (WAVE < hi)] = 0.0  # the whole blue continuum window of H I 4101
    both = Pr.line_indices(np.stack([flux, flux]), WAVE, np.stack([ivar, np.ones_like(flux)]))
    assert np.isnan(both[0, 2]) and np.isfinite(both[0, :2]).all()
    np.testing.assert_allclose(both[1], idx)
    assert Pr.initial_teff(flux, WAVE) == pytest.approx(Pr.teff_from_indices(*idx))


# ------------------------------------------------------------------------------- procedure: control flow


def _fake_result(labels: np.ndarray) -> FitResult:
    n = labels.shape[0]
    cov = np.tile(np.diag(np.arange(1.0, L + 1)), (n, 1, 1))
    return FitResult(
        labels=labels.copy(),
        cov=cov,
        errors=np.sqrt(np.diagonal(cov, axis1=1, axis2=2)).copy(),
        chi2=np.ones(n),
        chi2_red=np.ones(n),
        n_iter=np.full(n, 3, np.int32),
        converged=np.ones(n, bool),
        model_flux=None,
        status=np.zeros(n, np.int8),
        n_good=np.full(n, 100, np.int32),
        dof=np.full(n, 89, np.int32),
        labels_scaled=np.zeros((n, L)),
        at_bound=np.zeros((n, L), bool),
        start=np.zeros(n, np.int16),
        chi2_starts=np.ones((n, 1)),
        label_names=LABEL_NAMES,
    )


@pytest.fixture(scope="module")
def em() -> E.Emulator:
    grid = toy_model_grid(1200, seed=4)
    return E.train(grid, "shared", hidden=(24, 24), epochs=20, patience=20, lr=5e-3, batch_size=32, seed=0)


def test_refit_is_triggered_for_straddling_stars(em, monkeypatch):
    n = 4
    base = np.tile(em.unscale(np.zeros(L)), (n, 1))
    full_t = np.array([9000.0, 10000.0, 15000.0, 8000.0])
    hmask_t = np.array([10000.0, 9800.0, 14000.0, 7800.0])  # star 0 straddles 9500 K
    refit_t = 9900.0
    calls = []

    def fake_fit(em_, flux, ivar, mask=None, init=None, **kw):
        calls.append({"n": flux.shape[0], "mask": mask.copy(), "init": None if init is None else init.copy()})
        lab = np.tile(base[0], (flux.shape[0], 1))
        lab[:, IT] = (full_t, hmask_t, np.full(flux.shape[0], refit_t))[len(calls) - 1][: flux.shape[0]]
        return _fake_result(lab)

    monkeypatch.setattr(Pr, "fit_spectra", fake_fit)
    flux = np.ones((n, WAVE.size), np.float32)
    out = Pr.fit_labels(em, flux, np.full_like(flux, 100.0), WAVE, snr=np.full(n, 50.0))
    assert len(calls) == 3
    full_call, h_call, re_call = calls
    # the H-masked fit masks the hydrogen windows on top of the §5.3 mask
    fit_mask = window_mask(WAVE, FIT_WINDOWS)
    np.testing.assert_array_equal(full_call["mask"][0], fit_mask)
    np.testing.assert_array_equal(h_call["mask"][0], fit_mask | window_mask(WAVE, HYDROGEN_WINDOWS))
    # the re-fit: only star 0, full-fit mask, starting from the H-masked labels
    assert re_call["n"] == 1
    np.testing.assert_array_equal(re_call["mask"][0], fit_mask)
    assert re_call["init"][0, IT] == hmask_t[0]
    np.testing.assert_array_equal(out["refit"], [True, False, False, False])
    assert out["flags"][0] & Pr.FLAG_REFIT and not out["flags"][1] & Pr.FLAG_REFIT
    assert out["full_labels"][0, IT] == refit_t and out["full_labels"][1, IT] == full_t[1]
    assert out["n_iter"][0] == 9 and out["n_iter"][1] == 6
    # Hann weights from the H-masked Teff with L chosen by the (re-fitted) full Teff
    np.testing.assert_allclose(out["w_hmask"], Pr.hann_weight(hmask_t, [refit_t, *full_t[1:]]))
    w = out["w_hmask"]
    np.testing.assert_allclose(out["labels"][:, IT], w * hmask_t + (1 - w) * np.array([refit_t, *full_t[1:]]))
    # covariance of the combination: ω1² C_H + (1 − ω1²) C_full (identical fake covariances here)
    np.testing.assert_allclose(out["cov"][:, 0, 0], 1.0)


def test_several_starts_go_on_from_the_best_scout_only(em, monkeypatch):
    """Every start gets SCOUT_ITERATIONS; only spectra whose best start ran out of them go on, from its labels."""
    n = 3
    calls = []
    scouted = np.tile(em.unscale(np.zeros(L)), (n, 1))
    scouted[:, IT] = [6000.0, 8000.0, 5000.0]

    def fake_fit(em_, flux, ivar, mask=None, init=None, max_iter=100, **kw):
        calls.append({"n": flux.shape[0], "init": init.copy(), "max_iter": max_iter, "n_starts": kw.get("n_starts")})
        res = _fake_result(scouted[: flux.shape[0]] if len(calls) == 1 else scouted[[1]] + 100.0)
        if len(calls) == 1:  # the scout: spectrum 1 not converged yet, 2 stalled
            res.status[:] = [0, Pr.STATUS_MAX_ITER, 2]
            res.converged[:] = [True, False, False]
            res.start[:] = [2, 1, 0]
            res.n_iter[:] = [4, 5, 5]
        else:
            res.n_iter[:] = 7
        return res

    monkeypatch.setattr(Pr, "fit_spectra", fake_fit)
    flux = np.ones((n, WAVE.size), np.float32)
    starts = np.stack([scouted - 1.0, scouted, scouted + 1.0])
    mask = np.zeros(flux.shape, bool)
    out = Pr.fit_best_start(
        em, flux, np.ones_like(flux), mask=mask, init=starts, max_iter=100, scout_iterations=5, n_starts=4
    )
    scout, go_on = calls
    assert scout["n"] == n and scout["init"].shape == (3, n, L) and scout["max_iter"] == 5
    assert go_on["n"] == 1 and go_on["max_iter"] == 95 and go_on["n_starts"] == 1  # no random starts added
    np.testing.assert_array_equal(go_on["init"], scouted[[1]])  # from the best start's labels after the scout
    assert out.labels[1, IT] == scouted[1, IT] + 100.0 and out.labels[0, IT] == scouted[0, IT]
    assert out.n_iter.tolist() == [4, 12, 5] and out.start.tolist() == [2, 1, 0]
    assert out.converged.tolist() == [True, True, False]
    # one start: one fit to convergence, as fit_spectra
    calls.clear()
    Pr.fit_best_start(em, flux, np.ones_like(flux), mask=mask, init=starts[0], max_iter=100)
    assert len(calls) == 1 and calls[0]["max_iter"] == 100


# --------------------------------------------------------------------------------- procedure: real fits


def test_fit_labels_end_to_end(em):
    rng = np.random.default_rng(5)
    n = 160
    x = rng.uniform(-0.4, 0.4, (n, L))
    lab = em.unscale(x)
    lab[:40, IT] = rng.uniform(7500.0, 12000.0, 40)  # early A / late B stars around the Hann window
    lab[40:50, IV] = 2.0  # vsini ≈ 0: about half of the raw estimates are negative
    lab[50:55, IT] = 7050.0
    snr = 60.0
    flux = em.predict(lab)
    flux = (flux + rng.standard_normal(flux.shape) / snr).astype(np.float32)
    ivar = np.full_like(flux, snr**2)
    pixmask = np.zeros(flux.shape, np.uint8)
    pixmask[:, 1000:1010] = 4
    flux[:, 1000:1010] = 30.0  # garbage behind the pixel mask
    snr_in = np.full(n, snr)
    snr_in[-3:] = 3.0
    out = Pr.fit_labels(em, flux, ivar, WAVE, pixmask=pixmask, snr=snr_in)

    assert out["labels"].shape == (n, L) and out["cov"].shape == (n, L, L)
    assert out["corr"].shape == (n, len(P2_TABLE5_CORRELATIONS)) and out["model_flux"].shape == flux.shape
    assert np.all(np.abs(out["corr"]) <= 1.0)
    i, j = LABEL_NAMES.index("teff"), LABEL_NAMES.index("logg")
    np.testing.assert_allclose(out["corr"][:, 0], out["cov"][:, i, j] / (out["errors"][:, i] * out["errors"][:, j]))
    assert out["converged"].mean() > 0.95
    # combination formula, and the weights are where P2 puts them
    w = out["w_hmask"]
    assert np.all(
        (w > 0)
        == (np.abs(out["hmask_labels"][:, IT] - 9500.0) < np.where(out["full_labels"][:, IT] > 9500.0, 2500.0, 1500.0))
    )
    comb = w[:, None] * out["hmask_labels"] + (1 - w)[:, None] * out["full_labels"]
    np.testing.assert_allclose(np.delete(out["labels"], IV, 1), np.delete(comb, IV, 1))
    np.testing.assert_allclose(out["vsini_raw"], comb[:, IV])
    np.testing.assert_allclose(out["labels"][:, IV], np.maximum(comb[:, IV], 0.0))
    neg = out["vsini_raw"] < 0
    assert neg.any() and np.all((out["flags"][neg] & Pr.FLAG_VSINI_NEGATIVE) > 0)
    cov = (w**2)[:, None, None] * out["hmask_cov"] + (1 - w**2)[:, None, None] * out["full_cov"]
    np.testing.assert_allclose(out["cov"], cov)
    # labels are recovered; the pulls of the combination are sane
    pulls = (np.delete(out["labels"], IV, 1) - np.delete(lab, IV, 1)) / np.delete(out["errors"], IV, 1)
    assert np.all(np.abs(np.median(pulls, 0)) < 0.5) and np.all(np.std(pulls, 0) < 2.0)
    assert np.abs(np.median(out["chi2_red"]) - 1.0) < 0.05
    # flags of P2 §5.1
    cold = out["labels"][:, IT] < 7000.0
    assert np.array_equal((out["flags"] & Pr.FLAG_TEFF_LT_7000) > 0, cold)
    assert np.array_equal((out["flags"] & Pr.FLAG_SNR_LT_5) > 0, snr_in < 5)
    # initial Teff comes from the line indices, clipped into the box
    t_idx = Pr.initial_teff(flux, WAVE, ivar)
    ok = np.isfinite(t_idx)
    lo, hi = em.unscale(np.full(L, -0.55))[IT], em.unscale(np.full(L, 0.55))[IT]
    np.testing.assert_allclose(out["teff_init"][ok], np.clip(t_idx[ok], lo, hi))
    # the masked garbage did not enter: the model is continuum-like there, not 30
    assert np.all(out["model_flux"][:, 1000:1010] < 2.0)
    # S/N estimated from the spectrum when not given
    est = Pr.fit_labels(em, flux[:4], ivar[:4], WAVE, pixmask=pixmask[:4])
    np.testing.assert_allclose(est["snr"], snr, rtol=0.1)
    # alone or in a batch: the same optimum up to the convergence tolerance (float32 rounding differs)
    assert np.all(np.abs(est["labels"] - out["labels"][:4]) < 0.05 * out["errors"][:4])


def test_fit_labels_rejects_other_grid(em):
    flux = np.ones((2, WAVE.size - 1), np.float32)
    with pytest.raises(ValueError, match="pixel grid"):
        Pr.fit_labels(em, flux, flux, WAVE[:-1])


def test_combination_ignores_an_undetermined_label_of_a_zero_weight_fit() -> None:
    L = len(LABEL_NAMES)
    full, hmask = _fake_result(np.zeros((3, L))), _fake_result(np.ones((3, L)))
    hmask.cov[:, 2, 2] = np.inf  # the H-masked fit cannot determine label 2
    labels, cov = Pr._combine(full, hmask, np.array([0.0, np.nan, 0.5]))
    # weight 0 (and NaN → 0): the full fit alone, finite although the H-masked variance is inf
    np.testing.assert_array_equal(cov[:2], full.cov[:2])
    np.testing.assert_array_equal(labels[:2], full.labels[:2])
    assert np.isinf(cov[2, 2, 2]) and cov[2, 0, 0] == pytest.approx(0.25 * 1 + 0.75 * 1)
    corr = Pr._pairs_corr(cov, LABEL_NAMES)
    assert np.isfinite(corr[:2]).all()


# ---------------------------------------------------------------------- an emulator with a subset of labels

SUBSET = ("teff", "logg", "vsini", "fe_h")


@pytest.fixture(scope="module")
def subset_em() -> E.Emulator:
    """A small emulator of 4 of the 11 labels (the others held at the centre of their range)."""
    full = toy_model_grid(500, seed=6)
    cols = [LABEL_NAMES.index(n) for n in SUBSET]
    centre = 0.5 * (full.label_min + full.label_max)
    labels = np.tile(centre, (full.n_spectra, 1))
    labels[:, cols] = full.labels[:, cols]
    grid = E.ModelGrid(
        labels[:, cols], SUBSET, full.label_min[cols], full.label_max[cols], WAVE, toy_spectra(labels, WAVE)
    )
    return E.train(grid, "shared", hidden=(24, 24), epochs=12, patience=12, lr=5e-3, batch_size=32, seed=0)


def test_fit_with_a_label_subset_reports_the_others_as_nan_and_not_fitted(subset_em: E.Emulator) -> None:
    em = subset_em
    rng = np.random.default_rng(9)
    truth = em.unscale(rng.uniform(-0.3, 0.3, (6, em.n_labels)))
    flux = (em.predict(truth) + rng.standard_normal((6, WAVE.size)) / 80.0).astype(np.float32)
    out = Pr.fit_labels(em, flux, np.full_like(flux, 80.0**2), WAVE, snr=np.full(6, 80.0))
    assert out["labels"].shape == (6, 4) and np.isfinite(out["labels"]).all()
    assert Pr.output_label_names(em.label_names) == LABEL_NAMES
    assert Pr.output_label_names(("label_0", "label_1")) == ("label_0", "label_1")
    res = Pr.to_label_order(out, em.label_names, LABEL_NAMES)
    fitted = np.array([n in SUBSET for n in LABEL_NAMES])
    for key in ("labels", "errors", "full_labels", "hmask_labels"):
        assert res[key].shape == (6, L)
        assert np.isfinite(res[key][:, fitted]).all() and np.isnan(res[key][:, ~fitted]).all(), key
    np.testing.assert_array_equal(res["labels"][:, fitted], out["labels"])
    cov = res["cov"]
    np.testing.assert_array_equal(cov[:, fitted][:, :, fitted], out["cov"])
    assert np.isnan(cov[:, ~fitted]).all() and np.isnan(cov[:, :, ~fitted]).all()
    assert (res["labels_fitted"] == 1 + 2 + 8 + 1024).all() and res["labels_fitted"].dtype == np.uint16
    # the Table 5 correlations: teff-logg is there, those with [Si/H] are NaN
    pairs = dict(zip(P2_TABLE5_CORRELATIONS, out["corr"].T, strict=True))
    assert np.isfinite(pairs[("teff", "logg")]).all() and np.isnan(pairs[("teff", "si_h")]).all()
    assert (Pr.to_label_order(out, LABEL_NAMES, LABEL_NAMES)["labels_fitted"] == 2047).all()
    with pytest.raises(ValueError, match="not among"):
        Pr.to_label_order(out, em.label_names, ("teff", "logg"))
