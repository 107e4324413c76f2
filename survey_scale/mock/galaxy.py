"""The mock Galaxy (SPEC §10): plate fields, star and dust densities, extinction, distances, kinematics.

Young-disc density with spiral arms toward the anti-centre, an exponential dust disc modulated by seeded
clouds (:class:`PatchyExtinction`), LAMOST's fibre selection in G, and a flat rotation curve. Distances are
drawn along each line of sight from p(d) ∝ d³ ρ★ S(G); positions in kpc, Sun at X = −8.1 kpc (SPEC §9).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from survey_scale.mock import photometry as ph

R_SUN_GC_KPC: float = 8.1
"""Galactocentric distance of the Sun (kpc), as in P1 Fig. 12 and SPEC §9 (Sun at X = −8.1, Y = Z = 0)."""


def _galactocentric_rz(dist_kpc: np.ndarray, l_deg: np.ndarray, b_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lr, br = np.radians(l_deg), np.radians(b_deg)
    x = dist_kpc * np.cos(br) * np.cos(lr)
    y = dist_kpc * np.cos(br) * np.sin(lr)
    radius = np.sqrt((R_SUN_GC_KPC - x) ** 2 + y**2)
    return radius, dist_kpc * np.sin(br)


def young_disc_density(radius_kpc: np.ndarray, z_kpc: np.ndarray) -> np.ndarray:
    """Relative number density of young hot stars (arbitrary units).

    Exponential disc (scale length 2.6 kpc) with a flaring exponential vertical profile (scale height
    70 pc at the Sun, growing e-fold every 7 kpc outward), the Perseus (R = 10.0 kpc) and Outer (R = 13 kpc)
    arms as Gaussian rings toward the anti-centre, truncated beyond R ≈ 15 kpc.
    """
    h_z = 0.07 * np.exp((radius_kpc - R_SUN_GC_KPC) / 7.0)
    disc = np.exp(-(radius_kpc - R_SUN_GC_KPC) / 2.6) * np.exp(-np.abs(z_kpc) / h_z) / h_z
    arms = (
        1.0
        + 1.2 * np.exp(-0.5 * ((radius_kpc - 10.0) / 0.35) ** 2)
        + 0.8 * np.exp(-0.5 * ((radius_kpc - 13.0) / 0.5) ** 2)
    )
    edge = 1.0 / (1.0 + np.exp((radius_kpc - 15.0) / 0.6))
    return disc * arms * edge


def dust_density(radius_kpc: np.ndarray, z_kpc: np.ndarray) -> np.ndarray:
    """Relative dust density: exponential disc, scale length 3.2 kpc, scale height 120 pc; 1 at the Sun."""
    return np.exp(-(radius_kpc - R_SUN_GC_KPC) / 3.2) * np.exp(-np.abs(z_kpc) / 0.12)


EBV_PER_KPC: float = 0.55
"""E(B−V) per kpc in the plane at the solar circle (mag/kpc), ~A_V = 1.7 mag/kpc."""


class PatchyExtinction:
    """A smooth, seeded log-normal modulation of the dust column across the sky.

    ξ(l, b) = √(2/K) Σ_k cos(k·(l cos b, b) + φ_k) with K = 64 plane waves whose wavelengths are
    log-uniform in 1°–10°: a unit-variance Gaussian random field; the column is multiplied by
    exp(σ ξ − σ²/2) (mean 1), σ = 0.35. Seeded by the *galaxy seed* so that two releases of one mock
    Galaxy share their clouds.
    """

    def __init__(self, galaxy_seed: int, sigma: float = 0.35, n_modes: int = 64) -> None:
        rng = np.random.default_rng(np.random.SeedSequence([int(galaxy_seed), 7301]))
        wavelength = 10 ** rng.uniform(0.0, 1.0, n_modes)
        angle = rng.uniform(0.0, 2 * np.pi, n_modes)
        self._kx = 2 * np.pi / wavelength * np.cos(angle)
        self._ky = 2 * np.pi / wavelength * np.sin(angle)
        self._phase = rng.uniform(0.0, 2 * np.pi, n_modes)
        self.sigma = sigma

    def factor(self, l_deg: np.ndarray, b_deg: np.ndarray) -> np.ndarray:
        """Multiplicative factor (mean 1) of the dust column toward (l, b) in degrees, ``l``'s shape."""
        l_deg, b_deg = np.asarray(l_deg, dtype=np.float64), np.asarray(b_deg, dtype=np.float64)
        u = np.mod(l_deg + 180.0, 360.0) * np.cos(np.radians(b_deg))
        xi = np.sqrt(2.0 / self._kx.size) * np.cos(
            u[..., None] * self._kx + b_deg[..., None] * self._ky + self._phase
        ).sum(axis=-1)
        return np.exp(self.sigma * xi - 0.5 * self.sigma**2)


