"""Distances from the Gaia parallax and the spectroscopic MKs (SPEC §9, §12; P1 §7, Eq. 18–24).

The posterior of a star's distance d (pc), with flat priors on d inside [``d_min``, ``d_max``]:

    P(d) ∝ G(1000/d; ϖ, δϖ) · G(MKs; m_Ks − 5 log10 d + 5 − A_Ks, σ_tot),   σ_tot² = δMKs² + δm_Ks² + δA_Ks²

(ϖ in mas, hence 1000/d), the parallax term alone for binaries. P1 evaluates it on a 0.1 pc grid and
reports the mode (``dis``), the 16th and 84th percentiles (``dis_low``, ``dis_high``), and the PDF-weighted
mean and standard deviation of log10 d (``logdis``, ``logdis_err``).

:func:`posterior` gives the same numbers for many stars at once without a 0.1 pc grid (150,000 points per
star at 15 kpc): per star, a coarse grid uniform in log10 d over the whole range locates the region where
the log posterior is within ``span`` (40) of its maximum, and a fine grid (``n_fine`` points uniform in
log10 d) over that region carries the integrals (trapezoid rule, the Jacobian d·ln 10 included) and the mode
(the fine grid's maximum refined by the parabola through it and its neighbours, in d). A flat prior makes the
parallax-only posterior of a star with ϖ ≤ 0 rise to ``d_max``: its mode is then ``d_max`` — the prior's
edge, as on P1's grid. :func:`grid_posterior` is P1's own scheme, for one star, to check it against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

R_SUN_KPC = 8.1
"""The Sun's Galactocentric distance (kpc): X = −8.1 kpc, Y = Z = 0 (P1 Fig. 12, SPEC §9)."""
BINARY_SNR = 2.0
"""S/N_Δϖ ≥ this flags a binary (P1 §6)."""
MISSING_FLAG = -9

D_MIN_PC = 1.0
D_MAX_PC = 50_000.0
"""The flat prior's support (pc): the 0.1 pc grid of P1 needs one too; 50 kpc holds the Galaxy's OB stars."""


@dataclass(frozen=True)
class DistancePosterior:
    """Summary of each star's distance posterior; arrays (n,)."""

    dis: np.ndarray
    """Mode of P(d), pc."""
    dis_low: np.ndarray
    """16th percentile, pc."""
    dis_high: np.ndarray
    """84th percentile, pc."""
    logdis: np.ndarray
    """PDF-weighted mean of log10(d / pc)."""
    logdis_err: np.ndarray
    """PDF-weighted standard deviation of log10(d / pc)."""

    def __getitem__(self, name: str) -> np.ndarray:  # mapping-style access, as SPEC §12 allows
        return getattr(self, name)


def log_posterior(
    d: np.ndarray,
    parallax: np.ndarray,
    parallax_error: np.ndarray,
    mks: np.ndarray,
    sigma_tot: np.ndarray,
    ks: np.ndarray,
    aks: np.ndarray,
    use_photometry: np.ndarray,
) -> np.ndarray:
    """log P(d) up to a constant per star (P1 Eq. 18–23). ``d`` (n, m) pc; the others (n, 1)."""
    lp = -0.5 * ((1000.0 / d - parallax) / parallax_error) ** 2
    mks_pred = ks - 5.0 * np.log10(d) + 5.0 - aks
    photometric = -0.5 * ((mks - mks_pred) / sigma_tot) ** 2
    return lp + np.where(use_photometry, photometric, 0.0)


def _column(a: np.ndarray | float, n: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(a, dtype=np.float64), (n,)).reshape(n, 1)


