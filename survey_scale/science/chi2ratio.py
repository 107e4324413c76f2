"""chi2ratio: how unusual a fit's reduced χ² is for its Teff and S/N (SPEC §6, P2 §5.2).

P2 models the median and the dispersion (a resistant estimate of the standard deviation) of χ²_red as
3rd-order polynomials of Teff and S/N over the whole survey, and flags chi2ratio =
(χ²_red − median) / dispersion > 10.

Survey-wide and streamed: each block of spectra adds its counts to one fixed 3-D histogram of
(log10 Teff, log10 S/N, log10 χ²_red) (:func:`chi2_histogram_block`; integer counts, so the sum of the
blocks is exact and does not depend on their order). From the summed histogram, each (Teff, S/N) cell's
median and 1.4826 × MAD are read off its cumulative χ² distribution (linear interpolation inside the fine
log χ² bins: 0.005 dex, a 1.2 % relative resolution), and log10 of the median and log10 of the dispersion
are each fitted as a 3rd-order polynomial in (log10 Teff, log10 S/N) — in logarithms because χ²_red grows
like (S/N)² where model errors dominate, a steepness a cubic in the χ² itself misses at S/N > 100 (on a
5,000-star mock the χ²-space cubic left the chi2ratio median of the S/N > 100 spectra at +1.4σ and flagged
2.4 % of clean spectra, the log-space one +0.5σ and 1.4 %). The polynomials are fitted to the cells
holding at least ``min_count`` spectra (cells merged where a small cube leaves them too sparse,
:func:`fit_chi2_model`), at each cell's mean position, weighted by the inverse variance of the cell's
log10 median (∝ count × median² / dispersion²) and of its log10 dispersion (∝ count), and made robust by 3σ
clipping of the cells (:func:`survey_scale.science.poly2d.fit_poly2d`). Memory is the histogram's, whatever
the number of spectra.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from survey_scale.science.poly2d import MAD_TO_SIGMA, Poly2D, fit_poly2d, format_coefficients, format_ranges

LOG_TEFF_EDGES = np.round(np.arange(3.80, 4.70 + 1e-9, 0.05), 4)
"""Cell edges in log10 Teff (6,300–50,000 K); values outside fall in the end cells."""
LOG_SNR_EDGES = np.round(np.arange(0.0, 3.0 + 1e-9, 0.1), 4)
"""Cell edges in log10 S/N (1–1,000)."""
LOG_CHI2_EDGES = np.round(np.arange(-1.5, 3.5 + 1e-9, 0.005), 4)
"""Fine edges in log10 χ²_red (0.03–3,000) for the medians and MADs."""

FLAG_THRESHOLD = 10.0
"""P2 §5.2: chi2ratio > 10 is flagged."""


def _cell(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    # Index of the bin holding each value; values beyond the edges go to the end bins.
    return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, edges.size - 2)


def chi2_histogram_block(data: Mapping[str, np.ndarray], params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Counts of one block of spectra in the (log Teff, log S/N, log χ²) histogram (a reduction's block).

    ``data``: ``labels`` (n, n_labels), ``chi2_red`` (n,), the S/N column ``params["snr_column"]`` (n,);
    ``params["teff_index"]`` is Teff's position in the labels. Spectra with a non-finite or non-positive
    Teff, S/N or χ² are not counted.
    """
    teff = np.asarray(data["labels"], dtype=np.float64)[:, int(params["teff_index"])]
    snr = np.asarray(data[params["snr_column"]], dtype=np.float64)
    chi2 = np.asarray(data["chi2_red"], dtype=np.float64)
    ok = np.isfinite(teff) & np.isfinite(snr) & np.isfinite(chi2) & (teff > 0) & (snr > 0) & (chi2 > 0)
    shape = (LOG_TEFF_EDGES.size - 1, LOG_SNR_EDGES.size - 1, LOG_CHI2_EDGES.size - 1)
    flat = np.ravel_multi_index(
        (
            _cell(np.log10(teff[ok]), LOG_TEFF_EDGES),
            _cell(np.log10(snr[ok]), LOG_SNR_EDGES),
            _cell(np.log10(chi2[ok]), LOG_CHI2_EDGES),
        ),
        shape,
    )
    return {"counts": np.bincount(flat, minlength=int(np.prod(shape))).reshape(shape).astype(np.int64)}


