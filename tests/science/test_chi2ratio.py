"""The χ² model of chi2ratio (SPEC §6, P2 §5.2; issue 27): a standard score in every part of the (Teff, S/N) plane.

A synthetic survey whose χ²_red is drawn from a known, skewed distribution whose median and dispersion vary
non-linearly with Teff and S/N (a steep rise with S/N, a bump in Teff), with spectra that are not normal
stars (far higher χ², a third of them in the hot, faint corner) mixed in: the chi2ratio of the normal ones
must have median 0 and robust σ 1 in every part of the plane.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import norm

from survey_scale.science.chi2ratio import (
    BANDWIDTHS,
    Chi2Model,
    cell_statistics,
    chi2_histogram_block,
    fit_chi2_model,
    summary_lines,
)
from survey_scale.science.poly2d import robust_sigma

PARAMS = {"teff_index": 0, "snr_column": "snr_g"}
SHAPE = 0.5
"""Log-normal shape of the normal stars' χ² around its median (skewed like a fit's χ² where model errors count)."""
# z = (exp(SHAPE g) − 1) / K, g ~ N(0, 1): median 0; K makes 1.4826 × MAD(z) = 1.
K = 1.4826 * brentq(lambda t: norm.cdf(np.log1p(t) / SHAPE) - norm.cdf(np.log1p(-t) / SHAPE) - 0.5, 1e-6, 0.999)


def true_median(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Median χ²_red at log10 Teff x and log10 S/N y: flat at low S/N, ∝ (S/N)^1.6 above ~30, a Teff bump."""
    return 1.0 + 0.02 * 10 ** (1.6 * (y - 1.0)) * (1.0 + 0.8 * np.exp(-(((x - 4.15) / 0.08) ** 2)))


