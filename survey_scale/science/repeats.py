"""Repeat visits: uniqflag, repeat-pair precision and the error calibration (SPEC §6, §13; P2 §4.6, §5.6).

All functions are pure numpy. The per-star ones take a block of whole stars as the engine's
``reduce_by_star`` gives them: ``data`` (the block's rows of some cube variables) and ``star`` (n,), numbering
the block's stars 0..m−1.

Repeat pairs (P2 §4.6)
    Two visits of one star on different nights (``lmjd`` differ) whose S/N differ by less than
    ``snr_tolerance`` (20 %) of their mean, both with a usable fit (finite labels and errors, converged, not
    flagged ``no_data``). A label that is NaN in a fit whose other labels are finite is one the emulator does
    not fit (:func:`survey_scale.core.labels.to_label_order`): it does not make the fit unusable, and
    its Δ, precision and calibration are NaN. For each pair: the label difference Δ and both visits' formal
    errors, S/N and Teff (so that errors scaled per visit can be applied to the pair) — float32, ~150 bytes a
    pair.
Precision (P2 Fig. 10)
    Per label and S/N bin: the robust scatter (1.4826 × MAD) of Δ divided by √2 — both visits contribute
    equally.
Error calibration (P2 §5.6)
    The pull of a pair, z = Δ / √(σ₁² + σ₂²), should have unit dispersion. The pairs are cut into cells of
    equal counts in log10 Teff and log10 S/N; in each cell the scale s = 1.4826 × MAD(z) is measured, and
    log10 s is fitted as a 3rd-order polynomial of (log10 Teff, log10 S/N) weighted by the cell's count
    (:mod:`survey_scale.science.poly2d`, clipped, clamped to the fitted range). The calibrated error of a
    visit is its formal error × s(Teff, S/N). Both visits of a pair have nearly the same Teff and S/N, so
    s applies to the pair as a whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from survey_scale.science.final_sample import hot_star_candidates
from survey_scale.science.poly2d import MAD_TO_SIGMA, Poly2D, fit_poly2d, format_coefficients, robust_sigma

PRECISION_BINS: tuple[float, ...] = (0.0, 50.0, 100.0, np.inf)
"""P2 §4.6's S/N bins: < 50, 50–100, > 100."""
PRECISION_CURVE_BINS: tuple[float, ...] = (5, 10, 15, 20, 30, 40, 50, 70, 100, 150, 200, 300, 500, 1000)
"""Finer S/N bins for the precision curve (P2 Fig. 10)."""


def uniqflag(snr: np.ndarray, star: np.ndarray) -> np.ndarray:
    """1 for each star's highest-S/N visit, 2 … n for the others by decreasing S/N (P2 Table 5), int16.

    Ties, and NaN S/N (ranked last), keep the order of the rows, so the result is deterministic.
    """
    snr = np.asarray(snr, dtype=np.float64)
    star = np.asarray(star)
    key = np.where(np.isfinite(snr), -snr, np.inf)
    order = np.lexsort((np.arange(snr.size), key, star))
    first = np.searchsorted(star[order], star[order], side="left")
    flag = np.empty(snr.size, dtype=np.int16)
    flag[order] = np.arange(snr.size) - first + 1
    return flag


def uniqflag_block(data: Mapping[str, np.ndarray], star: np.ndarray, params: Mapping[str, Any]) -> dict:
    """``reduce_by_star`` block: ``{"uniqflag": ...}`` from the S/N column ``params["snr_column"]``."""
    return {"uniqflag": uniqflag(data[params["snr_column"]], star)}


def usable_fits(data: Mapping[str, np.ndarray], bad_flags: int) -> np.ndarray:
    """Visits whose fit can enter a repeat pair: finite labels with finite, positive errors, no ``bad_flags``
    fit flag. NaN labels beside finite ones are labels the emulator does not fit (module docstring)."""
    labels, err = np.asarray(data["labels"]), np.asarray(data["label_err"])
    fitted = np.isfinite(labels)
    with np.errstate(invalid="ignore"):
        err_ok = np.isfinite(err) & (err > 0)
    ok = fitted.any(axis=1) & (err_ok | ~fitted).all(axis=1)
    return ok & ((np.asarray(data["fit_flags"]).astype(np.int64) & int(bad_flags)) == 0)