def selection_probability(g_mag: np.ndarray) -> np.ndarray:
    """Relative probability that a hot star of apparent G gets a LAMOST fibre (LSS-GAC-like).

    A soft bright limit near G = 10.3 (plates avoid saturated stars), the survey's faint limit near
    G = 17.8 (r ≈ 17.8, Liu et al. 2014), and a mild decline 10^(−0.05 (G − 14)) fainter than G = 14 for
    the lower targeting completeness of faint stars. With the Galaxy model it gives G ≈ 10–17.5 with a
    median and peak near 13.5–14 (P2 §2, Fig. 2).
    """
    g_mag = np.asarray(g_mag, dtype=np.float64)
    bright = 1.0 / (1.0 + np.exp(-(g_mag - 10.3) / 0.3))
    faint = 1.0 / (1.0 + np.exp((g_mag - 17.8) / 0.25))
    decline = 10.0 ** (-0.05 * np.clip(g_mag - 14.0, 0.0, None))
    return bright * faint * decline


def _draw_fields(rng: np.random.Generator, n_fields: int) -> pd.DataFrame:
    """Plate centres: 75 % around the anti-centre (l ~ N(180°, 22°)), 25 % in l = 40°–220°; |b| Laplace 6°.

    Fields outside LAMOST's declination range (−10° to +65°) are redrawn.
    """
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    out_l, out_b, out_ra, out_dec = [], [], [], []
    while sum(len(x) for x in out_l) < n_fields:
        m = 2 * n_fields + 8
        anti = rng.random(m) < 0.75
        l_deg = np.where(anti, rng.normal(180.0, 22.0, m), rng.uniform(40.0, 220.0, m))
        b_deg = rng.laplace(0.0, 6.0, m)
        keep = (np.abs(b_deg) < 30.0) & (l_deg > 0) & (l_deg < 360)
        l_deg, b_deg = l_deg[keep], b_deg[keep]
        icrs = SkyCoord(l=l_deg * u.deg, b=b_deg * u.deg, frame="galactic").icrs
        ok = (icrs.dec.deg > -10.0) & (icrs.dec.deg < 65.0)
        out_l.append(l_deg[ok])
        out_b.append(b_deg[ok])
        out_ra.append(icrs.ra.deg[ok])
        out_dec.append(icrs.dec.deg[ok])
    columns = {"field_l": out_l, "field_b": out_b, "field_ra": out_ra, "field_dec": out_dec}
    return pd.DataFrame({name: np.concatenate(parts)[:n_fields] for name, parts in columns.items()})