def true_sigma(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Dispersion (1.4826 × MAD) of χ²_red: the noise's at low S/N, growing with the model errors."""
    return 0.03 + 0.25 * (true_median(x, y) - 1.0) * (1.0 + 0.5 * (x - 3.85))


def survey(n: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Fitted spectra (``labels`` with Teff, ``chi2_red``, ``snr_g``) and which are normal stars."""
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(3.85, 4.5, n), rng.uniform(0.8, 2.6, n)
    z = np.expm1(SHAPE * rng.normal(size=n)) / K
    chi2 = true_median(x, y) + true_sigma(x, y) * z
    # not normal stars (emission, binaries, damage): χ² 8–60 dispersions above the median; 5 % of the
    # spectra, a third of the hot (> 20,000 K), faint (S/N < 20) ones
    hot_faint = (x > 4.3) & (y < 1.3)
    odd = rng.random(n) < np.where(hot_faint, 0.33, 0.05)
    chi2[odd] = true_median(x, y)[odd] + true_sigma(x, y)[odd] * rng.uniform(8, 60, int(odd.sum()))
    labels = np.stack([10**x, np.full(n, 4.0)], axis=1)
    return {"labels": labels, "chi2_red": chi2, "snr_g": 10**y}, ~odd


def cell_scores(data: dict[str, np.ndarray], normal: np.ndarray, model: Chi2Model, edges) -> list[tuple]:
    """(n, median, robust σ) of the normal stars' chi2ratio per cell of ``edges`` (log Teff edges, log S/N edges)."""
    x, y = np.log10(data["labels"][:, 0]), np.log10(data["snr_g"])
    ratio = model.chi2ratio(data["chi2_red"], data["labels"][:, 0], data["snr_g"]).astype(np.float64)
    ix, iy = np.searchsorted(edges[0], x), np.searchsorted(edges[1], y)
    out = []
    for i in range(len(edges[0]) + 1):
        for j in range(len(edges[1]) + 1):
            r = ratio[normal & (ix == i) & (iy == j)]
            out.append((r.size, float(np.median(r)) if r.size else np.nan, robust_sigma(r)))
    return out


def fit(data: dict[str, np.ndarray], **kwargs) -> Chi2Model:
    return fit_chi2_model(chi2_histogram_block(data, PARAMS)["counts"], **kwargs)


def test_chi2ratio_is_a_standard_score_in_every_cell() -> None:
    data, normal = survey(60000, 1)
    model = fit(data)
    x, y = np.log10(data["labels"][:, 0]), np.log10(data["snr_g"])
    grids = {
        "4 x 4 equal cells": (np.linspace(3.85, 4.5, 5)[1:-1], np.linspace(0.8, 2.6, 5)[1:-1]),
        "3 x 3 tertiles": (np.quantile(x[normal], [1 / 3, 2 / 3]), np.quantile(y[normal], [1 / 3, 2 / 3])),
    }
    for name, edges in grids.items():
        cells = cell_scores(data, normal, model, edges)
        assert all(n > 1000 for n, _, _ in cells), name
        for n, median, sigma in cells:
            assert abs(median) <= 0.1 and 0.9 <= sigma <= 1.1, (name, n, median, sigma)
    # the spectra that are not normal stars stand out; few normal ones do
    ratio = model.chi2ratio(data["chi2_red"], data["labels"][:, 0], data["snr_g"])
    assert (ratio[~normal] > 5).mean() > 0.95 and (ratio[normal] > 10).mean() < 0.01


def test_the_model_knows_the_true_median_and_dispersion() -> None:
    data, _ = survey(60000, 2)
    model = fit(data)
    xc = np.array([3.875, 4.025, 4.175, 4.325, 4.475])  # cell centres inside the sampled plane
    yc = np.array([0.95, 1.45, 1.95, 2.45])
    x, y = np.meshgrid(xc, yc, indexing="ij")
    # a cell's statistics are of its spectra, spread over its 0.05 × 0.1 dex (which widens the dispersion where
    # the median is steep), ~250 of them: near the truth at its centre
    assert model.median_at(x, y) == pytest.approx(true_median(x, y), rel=0.05)
    assert model.sigma_at(x, y) == pytest.approx(true_sigma(x, y), rel=0.25)


def test_a_small_survey_pools_sparse_cells() -> None:
    """~2,000 spectra, like the 4,000-spectrum mocks' hot stars: most cells are too sparse to stand alone."""
    data, normal = survey(2000, 3)
    model = fit(data, min_count=20)
    bandwidth, n = np.asarray(model.bandwidth), np.asarray(model.n)
    assert (bandwidth[n > 0] > 0).mean() > 0.8 and (bandwidth[n >= 20] == 0).all()
    x, y = np.log10(data["labels"][:, 0]), np.log10(data["snr_g"])
    edges = (np.quantile(x[normal], [1 / 3, 2 / 3]), np.quantile(y[normal], [1 / 3, 2 / 3]))
    for count, median, sigma in cell_scores(data, normal, model, edges):
        assert count >= 30 and abs(median) <= 0.2 and 0.8 <= sigma <= 1.25, (count, median, sigma)


def test_cells_with_enough_spectra_stand_on_their_own_clipped_statistics() -> None:
    data, _ = survey(20000, 4)
    counts = chi2_histogram_block(data, PARAMS)["counts"]
    model = fit_chi2_model(counts, min_count=50, clip=5.0)
    own = cell_statistics(counts, clip=5.0)
    alone = np.asarray(model.bandwidth) == 0
    assert alone.sum() > 50 and (own["n"][alone] >= 50).all()
    assert np.asarray(model.median)[alone] == pytest.approx(own["median"][alone], rel=1e-5)
    assert np.asarray(model.sigma)[alone] == pytest.approx(own["sigma"][alone], rel=1e-5)
    # unclipped, the odd spectra raise the statistics
    plain = cell_statistics(counts)
    assert (plain["median"][alone] >= own["median"][alone]).all()
    assert np.median(plain["sigma"][alone] / own["sigma"][alone]) > 1.05
    assert fit_chi2_model(counts, min_count=50, clip=5.0) == model  # deterministic


def test_the_model_is_recorded_with_its_fit_quality() -> None:
    data, _ = survey(20000, 5)
    model = fit(data, flag=10.0)
    record = json.loads(json.dumps(model.to_dict()))  # the cube's attributes are JSON
    assert Chi2Model.from_dict(record) == model
    quality = record["quality"]
    assert sum(map(sum, quality["n"])) == record["n_spectra"] == 20000
    assert record["n_cells"] == int((np.asarray(model.n) > 0).sum()) and record["n_own"] > 0
    for row_n, row_median, row_sigma, row_flagged in zip(
        quality["n"], quality["median"], quality["sigma"], quality["flagged"], strict=True
    ):
        for n, median, sigma, flagged in zip(row_n, row_median, row_sigma, row_flagged, strict=True):
            if n >= 500:  # clipped like the model's statistics: 0 and 1 where it fits
                assert abs(median) < 0.1 and 0.9 < sigma < 1.1 and 0 <= flagged < 0.35, (n, median, sigma)
            if n == 0:
                assert median is None and sigma is None and flagged is None
    lines = summary_lines({"chi2ratio": {**record, "updated": "2026-01-01", "code_version": "0"}})
    assert "chi2ratio: median and dispersion of chisq_red per (log10 Teff, log10 S/N) cell" in lines[0]
    assert lines[2].split()[:4] == ["Teff", "[K]", "|", "S/N"] and len(lines) == 3 + len(quality["n"])
    assert lines[3].split()[0] == "<" and "% (" in lines[3]


def test_chi2ratio_of_unusable_or_outlying_inputs() -> None:
    data, _ = survey(5000, 6)
    model = fit(data)
    ratio = model.chi2ratio(np.array([2.0, 2.0, 2.0, np.nan]), np.array([np.nan, -1.0, 1e6, 1e4]), np.full(4, 50.0))
    assert np.isnan(ratio[[0, 1, 3]]).all() and np.isfinite(ratio[2])  # beyond the grid: its end cell
    assert ratio.dtype == np.float32
    end = model.chi2ratio(np.array([2.0]), np.array([10**4.69]), np.array([50.0]))
    assert ratio[2] == end[0]
    # every cell has a model, even far from the spectra (the widest kernel)
    assert np.isfinite(np.asarray(model.median)).all() and (np.asarray(model.sigma) > 0).all()
    assert set(np.unique(model.bandwidth)) <= set(BANDWIDTHS)


def test_an_older_polynomial_record_asks_for_a_rerun() -> None:
    old = {"median": {"coeffs": [0.0], "order": 0}, "sigma": {"coeffs": [0.0], "order": 0}, "n_cells": 1}
    with pytest.raises(ValueError, match="re-run step chi2ratio"):
        Chi2Model.from_dict(old)
    assert "re-run step chi2ratio" in summary_lines({"chi2ratio": old})[0]
    assert summary_lines({}) == []
