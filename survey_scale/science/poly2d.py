"""Robust 2-D polynomials of survey-wide trends (SPEC §6, P2 §5.2 and §5.6).

The χ² median and dispersion, and the scale of the formal errors, are each modelled as a 3rd-order
polynomial in two variables (log10 Teff, log10 S/N): z(x, y) = Σ_{i+j ≤ order} c_ij x^i y^j.

The variables are mapped to [−1, 1] over the range of the fitted points before the fit (conditioning), and
evaluation clamps them to that range: a 3rd-order polynomial outside its data diverges, and a star hotter or
brighter than every fitted point gets the value at the edge instead.

The fit is weighted least squares, made robust by iterative clipping: points whose weighted residual is more
than ``clip`` robust standard deviations (1.4826 × MAD) from zero are dropped and the fit is redone, until
the set of kept points no longer changes. The order is lowered when there are fewer points than terms
(``order_used`` records it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

MAD_TO_SIGMA = 1.4826
"""1.4826 × MAD estimates the standard deviation of a normal distribution."""


def n_terms(order: int) -> int:
    """Number of coefficients of a 2-D polynomial of total degree ``order``."""
    return (order + 1) * (order + 2) // 2


def design_matrix(u: np.ndarray, v: np.ndarray, order: int) -> np.ndarray:
    """Columns u^i v^j for i + j ≤ ``order``, ordered by total degree then by i descending: (n, n_terms)."""
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    cols = [u ** (d - j) * v**j for d in range(order + 1) for j in range(d + 1)]
    return np.stack(cols, axis=-1)


def robust_sigma(values: np.ndarray) -> float:
    """1.4826 × the median absolute deviation from the median (NaN for no values)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan")
    return float(MAD_TO_SIGMA * np.median(np.abs(values - np.median(values))))


@dataclass(frozen=True)
class Poly2D:
    """A fitted 2-D polynomial z(x, y) with the ranges its variables are clamped to.

    Attributes
    ----------
    coeffs
        Coefficients in the order of :func:`design_matrix`, for the variables mapped to [−1, 1].
    order
        Total degree actually fitted.
    x_range, y_range
        Ranges of the fitted points' x and y (the mapping to [−1, 1] and the clamp).
    n_points, n_clipped
        Points given (with positive weight) and points the clipping dropped.
    rms
        Robust standard deviation of the weighted residuals of the kept points.
    """

    coeffs: tuple[float, ...]
    order: int
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    n_points: int = 0
    n_clipped: int = 0
    rms: float = float("nan")

    def _scaled(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        def scale(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
            a = np.clip(np.asarray(a, dtype=np.float64), lo, hi)
            return np.zeros_like(a) if hi <= lo else 2.0 * (a - lo) / (hi - lo) - 1.0

        return scale(x, *self.x_range), scale(y, *self.y_range)

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Evaluate at (x, y), each clamped to the fitted range (NaN where x or y is NaN)."""
        u, v = self._scaled(x, y)
        return design_matrix(u, v, self.order) @ np.asarray(self.coeffs, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (cube attributes, stage parameters)."""
        return {
            "coeffs": [float(c) for c in self.coeffs],
            "order": int(self.order),
            "x_range": [float(a) for a in self.x_range],
            "y_range": [float(a) for a in self.y_range],
            "n_points": int(self.n_points),
            "n_clipped": int(self.n_clipped),
            "rms": float(self.rms) if np.isfinite(self.rms) else None,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Poly2D:
        return cls(
            tuple(float(c) for c in d["coeffs"]),
            int(d["order"]),
            (float(d["x_range"][0]), float(d["x_range"][1])),
            (float(d["y_range"][0]), float(d["y_range"][1])),
            int(d.get("n_points", 0)),
            int(d.get("n_clipped", 0)),
            float("nan") if d.get("rms") is None else float(d["rms"]),
        )


def fit_poly2d(
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    weight: np.ndarray | None = None,
    order: int = 3,
    clip: float = 3.0,
    max_iter: int = 10,
) -> Poly2D:
    """Fit z ≈ P(x, y) by weighted least squares with iterative ``clip``-σ clipping (see the module docstring).

    ``weight`` is the inverse variance of each z (default 1). Points with a non-finite value or a weight
    ≤ 0 are ignored.

    Raises
    ------
    ValueError
        If no point is usable.
    """
    x, y, z = (np.asarray(a, dtype=np.float64).ravel() for a in (x, y, z))
    w = np.ones_like(z) if weight is None else np.asarray(weight, dtype=np.float64).ravel()
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(z) & np.isfinite(w) & (w > 0)
    x, y, z, w = x[ok], y[ok], z[ok], w[ok]
    if z.size == 0:
        raise ValueError("fit_poly2d: no point with finite x, y, z and a positive weight")
    fit_order = order
    while fit_order > 0 and n_terms(fit_order) > z.size:
        fit_order -= 1
    template = Poly2D((0.0,) * n_terms(fit_order), fit_order, (x.min(), x.max()), (y.min(), y.max()))
    u, v = template._scaled(x, y)
    a = design_matrix(u, v, fit_order) * np.sqrt(w)[:, None]
    b = z * np.sqrt(w)
    keep = np.ones(z.size, dtype=bool)
    for _ in range(max_iter):
        coeffs = np.linalg.lstsq(a[keep], b[keep], rcond=None)[0]
        resid = b - a @ coeffs
        sigma = MAD_TO_SIGMA * np.median(np.abs(resid[keep]))
        new_keep = np.abs(resid) <= clip * sigma if sigma > 0 else keep
        if np.array_equal(new_keep, keep) or new_keep.sum() < n_terms(fit_order):
            break
        keep = new_keep
    return Poly2D(
        tuple(float(c) for c in coeffs),
        fit_order,
        template.x_range,
        template.y_range,
        int(z.size),
        int((~keep).sum()),
        float(MAD_TO_SIGMA * np.median(np.abs(resid[keep]))),
    )


def format_coefficients(poly: dict) -> str:
    """A recorded polynomial's (:meth:`Poly2D.to_dict`) coefficients as text."""
    return "[" + ", ".join(f"{c:.4g}" for c in poly["coeffs"]) + "]"


def format_ranges(poly: dict) -> str:
    """A recorded polynomial's (log Teff, log S/N) ranges as text."""
    (x0, x1), (y0, y1) = poly["x_range"], poly["y_range"]
    return f"log Teff {x0:.3f}..{x1:.3f}, log S/N {y0:.2f}..{y1:.2f}"