def repeat_pairs_block(
    data: Mapping[str, np.ndarray], star: np.ndarray, params: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """``reduce_by_star`` block: the repeat pairs of the block's stars (see the module docstring).

    ``data``: ``lmjd``, ``labels`` (n, L), ``label_err`` (n, L), ``fit_flags``, the S/N column and, where the
    fit wrote them, the cool-star check's columns (:func:`survey_scale.science.final_sample.hot_star_candidates`);
    ``params``: ``snr_column``, ``teff_index``, ``snr_tolerance``, ``bad_flags``. Returns per pair (float32,
    ~150 bytes a pair) ``delta`` = labels₁ − labels₂ (P, L), ``err1``, ``err2`` (P, L), ``snr1``, ``snr2``,
    ``teff1``, ``teff2``, the visit with the higher S/N first (ties: the lower Teff, then the lower labels).
    """
    snr = np.asarray(data[params["snr_column"]], dtype=np.float32)
    labels = np.asarray(data["labels"], dtype=np.float32)
    err = np.asarray(data["label_err"], dtype=np.float32)
    night = np.asarray(data["lmjd"])
    # hot stars only: a candidate list's cool stars, fitted by a hot-star model, would set a hot star's errors
    ok = usable_fits(data, params["bad_flags"]) & hot_star_candidates(data) & np.isfinite(snr) & (snr > 0)
    i, j = _same_star_pairs(np.asarray(star))
    mean_snr = 0.5 * (snr[i].astype(np.float64) + snr[j])
    keep = ok[i] & ok[j] & (night[i] != night[j]) & (np.abs(snr[i] - snr[j]) < params["snr_tolerance"] * mean_snr)
    i, j = i[keep], j[keep]
    t = int(params["teff_index"])
    # A canonical order of the two visits, from their values alone (not their rows): the same pair always
    # gives the same Δ whatever the cube's row order.
    swap = (snr[i] < snr[j]) | ((snr[i] == snr[j]) & (labels[i, t] > labels[j, t]))
    i, j = np.where(swap, j, i), np.where(swap, i, j)
    return {
        "delta": labels[i] - labels[j],
        "err1": err[i],
        "err2": err[j],
        "snr1": snr[i],
        "snr2": snr[j],
        "teff1": labels[i, t],
        "teff2": labels[j, t],
    }


def _same_star_pairs(star: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # All (i, j), i before j, with star[i] == star[j]: for each number of visits k, the k(k−1)/2 pairs of all
    # stars with k visits at once (a loop over the few values of k, not over stars).
    order = np.argsort(star, kind="stable")
    s = star[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    sizes = np.diff(np.r_[starts, s.size])
    pairs_i, pairs_j = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for k in np.unique(sizes[sizes > 1]):
        a, b = np.triu_indices(int(k), k=1)
        first = starts[sizes == k][:, None]
        pairs_i.append(order[first + a[None, :]].ravel())
        pairs_j.append(order[first + b[None, :]].ravel())
    return np.concatenate(pairs_i), np.concatenate(pairs_j)


def concat_pairs(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Combine of two blocks' pairs (order is restored by :func:`sort_pairs`)."""
    return {k: np.concatenate([a[k], b[k]]) for k in a}


def sort_pairs(pairs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Pairs in a canonical order of their values (S/N, Teff, then Δ): the same pairs give the same table
    whatever the order in which the blocks were combined."""
    keys = [pairs["delta"][:, k] for k in range(pairs["delta"].shape[1])[::-1]]
    order = np.lexsort((*keys, pairs["teff2"], pairs["teff1"], pairs["snr2"], pairs["snr1"]))
    return {k: np.asarray(v)[order] for k, v in pairs.items()}


def pair_snr(pairs: Mapping[str, np.ndarray]) -> np.ndarray:
    return 0.5 * (np.asarray(pairs["snr1"]) + np.asarray(pairs["snr2"]))


def pair_teff(pairs: Mapping[str, np.ndarray]) -> np.ndarray:
    return 0.5 * (np.asarray(pairs["teff1"]) + np.asarray(pairs["teff2"]))


def precision_table(
    pairs: Mapping[str, np.ndarray],
    label_names: Sequence[str],
    bins: Sequence[float] = PRECISION_BINS,
    teff_min: float | None = None,
) -> dict[str, np.ndarray]:
    """Per S/N bin: ``n_pairs`` (n_bins,), ``precision`` (n_bins, L) = robust scatter of Δ / √2, ``std``
    (n_bins, L) = standard deviation of Δ / √2, ``median_delta`` (n_bins, L), ``snr_edges``.

    ``teff_min`` keeps only pairs whose mean Teff is above it (P2 Fig. 10 uses Teff > 10,000 K). Bins with
    fewer than 3 pairs are NaN.
    """
    snr = pair_snr(pairs)
    delta = np.asarray(pairs["delta"])
    use = np.ones(snr.size, bool) if teff_min is None else pair_teff(pairs) > teff_min
    edges = np.asarray(bins, dtype=np.float64)
    n_bins, n_labels = edges.size - 1, len(label_names)
    out = {
        "snr_edges": edges,
        "n_pairs": np.zeros(n_bins, np.int64),
        "precision": np.full((n_bins, n_labels), np.nan),
        "std": np.full((n_bins, n_labels), np.nan),
        "median_delta": np.full((n_bins, n_labels), np.nan),
    }
    for b in range(n_bins):
        sel = use & (snr >= edges[b]) & (snr < edges[b + 1])
        out["n_pairs"][b] = int(sel.sum())
        if sel.sum() < 3:
            continue
        d = delta[sel]
        out["precision"][b] = [robust_sigma(d[:, k]) / np.sqrt(2) for k in range(n_labels)]
        out["std"][b] = np.std(d, axis=0, ddof=1, dtype=np.float64) / np.sqrt(2)
        out["median_delta"][b] = np.median(d, axis=0)
    return out


def pair_pulls(
    pairs: Mapping[str, np.ndarray],
    scale1: np.ndarray | None = None,
    scale2: np.ndarray | None = None,
    label: int | None = None,
) -> np.ndarray:
    """Δ / √((s₁σ₁)² + (s₂σ₂)²) per pair and label, (P, L) — or (P,) for one ``label`` index; the scales
    (same shape) default to 1 (formal errors). float32: the inputs are."""
    pick = (lambda a: a) if label is None else (lambda a: a[:, label])
    e1 = pick(np.asarray(pairs["err1"], dtype=np.float32)) * (1.0 if scale1 is None else scale1)
    e2 = pick(np.asarray(pairs["err2"], dtype=np.float32)) * (1.0 if scale2 is None else scale2)
    return (pick(np.asarray(pairs["delta"], dtype=np.float32)) / np.sqrt(e1**2 + e2**2)).astype(np.float32)


@dataclass(frozen=True)
class ErrorCalibration:
    """Per label, log10 of the formal-error scale as a polynomial of (log10 Teff, log10 S/N) (P2 §5.6).

    A label with too few pairs has no polynomial (``None``): its scale is 1 and its error stays formal.
    """

    label_names: tuple[str, ...]
    log_scale: tuple[Poly2D | None, ...]
    n_pairs: int
    n_cells: int

    def scale(self, teff: np.ndarray, snr: np.ndarray, label: int | None = None) -> np.ndarray:
        """Scale factors (n, L) — or (n,) for one ``label`` index — for visits of Teff ``teff`` (K) and S/N
        ``snr`` (n,)."""
        teff, snr = np.asarray(teff, np.float64), np.asarray(snr, np.float64)
        x = np.log10(np.where(teff > 0, teff, np.nan))
        y = np.log10(np.where(snr > 0, snr, np.nan))
        polys = self.log_scale if label is None else [self.log_scale[label]]
        cols = [np.ones_like(x) if p is None else 10.0 ** p(x, y) for p in polys]
        return np.stack(cols, axis=-1) if label is None else cols[0]

    def calibrate(self, err: np.ndarray, teff: np.ndarray, snr: np.ndarray) -> np.ndarray:
        """Calibrated errors (n, L), float32: formal ``err`` × scale (NaN where Teff or S/N is unusable)."""
        return (np.asarray(err, np.float64) * self.scale(teff, snr)).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label_names": list(self.label_names),
            "log_scale": [None if p is None else p.to_dict() for p in self.log_scale],
            "n_pairs": int(self.n_pairs),
            "n_cells": int(self.n_cells),
            "variables": "log10 s = P(log10 Teff [K], log10 S/N); calibrated error = formal error x s",
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ErrorCalibration:
        return cls(
            tuple(d["label_names"]),
            tuple(None if p is None else Poly2D.from_dict(p) for p in d["log_scale"]),
            int(d["n_pairs"]),
            int(d["n_cells"]),
        )


def _equal_count_edges(values: np.ndarray, n_bins: int) -> np.ndarray:
    edges = np.quantile(values, np.linspace(0.0, 1.0, n_bins + 1))
    edges[0], edges[-1] = -np.inf, np.inf
    return np.unique(edges)


def fit_error_calibration(
    pairs: Mapping[str, np.ndarray],
    label_names: Sequence[str],
    min_per_cell: int = 25,
    max_bins: int = 6,
    order: int = 3,
    min_pairs: int = 50,
) -> ErrorCalibration:
    """Fit the per-label error scale on repeat pairs (see the module docstring).

    The pairs are cut into up to ``max_bins`` × ``max_bins`` cells of equal counts in log10 Teff and log10
    S/N, fewer when there are not ``min_per_cell`` pairs per cell; a label with fewer than ``min_pairs``
    usable pairs keeps its formal errors.
    """
    x = np.log10(np.clip(pair_teff(pairs), 1.0, None))
    y = np.log10(np.clip(pair_snr(pairs), 1e-3, None))
    n_pairs = int(np.asarray(pairs["delta"]).shape[0])
    n_bins = int(np.clip(np.floor(np.sqrt(n_pairs / max(min_per_cell, 1))), 1, max_bins))
    polys: list[Poly2D | None] = []
    n_cells = 0
    for k in range(len(label_names)):
        zk = pair_pulls(pairs, label=k)  # one label at a time: memory of a column, not of the table
        finite = np.isfinite(zk) & np.isfinite(x) & np.isfinite(y)
        if finite.sum() < min_pairs:
            polys.append(None)
            continue
        xe = _equal_count_edges(x[finite], n_bins)
        ye = _equal_count_edges(y[finite], n_bins)
        xi = np.clip(np.searchsorted(xe, x, side="right") - 1, 0, xe.size - 2)
        yi = np.clip(np.searchsorted(ye, y, side="right") - 1, 0, ye.size - 2)
        cx, cy, cs, cn = [], [], [], []
        for a in range(xe.size - 1):
            for b in range(ye.size - 1):
                sel = finite & (xi == a) & (yi == b)
                if sel.sum() < max(3, min_per_cell // 2):
                    continue
                s = MAD_TO_SIGMA * np.median(np.abs(zk[sel] - np.median(zk[sel])))
                if s > 0:
                    cx.append(np.median(x[sel]))
                    cy.append(np.median(y[sel]))
                    cs.append(np.log10(s))
                    cn.append(sel.sum())
        if not cs:
            polys.append(None)
            continue
        n_cells = max(n_cells, len(cs))
        polys.append(fit_poly2d(np.array(cx), np.array(cy), np.array(cs), np.array(cn, float), order=order))
    return ErrorCalibration(tuple(label_names), tuple(polys), n_pairs, n_cells)


def snr_bin(lo: float | None, hi: float | None) -> str:
    """An S/N bin as text: "< 50", "50-100", "> 100" (an infinite edge is stored as null)."""
    if hi is None:
        return f"> {lo:g}"
    return f"< {hi:g}" if not lo else f"{lo:g}-{hi:g}"


def summary_lines(reductions: Mapping[str, Any]) -> list[str]:
    """``survey-scale info`` lines of the repeat-visit precision and the error calibration
    (``reductions['repeat_precision']``, ``reductions['error_calibration']``); none before step ``repeats``."""
    lines = []
    if rep := reductions.get("repeat_precision"):
        table = rep["table"]
        lines.append(
            f"    repeat precision: {rep['n_pairs']:,} pairs ({rep['selection']}); scatter/sqrt(2) for Teff > "
            f"{rep['teff_min']:g} K, updated {rep.get('updated')}"
        )
        edges = table["snr_edges"]
        for b, n in enumerate(table["n_pairs"]):
            values = ", ".join(f"{label} {v[b]:.3g}" for label, v in table["precision"].items() if v[b] is not None)
            lines.append(f"      S/N {snr_bin(edges[b], edges[b + 1])}: {n:,} pairs: {values or '-'}")
        pulls = ", ".join(
            f"{label} {p['formal']:.2f}->{p['calibrated']:.2f}"
            for label, p in rep["pull_sigma"].items()
            if p["formal"] is not None and p["calibrated"] is not None
        )
        lines.append(f"      robust sigma of the pairs' pulls, formal -> calibrated errors: {pulls}")
    if cal := reductions.get("error_calibration"):
        lines.append(
            f"    error calibration: log10 scale of the formal errors as polynomials in (log10 Teff, log10 S/N), "
            f"{cal['n_pairs']:,} pairs, updated {cal.get('updated')}"
        )
        for label, poly in zip(cal["label_names"], cal["log_scale"], strict=True):
            text = (
                "formal errors kept (too few pairs)"
                if poly is None
                else f"order {poly['order']} {format_coefficients(poly)}"
            )
            lines.append(f"      {label:<8} {text}")
    return lines