def posterior(
    parallax: np.ndarray,
    parallax_error: np.ndarray,
    mks: np.ndarray,
    mks_err: np.ndarray,
    ks: np.ndarray,
    ks_err: np.ndarray,
    aks: np.ndarray,
    aks_err: np.ndarray,
    binary: np.ndarray | None = None,
    *,
    d_min: float = D_MIN_PC,
    d_max: float = D_MAX_PC,
    n_coarse: int = 600,
    n_fine: int = 1200,
    span: float = 40.0,
    block: int = 2048,
) -> DistancePosterior:
    """Distance posterior summaries of many stars (SPEC §9, §12); see the module docstring.

    Parameters
    ----------
    parallax, parallax_error
        Gaia parallax and its error, mas (zero-point corrected).
    mks, mks_err
        Spectroscopic absolute magnitude in Ks and its error, mag.
    ks, ks_err, aks, aks_err
        Apparent Ks magnitude, extinction A_Ks and their errors, mag.
    binary
        True: the parallax term alone (P1 §7); default all False.
    block
        Stars evaluated at once: the grids take ~100 kB per star (~200 MB for 2,048), so memory stays flat
        however many stars are passed. The results do not depend on it (each star's sums are its own).

    Returns
    -------
    DistancePosterior
        ``dis``, ``dis_low``, ``dis_high`` (pc), ``logdis``, ``logdis_err`` (log10 pc), each (n,). NaN for a
        star without a finite positive parallax error, or without a usable photometric term when it is
        needed (not a binary) — ``mks``, ``ks``, ``aks`` or their errors not finite.
    """
    plx = np.atleast_1d(np.asarray(parallax, dtype=np.float64))
    n = plx.size
    binary = np.zeros(n, bool) if binary is None else np.broadcast_to(np.asarray(binary, bool), (n,))
    plx, plx_err = _column(plx, n), _column(parallax_error, n)
    mks_c, ks_c, aks_c = _column(mks, n), _column(ks, n), _column(aks, n)
    sigma_tot = np.sqrt(_column(mks_err, n) ** 2 + _column(ks_err, n) ** 2 + _column(aks_err, n) ** 2)
    photometric_ok = (np.isfinite(mks_c) & np.isfinite(ks_c) & np.isfinite(aks_c) & (sigma_tot > 0))[:, 0]
    usable = np.isfinite(plx[:, 0]) & np.isfinite(plx_err[:, 0]) & (plx_err[:, 0] > 0) & (binary | photometric_ok)
    use_phot = (~binary & photometric_ok)[:, None]
    out = {k: np.full(n, np.nan) for k in ("dis", "dis_low", "dis_high", "logdis", "logdis_err")}
    if not usable.any():
        return DistancePosterior(**out)
    rows = np.flatnonzero(usable)
    args = (plx[rows], plx_err[rows], np.nan_to_num(mks_c[rows]), np.where(use_phot[rows], sigma_tot[rows], 1.0))
    args += (np.nan_to_num(ks_c[rows]), np.nan_to_num(aks_c[rows]), use_phot[rows])
    for start in range(0, rows.size, block):
        part = _summaries(tuple(a[start : start + block] for a in args), d_min, d_max, n_coarse, n_fine, span)
        for key, values in part.items():
            out[key][rows[start : start + block]] = values
    return DistancePosterior(**out)


def _summaries(
    args: tuple[np.ndarray, ...], d_min: float, d_max: float, n_coarse: int, n_fine: int, span: float
) -> dict[str, np.ndarray]:
    """:func:`posterior`'s summaries of the stars of ``args`` (:func:`log_posterior`'s (m, 1) columns after d)."""
    # 1. coarse grid: where is the posterior?
    u0, u1 = np.log10(d_min), np.log10(d_max)
    coarse = np.linspace(u0, u1, n_coarse)
    lp = log_posterior(10.0 ** coarse[None, :], *args)
    high = lp >= lp.max(axis=1, keepdims=True) - span
    step = coarse[1] - coarse[0]
    lo = np.clip(coarse[np.argmax(high, axis=1)] - step, u0, u1)
    hi = np.clip(coarse[n_coarse - 1 - np.argmax(high[:, ::-1], axis=1)] + step, u0, u1)

    # 2. fine grid over that region: integrals, percentiles, the mode
    t = np.linspace(0.0, 1.0, n_fine)
    u = lo[:, None] + (hi - lo)[:, None] * t[None, :]
    d = 10.0**u
    lp = log_posterior(d, *args)
    density_u = np.exp(lp - lp.max(axis=1, keepdims=True)) * d * np.log(10.0)  # P(log10 d)
    du = np.diff(u, axis=1)
    mass = 0.5 * (density_u[:, 1:] + density_u[:, :-1]) * du
    cdf = np.concatenate([np.zeros((lo.size, 1)), np.cumsum(mass, axis=1)], axis=1)
    total = cdf[:, -1:]
    cdf = cdf / total
    mean_u = (0.5 * (density_u[:, 1:] * u[:, 1:] + density_u[:, :-1] * u[:, :-1]) * du).sum(axis=1) / total[:, 0]
    var_u = (0.5 * (density_u[:, 1:] * u[:, 1:] ** 2 + density_u[:, :-1] * u[:, :-1] ** 2) * du).sum(axis=1)
    var_u = np.maximum(var_u / total[:, 0] - mean_u**2, 0.0)
    return {
        "dis_low": 10.0 ** _interp_rows(cdf, u, 0.16),
        "dis_high": 10.0 ** _interp_rows(cdf, u, 0.84),
        "logdis": mean_u,
        "logdis_err": np.sqrt(var_u),
        "dis": _refined_mode(d, lp),
    }


