"""Gradient spectra and the Cramér–Rao bound (SPEC §5.2, P2 Eq. 3)."""

from __future__ import annotations

import numpy as np
import pytest

from survey_scale.core.labels import LABEL_NAMES
from survey_scale.products.figures import emulator as EF
from survey_scale.science import emulator as E
from survey_scale.science import information_content as I


@pytest.fixture(scope="module")
def em() -> E.Emulator:
    rng = np.random.default_rng(0)
    P, L, H = 300, len(LABEL_NAMES), 16
    ws = [rng.normal(0, 1 / np.sqrt(L), (H, L)), rng.normal(0, 1 / np.sqrt(H), (H, H))]
    bs = [rng.normal(0, 0.3, H), rng.normal(0, 0.3, H)]
    ow, ob = rng.normal(0, 0.05, (P, H)), np.ones(P)
    lo = np.array([7000, 0, 0, 0, 0, -2, -2, -2, -2, -2, -2.5])
    hi = np.array([45000, 5, 15, 500, 0.25, 1, 1.5, 1, 1.5, 1.5, 0.5])
    return E.Emulator("shared", "sigmoid", ws, bs, ow, ob, lo, hi, LABEL_NAMES, np.linspace(4000, 5000, P))


def test_gradient_spectra_analytic_vs_finite_differences(em):
    lab = em.unscale(np.random.default_rng(1).uniform(-0.3, 0.3, (3, em.n_labels)))
    g = I.gradient_spectra(em, lab)
    assert g.shape == (3, em.n_pixels, em.n_labels)
    g_fd = I.gradient_spectra(em, lab, steps=1e-2 * (em.x_max - em.x_min))
    scale = np.abs(g).max(axis=(0, 1))  # per label
    assert np.all(np.abs(g_fd - g).max(axis=(0, 1)) < 2e-3 * scale)
    # per physical unit: a Teff gradient is ~range⁻¹ times the scaled one
    assert I.gradient_spectra(em, lab[0]).shape == (em.n_pixels, em.n_labels)


def test_cramer_rao_is_inverse_fisher_and_scales_with_snr(em):
    lab = em.unscale(np.zeros(em.n_labels))
    grad = I.gradient_spectra(em, lab)
    fisher = grad.T @ grad * 50.0**2
    cov = I.cramer_rao(em, lab, 50.0)
    np.testing.assert_allclose(cov @ fisher, np.eye(em.n_labels), atol=1e-6)
    np.testing.assert_allclose(I.fisher_matrix(em, lab, 50.0), fisher, rtol=1e-12)
    # a scalar S/N is σ = 1/(S/N) at every pixel, the same as the explicit ivar
    np.testing.assert_allclose(I.cramer_rao(em, lab, np.full(em.n_pixels, 2500.0)), cov, rtol=1e-10)
    # σ_CR ∝ 1/(S/N)
    np.testing.assert_allclose(np.sqrt(np.diag(I.cramer_rao(em, lab, 100.0))), 0.5 * np.sqrt(np.diag(cov)), rtol=1e-8)
    # masking pixels removes information
    mask = np.zeros(em.n_pixels, bool)
    mask[::2] = True
    assert np.all(np.diag(I.cramer_rao(em, lab, 50.0, mask=mask)) > np.diag(cov))
    # batched
    two = I.cramer_rao(em, np.stack([lab, lab]), 50.0)
    assert two.shape == (2, em.n_labels, em.n_labels)
    # (float32 Jacobians of a batch of 2 and of 1 spectrum differ by rounding, amplified by the condition
    # number of the Fisher matrix)
    np.testing.assert_allclose(two[1], cov, rtol=1e-3)


def test_label_without_information_gets_infinite_variance(em):
    # an emulator whose last label has no weight: no pixel depends on it
    ws = [w.copy() for w in em.weights]
    ws[0][:, -1] = 0.0
    blind = E.Emulator(
        "shared",
        "sigmoid",
        ws,
        em.biases,
        em.out_weight,
        em.out_bias,
        em.x_min,
        em.x_max,
        em.label_names,
        em.wave,
    )
    cov = I.cramer_rao(blind, blind.unscale(np.zeros(blind.n_labels)), 50.0)
    assert np.isinf(cov[-1, -1]) and np.all(np.isfinite(np.diag(cov)[:-1]))
    corr = I.correlation(cov)
    assert np.isnan(corr[-1]).all() and np.allclose(np.diag(corr)[:-1], 1.0)
    # batched: only the spectrum with the undetermined label gets NaN, in that row and column
    batch = I.correlation(np.stack([np.where(np.isfinite(cov), cov, 1.0), cov, cov]))
    assert np.isfinite(batch[0]).all() and np.isnan(batch[1:, -1]).all() and np.isnan(batch[1:, :, -1]).all()
    np.testing.assert_allclose(batch[1, :-1, :-1], corr[:-1, :-1])


def test_plots_are_written(em, tmp_path):
    lab = em.unscale(np.zeros(em.n_labels))
    for path in (
        EF.plot_emulator_gradients(em, lab, tmp_path / "grad.png"),
        EF.plot_cramer_rao(em, lab, tmp_path / "sub" / "cr.png", snr=100),
    ):
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
