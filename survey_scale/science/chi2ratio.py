"""chi2ratio: how unusual a fit's reduced χ² is for its Teff and S/N (SPEC §6, P2 §5.2).

P2 models the median and the dispersion (a resistant estimate of the standard deviation) of χ²_red as
3rd-order polynomials of Teff and S/N over the whole survey, and flags chi2ratio =
(χ²_red − median) / dispersion > 10. chi2ratio is a standard score only if the model is right in every part
of the (Teff, S/N) plane: the cut must mean the same for a B star at S/N 15 and an A star at S/N 200.

Survey-wide and streamed: each block of spectra adds its counts to one fixed 3-D histogram of
(log10 Teff, log10 S/N, log10 χ²_red) (:func:`chi2_histogram_block`; integer counts, so the sum of the
blocks is exact and does not depend on their order). Memory is the histogram's, whatever the number of
spectra. The model is read off the summed histogram cell by cell (:func:`fit_chi2_model`):

- **cells**: the histogram's (Teff, S/N) cells, 0.05 dex in Teff × 0.1 dex in S/N. A cell's median and
  1.4826 × MAD come from its cumulative χ² distribution (linear interpolation inside the fine log χ² bins:
  0.005 dex, a 1.2 % relative resolution).
- **resistant to the spectra that are not normal stars**: the statistics are iterated with the χ² above
  median + ``clip`` × dispersion (5) left out, until that set no longer changes. Emission-line stars,
  binaries and damaged spectra only raise χ²; on the mocks they are over a quarter of the hot-star
  candidates and half of those hotter than 12,600 K at S/N < 20, where the plain medians and MADs gave the
  clean stars' chi2ratio a median of −1.3 and a robust σ of 2.7 (below).
- **shrinkage toward the neighbours where a cell is sparse**: a cell with fewer than ``min_count`` spectra
  takes its statistics from its neighbours too, pooled with Gaussian weights of the distance in cells
  (:data:`BANDWIDTHS`: the narrowest kernel whose weighted count reaches ``min_count``; at survey scale
  nearly every cell stands on its own). Pooled cells are first aligned: each neighbour's χ² is standardized
  by a pilot of the same pooling, (χ² − median') / dispersion', so that a steep gradient (χ² grows like
  (S/N)² where model errors dominate) does not widen the pooled distribution; the pooled standardized
  median and dispersion then correct the pilot.

The model is a table of median and dispersion per cell, evaluated in the cell a spectrum falls in (a
(Teff, S/N) beyond the grid takes its end cell). Why cells and not a smooth surface, by measurement on a
mock of 4,440 spectra (seed 7; ``benchmarks/eval_chi2ratio.py``, clean hot stars in a 3 × 3 grid of
(log Teff, log S/N) tertiles): the order-3 polynomials of log median and log dispersion gave cell robust σ
0.51–2.74 and medians −1.27…+0.07; orders 4 and 5, with or without the clipping, diverged in the sparse
hot, faint corner (robust σ up to 5 and 45); a local-linear surface fitted to the cell statistics biased the
bright cells (medians up to +1.0). The clipped cells with neighbour pooling gave robust σ 0.89–1.14 and
medians −0.09…+0.13 (on the unseen seeds 31 and 41: σ 0.88–1.03, medians −0.13…+0.06; σ 0.95–1.02, medians
−0.07…+0.05). Each cell's count, its pooling bandwidth and the chi2ratio of the fitted spectra per
(Teff, S/N) region (:data:`QUALITY_LOG_TEFF_EDGES` × :data:`QUALITY_LOG_SNR_EDGES`: count, median, robust σ,
fraction flagged, from the histogram) are recorded with the model, for ``survey-scale info`` and the report.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from survey_scale.science.poly2d import MAD_TO_SIGMA

LOG_TEFF_EDGES = np.round(np.arange(3.80, 4.70 + 1e-9, 0.05), 4)
"""Cell edges in log10 Teff (6,300–50,000 K); values outside fall in the end cells."""
LOG_SNR_EDGES = np.round(np.arange(0.0, 3.0 + 1e-9, 0.1), 4)
"""Cell edges in log10 S/N (1–1,000)."""
LOG_CHI2_EDGES = np.round(np.arange(-1.5, 3.5 + 1e-9, 0.005), 4)
"""Fine edges in log10 χ²_red (0.03–3,000) for the medians and MADs."""
CHI2_VALUES = 10.0**LOG_CHI2_EDGES
"""The fine edges as χ²_red (χ² is linear inside a bin of them, to 1.2 %)."""

FLAG_THRESHOLD = 10.0
"""P2 §5.2: chi2ratio > 10 is flagged."""
CLIP = 5.0
"""Default upper clip of the cell statistics, in dispersions above the median."""
BANDWIDTHS = (0.0, 0.5, 0.7, 1.0, 1.2, 1.4, 1.7, 2.0, 2.4, 2.8, 3.4, 4.0, 5.6, 8.0, 11.0, 16.0)
"""Standard deviations (in cells) of the Gaussian pooling kernels tried, narrowest first (0: the cell alone)."""
STANDARD_GRID = np.round(np.linspace(-10.0, 30.0, 2001), 6)
"""Standardized χ² (in pilot dispersions) on which aligned cells are pooled and the chi2ratio tabulated."""
SIGMA_RESOLUTION = 0.003
"""Smallest dispersion, relative to the median, that the 0.005-dex χ² bins resolve (the dispersion's floor)."""
QUALITY_LOG_TEFF_EDGES = (4.0, 4.2, 4.4)
"""Inner edges (log10 K: 10,000, 15,800, 25,100 K) of the Teff regions of the recorded fit quality."""
QUALITY_LOG_SNR_EDGES = (1.3, 1.7, 2.0)
"""Inner edges (log10: 20, 50, 100) of the S/N regions of the recorded fit quality."""


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


def _interp_rows(cdf: np.ndarray, grid: np.ndarray, u: np.ndarray) -> np.ndarray:
    # Each row of ``cdf`` (rows, g), tabulated at ``grid`` (g,), at that row's ``u`` (rows,): linear, constant beyond.
    i = np.minimum(np.maximum(np.searchsorted(grid, u, side="right") - 1, 0), grid.size - 2)
    f = np.minimum(np.maximum((u - grid[i]) / (grid[i + 1] - grid[i]), 0.0), 1.0)
    rows = np.arange(cdf.shape[0])
    return cdf[rows, i] + f * (cdf[rows, i + 1] - cdf[rows, i])


def _crossing(values: np.ndarray, x: np.ndarray, q: float) -> np.ndarray:
    # Per row, where the non-decreasing ``values`` (rows, k) at ``x`` (k,) or (rows, k) first reach q (linear).
    x = np.broadcast_to(x, values.shape)
    i = np.clip(np.argmax(values >= q, axis=1), 1, values.shape[1] - 1)[:, None]
    lo, hi = np.take_along_axis(values, i - 1, axis=1)[:, 0], np.take_along_axis(values, i, axis=1)[:, 0]
    x0, x1 = np.take_along_axis(x, i - 1, axis=1)[:, 0], np.take_along_axis(x, i, axis=1)[:, 0]
    frac = np.clip(np.where(hi > lo, (q - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0), 0.0, 1.0)
    return x0 + frac * (x1 - x0)


def robust_statistics(
    cdf: np.ndarray, grid: np.ndarray, total: np.ndarray | None = None, clip: float | None = None, max_iter: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """Median and 1.4826 × MAD of each row of cumulative counts ``cdf`` (rows, g) tabulated at ``grid``
    (linear in between).

    ``total``: each row's count (default: its last value; mass beyond the grid's end counts when given).
    ``clip``: iterate with the mass above median + clip × dispersion left out, until it no longer changes.
    """
    cdf = np.asarray(cdf, dtype=np.float64)
    top = cdf[:, -1].copy() if total is None else np.asarray(total, dtype=np.float64).copy()
    top = np.maximum(top, 1e-300)
    for _ in range(max_iter):
        scaled = np.minimum(cdf / top[:, None], 1.0)
        med, q1, q3 = (_crossing(scaled, grid, q) for q in (0.5, 0.25, 0.75))
        # MAD: the t with F(med + t) − F(med − t) = 1/2, between the distances from the median to the quartiles;
        # by bisection (40 halvings: to 1e-12 of that interval).
        lo, hi = np.minimum(med - q1, q3 - med), np.maximum(med - q1, q3 - med)
        for _ in range(40):
            t = 0.5 * (lo + hi)
            below = _interp_rows(scaled, grid, med + t) - _interp_rows(scaled, grid, med - t) < 0.5
            lo, hi = np.where(below, t, lo), np.where(below, hi, t)
        sigma = MAD_TO_SIGMA * 0.5 * (lo + hi)
        if clip is None:
            break
        new_top = np.maximum(_interp_rows(cdf, grid, med + clip * sigma), 1e-300)
        if np.allclose(new_top, top, rtol=1e-9, atol=0.0):
            break
        top = new_top
    return med, sigma


def cell_statistics(counts: np.ndarray, clip: float | None = None) -> dict[str, np.ndarray]:
    """Per (Teff, S/N) cell: ``n``, ``median`` and ``sigma`` (1.4826 × MAD) of χ²_red from the histogram
    (``clip``: see :func:`robust_statistics`).

    Cells with no spectra have NaN statistics. Shapes (n_teff_cells, n_snr_cells).
    """
    counts = np.asarray(counts)
    n = counts.sum(axis=2)
    median = np.full(n.shape, np.nan)
    sigma = np.full(n.shape, np.nan)
    has = n > 0
    if has.any():
        cum = np.concatenate([np.zeros((int(has.sum()), 1)), np.cumsum(counts[has], axis=1)], axis=1)
        median[has], sigma[has] = robust_statistics(cum, CHI2_VALUES, clip=clip)
    return {"n": n, "median": median, "sigma": sigma}


def _pool(a: np.ndarray, h: float) -> np.ndarray:
    # Σ over cells (i', j') of exp(−((i − i')² + (j − j')²) / 2h²) · a[i', j', ...]: a weighted sum, not a mean.
    if h == 0:
        return a
    kt, ks = (np.exp(-0.5 * ((np.arange(m)[:, None] - np.arange(m)[None, :]) / h) ** 2) for m in a.shape[:2])
    return np.swapaxes(np.tensordot(ks, np.tensordot(kt, a, axes=(1, 0)), axes=(1, 1)), 0, 1)


def _standardized_cdfs(cum: np.ndarray, n: np.ndarray, median: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    # Each cell's cumulative counts (cells..., CHI2_VALUES) of (χ² − median) / sigma at STANDARD_GRID.
    out = np.zeros((*n.shape, STANDARD_GRID.size))
    for idx in zip(*np.nonzero(n), strict=True):
        out[idx] = np.interp(median[idx] + sigma[idx] * STANDARD_GRID, CHI2_VALUES, cum[idx])
    return out


def _sig(values: np.ndarray) -> np.ndarray:
    # Six significant digits: what the cube's attributes record, so that the recorded model is the fitted one.
    return np.vectorize(lambda v: float(f"{v:.6g}"), otypes=[float])(values)


@dataclass(frozen=True)
class Chi2Model:
    """The survey's χ²_red median and dispersion per (log10 Teff, log10 S/N) cell (module docstring)."""

    log_teff_edges: tuple[float, ...]
    log_snr_edges: tuple[float, ...]
    median: tuple[tuple[float, ...], ...]
    """Median χ²_red per cell, (n_teff_cells, n_snr_cells)."""
    sigma: tuple[tuple[float, ...], ...]
    """Dispersion (1.4826 × MAD) of χ²_red per cell."""
    n: tuple[tuple[int, ...], ...]
    """Fitted spectra per cell."""
    bandwidth: tuple[tuple[float, ...], ...]
    """Standard deviation (cells) of the pooling kernel of each cell: 0 = its own spectra."""
    n_spectra: int
    min_count: int
    clip: float
    quality: Mapping[str, Any]
    """The fitted spectra's chi2ratio per (Teff, S/N) region: ``log_teff_edges``, ``log_snr_edges`` (inner edges),
    ``flag``, and per region ``n``, ``median`` and ``sigma`` (1.4826 × MAD; both with the ``clip`` of the model's
    statistics, so 0 and 1 where it fits), ``flagged`` (fraction > ``flag``) (None where empty)."""

    @property
    def n_cells(self) -> int:
        """Cells holding fitted spectra."""
        return int((np.asarray(self.n) > 0).sum())

    def _lookup(self, table: tuple[tuple[float, ...], ...], x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x, y = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
        ok = np.isfinite(x) & np.isfinite(y)
        i = _cell(np.where(ok, x, 0.0), np.asarray(self.log_teff_edges))
        j = _cell(np.where(ok, y, 0.0), np.asarray(self.log_snr_edges))
        return np.where(ok, np.asarray(table, dtype=np.float64)[i, j], np.nan)

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
        """Median χ²_red at log10 Teff ``x`` and log10 S/N ``y`` (that of the cell they fall in)."""
        return self._lookup(self.median, x, y)

    def sigma_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Dispersion of χ²_red at (``x``, ``y``)."""
        return self._lookup(self.sigma, x, y)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "cells",
            "log_teff_edges": list(self.log_teff_edges),
            "log_snr_edges": list(self.log_snr_edges),
            "median": [list(row) for row in self.median],
            "sigma": [list(row) for row in self.sigma],
            "n": [list(row) for row in self.n],
            "bandwidth": [list(row) for row in self.bandwidth],
            "n_spectra": int(self.n_spectra),
            "n_cells": self.n_cells,
            "n_own": int(((np.asarray(self.n) > 0) & (np.asarray(self.bandwidth) == 0)).sum()),
            "min_count": int(self.min_count),
            "clip": float(self.clip),
            "quality": dict(self.quality),
            "variables": "median and dispersion (1.4826 MAD) of chisq_red per cell of x = log10 Teff [K] (rows) and "
            "y = log10 S/N (columns), cell edges log_teff_edges and log_snr_edges",
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Chi2Model:
        """The model of :meth:`to_dict`.

        Raises
        ------
        ValueError
            For a model recorded by chi2ratio version 1 (polynomials): re-run step chi2ratio.
        """
        if d.get("method") != "cells":
            raise ValueError("the chi2 model was recorded by an older chi2ratio (polynomials): re-run step chi2ratio")

        def table(key: str, kind: type) -> tuple[tuple[Any, ...], ...]:
            return tuple(tuple(kind(v) for v in row) for row in d[key])

        return cls(
            tuple(float(v) for v in d["log_teff_edges"]),
            tuple(float(v) for v in d["log_snr_edges"]),
            table("median", float),
            table("sigma", float),
            table("n", int),
            table("bandwidth", float),
            int(d["n_spectra"]),
            int(d["min_count"]),
            float(d["clip"]),
            dict(d["quality"]),
        )


def _quality(
    cum: np.ndarray, n: np.ndarray, median: np.ndarray, sigma: np.ndarray, clip: float, flag: float
) -> dict[str, Any]:
    """The chi2ratio of the histogram's spectra per quality region (:class:`Chi2Model` ``quality``): its median
    and robust σ with the model's ``clip`` (0 and 1 where the model fits), the fraction above ``flag``."""
    tx = _cell(np.asarray(QUALITY_LOG_TEFF_EDGES), LOG_TEFF_EDGES)  # cells' indices where the regions start
    ty = _cell(np.asarray(QUALITY_LOG_SNR_EDGES), LOG_SNR_EDGES)
    rx = np.searchsorted(tx, np.arange(n.shape[0]), side="right")  # each cell's region
    ry = np.searchsorted(ty, np.arange(n.shape[1]), side="right")
    standard = _standardized_cdfs(cum, n, median, sigma)
    above = np.zeros(n.shape)
    for idx in zip(*np.nonzero(n), strict=True):
        above[idx] = n[idx] - np.interp(median[idx] + flag * sigma[idx], CHI2_VALUES, cum[idx])
    shape = (tx.size + 1, ty.size + 1)
    out: dict[str, Any] = {
        "log_teff_edges": list(QUALITY_LOG_TEFF_EDGES),
        "log_snr_edges": list(QUALITY_LOG_SNR_EDGES),
        "flag": float(flag),
        **{key: [[None] * shape[1] for _ in range(shape[0])] for key in ("n", "median", "sigma", "flagged")},
    }
    for a, b in np.ndindex(shape):
        cells = (rx[:, None] == a) & (ry[None, :] == b)
        count = int(n[cells].sum())
        out["n"][a][b] = count
        if count == 0:
            continue
        med, sig = robust_statistics(standard[cells].sum(axis=0)[None], STANDARD_GRID, np.array([count]), clip)
        out["median"][a][b] = round(float(med[0]), 4)
        out["sigma"][a][b] = round(float(sig[0]), 4)
        out["flagged"][a][b] = round(float(above[cells].sum() / count), 6)
    return out


def fit_chi2_model(
    counts: np.ndarray, min_count: int = 20, clip: float = CLIP, flag: float = FLAG_THRESHOLD
) -> Chi2Model:
    """The χ² model from the summed histogram of :func:`chi2_histogram_block` (module docstring).

    Every cell of the grid gets a median and a dispersion: a cell with fewer than ``min_count`` spectra
    (none included) from the narrowest pooling kernel of :data:`BANDWIDTHS` whose weighted count reaches
    ``min_count``, or the widest. ``clip`` is the statistics' upper clip (dispersions above the median);
    ``flag`` the chi2ratio cut of the recorded quality.

    Raises
    ------
    ValueError
        If fewer than two spectra have a usable Teff, S/N and χ².
    """
    counts = np.asarray(counts)
    n = counts.sum(axis=2).astype(np.float64)
    total = int(n.sum())
    if total < 2:
        raise ValueError(f"too few fitted spectra with a usable Teff, S/N and chi2 ({total}) for the chi2 model")
    cum = np.concatenate([np.zeros((*n.shape, 1)), np.cumsum(counts, axis=2)], axis=2).astype(np.float64)
    # The bandwidth of each cell: the narrowest kernel whose weighted count reaches min_count, else the widest.
    level = np.full(n.shape, len(BANDWIDTHS) - 1)
    for k in range(len(BANDWIDTHS) - 1, -1, -1):
        level = np.where(_pool(n, BANDWIDTHS[k]) >= min_count - 1e-9, k, level)

    def pooled_statistics(cdfs: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        med, sig = np.full(n.shape, np.nan), np.full(n.shape, np.nan)
        for k in np.unique(level):
            cells = level == k
            pooled, weight = _pool(cdfs, BANDWIDTHS[k])[cells], _pool(n, BANDWIDTHS[k])[cells]
            med[cells], sig[cells] = robust_statistics(pooled, grid, weight, clip)
        return med, sig

    # Pilot: the pooled χ² themselves; then the neighbours standardized by the pilot, pooled, and the pilot corrected.
    pilot_median, pilot_sigma = pooled_statistics(cum, CHI2_VALUES)
    pilot_sigma = np.maximum(pilot_sigma, SIGMA_RESOLUTION * pilot_median)
    shift, scale = pooled_statistics(_standardized_cdfs(cum, n, pilot_median, pilot_sigma), STANDARD_GRID)
    median = pilot_median + pilot_sigma * shift
    sigma = np.maximum(pilot_sigma * scale, SIGMA_RESOLUTION * np.abs(median))
    # a cell on its own keeps its statistics (aligning its own spectra changes nothing but the interpolation)
    bad = (level == 0) | ~(np.isfinite(median) & np.isfinite(sigma) & (median > 0) & (sigma > 0))
    median, sigma = _sig(np.where(bad, pilot_median, median)), _sig(np.where(bad, pilot_sigma, sigma))
    return Chi2Model(
        tuple(float(v) for v in LOG_TEFF_EDGES),
        tuple(float(v) for v in LOG_SNR_EDGES),
        tuple(tuple(row) for row in median.tolist()),
        tuple(tuple(row) for row in sigma.tolist()),
        tuple(tuple(int(v) for v in row) for row in n),
        tuple(tuple(float(BANDWIDTHS[k]) for k in row) for row in level),
        total,
        int(min_count),
        float(clip),
        _quality(cum, n, median, sigma, clip, flag),
    )


def _region_names(log_edges: list[float], digits: int) -> list[str]:
    # "< a", "a-b", ..., "> z" for inner edges given in log10, each rounded to ``digits`` significant digits.
    values = [f"{round(10**e, digits - len(str(int(10**e)))):,.0f}" for e in log_edges]
    return [f"< {values[0]}", *(f"{a}-{b}" for a, b in itertools.pairwise(values)), f"> {values[-1]}"]


def quality_rows(quality: Mapping[str, Any]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """The recorded fit quality as text: the S/N regions' names and per Teff region its name and per S/N region
    'median / robust σ / % flagged (n)' of the fitted spectra's chi2ratio ('—' where empty)."""
    snr_names = _region_names(quality["log_snr_edges"], 2)
    teff_names = _region_names(quality["log_teff_edges"], 3)
    rows = []
    for a, name in enumerate(teff_names):
        cells = []
        for b in range(len(snr_names)):
            if not quality["n"][a][b]:
                cells.append("—")
                continue
            cells.append(
                f"{quality['median'][a][b]:+.2f} / {quality['sigma'][a][b]:.2f} / "
                f"{100 * quality['flagged'][a][b]:.1f}% ({quality['n'][a][b]:,})"
            )
        rows.append((name, cells))
    return snr_names, rows


def summary_lines(reductions: Mapping[str, Any]) -> list[str]:
    """``survey-scale info`` lines of the recorded χ² model (``reductions['chi2ratio']``: :meth:`Chi2Model.to_dict`
    and its bookkeeping); none before step ``chi2ratio`` ran."""
    chi2 = reductions.get("chi2ratio")
    if not chi2:
        return []
    if chi2.get("method") != "cells":
        return [
            f"    chi2ratio: polynomials of an older chi2ratio (code {chi2.get('code_version')}, updated "
            f"{chi2.get('updated')}): re-run step chi2ratio"
        ]
    quality = chi2["quality"]
    bandwidths = [h for n_row, h_row in zip(chi2["n"], chi2["bandwidth"], strict=True)
                  for n, h in zip(n_row, h_row, strict=True) if n > 0]  # fmt: skip
    snr_names, rows = quality_rows(quality)
    width = max(len(c) for _, cells in rows for c in cells) + 2
    return [
        f"    chi2ratio: median and dispersion of chisq_red per (log10 Teff, log10 S/N) cell, {chi2['clip']:g}-sigma "
        f"upper clip, {chi2['n_cells']} cells of {chi2['n_spectra']:,} fits ({chi2['n_own']} on their own, the rest "
        f"pooled with neighbours to {chi2['min_count']} fits, kernel <= {max(bandwidths, default=0):g} cells), "
        f"updated {chi2.get('updated')}, code {chi2.get('code_version')}",
        f"      chi2ratio of the fitted spectra: median / robust sigma ({chi2['clip']:g}-sigma clip) / % > "
        f"{quality['flag']:g} (n)",
        f"      {'Teff [K] | S/N':<16}" + "".join(f"{s:>{width}}" for s in snr_names),
        *(f"      {name:<16}" + "".join(f"{c:>{width}}" for c in cells) for name, cells in rows),
    ]