def _interp_rows(cdf: np.ndarray, x: np.ndarray, q: float) -> np.ndarray:
    # Per row, the x where the (non-decreasing) cdf reaches q, linear between grid points.
    k = np.clip((cdf < q).sum(axis=1), 1, cdf.shape[1] - 1)
    r = np.arange(cdf.shape[0])
    c0, c1 = cdf[r, k - 1], cdf[r, k]
    frac = np.where(c1 > c0, (q - c0) / np.where(c1 > c0, c1 - c0, 1.0), 0.0)
    return x[r, k - 1] + frac * (x[r, k] - x[r, k - 1])


def _refined_mode(d: np.ndarray, lp: np.ndarray) -> np.ndarray:
    # The grid maximum of log P(d), moved to the vertex of the parabola through it and its neighbours (in d).
    r = np.arange(d.shape[0])
    k = np.clip(np.argmax(lp, axis=1), 1, d.shape[1] - 2)
    x0, x1, x2 = d[r, k - 1], d[r, k], d[r, k + 1]
    y0, y1, y2 = lp[r, k - 1], lp[r, k], lp[r, k + 1]
    denom = (x0 - x1) * (x0 - x2) * (x1 - x2)
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / np.where(denom == 0, 1.0, denom)
    b = (x2**2 * (y0 - y1) + x1**2 * (y2 - y0) + x0**2 * (y1 - y2)) / np.where(denom == 0, 1.0, denom)
    vertex = -b / np.where(a < 0, 2 * a, -1.0)
    interior = (a < 0) & (vertex >= x0) & (vertex <= x2)
    at_edge = np.argmax(lp, axis=1)
    edge = (at_edge == 0) | (at_edge == d.shape[1] - 1)
    return np.where(edge, d[r, at_edge], np.where(interior, vertex, x1))


def grid_posterior(
    parallax: float,
    parallax_error: float,
    mks: float,
    mks_err: float,
    ks: float,
    ks_err: float,
    aks: float,
    aks_err: float,
    binary: bool = False,
    *,
    step: float = 0.1,
    d_min: float = D_MIN_PC,
    d_max: float = D_MAX_PC,
) -> dict[str, float]:
    """P1's scheme for one star: the posterior on a ``step`` (0.1 pc) grid over the prior's support; the mode
    and percentiles are grid points. The reference of :func:`posterior` (slow: 500,000 points at 50 kpc)."""
    d = np.arange(d_min, d_max + step / 2, step)
    sigma = np.sqrt(mks_err**2 + ks_err**2 + aks_err**2)
    args = [np.array([[v]], dtype=np.float64) for v in (parallax, parallax_error, mks, sigma, ks, aks)]
    lp = log_posterior(d[None, :], *args, np.array([[not binary]]))[0]
    p = np.exp(lp - lp.max())
    cdf = np.cumsum(p) / p.sum()
    u = np.log10(d)
    mean = float(np.sum(p * u) / p.sum())  # on a uniform d grid, the mean of log10 d over P(d) dd
    return {
        "dis": float(d[np.argmax(p)]),
        "dis_low": float(d[np.searchsorted(cdf, 0.16)]),
        "dis_high": float(d[np.searchsorted(cdf, 0.84)]),
        "logdis": mean,
        "logdis_err": float(np.sqrt(np.sum(p * (u - mean) ** 2) / p.sum())),
    }