def positions_in_fields(
    rng: np.random.Generator, m: int, fields: pd.DataFrame, radius_deg: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Field index and Galactic (l, b) in degrees of ``m`` targets placed uniformly within the plates.

    Fields richer in young stars near the plane get more targets (weight exp(−|b|/5°) + 0.05).
    """
    w = np.exp(-np.abs(fields["field_b"].to_numpy()) / 5.0) + 0.05
    field = rng.choice(len(fields), size=m, p=w / w.sum())
    r = radius_deg * np.sqrt(rng.random(m))
    theta = rng.uniform(0.0, 2 * np.pi, m)
    b0 = fields["field_b"].to_numpy()[field]
    b_deg = np.clip(b0 + r * np.sin(theta), -89.9, 89.9)
    l_deg = np.mod(fields["field_l"].to_numpy()[field] + r * np.cos(theta) / np.cos(np.radians(b0)), 360.0)
    return field, l_deg, b_deg


def _sample_distances(
    rng: np.random.Generator,
    abs_g: np.ndarray,
    l_deg: np.ndarray,
    b_deg: np.ndarray,
    patch: np.ndarray,
    ebv_local: np.ndarray,
    n_grid: int = 320,
    chunk: int = 20000,
    density: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distance (pc) and E(B−V) for each star along its line of sight; NaN where no distance fits.

    p(d) ∝ d³ ρ★(d) S(G(d)) on a log grid 0.2–15 kpc (d³ = d² dd / d ln d), G(d) = M_G + 5 log10(d/10 pc) +
    R_G E(B−V)(d); E(B−V)(d) = κ · patch · ∫₀^d ρ_dust ds + local (circumstellar) excess, growing with d.
    ``density(R_kpc, z_kpc)`` is the stars' relative density ρ★ (default :func:`young_disc_density`).
    Returns distance (pc), E(B−V) and a boolean "placed" mask.
    """
    density = young_disc_density if density is None else density
    n = abs_g.size
    d_kpc = np.geomspace(0.2, 15.0, n_grid)
    dlog = np.log(d_kpc[1] / d_kpc[0])
    dist = np.full(n, np.nan)
    ebv = np.full(n, np.nan)
    for start in range(0, n, chunk):
        sl = slice(start, min(n, start + chunk))
        m = sl.stop - sl.start
        radius, z = _galactocentric_rz(d_kpc[None, :], l_deg[sl, None], b_deg[sl, None])
        rho_star = density(radius, z)
        rho_dust = dust_density(radius, z)
        # cumulative dust column (kpc) by the trapezoid rule on the log grid, from d = 0 (dust ≈ local).
        seg = 0.5 * (rho_dust[:, 1:] + rho_dust[:, :-1]) * np.diff(d_kpc)[None, :]
        column = np.concatenate(
            [rho_dust[:, :1] * d_kpc[0], rho_dust[:, :1] * d_kpc[0] + np.cumsum(seg, axis=1)], axis=1
        )
        ebv_grid = EBV_PER_KPC * patch[sl, None] * column + ebv_local[sl, None]
        g_app = abs_g[sl, None] + 5.0 * np.log10(d_kpc * 100.0)[None, :] + ph.EXTINCTION_COEFFS["G"] * ebv_grid
        weight = d_kpc[None, :] ** 3 * rho_star * selection_probability(g_app)
        total = weight.sum(axis=1)
        ok = total > 1e-300 * n_grid
        cdf = np.cumsum(weight, axis=1) / np.where(ok, total, 1.0)[:, None]
        u = rng.random(m)
        k = np.minimum((cdf < u[:, None]).sum(axis=1), n_grid - 1)
        frac = rng.random(m) - 0.5  # log-uniform within the cell
        log_d = np.log(d_kpc[k]) + frac * dlog
        d_star = np.clip(np.exp(log_d), 0.2, 15.0)
        # E(B-V) at the exact distance: interpolate the cumulative column in ln d.
        pos = np.clip((np.log(d_star) - np.log(d_kpc[0])) / dlog, 0.0, n_grid - 1.0)
        i0 = np.minimum(np.floor(pos).astype(int), n_grid - 2)
        t = pos - i0
        rows = np.arange(m)
        e_star = (1 - t) * ebv_grid[rows, i0] + t * ebv_grid[rows, i0 + 1]
        dist[sl] = np.where(ok, d_star * 1000.0, np.nan)
        ebv[sl] = np.where(ok, e_star, np.nan)
    return dist, ebv, np.isfinite(dist)


def _kinematics(
    rng: np.random.Generator,
    ra: np.ndarray,
    dec: np.ndarray,
    dist_pc: np.ndarray,
    *,
    dispersion_kms: tuple[float, float, float] = (12.0, 9.0, 6.0),
    v_rot_kms: float = 235.0,
) -> dict[str, np.ndarray]:
    """Galactic positions (X, Y, Z kpc) and heliocentric motions from a flat rotation curve.

    Young-disc stars rotate at 235 km/s with dispersions (σ_R, σ_φ, σ_z) = (12, 9, 6) km/s; astropy converts
    to ICRS (Sun at 8.1 kpc, z_sun = 0 as SPEC §9, solar motion (12.9, 245.6, 7.78) km/s) for the radial
    velocity (the binary's systemic velocity) and the proper motions. ``dispersion_kms`` and ``v_rot_kms``
    change the dispersions and the mean rotation (older populations: larger dispersions, asymmetric drift).
    """
    import astropy.units as u
    from astropy.coordinates import CartesianDifferential, Galactocentric, SkyCoord

    frame = Galactocentric(galcen_distance=R_SUN_GC_KPC * u.kpc, z_sun=0 * u.pc)
    c = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, distance=dist_pc * u.pc, frame="icrs")
    g = c.transform_to(frame)
    x, y, z = g.x.to_value(u.kpc), g.y.to_value(u.kpc), g.z.to_value(u.kpc)
    phi = np.arctan2(y, x)
    n = ra.size
    sig_r, sig_t, sig_z = dispersion_kms
    v_r = rng.normal(0.0, sig_r, n)
    v_t = v_rot_kms + rng.normal(0.0, sig_t, n)
    # In astropy's Galactocentric frame the Sun, at x = -8.1 kpc, moves toward +y: the disc turns clockwise
    # seen from +z, so the rotation direction at azimuth phi is (sin phi, -cos phi).
    vx = v_r * np.cos(phi) + v_t * np.sin(phi)
    vy = v_r * np.sin(phi) - v_t * np.cos(phi)
    vz = rng.normal(0.0, sig_z, n)
    gal = SkyCoord(
        x=x * u.kpc,
        y=y * u.kpc,
        z=z * u.kpc,
        v_x=vx * u.km / u.s,
        v_y=vy * u.km / u.s,
        v_z=vz * u.km / u.s,
        frame=frame,
        representation_type="cartesian",
        differential_type=CartesianDifferential,
    )
    icrs = gal.transform_to("icrs")
    return {
        "X": x,
        "Y": y,
        "Z": z,
        "rv_sys": icrs.radial_velocity.to_value(u.km / u.s),
        "pmra_true": icrs.pm_ra_cosdec.to_value(u.mas / u.yr),
        "pmdec_true": icrs.pm_dec.to_value(u.mas / u.yr),
    }