def _quantile(cdf: np.ndarray, edges: np.ndarray, q: float) -> float:
    # ``cdf`` at the upper edge of each bin (from 0 at edges[0]); linear in value inside a bin.
    x = np.concatenate([[0.0], cdf])
    i = int(np.searchsorted(x, q, side="left"))
    i = min(max(i, 1), x.size - 1)
    lo, hi = x[i - 1], x[i]
    frac = 0.0 if hi <= lo else (q - lo) / (hi - lo)
    return float(edges[i - 1] + frac * (edges[i] - edges[i - 1]))


def cell_statistics(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Per (Teff, S/N) cell: ``n``, ``median`` and ``sigma`` (1.4826 × MAD) of χ²_red from the histogram.

    Cells with no spectra have NaN statistics. Shapes (n_teff_cells, n_snr_cells).
    """
    counts = np.asarray(counts)
    n = counts.sum(axis=2)
    median = np.full(n.shape, np.nan)
    sigma = np.full(n.shape, np.nan)
    values = 10.0**LOG_CHI2_EDGES  # χ² is linear inside a bin of these edges (to 1.2 %)
    for i, j in zip(*np.nonzero(n), strict=True):
        cdf = np.cumsum(counts[i, j]) / n[i, j]
        med = _quantile(cdf, values, 0.5)
        # MAD: the t with F(med + t) − F(med − t) = 1/2, by bisection on the interpolated cdf.
        lo, hi = 0.0, float(values[-1])
        for _ in range(60):
            t = 0.5 * (lo + hi)
            mass = np.interp(med + t, values, np.r_[0.0, cdf]) - np.interp(med - t, values, np.r_[0.0, cdf])
            lo, hi = (t, hi) if mass < 0.5 else (lo, t)
        median[i, j] = med
        sigma[i, j] = MAD_TO_SIGMA * 0.5 * (lo + hi)
    return {"n": n, "median": median, "sigma": sigma}


@dataclass(frozen=True)
class Chi2Model:
    """The survey's χ²_red median and dispersion: log10 of each a polynomial of (log10 Teff, log10 S/N)."""

    median: Poly2D
    sigma: Poly2D
    n_spectra: int
    n_cells: int
    min_count: int
    sigma_floor: float
    """The smallest dispersion of a fitted cell: the dispersion polynomial is floored there."""
    cell_factor: int = 1
    """The fitted cells are the histogram's merged ``cell_factor`` × ``cell_factor``."""

    def chi2ratio(self, chi2_red: np.ndarray, teff: np.ndarray, snr: np.ndarray) -> np.ndarray:
        """(χ²_red − median(Teff, S/N)) / dispersion(Teff, S/N), float32 (NaN where an input is not usable)."""
        teff = np.asarray(teff, dtype=np.float64)
        snr = np.asarray(snr, dtype=np.float64)
        ok = (teff > 0) & (snr > 0)
        x = np.log10(np.where(ok, teff, np.nan))
        y = np.log10(np.where(ok, snr, np.nan))
        return ((np.asarray(chi2_red, dtype=np.float64) - self.median_at(x, y)) / self.sigma_at(x, y)).astype(
            np.float32
        )

    def median_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Median χ²_red at log10 Teff ``x`` and log10 S/N ``y``."""
        return 10.0 ** self.median(x, y)

    def sigma_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Dispersion of χ²_red at (``x``, ``y``), floored at the smallest fitted cell's: the polynomial is
        unconstrained where no cell is (hot, faint stars are rare)."""
        return np.maximum(10.0 ** self.sigma(x, y), self.sigma_floor)

    def to_dict(self) -> dict[str, Any]:
        return {
            "median": self.median.to_dict(),
            "sigma": self.sigma.to_dict(),
            "n_spectra": int(self.n_spectra),
            "n_cells": int(self.n_cells),
            "min_count": int(self.min_count),
            "sigma_floor": float(self.sigma_floor),
            "cell_factor": int(self.cell_factor),
            "variables": "log10 median and log10 dispersion of chisq_red as polynomials of x = log10 Teff [K], "
            "y = log10 S/N",
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Chi2Model:
        return cls(
            Poly2D.from_dict(d["median"]),
            Poly2D.from_dict(d["sigma"]),
            int(d["n_spectra"]),
            int(d["n_cells"]),
            int(d["min_count"]),
            float(d["sigma_floor"]),
            int(d.get("cell_factor", 1)),
        )


COARSENING = (1, 2, 3, 6)
"""Cells of the fit: the histogram's (Teff, S/N) cells merged f × f, the finest f that suffices."""


def coarsen(counts: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge ``factor`` × ``factor`` (Teff, S/N) cells of the histogram.

    Returns the merged counts and each merged cell's count-weighted mean log10 Teff and log10 S/N (the
    centre of its spectra, not of its area).
    """
    nt, ns, nc = counts.shape
    pt, ps = -nt % factor, -ns % factor
    padded = np.pad(counts, ((0, pt), (0, ps), (0, 0)))
    mt, ms = padded.shape[0] // factor, padded.shape[1] // factor
    merged = padded.reshape(mt, factor, ms, factor, nc).sum(axis=(1, 3))
    xc = 0.5 * (LOG_TEFF_EDGES[:-1] + LOG_TEFF_EDGES[1:])
    yc = 0.5 * (LOG_SNR_EDGES[:-1] + LOG_SNR_EDGES[1:])
    x, y = np.meshgrid(np.pad(xc, (0, pt), mode="edge"), np.pad(yc, (0, ps), mode="edge"), indexing="ij")
    n = padded.sum(axis=2).astype(np.float64)
    nm = n.reshape(mt, factor, ms, factor).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        xm = (n * x).reshape(mt, factor, ms, factor).sum(axis=(1, 3)) / nm
        ym = (n * y).reshape(mt, factor, ms, factor).sum(axis=(1, 3)) / nm
    return merged, xm, ym


def fit_chi2_model(counts: np.ndarray, min_count: int = 20, order: int = 3, coverage: float = 0.8) -> Chi2Model:
    """The χ² model from the summed histogram of :func:`chi2_histogram_block`.

    The cells are the histogram's, merged f × f (f in :data:`COARSENING`) for the finest f at which the
    cells holding ``min_count`` spectra hold ``coverage`` of all spectra and number at least the
    polynomial's terms (at survey scale f = 1; a small cube needs coarser cells). With fewer than
    ``min_count`` spectra in every cell, all spectra form one cell (a constant median and dispersion).

    Raises
    ------
    ValueError
        If fewer than two spectra have a usable Teff, S/N and χ².
    """
    total = int(np.asarray(counts).sum())
    best = None
    for factor in COARSENING:
        merged, x, y = coarsen(np.asarray(counts), factor)
        stats = cell_statistics(merged)
        use = (stats["n"] >= min_count) & (stats["sigma"] > 0)
        covered = stats["n"][use].sum() / max(total, 1)
        if best is None or covered > best[0]:
            best = (covered, stats, use, x, y, factor)
        if covered >= coverage and use.sum() >= (order + 1) * (order + 2) // 2:
            best = (covered, stats, use, x, y, factor)
            break
    covered, stats, use, x, y, factor = best
    if not use.any():
        # Too few fits for any cell (a handful of spectra): one cell of all of them, constant median and σ.
        factor = max(np.asarray(counts).shape[:2])
        merged, x, y = coarsen(np.asarray(counts), factor)
        stats = cell_statistics(merged)
        use = (stats["n"] >= 2) & (stats["sigma"] > 0)
    if not use.any():
        raise ValueError(f"too few fitted spectra with a usable Teff, S/N and chi2 ({total}) for the chi2 model")
    n, med, sig = stats["n"][use], stats["median"][use], stats["sigma"][use]
    median = fit_poly2d(x[use], y[use], np.log10(med), n * (med / sig) ** 2, order=order)
    sigma = fit_poly2d(x[use], y[use], np.log10(sig), n, order=order)
    return Chi2Model(median, sigma, total, int(use.sum()), min_count, float(sig.min()), factor)


def summary_lines(reductions: Mapping[str, Any]) -> list[str]:
    """``survey-scale info`` lines of the recorded χ² model (``reductions['chi2ratio']``: :meth:`Chi2Model.to_dict`
    and its bookkeeping); none before step ``chi2ratio`` ran."""
    chi2 = reductions.get("chi2ratio")
    if not chi2:
        return []
    return [
        f"    chi2ratio: log10 median and log10 dispersion of chisq_red, order-{chi2['median']['order']} "
        f"polynomials in (log10 Teff, log10 S/N) over {chi2['n_cells']} cells of {chi2['n_spectra']:,} fits "
        f"({format_ranges(chi2['median'])}; {chi2['median']['n_clipped']} + {chi2['sigma']['n_clipped']} cells "
        f"clipped), updated {chi2.get('updated')}, code {chi2.get('code_version')}",
        f"      log10 median coefficients {format_coefficients(chi2['median'])}",
        f"      log10 dispersion coefficients {format_coefficients(chi2['sigma'])}",
    ]