def example_stars(n: int, seed: int) -> dict[str, np.ndarray]:
    """Random stars for checking :func:`posterior` against :func:`grid_posterior` (tests, benchmarks):
    distances 0.2–16 kpc, parallax errors 0.01–0.3 mas, MKs −4…1.5 with 0.3 mag scatter, 30 % binaries;
    keys are :func:`posterior`'s arguments."""
    rng = np.random.default_rng(seed)
    dist = 10 ** rng.uniform(2.3, 4.2, n)
    plx_err = 10 ** rng.uniform(-2, -0.5, n)
    mks = rng.uniform(-4, 1.5, n)
    aks = rng.uniform(0, 0.3, n)
    return {
        "parallax": 1000 / dist + plx_err * rng.normal(size=n),
        "parallax_error": plx_err,
        "mks": mks + 0.3 * rng.normal(size=n),
        "mks_err": rng.uniform(0.1, 0.5, n),
        "ks": mks + 5 * np.log10(dist) - 5 + aks,
        "ks_err": rng.uniform(0.01, 0.05, n),
        "aks": aks,
        "aks_err": np.full(n, 0.01),
        "binary": rng.random(n) < 0.3,
    }


def spectrophotometric_parallax(
    ks: np.ndarray,
    mks: np.ndarray,
    aks: np.ndarray,
    mks_err_s: np.ndarray,
    sigma_int: np.ndarray | float,
    ks_err: np.ndarray,
    aks_err: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """ϖ_s = 10^(−0.2 (m_Ks − MKs − 10 − A_Ks)) mas and its error δϖ_s = ϖ_s · 0.2 ln10 ·
    √(σ_s² + σ_int² + σ_mKs² + σ_AKs²) (P1 §6, SPEC §9); ``mks_err_s`` is σ_s, the S/N-dependent part."""
    ks, mks, aks = (np.asarray(a, dtype=np.float64) for a in (ks, mks, aks))
    plx_s = 10.0 ** (-0.2 * (ks - mks - 10.0 - aks))
    rel = (
        0.2
        * np.log(10.0)
        * np.sqrt(
            np.asarray(mks_err_s, np.float64) ** 2
            + np.asarray(sigma_int, np.float64) ** 2
            + np.asarray(ks_err, np.float64) ** 2
            + np.asarray(aks_err, np.float64) ** 2
        )
    )
    return plx_s, plx_s * rel


def binary_flags(
    parallax: np.ndarray,
    parallax_error: np.ndarray,
    plx_s: np.ndarray,
    plx_s_err: np.ndarray,
    threshold: float = BINARY_SNR,
) -> tuple[np.ndarray, np.ndarray]:
    """S/N_Δϖ = (ϖ_s − ϖ) / √(δϖ_s² + δϖ²) and ``binary_flag`` (P1 §6, SPEC §9): 1 where S/N_Δϖ ≥ 2 (an
    unresolved binary is brighter than its spectrum says, so its ϖ_s is too large; ``threshold``), 0 below, −9 where the
    parallax or the photometric parallax is missing (int8)."""
    parallax, parallax_error = np.asarray(parallax, np.float64), np.asarray(parallax_error, np.float64)
    snr = (np.asarray(plx_s, np.float64) - parallax) / np.sqrt(
        np.asarray(plx_s_err, np.float64) ** 2 + parallax_error**2
    )
    flag = np.where(snr >= threshold, 1, 0).astype(np.int8)
    return snr, np.where(np.isfinite(snr), flag, MISSING_FLAG).astype(np.int8)


def galactocentric_xyz(ra: np.ndarray, dec: np.ndarray, distance_pc: np.ndarray) -> tuple[np.ndarray, ...]:
    """Galactic Cartesian X, Y, Z (kpc) with the Sun at X = −8.1 kpc, Y = Z = 0 (SPEC §9), through astropy's
    Galactocentric frame (``galcen_distance`` 8.1 kpc, ``z_sun`` 0): X toward the Galactic centre from the
    Sun's side, Y toward l = 90°, Z toward the North Galactic Pole. NaN where the distance is."""
    import astropy.units as u
    from astropy.coordinates import Galactocentric, SkyCoord

    d = np.asarray(distance_pc, np.float64)
    ok = np.isfinite(d) & (d > 0)
    out = [np.full(d.shape, np.nan) for _ in range(3)]
    if ok.any():
        c = SkyCoord(
            ra=np.asarray(ra, np.float64)[ok] * u.deg,
            dec=np.asarray(dec, np.float64)[ok] * u.deg,
            distance=d[ok] * u.pc,
            frame="icrs",
        )
        g = c.transform_to(Galactocentric(galcen_distance=R_SUN_KPC * u.kpc, z_sun=0 * u.pc))
        for arr, comp in zip(out, (g.x, g.y, g.z), strict=True):
            arr[ok] = comp.to_value(u.kpc)
    return tuple(out)
