"""The mock stellar population: positions, labels, binaries, emission, extinction, photometry (SPEC §10).

:func:`make_population` draws a seeded table of stars as LAMOST's hot-star sample looks (P2 §2): a
magnitude-limited sample toward the Galactic anti-centre, concentrated to the plane, G ≈ 10–18 peaking
near 14. The physics and its limits are summarised in :mod:`survey_scale.mock`; each step is documented
where it is drawn below. Everything here is numpy, vectorized over stars; spectra are made later
(:mod:`survey_scale.mock.spectra`) from this table and the visit table (:mod:`survey_scale.mock.schedule`).

Units: Teff K, log g cgs dex, velocities km/s, distances pc (``distance_pc``) and kpc (X, Y, Z), angles
deg, magnitudes mag, masses and radii solar units, parallaxes mas, proper motions mas/yr.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from survey_scale.core.labels import LABEL_NAMES, LABEL_RANGES
from survey_scale.mock import photometry as ph

R_SUN_GC_KPC: float = 8.1
"""Galactocentric distance of the Sun (kpc), as in P1 Fig. 12 and SPEC §9 (Sun at X = −8.1, Y = Z = 0)."""

LOGG_SUN: float = 4.438
TEFF_SUN: float = 5772.0

# log M / M_sun as a quadratic in x = log(L_spec / L_spec,sun) = 4 log(Teff/Teff_sun) - (log g - log g_sun),
# least-squares fit to the Pecaut & Mamajek (2013) dwarfs F1V-O3V (rms 0.03 dex); see mass_from_labels.
_DWARF_LOGM_COEFFS: tuple[float, float, float] = (0.06670, 0.11429, 0.11894)  # x^2, x, 1
# Evolved stars: the flux-weighted gravity-luminosity relation of Kudritzki et al. (2003, 2008),
# M_bol = 3.41 (log g_F - 1.5) - 8.02, log g_F = log g - 4 log(Teff / 10^4 K),
# which is log L = 1.364 x - 0.21.
_FGLR_LOGL: tuple[float, float] = (1.364, -0.206)


@dataclass(frozen=True)
class PopulationConfig:
    """Knobs of the mock population; the defaults follow P1/P2 (fractions) and SPEC §10.

    Attributes
    ----------
    binary_fraction
        Fraction of unresolved binaries (P1 §6 finds 10 % flagged; ~15 % exist).
    emission_fraction
        Fraction of emission-line stars (P1 §3: 13 %).
    multi_visit_fraction
        Fraction of stars with 2–5 visits (P1 Table 1 note: 27,784 spectra of 16,002 stars).
    visit_count_probs
        Probabilities of 2, 3, 4, 5 visits for a multi-visit star.
    q_min
        Lower end of the flat mass-ratio distribution q ∈ [q_min, 1].
    field_radius_deg
        Radius of a LAMOST plate field (deg).
    stars_per_field, min_fields
        Mean number of mock stars per field, and the fewest fields (so that small releases still sample
        several sight lines): n_fields = max(min_fields, ⌈n_stars / stars_per_field⌉).
    mks_scatter
        Intrinsic scatter (mag) of MKs around the (Teff, log g) relation.
    """

    binary_fraction: float = 0.15
    emission_fraction: float = 0.13
    multi_visit_fraction: float = 0.30
    visit_count_probs: tuple[float, float, float, float] = (0.50, 0.27, 0.15, 0.08)
    q_min: float = 0.1
    field_radius_deg: float = 2.5
    stars_per_field: int = 120
    min_fields: int = 12
    mks_scatter: float = 0.10


# --- stellar relations -----------------------------------------------------------------------------------


def spectroscopic_luminosity(teff: np.ndarray, logg: np.ndarray) -> np.ndarray:
    """x = log10(ℒ/ℒ_sun) with ℒ = Teff⁴/g (Kudritzki's spectroscopic luminosity), dimensionless."""
    return 4.0 * np.log10(np.asarray(teff, dtype=np.float64) / TEFF_SUN) - (np.asarray(logg) - LOGG_SUN)


def evolved_weight(teff: np.ndarray, logg: np.ndarray) -> np.ndarray:
    """Weight (0–1) of the evolved-star branch of the mass relation.

    0 on and above the main sequence, 1 for log g ≥ 1.3 dex below the mean dwarf of that Teff, a smoothstep
    (continuous first derivative) in between, starting 0.3 dex below the mean dwarf.
    """
    delta = ph.dwarf_logg(teff) - np.asarray(logg, dtype=np.float64)
    t = np.clip((delta - 0.3) / 1.0, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def log_mass_from_labels(teff: np.ndarray, logg: np.ndarray) -> np.ndarray:
    """log10 of the mass (M_sun) of a star of given Teff (K) and log g: a smooth function of both.

    Dwarfs follow a quadratic fit of log M against x = log(ℒ/ℒ_sun) to the Pecaut & Mamajek (2013) dwarf
    sequence; evolved stars follow the flux-weighted gravity–luminosity relation (FGLR, Kudritzki et al.
    2003, 2008), log L = 1.364 x − 0.21, i.e. log M = 0.364 x − 0.21 (L = M ℒ in solar units). The two are
    blended by :func:`evolved_weight`. The FGLR keeps giants and supergiants from the runaway masses that
    the dwarf quadratic gives when extrapolated to large ℒ.
    """
    x = spectroscopic_luminosity(teff, logg)
    a2, a1, a0 = _DWARF_LOGM_COEFFS
    dwarf = a2 * x**2 + a1 * x + a0
    evolved = (_FGLR_LOGL[0] - 1.0) * x + _FGLR_LOGL[1]
    w = evolved_weight(teff, logg)
    return (1.0 - w) * dwarf + w * evolved


def absolute_mag_ks(teff: np.ndarray, logg: np.ndarray, log_mass: np.ndarray | None = None) -> np.ndarray:
    """MKs (mag) of a star from Teff (K), log g and its mass: the mock's MKs relation (SPEC §10).

    MKs = M_bol,sun − 2.5 log10(L/L_sun) − BC_Ks(Teff), with L = M ℒ (ℒ = Teff⁴/g in solar units, i.e.
    L = 4πR²σTeff⁴ with R² = GM/g), M from :func:`log_mass_from_labels` unless given, and the bolometric
    correction BC_Ks = BC_V + (V − Ks) of the Pecaut & Mamajek (2013) dwarf sequence. It reproduces that
    table's M_Ks for O9V–F1V to ≈ 0.1 mag rms. The population adds 0.1 mag of intrinsic scatter.
    """
    if log_mass is None:
        log_mass = log_mass_from_labels(teff, logg)
    log_l = log_mass + spectroscopic_luminosity(teff, logg)
    return ph.SUN_MBOL - 2.5 * log_l - ph.bolometric_correction_ks(teff)


def radius_from_mass(log_mass: np.ndarray, logg: np.ndarray) -> np.ndarray:
    """Radius (R_sun) from log mass (M_sun) and log g: R² = G M / g."""
    return np.sqrt(10.0 ** (np.asarray(log_mass) + LOGG_SUN - np.asarray(logg)))


def logg_lower_limit(teff: np.ndarray) -> np.ndarray:
    """Lowest log g allowed at a Teff: a line parallel to the Eddington limit, 1.2 dex at 10,000 K."""
    return 4.0 * (np.log10(np.asarray(teff, dtype=np.float64)) - 4.0) + 1.2


def spectral_subclass(teff: np.ndarray) -> np.ndarray:
    """LAMOST-like SUBCLASS strings ("O", "B2", "A7", "F0") from Teff via the dwarf table."""
    table = ph.dwarf_sequence()
    logt = np.log10(table["Teff"])
    idx = np.clip(np.searchsorted(logt, np.log10(np.asarray(teff, dtype=np.float64))), 0, len(logt) - 1)
    lower = np.clip(idx - 1, 0, len(logt) - 1)
    pick = np.where(np.abs(logt[idx] - np.log10(teff)) < np.abs(logt[lower] - np.log10(teff)), idx, lower)
    out = []
    for spt in table["SpT"][pick]:
        spt = str(spt).rstrip("V")
        out.append("O" if spt.startswith("O") else spt.split(".")[0])
    return np.array(out)


def star_id_from_radec(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """P1 Table 1 star ids "Sdddmmss±ddmmss": RA and Dec in degrees, arcmin, arcsec, rounded to the
    arcsecond (the same rule as the ingest's star ids, so truth and cube agree)."""
    ra_s = np.rint(np.mod(np.asarray(ra, dtype=np.float64), 360.0) * 3600.0).astype(np.int64) % (360 * 3600)
    dec = np.asarray(dec, dtype=np.float64)
    dec_s = np.rint(np.abs(dec) * 3600.0).astype(np.int64)
    sign = np.where(dec < 0, "-", "+")
    return np.array(
        [
            f"S{r // 3600:03d}{r // 60 % 60:02d}{r % 60:02d}{s}{d // 3600:02d}{d // 60 % 60:02d}{d % 60:02d}"
            for r, d, s in zip(ra_s, dec_s, sign, strict=True)
        ]
    )


def lamost_designation(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """LAMOST DESIG strings "LAMOST Jhhmmss.ss±ddmmss.s" (truncated, as the pipeline writes them)."""
    out = []
    for a, d in zip(np.mod(np.asarray(ra, dtype=np.float64), 360.0), np.asarray(dec, dtype=np.float64), strict=True):
        cs = int(np.floor(a / 15.0 * 360000.0 + 1e-6))  # hundredths of a second of time
        h, rem = divmod(cs, 360000)
        m, rem = divmod(rem, 6000)
        ds_total = int(np.floor(abs(d) * 36000.0 + 1e-6))  # tenths of an arcsec
        dd, rem2 = divmod(ds_total, 36000)
        dm, dsec = divmod(rem2, 600)
        sign = "-" if d < 0 else "+"
        out.append(
            f"LAMOST J{h:02d}{m:02d}{rem // 100:02d}.{rem % 100:02d}"
            f"{sign}{dd:02d}{dm:02d}{dsec // 10:02d}.{dsec % 10:d}"
        )
    return np.array(out)


# --- Galaxy model ----------------------------------------------------------------------------------------


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


# --- drawing the population -------------------------------------------------------------------------------


def _rng(seed: int | np.random.SeedSequence, stream: int) -> np.random.Generator:
    base = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(int(seed))
    return np.random.default_rng(np.random.SeedSequence(base.entropy, spawn_key=(*base.spawn_key, stream)))


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


def _draw_teff_logg(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Teff and log g of the primaries and their evolutionary class (0 MS, 1 giant, 2 supergiant).

    Teff: p(Teff) ∝ Teff⁻³ on [7000, 45000] K (80 % below 15,000 K, 3 % above 30,000 K). log g:
    main sequence (86 %), uniform in age-like fraction u^0.7 between the ZAMS (mean dwarf + 0.12 dex) and
    0.6 dex below it; 12 % giants/subgiants between 0.5 and 1.8 dex below the ZAMS (but ≥ 0.5 dex above the
    lower limit); 2 % supergiants within 0.8 dex of the Eddington-parallel lower limit
    :func:`logg_lower_limit` (and ≥ 0.4 dex below the ZAMS). Where a class has no room (the hottest stars)
    the star stays on the main sequence.
    """
    lo, hi = LABEL_RANGES["teff"][0], LABEL_RANGES["teff"][1]
    u = rng.random(n)
    teff = (lo**-2 - u * (lo**-2 - hi**-2)) ** -0.5  # inverse CDF of p ∝ T^-3
    zams = ph.dwarf_logg(teff) + 0.12
    floor = logg_lower_limit(teff)
    state = rng.choice(3, size=n, p=[0.86, 0.12, 0.02])
    # Giants need room between the supergiant zone and the main sequence; the hottest stars have none and
    # stay on the main sequence.
    giant_top = zams - 0.5
    giant_bottom = np.maximum(zams - 1.8, floor + 0.5)
    state = np.where((state == 1) & (giant_bottom >= giant_top), 0, state)
    sg_top = np.minimum(floor + 0.8, zams - 0.4)
    state = np.where((state == 2) & (sg_top <= floor), 0, state)
    logg = np.empty(n)
    ms = state == 0
    logg[ms] = zams[ms] - 0.6 * rng.random(ms.sum()) ** 0.7
    gi = state == 1
    logg[gi] = rng.uniform(giant_bottom[gi], giant_top[gi])
    sg = state == 2
    logg[sg] = rng.uniform(floor[sg], sg_top[sg])
    logg = np.clip(np.maximum(logg, floor), LABEL_RANGES["logg"][0], LABEL_RANGES["logg"][1])
    return teff, logg, state


def _draw_other_labels(
    rng: np.random.Generator, teff: np.ndarray, logg: np.ndarray, radius_gc: np.ndarray, emission: np.ndarray
) -> dict[str, np.ndarray]:
    """vmic, vsini, N_He/N_tot and the five abundances [X/H] plus [Fe/H].

    - vsini = v_eq sin i, i isotropic; v_eq ~ N(190, 80) km/s for normal stars, N(40, 25) for 20 % slow
      rotators (Am/Ap), N(300, 60) for emission-line (Be) stars, N(60, 30) for log g < 3; clipped to 0–420.
    - vmic: 0–3 km/s on the main sequence, growing to ~12 km/s for supergiants (log g ≈ 1.5).
    - N_He/N_tot ~ N(0.09, 0.007) in [0.07, 0.11]; 4 % He-weak (0.02–0.06) at 12,000–20,000 K; 2 % He-rich
      (0.13–0.22) above 18,000 K.
    - Metallicity: a radial gradient −0.06 dex/kpc around −0.05 dex at the Sun, cosmic scatter 0.10 dex;
      each [X/H] = that + N(0, 0.08) (C offset −0.10, N +0.25 for evolved stars). Am stars (10 % of
      7,000–10,000 K slow rotators): [Fe/H] +0.2–0.5; Si stars (5 % of 9,000–14,000 K): [Si/H] +0.3–1.0.
    All clipped to :data:`survey_scale.core.labels.LABEL_RANGES`.
    """
    n = teff.size
    sin_i = np.sqrt(1.0 - rng.random(n) ** 2)
    slow = rng.random(n) < 0.20
    v_eq = np.where(slow, rng.normal(40.0, 25.0, n), rng.normal(190.0, 80.0, n))
    v_eq = np.where(logg < 3.0, rng.normal(60.0, 30.0, n), v_eq)
    v_eq = np.where(emission, rng.normal(300.0, 60.0, n), v_eq)
    vsini = np.clip(np.abs(v_eq) * sin_i, 0.0, 420.0)

    evolved = np.clip((ph.dwarf_logg(teff) - logg) / 2.5, 0.0, 1.0)
    vmic = rng.uniform(0.0, 3.0, n) + 10.0 * evolved * rng.uniform(0.6, 1.2, n)

    he = np.clip(rng.normal(0.09, 0.007, n), 0.07, 0.11)
    he_weak = (teff > 12000) & (teff < 20000) & (rng.random(n) < 0.04)
    he_rich = (teff > 18000) & (rng.random(n) < 0.02)
    he = np.where(he_weak, rng.uniform(0.02, 0.06, n), he)
    he = np.where(he_rich, rng.uniform(0.13, 0.22, n), he)

    base = -0.05 - 0.06 * (radius_gc - R_SUN_GC_KPC) + rng.normal(0.0, 0.10, n)
    labels = {"vmic": vmic, "vsini": vsini, "he_frac": he}
    offsets = {"c_h": -0.10, "n_h": 0.0, "o_h": 0.0, "si_h": 0.0, "s_h": 0.0, "fe_h": 0.0}
    for name, off in offsets.items():
        labels[name] = base + off + rng.normal(0.0, 0.08, n)
    labels["n_h"] = labels["n_h"] + 0.25 * (evolved > 0.2)
    am = (teff < 10000) & (vsini < 100) & (rng.random(n) < 0.10)
    labels["fe_h"] = labels["fe_h"] + am * rng.uniform(0.2, 0.5, n)
    si_star = (teff > 9000) & (teff < 14000) & (rng.random(n) < 0.05)
    labels["si_h"] = labels["si_h"] + si_star * rng.uniform(0.3, 1.0, n)
    for name in labels:
        lo, hi = LABEL_RANGES[name]
        labels[name] = np.clip(labels[name], lo, hi)
    return labels


def _emission_probability(teff: np.ndarray, fraction: float) -> np.ndarray:
    """Per-star emission probability: Be stars peak near B2 (18,000 K), Herbig Ae/Be near 9,000 K."""
    logt = np.log10(teff)
    w = (
        0.2
        + np.exp(-0.5 * ((logt - np.log10(18000.0)) / 0.12) ** 2)
        + 0.4 * np.exp(-0.5 * ((logt - np.log10(9000.0)) / 0.05) ** 2)
    )
    return np.clip(fraction * w / w.mean(), 0.0, 1.0)


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


SNR_CEILING: float = 800.0
"""Flat-fielding and sky-subtraction systematics cap the S/N per pixel of the brightest stars."""


def snr_from_g(g_mag: np.ndarray, g_sky: float = 15.5, snr14: float = 76.0) -> np.ndarray:
    """Median S/N per pixel (g band) a LAMOST visit reaches on a star of apparent G in good conditions.

    Photon noise of the star plus sky background: S/N = S₀ f / √(f + b), f = 10^(−0.4 (G − 14)),
    b = 10^(−0.4 (G_sky − 14)), the sky being equivalent to a G = 15.5 star per fibre and S₀ set so that a
    G = 14 star reaches 76; combined in quadrature with a systematic ceiling of :data:`SNR_CEILING`. The
    schedule multiplies by 10^(N(0, 0.08) − Exp(0.32)) per visit (weather, seeing, fibre losses), which with
    the G distribution gives S/N per spectrum with a median near 40 and a peak of log S/N near 1.8 (P2 §2:
    median 37, peak 63).
    """
    f = 10.0 ** (-0.4 * (np.asarray(g_mag, dtype=np.float64) - 14.0))
    b = 10.0 ** (-0.4 * (g_sky - 14.0))
    s0 = snr14 * np.sqrt(1.0 + b)
    photon = s0 * f / np.sqrt(f + b)
    return 1.0 / np.sqrt(1.0 / photon**2 + 1.0 / SNR_CEILING**2)


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


def _combine_mags(m1: np.ndarray, m2: np.ndarray) -> np.ndarray:
    """Magnitude of the summed flux of two components; NaN in ``m2`` means no secondary."""
    m2 = np.where(np.isfinite(m2), m2, np.inf)
    return -2.5 * np.log10(10.0 ** (-0.4 * m1) + 10.0 ** (-0.4 * m2))


Columns = dict[str, np.ndarray]


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


def _draw_candidates(
    rng: np.random.Generator, m: int, fields: pd.DataFrame, config: PopulationConfig, patchy: PatchyExtinction
) -> Columns:
    """Draw ``m`` candidate stars (intrinsic properties and a distance); unplaceable ones get NaN distance."""
    field, l_deg, b_deg = positions_in_fields(rng, m, fields, config.field_radius_deg)

    teff, logg, state = _draw_teff_logg(rng, m)
    # The 0.1 mag intrinsic MKs scatter is a luminosity (so mass, so radius) scatter at fixed Teff, log g.
    dmks = rng.normal(0.0, config.mks_scatter, m)
    log_mass = log_mass_from_labels(teff, logg) - 0.4 * dmks
    mks1 = absolute_mag_ks(teff, logg, log_mass)

    # Unresolved binaries: flat q in [q_min, 1] (Sana et al. 2012 find f(q) ∝ q^-0.1, nearly flat, for O
    # stars; Moe & Di Stefano 2017 similar for B stars). The secondary (mass q M1) is placed relative to the
    # mean dwarf of its mass as the primary is relative to the mean dwarf of its own, damped by q^4 (lower
    # masses evolve much more slowly): twins (q → 1) are identical stars, low-q companions are dwarfs.
    binary = rng.random(m) < config.binary_fraction
    q = np.where(binary, rng.uniform(config.q_min, 1.0, m), np.nan)
    q_eff = np.where(binary, q, 1.0)
    mass1 = 10.0**log_mass
    teff_d1, logg_d1, _ = ph.dwarf_from_mass(mass1)
    teff_d2, logg_d2, _ = ph.dwarf_from_mass(mass1 * q_eff)
    age = q_eff**4
    teff2 = np.where(binary, teff_d2 * (teff / teff_d1) ** age, np.nan)
    logg2 = np.where(binary, logg_d2 + (logg - logg_d1) * age, np.nan)
    mass2 = np.where(binary, mass1 * q_eff, np.nan)
    radius2 = np.where(binary, radius_from_mass(np.log10(mass2), logg2), np.nan)
    log_l2 = 2.0 * np.log10(radius2) + 4.0 * np.log10(teff2 / TEFF_SUN)
    bc2 = ph.bolometric_correction_ks(np.where(binary, teff2, 1e4))
    mks2 = np.where(binary, ph.SUN_MBOL - 2.5 * log_l2 - bc2, np.nan)

    emission = rng.random(m) < _emission_probability(teff, config.emission_fraction)
    # P1 Fig. 4: emission-line stars are 0.07 mag more reddened than the 3D map (circumstellar/H II dust).
    ebv_local = np.where(emission, np.clip(rng.normal(0.07, 0.04, m), 0.0, None), 0.0)

    out: Columns = {
        "field": field,
        "l": l_deg,
        "b": b_deg,
        "teff": teff,
        "logg": logg,
        "evol_state": state,
        "log_mass": log_mass,
        "mks_scatter": dmks,
        "mks1": mks1,
        "binary": binary,
        "q": q,
        "mass2": mass2,
        "teff2": teff2,
        "logg2": logg2,
        "radius2": radius2,
        "mks2": mks2,
        "emission": emission,
        "ebv_local": ebv_local,
    }
    col1 = ph.intrinsic_colors(teff)
    col2 = ph.intrinsic_colors(np.where(binary, teff2, 1e4))
    for band in ph.BANDS:
        m1 = mks1 + col1[band]
        m2 = np.where(binary, mks2 + col2[band], np.nan)
        out[f"abs_{band}"] = _combine_mags(m1, m2)
        out[f"abs_{band}_1"] = m1
        out[f"abs_{band}_2"] = m2

    patch = patchy.factor(l_deg, b_deg) * np.exp(rng.normal(0.0, 0.10, m) - 0.005)
    dist, ebv, placed = _sample_distances(rng, out["abs_G"], l_deg, b_deg, patch, ebv_local)
    out.update({"dust_patch": patch, "distance_pc": dist, "ebv": ebv, "placed": placed})
    return out


def population_fields(n_stars: int, seed: int, config: PopulationConfig | None = None) -> pd.DataFrame:
    """The plate centres of :func:`make_population` for these arguments (field_l, field_b, field_ra, field_dec):
    n_fields = max(min_fields, ⌈n_stars / stars_per_field⌉), drawn from the seed's stream 1."""
    config = config or PopulationConfig()
    n_fields = max(config.min_fields, int(np.ceil(n_stars / config.stars_per_field)))
    return _draw_fields(_rng(seed, 1), n_fields)


def make_population(
    n_stars: int,
    seed: int,
    *,
    config: PopulationConfig | None = None,
    galaxy_seed: int | None = None,
    star_index_start: int = 0,
    reserved_star_ids: set[str] | frozenset[str] = frozenset(),
) -> pd.DataFrame:
    """Draw the mock stellar population (one row per star, the truth of every star; SPEC §10).

    Parameters
    ----------
    n_stars
        Number of stars (≥ 1).
    seed
        Seed of this population (independent numpy ``SeedSequence`` streams per step).
    config
        Fractions and knobs; :class:`PopulationConfig` defaults if None.
    galaxy_seed
        Seed of the mock Galaxy's dust clouds (:class:`PatchyExtinction`); defaults to ``seed``. Releases that
        extend an earlier one pass the earlier galaxy seed so that both see the same sky.
    star_index_start
        First ``star_index`` (releases extending an earlier one continue its numbering).
    reserved_star_ids
        ``star_id`` values already used (an earlier release's stars); new stars avoid them.

    Returns
    -------
    pandas.DataFrame
        One row per star with the columns of :data:`STAR_COLUMNS`.
    """
    if n_stars < 1:
        raise ValueError(f"n_stars must be ≥ 1, got {n_stars}")
    config = config or PopulationConfig()
    galaxy_seed = seed if galaxy_seed is None else galaxy_seed
    patchy = PatchyExtinction(galaxy_seed)
    fields = population_fields(n_stars, seed, config)

    rng_cand = _rng(seed, 2)
    parts: list[Columns] = []
    n_placed = 0
    while n_placed < n_stars:
        m = int(1.15 * (n_stars - n_placed)) + 16
        cand = _draw_candidates(rng_cand, m, fields, config, patchy)
        keep = cand.pop("placed")
        parts.append({k: v[keep] for k, v in cand.items()})
        n_placed += int(keep.sum())
    s: Columns = {k: np.concatenate([p[k] for p in parts])[:n_stars] for k in parts[0]}
    n = n_stars
    s["star_index"] = np.arange(star_index_start, star_index_start + n, dtype=np.int64)
    for key in ("field_l", "field_b", "field_ra", "field_dec"):
        s[key] = fields[key].to_numpy()[s["field"]]

    import astropy.units as u
    from astropy.coordinates import SkyCoord

    icrs = SkyCoord(l=s["l"] * u.deg, b=s["b"] * u.deg, frame="galactic").icrs
    s["ra"], s["dec"], s["star_id"] = _unique_positions(icrs.ra.deg, icrs.dec.deg, reserved_star_ids)
    s["designation"] = lamost_designation(s["ra"], s["dec"])
    s.update(_kinematics(_rng(seed, 3), s["ra"], s["dec"], s["distance_pc"]))

    teff, logg = s["teff"], s["logg"]
    radius_gc = np.hypot(s["X"], s["Y"])
    s.update(_draw_other_labels(_rng(seed, 4), teff, logg, radius_gc, s["emission"]))
    s["mass"] = 10.0 ** s["log_mass"]
    s["radius"] = radius_from_mass(s["log_mass"], logg)
    s["log_l"] = s["log_mass"] + spectroscopic_luminosity(teff, logg)
    s["mks"] = s["mks1"]
    s["mks_system"] = _combine_mags(s["mks1"], s["mks2"])
    s["light_frac_ks"] = np.where(s["binary"], 1.0 / (1.0 + 10.0 ** (-0.4 * (s["mks1"] - s["mks2"]))), 0.0)
    s["subclass"] = spectral_subclass(teff)

    s.update(_secondary_labels(_rng(seed, 5), s))
    s.update(_orbits(_rng(seed, 6), s))
    s.update(_emission_lines(_rng(seed, 7), s))
    s.update(_photometry(_rng(seed, 8), _rng(seed, 11), s))
    s.update(_astrometry(_rng(seed, 9), s))

    rng_vis = _rng(seed, 10)
    multi = rng_vis.random(n) < config.multi_visit_fraction
    extra = rng_vis.choice(4, size=n, p=np.asarray(config.visit_count_probs) / np.sum(config.visit_count_probs))
    s["n_visits"] = np.where(multi, 2 + extra, 1).astype(np.int64)
    s["snr_base"] = snr_from_g(s["G_true"])
    return pd.DataFrame({c: s[c] for c in STAR_COLUMNS})


def _unique_positions(
    ra: np.ndarray, dec: np.ndarray, reserved: set[str] | frozenset[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nudge stars by 1.5″ in Dec until every ``star_id`` (1″ resolution) is unique and not reserved."""
    ra, dec = np.array(ra, dtype=np.float64), np.array(dec, dtype=np.float64)
    ids = star_id_from_radec(ra, dec)
    for _ in range(100):
        seen: set[str] = set(reserved)
        clash = np.zeros(ra.size, dtype=bool)
        for i, sid in enumerate(ids):
            if sid in seen:
                clash[i] = True
            else:
                seen.add(sid)
        if not clash.any():
            return ra, dec, ids
        dec[clash] = np.clip(dec[clash] + 1.5 / 3600.0, -89.99, 89.99)
        ids[clash] = star_id_from_radec(ra[clash], dec[clash])
    raise RuntimeError("could not make star ids unique")


def _secondary_labels(rng: np.random.Generator, s: Columns) -> Columns:
    """Labels of the secondaries: own vmic, vsini, He; the primary's abundances (same birth cloud)."""
    n = s["teff"].size
    binary = s["binary"]
    out: Columns = {"vmic2": np.where(binary, rng.uniform(0.0, 3.0, n), np.nan)}
    sin_i = np.sqrt(1.0 - rng.random(n) ** 2)
    out["vsini2"] = np.where(binary, np.clip(np.abs(rng.normal(150.0, 90.0, n)) * sin_i, 0.0, 420.0), np.nan)
    out["he_frac2"] = np.where(binary, np.clip(rng.normal(0.09, 0.007, n), 0.07, 0.11), np.nan)
    for name in ("c_h", "n_h", "o_h", "si_h", "s_h", "fe_h"):
        out[name + "2"] = np.where(binary, s[name], np.nan)
    return out


def _orbits(rng: np.random.Generator, s: Columns) -> Columns:
    """Circular orbits: P log-uniform in 2–5000 d (Öpik's law), isotropic inclination, random phase.

    Periods are raised so that the separation a ≥ 2.5 (R1 + R2) (no contact systems). K1 = 212.9 km/s ·
    (P/d)^(−1/3) M2 sin i / (M1 + M2)^(2/3) (masses in M_sun); K2 = K1 / q; a = 4.2084 (M1+M2)^(1/3) P^(2/3)
    R_sun.
    """
    n = s["teff"].size
    binary = s["binary"]
    m1 = s["mass"]
    m2 = np.where(binary, s["mass2"], 0.0)
    r1, r2 = s["radius"], np.where(binary, s["radius2"], 0.0)
    period = 10.0 ** rng.uniform(np.log10(2.0), np.log10(5000.0), n)
    p_min = ((2.5 * (r1 + r2)) / (4.2084 * (m1 + m2) ** (1.0 / 3.0))) ** 1.5
    period = np.maximum(period, p_min * rng.uniform(1.0, 1.5, n))
    sin_i = np.sqrt(1.0 - rng.random(n) ** 2)
    k1 = 212.9 * period ** (-1.0 / 3.0) * m2 * sin_i / (m1 + m2) ** (2.0 / 3.0)
    return {
        "period_d": np.where(binary, period, np.nan),
        "sin_i": np.where(binary, sin_i, np.nan),
        "phase0": np.where(binary, rng.uniform(0.0, 1.0, n), np.nan),
        "k1": np.where(binary, k1, 0.0),
        "k2": np.where(binary, k1 / np.where(binary, s["q"], 1.0), 0.0),
        "a_rsun": np.where(binary, 4.2084 * (m1 + m2) ** (1.0 / 3.0) * period ** (2.0 / 3.0), np.nan),
    }


def _emission_lines(rng: np.random.Generator, s: Columns) -> Columns:
    """Emission-line strengths (equivalent widths in Å, positive for emission, stellar rest frame).

    Hα EW log-uniform in 1–50 Å; Hβ in 70 % of emitters at 0.1–0.3 × Hα; Paschen lines (Pa11–Pa20) in 30 %
    at 0.02–0.08 × Hα each; intrinsic Gaussian line width σ_v 60–200 km/s (disc rotation). Near-IR excess
    from circumstellar discs (P1 §4: Ks "contaminated by emission from surrounding gas and dust"):
    ΔKs = −(0.05 + 0.25 log10(EW_Hα)/1.7) × U(0.5, 1.5), ΔH = 0.7 ΔKs, ΔJ = 0.45 ΔKs.
    """
    n = s["teff"].size
    em = s["emission"]
    ha = 10.0 ** rng.uniform(0.0, np.log10(50.0), n)
    has_hb = rng.random(n) < 0.7
    has_pa = rng.random(n) < 0.3
    dks = -(0.05 + 0.25 * np.log10(ha) / 1.7) * rng.uniform(0.5, 1.5, n)
    return {
        "ha_ew": np.where(em, ha, 0.0),
        "hb_ew": np.where(em & has_hb, ha * rng.uniform(0.1, 0.3, n), 0.0),
        "pa_ew": np.where(em & has_pa, ha * rng.uniform(0.02, 0.08, n), 0.0),
        "em_sigma_kms": np.where(em, rng.uniform(60.0, 200.0, n), np.nan),
        "ks_excess": np.where(em, dks, 0.0),
    }


def _photometry(rng: np.random.Generator, colour_rng: np.random.Generator, s: Columns) -> Columns:
    """Apparent magnitudes: M_system + the star's colour offsets (:func:`photometry.colour_offsets`)
    + 5 log10(d/10 pc) + R_band E(B−V) (+ disc IR excess), then errors.

    ``<band>_true`` holds the noiseless value, ``<band>`` and ``<band>_err`` the catalogue ones; faint
    2MASS and g/r/i magnitudes go missing (NaN) past the detection limits (logistic, width 0.15 mag), plus
    1 % at random (not G), as in real cross-matches.
    """
    n = s["teff"].size
    dm = 5.0 * np.log10(s["distance_pc"] / 10.0)
    excess = {"J": 0.45, "H": 0.7, "Ks": 1.0}
    out: Columns = {}
    # Real stars are off the colour table the pipeline uses (a stream of its own: the rest of the mock
    # does not change with it); the system's magnitudes take the primary's offsets.
    offsets = ph.colour_offsets(colour_rng, s["teff"], s["logg"], s["fe_h"])
    for band in ph.BANDS:
        out[f"abs_{band}"] = s[f"abs_{band}"] + offsets[band]
        out[f"colour_offset_{band}"] = offsets[band]
        mag = out[f"abs_{band}"] + dm + ph.EXTINCTION_COEFFS[band] * s["ebv"]
        if band in excess:
            mag = mag + excess[band] * s["ks_excess"]
        out[f"{band}_true"] = mag
    for band in ph.BANDS:
        true = out[f"{band}_true"]
        sigma = ph.photometric_error(band, true, r_mag=out["r_true"])
        observed = true + rng.normal(0.0, 1.0, n) * sigma
        reported = sigma * rng.uniform(0.85, 1.15, n)
        missing = rng.random(n) < 0.01
        if band in ph.DETECTION_LIMITS:
            p_miss = 1.0 / (1.0 + np.exp(-(true - ph.DETECTION_LIMITS[band]) / 0.15))
            missing |= rng.random(n) < p_miss
        if band == "G":
            missing[:] = False
        out[band] = np.where(missing, np.nan, observed)
        out[f"{band}_err"] = np.where(missing, np.nan, reported)
    return out


def _astrometry(rng: np.random.Generator, s: Columns) -> Columns:
    """Gaia DR2-like parallax, proper motions, RUWE and source_id.

    ϖ_obs = 1000/d + zero point (SPEC §8, :func:`photometry.parallax_zero_point`) + N(0, σ_ϖ(G)); 2 % of
    parallaxes missing (two-parameter solutions), half of those fainter than G = 19. Proper motions get
    1.5 σ_ϖ errors. RUWE: log-normal around 1 (σ = 0.07) for single stars, 3 % astrometric outliers
    (1.4–3); binaries add the photocentre wobble a·|B − β| (B = q/(1+q) mass fraction, β the secondary's
    G-band light fraction) seen against a per-transit error of 4 σ_ϖ, damped for periods longer than the
    22-month DR2 baseline: RUWE = √(1 + (wobble/σ_al)²) — equal-mass pairs keep RUWE ≈ 1 (P1 §6).
    """
    n = s["teff"].size
    g = s["G_true"]
    plx_true = 1000.0 / s["distance_pc"]
    sigma = ph.gaia_parallax_error(g) * rng.uniform(0.9, 1.2, n)
    zp = ph.parallax_zero_point(g)
    plx = plx_true + zp + rng.normal(0.0, 1.0, n) * sigma
    missing = (rng.random(n) < 0.02) | ((g > 19.0) & (rng.random(n) < 0.5))
    sig_pm = 1.5 * sigma
    out: Columns = {
        "parallax_true": plx_true,
        "parallax_zp": zp,
        "parallax": np.where(missing, np.nan, plx),
        "parallax_error": np.where(missing, np.nan, sigma),
        "pmra": np.where(missing, np.nan, s["pmra_true"] + rng.normal(0.0, 1.0, n) * sig_pm),
        "pmdec": np.where(missing, np.nan, s["pmdec_true"] + rng.normal(0.0, 1.0, n) * sig_pm),
        "pmra_error": np.where(missing, np.nan, sig_pm),
        "pmdec_error": np.where(missing, np.nan, sig_pm),
    }
    binary = s["binary"]
    q = np.where(binary, s["q"], 0.0)
    beta = np.nan_to_num(np.where(binary, 1.0 / (1.0 + 10.0 ** (-0.4 * (s["abs_G_2"] - s["abs_G_1"]))), 0.0))
    a_mas = np.where(binary, s["a_rsun"] / 215.03 * plx_true, 0.0)
    damping = np.minimum(1.0, 670.0 / np.where(binary, s["period_d"], 1.0))
    wobble = np.nan_to_num(a_mas * np.abs(q / (1.0 + q) - beta) * damping)
    ruwe = np.exp(rng.normal(0.0, 0.07, n)) * np.sqrt(1.0 + (wobble / (4.0 * sigma)) ** 2)
    outlier = rng.random(n) < 0.03
    ruwe = np.where(outlier, rng.uniform(1.4, 3.0, n), ruwe)
    out["ruwe"] = np.where(missing, np.nan, ruwe)
    out["photocentre_wobble_mas"] = wobble
    # A Gaia-like 64-bit id: a coarse sky cell in the high bits (as Gaia's HEALPix level-12 index) and the
    # star index in the low 35 bits, so ids are unique and stable across releases.
    cell = (np.floor(s["ra"] / 360.0 * 4096).astype(np.int64) << 11) + np.floor(
        (s["dec"] + 90.0) / 180.0 * 2048
    ).astype(np.int64)
    out["gaia_source_id"] = (cell << 35) + s["star_index"].astype(np.int64)
    return out


STAR_COLUMNS: tuple[str, ...] = (
    # identity and position
    "star_index",
    "star_id",
    "designation",
    "ra",
    "dec",
    "l",
    "b",
    "field_l",
    "field_b",
    "field_ra",
    "field_dec",
    "distance_pc",
    "X",
    "Y",
    "Z",
    # primary labels (LABEL_NAMES order) and physical properties
    *LABEL_NAMES,
    "evol_state",
    "mass",
    "log_mass",
    "radius",
    "log_l",
    "mks",
    "mks_scatter",
    "subclass",
    # binary
    "binary",
    "q",
    "mass2",
    "radius2",
    "teff2",
    "logg2",
    "vmic2",
    "vsini2",
    "he_frac2",
    "c_h2",
    "n_h2",
    "o_h2",
    "si_h2",
    "s_h2",
    "fe_h2",
    "mks2",
    "mks_system",
    "light_frac_ks",
    "period_d",
    "sin_i",
    "phase0",
    "k1",
    "k2",
    "a_rsun",
    # emission
    "emission",
    "ha_ew",
    "hb_ew",
    "pa_ew",
    "em_sigma_kms",
    "ks_excess",
    # extinction
    "ebv",
    "ebv_local",
    "dust_patch",
    # kinematics
    "rv_sys",
    "pmra_true",
    "pmdec_true",
    # photometry: absolute (system, primary, secondary), apparent true, catalogue values and errors
    *(f"abs_{b}" for b in ph.BANDS),
    *(f"abs_{b}_{k}" for b in ph.BANDS for k in (1, 2)),
    *(f"colour_offset_{b}" for b in ph.BANDS),
    *(f"{b}_true" for b in ph.BANDS),
    *(x for b in ph.BANDS for x in (b, f"{b}_err")),
    # astrometry
    "gaia_source_id",
    "parallax_true",
    "parallax_zp",
    "parallax",
    "parallax_error",
    "pmra",
    "pmra_error",
    "pmdec",
    "pmdec_error",
    "ruwe",
    "photocentre_wobble_mas",
    # observing
    "n_visits",
    "snr_base",
)
"""Columns of the star table (``truth_stars.parquet``); units in the module docstring."""
