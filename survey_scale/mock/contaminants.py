"""Contaminants of the mock hot-star candidate list: cool F/G/K(M) stars and a few QSOs (SPEC §10).

A real LAMOST hot-star *candidate* list is not clean: P2 (§5.1) ran its fit on 1.16 million candidate
spectra, found "a considerable fraction" to be cool stars (Teff < 7,000 K) from the target selection, kept
454,693 spectra after its final-sample rules (Teff < 7,000 K; S/N < 5; intrinsically cool stars with
(BP−RP)₀ > 0.4 and an independent cool-star Teff < 7,000 K), and non-stellar objects travel in the lists
with LAMOST's own class. So that every mock run exercises those rules, a release gets, next to its hot stars
(which are unchanged: the contaminants are drawn from streams of their own):

- **cool contaminants**, ``cool_fraction`` of all stars (default :data:`COOL_FRACTION`, 0.3; 0 disables
  all contaminants): F/G/K dwarfs (and a few early M, and a tail to 7,500 K), subgiants and giants
  (:func:`make_cool_population`). Their spectra are the cool-star emulator's continuum-normalized flux
  (:func:`cool_star_emulator`) times a Planck continuum at their Teff, observed exactly as the hot stars are
  (:func:`survey_scale.mock.spectra.observe`: RV shift onto LAMOST's native grid, ISM lines, reddening,
  tellurics, throughput, noise at the visit's S/N, calibration, masks, defects; both FITS layouts).
  LAMOST-like classes: CLASS = "STAR", SUBCLASS from their Teff (:func:`survey_scale.mock.population.
  spectral_subclass`, F0…K7, M0…), a fraction (:attr:`ContaminantConfig.misclassified_fraction`, ~15 %,
  mostly the hottest F stars) given A-type subclasses as LAMOST does (A5V…A9V).
- **QSOs**, ``qso_fraction`` of the release's spectra (default :data:`QSO_FRACTION`, 0.3 %; at least one
  when contaminants are on): CLASS = "QSO", a power-law continuum with broad emission lines at the
  redshift (:func:`qso_flux_native`), header Z = the redshift as LAMOST writes it.

Physics of the cool stars (:func:`make_cool_population`)
--------------------------------------------------------
- **Labels.** Dwarfs (75 %): Teff in bins 3,700–4,000 (3 %), 4,000–5,200 (17 %), 5,200–6,000 (26 %),
  6,000–7,000 (50 %) and 7,000–7,500 K (4 %), log g on the Pecaut & Mamajek (2013) dwarf sequence
  (log g_sun + log M − 2 log R of the table) + 0.05, lowered by main-sequence evolution by up to 0.45 dex
  for F stars (0.05 dex for K dwarfs), within [4.0, 4.75]. Subgiants (10 %): 5,000–6,400 K, log g 3.5–4.0.
  Giants (15 %): half red clump (Teff N(4,800, 120) K, log g N(2.45, 0.1)), half red-giant branch
  (4,000–5,200 K, log g rising from 2.0 to 3.4 with Teff), log g within [2.0, 3.5]. [Fe/H] ~ N(−0.2, 0.3)
  in [−2, 0.5]. vsini = v_eq sin i, i isotropic: v_eq ~ N(3, 1.5) km/s for G/K dwarfs, rising through
  the F stars (Kraft break, 6,200 K) to ~N(70, 25) at 7,500 K; N(5, 2) for subgiants and N(3, 1.5) for
  giants; within [0, 120]. The other hot-star labels (vmic, N_He, C, N, O, Si, S) are not modelled by the
  cool-star emulator: NaN in the truth.
- **MKs, photometry, astrometry**: the hot stars' machinery. Masses from the dwarf table (dwarfs),
  1.0–1.6 M_sun (subgiants), 0.9–2.2 M_sun (giants), with the same 0.1 mag intrinsic scatter; MKs =
  :func:`survey_scale.mock.population.absolute_mag_ks` (Pecaut & Mamajek bolometric corrections and colours,
  which cover Teff down to 2,810 K); colours by :func:`survey_scale.mock.photometry.intrinsic_colors` plus
  the same star-to-star offsets, errors, detection limits and Gaia parallaxes as the hot stars.
- **Galaxy**: the same plates and the same LAMOST-like G selection, but an old disc (thin disc: scale length
  2.6 kpc, scale height 300 pc; 10 % thick disc: 2.0 kpc, 900 pc; truncated at R ≈ 15 kpc) and old-disc
  kinematics (dispersions 35, 25, 20 km/s, asymmetric drift 15 km/s); the same dust and cloud field
  (reddening grows along the sight line as for the hot stars).
- **Visits**: the same multi-visit fractions; schedule, S/N and LSF as the hot stars (their own plans on the
  same fields, :func:`survey_scale.mock.schedule.make_visits` with ``plan_rank_offset``).

QSOs (:func:`make_qso_population`): z log-uniform in 0.3–3.0, G uniform in 16.5–18.0, F_λ ∝ λ^α with
α ~ N(−1.5, 0.3), broad Lyα, C IV, C III], Mg II, Hγ, Hβ, Hα (FWHM 2,500–6,000 km/s) and narrow [O III]
λ5008, a Lyα-forest decrement blueward of Lyα; Galactic reddening of the whole sight line; zero parallax and
proper motion (with Gaia-like errors); blue-optical, red-infrared colours.

Limits: the cool stars are single (no binaries, no emission lines, no chromospheric activity); the emulator
gives spectra at the mean LAMOST LSF (R = 1800) and rest frame, resampled to each visit's velocity by cubic
(Keys) interpolation; a Planck continuum stands in for the cool stars' true SED (the line blanketing is in
the normalized flux). Cool stars and QSOs are not revisited by a later release (``previous=``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from survey_scale.core.wavelength import LOG10_WAVE_START, LOG10_WAVE_STEP, N_WAVE
from survey_scale.mock import photometry as ph
from survey_scale.mock import population as pop
from survey_scale.mock import spectra as spx

COOL_FRACTION: float = 0.3
"""Default fraction of cool contaminants among all stars of a release (P2 §5.1: "a considerable fraction"
of its 1.16 M candidate spectra were cool; 0.3 keeps the mock's hot-star statistics usable)."""
QSO_FRACTION: float = 0.003
"""Default fraction of a release's spectra that are QSOs (at least one when contaminants are on)."""
POPULATION_HOT, POPULATION_COOL, POPULATION_QSO = "hot", "cool_contaminant", "qso"
"""Values of the truth column ``population``."""

MISCLASSIFIED_SUBCLASSES: tuple[str, ...] = ("A5V", "A6IV", "A7V", "A7III", "A9V")
MISCLASSIFIED_WEIGHTS: tuple[float, ...] = (0.10, 0.15, 0.35, 0.10, 0.30)
"""A-type subclasses (LAMOST template names) given to misclassified cool stars, and their weights."""

CONTAMINANT_SEED_OFFSET: int = 1 << 32
"""Added to a contaminant visit's number to make its ``visit_seed`` (noise and defects): never a hot one's."""

CONTAMINANT_COLUMNS: tuple[str, ...] = (
    "population",
    "lamost_class",
    "true_subclass",
    "misclassified",
    "cool_class",
    "redshift",
)
"""Columns of the contaminant star table beyond :data:`survey_scale.mock.population.STAR_COLUMNS`:
``population`` (:data:`POPULATION_COOL` or :data:`POPULATION_QSO`), ``lamost_class`` (CLASS: "STAR"/"QSO"),
``true_subclass`` (the subclass of the true Teff; ``subclass`` holds the one LAMOST gives, A-type for the
misclassified), ``misclassified`` (bool), ``cool_class`` ("dwarf", "subgiant", "giant"; "" for QSOs),
``redshift`` (QSOs; NaN for stars)."""

QSO_LINES: tuple[tuple[str, float, float, bool], ...] = (
    # name, rest vacuum wavelength (Å), rest equivalent width (Å), broad
    ("Lya", 1215.67, 70.0, True),
    ("CIV", 1549.06, 35.0, True),
    ("CIII]", 1908.73, 20.0, True),
    ("MgII", 2799.12, 30.0, True),
    ("Hg", 4341.69, 12.0, True),
    ("Hb", 4862.68, 45.0, True),
    ("[OIII]", 5008.24, 12.0, False),
    ("Ha", 6564.61, 200.0, True),
)
"""QSO emission lines (typical composite-spectrum strengths, Vanden Berk et al. 2001)."""


@dataclass(frozen=True)
class ContaminantConfig:
    """Knobs of the contaminant populations (the fractions of a release are arguments of ``make_release``).

    Attributes
    ----------
    giant_fraction, subgiant_fraction
        Fractions of giants and subgiants among the cool contaminants (the rest are dwarfs).
    dwarf_teff_bins
        (Teff_lo, Teff_hi, weight) bins of the dwarfs' Teff, uniform within each bin.
    misclassified_fraction
        Fraction of cool contaminants that LAMOST classes as A stars (mostly the hottest).
    """

    giant_fraction: float = 0.15
    subgiant_fraction: float = 0.10
    dwarf_teff_bins: tuple[tuple[float, float, float], ...] = (
        (3700.0, 4000.0, 0.03),
        (4000.0, 5200.0, 0.17),
        (5200.0, 6000.0, 0.26),
        (6000.0, 7000.0, 0.50),
        (7000.0, 7500.0, 0.04),
    )
    misclassified_fraction: float = 0.15


def contaminant_counts(n_hot: int, cool_fraction: float) -> int:
    """Number of cool contaminants so that they are ``cool_fraction`` of all stars: n_hot f / (1 − f)."""
    if not 0.0 <= cool_fraction < 1.0:
        raise ValueError(f"cool_fraction must be within [0, 1), got {cool_fraction}")
    return round(n_hot * cool_fraction / (1.0 - cool_fraction))


# --- the cool-star emulator ---------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def cool_star_emulator() -> Any:
    """The cool-star emulator that the mock's cool contaminants are synthesized from.

    Continuum-normalized flux (SPEC §3) on the common grid for labels (teff, logg, vsini, fe_h) over
    3,500–9,000 K: the ``cool`` component of the shipped ``physical`` emulator set,
    ``survey_scale.science.emulator.load_default("physical").component("cool")``.
    """
    from survey_scale.science import emulator as emu

    return emu.load_default("physical").component("cool")


# --- populations ------------------------------------------------------------------------------------------------


def old_disc_density(radius_kpc: np.ndarray, z_kpc: np.ndarray) -> np.ndarray:
    """Relative density of old-disc (F/G/K) stars: thin disc (2.6 kpc, 300 pc) + 10 % thick disc
    (2.0 kpc, 900 pc), truncated beyond R ≈ 15 kpc (arbitrary units)."""
    dr = radius_kpc - pop.R_SUN_GC_KPC
    thin = np.exp(-dr / 2.6) * np.exp(-np.abs(z_kpc) / 0.30) / 0.30
    thick = 0.1 * np.exp(-dr / 2.0) * np.exp(-np.abs(z_kpc) / 0.90) / 0.90
    return (thin + thick) / (1.0 + np.exp((radius_kpc - 15.0) / 0.6))


def dwarf_sequence_logg(teff: np.ndarray) -> np.ndarray:
    """log g of the Pecaut & Mamajek (2013) dwarfs at Teff (K): 4.438 + log M − 2 log R, interpolated in log Teff
    (the table covers M6V–O3V; :func:`survey_scale.mock.photometry.dwarf_logg` is a fit to its F5V–O3V part)."""
    cols = ph.colour_table()
    logg = 4.438 + np.log10(cols["Msun"]) - 2.0 * np.log10(cols["R_Rsun"])
    ok = np.isfinite(logg)
    return np.interp(np.log10(np.asarray(teff, dtype=np.float64)), cols["logT"][ok], logg[ok])


def dwarf_sequence_mass(teff: np.ndarray) -> np.ndarray:
    """Mass (M_sun) of the Pecaut & Mamajek (2013) dwarf of Teff (K), interpolated in log Teff."""
    cols = ph.colour_table()
    ok = np.isfinite(cols["Msun"])
    return 10.0 ** np.interp(np.log10(np.asarray(teff, dtype=np.float64)), cols["logT"][ok], np.log10(cols["Msun"][ok]))


def _draw_cool_labels(rng: np.random.Generator, m: int, config: ContaminantConfig) -> dict[str, np.ndarray]:
    """Teff, log g, class, mass, vsini and [Fe/H] of ``m`` cool stars (module docstring)."""
    u = rng.random(m)
    cls = np.where(u < config.giant_fraction, 2, np.where(u < config.giant_fraction + config.subgiant_fraction, 1, 0))
    bins = np.asarray(config.dwarf_teff_bins, dtype=np.float64)
    which = rng.choice(len(bins), size=m, p=bins[:, 2] / bins[:, 2].sum())
    teff = rng.uniform(bins[which, 0], bins[which, 1])
    evolve = rng.random(m)
    spread = 0.45 * np.clip((teff - 4500.0) / 1500.0, 0.1, 1.0)  # K dwarfs barely evolve in a Hubble time
    logg = np.clip(dwarf_sequence_logg(teff) + 0.05 - spread * evolve**1.5, 4.0, 4.75)
    mass = dwarf_sequence_mass(teff) * np.exp(rng.normal(0.0, 0.05, m))
    sub = cls == 1
    teff = np.where(sub, rng.uniform(5000.0, 6400.0, m), teff)
    logg = np.where(sub, rng.uniform(3.5, 4.0, m), logg)
    mass = np.where(sub, rng.uniform(1.0, 1.6, m), mass)
    giant = cls == 2
    clump = rng.random(m) < 0.5
    t_rgb = rng.uniform(4000.0, 5200.0, m)
    t_giant = np.where(clump, rng.normal(4800.0, 120.0, m), t_rgb)
    g_giant = np.where(
        clump, rng.normal(2.45, 0.10, m), 2.0 + 1.4 * (t_rgb - 4000.0) / 1200.0 + rng.normal(0.0, 0.15, m)
    )
    teff = np.where(giant, t_giant, teff)
    logg = np.where(giant, np.clip(g_giant, 2.0, 3.5), logg)
    mass = np.where(giant, 10.0 ** rng.uniform(np.log10(0.9), np.log10(2.2), m), mass)

    sin_i = np.sqrt(1.0 - rng.random(m) ** 2)
    f_star = np.clip((teff - 6200.0) / 1300.0, 0.0, None)  # 0 below the Kraft break, 1 at 7,500 K
    v_eq = np.where(f_star > 0, rng.normal(3.0 + 67.0 * f_star, 3.0 + 22.0 * f_star), rng.normal(3.0, 1.5, m))
    v_eq = np.where(sub, rng.normal(5.0, 2.0, m), v_eq)
    v_eq = np.where(giant, rng.normal(3.0, 1.5, m), v_eq)
    vsini = np.clip(np.abs(v_eq) * sin_i, 0.0, 120.0)
    fe_h = np.clip(rng.normal(-0.2, 0.3, m), -2.0, 0.5)
    return {"teff": teff, "logg": logg, "cool_state": cls, "mass": mass, "vsini": vsini, "fe_h": fe_h}


def _contaminant_frame(s: dict[str, np.ndarray], n: int) -> pd.DataFrame:
    """The star table of contaminants: every STAR_COLUMN (NaN/False/0 where it does not apply) + extras."""
    defaults: dict[str, Any] = {"binary": False, "emission": False, "evol_state": -1, "n_visits": 1}
    zero = ("ha_ew", "hb_ew", "pa_ew", "ks_excess", "k1", "k2", "light_frac_ks", "ebv_local")
    out: dict[str, Any] = {}
    for col in (*pop.STAR_COLUMNS, *CONTAMINANT_COLUMNS):
        if col in s:
            out[col] = s[col]
        elif col in defaults:
            out[col] = np.full(n, defaults[col])
        elif col in zero:
            out[col] = np.zeros(n)
        else:
            out[col] = np.full(n, np.nan)
    frame = pd.DataFrame(out)
    frame["binary"] = frame["binary"].astype(bool)
    frame["emission"] = frame["emission"].astype(bool)
    frame["misclassified"] = frame["misclassified"].astype(bool)
    for col in ("evol_state", "n_visits", "star_index", "gaia_source_id"):
        frame[col] = frame[col].astype(np.int64)
    return frame


def _place(
    rng: np.random.Generator,
    s: dict[str, np.ndarray],
    fields: pd.DataFrame,
    field: np.ndarray,
    star_index_start: int,
    reserved: set[str] | frozenset[str],
) -> None:
    """Star index, field columns, ICRS position, unique star id and designation (in place)."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    n = field.size
    s["star_index"] = np.arange(star_index_start, star_index_start + n, dtype=np.int64)
    for key in ("field_l", "field_b", "field_ra", "field_dec"):
        s[key] = fields[key].to_numpy()[field]
    icrs = SkyCoord(l=s["l"] * u.deg, b=s["b"] * u.deg, frame="galactic").icrs
    s["ra"], s["dec"], s["star_id"] = pop._unique_positions(icrs.ra.deg, icrs.dec.deg, reserved)
    s["designation"] = pop.lamost_designation(s["ra"], s["dec"])


def _visits_per_star(rng: np.random.Generator, n: int, config: pop.PopulationConfig) -> np.ndarray:
    multi = rng.random(n) < config.multi_visit_fraction
    probs = np.asarray(config.visit_count_probs) / np.sum(config.visit_count_probs)
    extra = rng.choice(4, size=n, p=probs)
    return np.where(multi, 2 + extra, 1).astype(np.int64)


def _rng(seed: int, stream: int) -> np.random.Generator:
    """The contaminants' streams: ``SeedSequence([seed, 9400 + stream])``, disjoint from every hot-star one."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), 9400 + stream]))


def make_cool_population(
    n: int,
    seed: int,
    fields: pd.DataFrame,
    *,
    galaxy_seed: int,
    star_index_start: int,
    reserved_star_ids: set[str] | frozenset[str] = frozenset(),
    population_config: pop.PopulationConfig | None = None,
    config: ContaminantConfig | None = None,
) -> pd.DataFrame:
    """Draw ``n`` cool contaminants on the release's plates (module docstring for the physics).

    Parameters
    ----------
    n
        Number of cool stars (0 gives an empty table).
    seed
        The release seed (streams of its own, :func:`_rng`).
    fields
        The release's plate centres (:func:`survey_scale.mock.population.population_fields`).
    galaxy_seed
        Seed of the dust clouds (the hot stars' galaxy).
    star_index_start
        First star_index (after the hot stars').
    reserved_star_ids
        star ids already taken (the hot stars', an earlier release's).
    population_config, config
        The hot population's knobs (plate radius, MKs scatter, visit fractions) and the contaminants'.

    Returns
    -------
    pandas.DataFrame
        STAR_COLUMNS + :data:`CONTAMINANT_COLUMNS`, ``population`` = "cool_contaminant".
    """
    pcfg = population_config or pop.PopulationConfig()
    config = config or ContaminantConfig()
    if n <= 0:
        return _contaminant_frame({}, 0)
    patchy = pop.PatchyExtinction(galaxy_seed)
    rng = _rng(seed, 1)
    parts: list[dict[str, np.ndarray]] = []
    n_placed = 0
    while n_placed < n:
        m = int(1.3 * (n - n_placed)) + 16
        field, l_deg, b_deg = pop.positions_in_fields(rng, m, fields, pcfg.field_radius_deg)
        c = _draw_cool_labels(rng, m, config)
        dmks = rng.normal(0.0, pcfg.mks_scatter, m)
        c["log_mass"] = np.log10(c.pop("mass")) - 0.4 * dmks
        c["mks_scatter"] = dmks
        c["mks"] = pop.absolute_mag_ks(c["teff"], c["logg"], c["log_mass"])
        col = ph.intrinsic_colors(c["teff"])
        for band in ph.BANDS:
            c[f"abs_{band}"] = c["mks"] + col[band]
        patch = patchy.factor(l_deg, b_deg) * np.exp(rng.normal(0.0, 0.10, m) - 0.005)
        dist, ebv, placed = pop._sample_distances(
            rng, c["abs_G"], l_deg, b_deg, patch, np.zeros(m), density=old_disc_density
        )
        c.update({"field": field, "l": l_deg, "b": b_deg, "dust_patch": patch, "distance_pc": dist, "ebv": ebv})
        parts.append({k: v[placed] for k, v in c.items()})
        n_placed += int(placed.sum())
    s = {k: np.concatenate([p[k] for p in parts])[:n] for k in parts[0]}
    _place(rng, s, fields, s.pop("field"), star_index_start, reserved_star_ids)
    old_disc = {"dispersion_kms": (35.0, 25.0, 20.0), "v_rot_kms": 220.0}
    s.update(pop._kinematics(_rng(seed, 2), s["ra"], s["dec"], s["distance_pc"], **old_disc))
    s["evol_state"] = np.where(s["cool_state"] == 0, 0, 1).astype(np.int64)
    s["cool_class"] = np.array(["dwarf", "subgiant", "giant"])[s.pop("cool_state")]
    s["mass"] = 10.0 ** s["log_mass"]
    s["radius"] = pop.radius_from_mass(s["log_mass"], s["logg"])
    s["log_l"] = s["log_mass"] + pop.spectroscopic_luminosity(s["teff"], s["logg"])
    s["mks_system"] = s["mks"]
    for band in ph.BANDS:
        s[f"abs_{band}_1"] = s[f"abs_{band}"]
    s["binary"] = np.zeros(n, dtype=bool)
    s["ks_excess"] = np.zeros(n)
    s.update(pop._photometry(_rng(seed, 3), _rng(seed, 4), s))
    for key in ("q", "abs_G_2", "a_rsun", "period_d"):
        s[key] = np.full(n, np.nan)
    s.update(pop._astrometry(_rng(seed, 5), s))

    rng_cls = _rng(seed, 6)
    s["true_subclass"] = pop.spectral_subclass(s["teff"])
    # LAMOST classes the hottest F stars as A more often: probability ∝ a logistic in Teff (6,400 K, 250 K).
    w = 1.0 / (1.0 + np.exp(-(s["teff"] - 6400.0) / 250.0)) + 0.02
    p_mis = np.clip(config.misclassified_fraction * w / w.mean(), 0.0, 1.0)
    s["misclassified"] = rng_cls.random(n) < p_mis
    weights = np.asarray(MISCLASSIFIED_WEIGHTS) / np.sum(MISCLASSIFIED_WEIGHTS)
    a_type = rng_cls.choice(np.array(MISCLASSIFIED_SUBCLASSES), size=n, p=weights)
    s["subclass"] = np.where(s["misclassified"], a_type, s["true_subclass"])
    s["n_visits"] = _visits_per_star(_rng(seed, 7), n, pcfg)
    s["snr_base"] = pop.snr_from_g(s["G_true"])
    s["population"] = np.full(n, POPULATION_COOL)
    s["lamost_class"] = np.full(n, "STAR")
    s["redshift"] = np.full(n, np.nan)
    return _contaminant_frame(s, n)


def sight_line_ebv(l_deg: np.ndarray, b_deg: np.ndarray, patch: np.ndarray, d_max_kpc: float = 30.0) -> np.ndarray:
    """E(B−V) of the whole sight line (to ``d_max_kpc``) through the mock's dust disc and cloud field."""
    d = np.geomspace(1e-3, d_max_kpc, 400)
    radius, z = pop._galactocentric_rz(d[None, :], np.asarray(l_deg)[:, None], np.asarray(b_deg)[:, None])
    rho = pop.dust_density(radius, z)
    column = np.sum(0.5 * (rho[:, 1:] + rho[:, :-1]) * np.diff(d)[None, :], axis=1) + rho[:, 0] * d[0]
    return pop.EBV_PER_KPC * patch * column


QSO_COLOURS: dict[str, float] = {"BP": 0.25, "RP": -0.40, "J": -1.1, "H": -1.8, "Ks": -2.6, "g": 0.25, "r": 0.0,
                                 "i": -0.10, "G": 0.0}  # fmt: skip
"""QSO magnitudes relative to G before reddening (blue optical, red near-infrared colours)."""


def make_qso_population(
    n: int,
    seed: int,
    fields: pd.DataFrame,
    *,
    galaxy_seed: int,
    star_index_start: int,
    reserved_star_ids: set[str] | frozenset[str] = frozenset(),
    population_config: pop.PopulationConfig | None = None,
) -> pd.DataFrame:
    """Draw ``n`` QSOs on the release's plates (module docstring); one visit each.

    Returns
    -------
    pandas.DataFrame
        STAR_COLUMNS + :data:`CONTAMINANT_COLUMNS`, ``population`` = "qso", ``lamost_class`` = "QSO",
        ``redshift`` the true z; stellar labels NaN, ``rv_sys`` = c z (so that the header's Z is the redshift).
    """
    pcfg = population_config or pop.PopulationConfig()
    if n <= 0:
        return _contaminant_frame({}, 0)
    rng = _rng(seed, 8)
    field, l_deg, b_deg = pop.positions_in_fields(rng, n, fields, pcfg.field_radius_deg)
    patch = pop.PatchyExtinction(galaxy_seed).factor(l_deg, b_deg) * np.exp(rng.normal(0.0, 0.10, n) - 0.005)
    z = 10.0 ** rng.uniform(np.log10(0.3), np.log10(3.0), n)
    g0 = rng.uniform(16.5, 18.0, n)
    s: dict[str, np.ndarray] = {"l": l_deg, "b": b_deg, "dust_patch": patch, "redshift": z}
    s["ebv"] = sight_line_ebv(l_deg, b_deg, patch)
    s["qso_alpha"] = rng.normal(-1.5, 0.3, n)
    _place(rng, s, fields, field, star_index_start, reserved_star_ids)
    for band in ph.BANDS:
        true = g0 + QSO_COLOURS[band] + ph.EXTINCTION_COEFFS[band] * s["ebv"] + rng.normal(0.0, 0.1, n)
        sigma = ph.photometric_error(band, true)
        missing = np.zeros(n, dtype=bool)
        if band in ph.DETECTION_LIMITS:
            missing = rng.random(n) < 1.0 / (1.0 + np.exp(-(true - ph.DETECTION_LIMITS[band]) / 0.15))
        s[f"{band}_true"] = true
        s[band] = np.where(missing, np.nan, true + rng.normal(0.0, 1.0, n) * sigma)
        s[f"{band}_err"] = np.where(missing, np.nan, sigma)
    s["distance_pc"] = np.full(n, np.inf)  # zero parallax for the astrometry
    s["binary"] = np.zeros(n, dtype=bool)
    for key in ("q", "abs_G_1", "abs_G_2", "a_rsun", "period_d"):
        s[key] = np.full(n, np.nan)
    s["pmra_true"] = np.zeros(n)
    s["pmdec_true"] = np.zeros(n)
    s["teff"] = np.full(n, np.nan)
    s.update(pop._astrometry(rng, s))
    s["distance_pc"] = np.full(n, np.nan)
    s["rv_sys"] = spx.C_KMS * z
    s["vsini"] = np.zeros(n)
    s["subclass"] = np.full(n, "")
    s["true_subclass"] = np.full(n, "")
    s["misclassified"] = np.zeros(n, dtype=bool)
    s["cool_class"] = np.full(n, "")
    s["snr_base"] = pop.snr_from_g(s["G_true"])
    s["population"] = np.full(n, POPULATION_QSO)
    s["lamost_class"] = np.full(n, "QSO")
    frame = _contaminant_frame(s, n)
    frame["qso_alpha"] = s["qso_alpha"]
    return frame


# --- spectra ------------------------------------------------------------------------------------------------


def planck_lambda(wave: np.ndarray, teff: np.ndarray) -> np.ndarray:
    """Planck B_λ(T) up to a constant: λ⁻⁵ / (exp(hc/λkT) − 1), ``wave`` (n, m) or (m,) Å, ``teff`` (n,) K."""
    wave = np.asarray(wave, dtype=np.float64)
    x = 1.4387769e8 / (wave * np.asarray(teff, dtype=np.float64)[:, None])
    with np.errstate(over="ignore"):
        return (wave / 5000.0) ** -5 / np.expm1(x)


def _keys_weights(t: np.ndarray) -> np.ndarray:
    """Keys (1981) cubic-convolution weights (a = −0.5) of the pixels −1, 0, 1, 2 at fractions ``t``."""
    t2, t3 = t * t, t * t * t
    return np.stack(
        [-0.5 * t3 + t2 - 0.5 * t, 1.5 * t3 - 2.5 * t2 + 1.0, -1.5 * t3 + 2.0 * t2 + 0.5 * t, 0.5 * t3 - 0.5 * t2],
        axis=-1,
    )


def common_to_native(norm: np.ndarray, rv_kms: np.ndarray) -> np.ndarray:
    """Resample rest-frame spectra on the common grid to LAMOST's native grid at velocities ``rv_kms``.

    Native pixel i (λ_i = 10^(3.5682 + 10⁻⁴ i), observed frame) sees the rest wavelength λ_i / (1 + v/c): its
    fractional position on the common grid is interpolated by Keys' cubic convolution. Native pixels beyond
    the common grid get the median of its 20 nearest pixels (as the hot stars' spectra do).

    Parameters
    ----------
    norm
        (n, 3802) normalized flux on the common rest-frame grid.
    rv_kms
        (n,) radial velocities.

    Returns
    -------
    numpy.ndarray
        (n, 3909) float64.
    """
    norm = np.asarray(norm, dtype=np.float64)
    n = norm.shape[0]
    log_rest = (spx.NATIVE_COEFF0 + spx.NATIVE_COEFF1 * np.arange(spx.NATIVE_NPIX))[None, :] - np.log10(
        1.0 + np.asarray(rv_kms, dtype=np.float64) / spx.C_KMS
    )[:, None]
    pos = (log_rest - LOG10_WAVE_START) / LOG10_WAVE_STEP
    i0 = np.floor(pos).astype(np.int64)
    w = _keys_weights(pos - i0)
    idx = np.clip(i0[..., None] + np.arange(-1, 3), 0, N_WAVE - 1)
    rows = np.arange(n)[:, None, None]
    out = np.sum(norm[rows, idx] * w, axis=-1)
    blue = np.median(norm[:, :20], axis=1)
    red = np.median(norm[:, -20:], axis=1)
    out = np.where(pos < 0, blue[:, None], out)
    return np.where(pos > N_WAVE - 1, red[:, None], out)


def cool_labels(stars: pd.DataFrame, emulator: Any) -> np.ndarray:
    """(n, n_labels) labels of cool stars in the emulator's order, clipped to its range."""
    labels = np.stack([stars[name].to_numpy(dtype=np.float64) for name in emulator.label_names], axis=1)
    return np.clip(labels, np.asarray(emulator.x_min), np.asarray(emulator.x_max))


def cool_flux_native(
    stars: pd.DataFrame, rv_kms: np.ndarray, emulator: Any | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Surface flux and continuum of cool stars on the native grid at their visits' velocities.

    The emulator's continuum-normalized rest-frame spectrum (:func:`cool_star_emulator`), resampled to the
    velocity (:func:`common_to_native`), times a Planck continuum at the star's Teff evaluated at the rest
    wavelengths; scaled by R² (R_sun) like the hot stars' surface flux.

    Parameters
    ----------
    stars
        One row per visit with ``teff``, ``logg``, ``vsini``, ``fe_h`` and ``radius``.
    rv_kms
        (n,) heliocentric velocities of the visits.
    emulator
        Default :func:`cool_star_emulator`.

    Returns
    -------
    flux, continuum
        (n, 3909) float64, flux ≥ 0.
    """
    em = cool_star_emulator() if emulator is None else emulator
    norm = np.asarray(em.predict(cool_labels(stars, em)), dtype=np.float64)
    native = np.clip(common_to_native(norm, rv_kms), 0.0, None)
    rest = spx.native_wavelength()[None, :] / (1.0 + np.asarray(rv_kms, dtype=np.float64)[:, None] / spx.C_KMS)
    cont = planck_lambda(rest, stars["teff"].to_numpy(dtype=np.float64))
    cont *= (stars["radius"].to_numpy(dtype=np.float64) ** 2)[:, None]
    return native * cont, cont


def qso_flux_native(redshift: np.ndarray, alpha: np.ndarray, seeds: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """QSO spectra on the native (observed) grid: F_λ ∝ (λ/5000 Å)^α, emission lines of :data:`QSO_LINES`.

    Broad lines get a FWHM of 2,500–6,000 km/s (one per QSO), the narrow [O III] 500 km/s; each line's
    equivalent width scatters by 0.15 dex; both drawn from ``SeedSequence(seeds[i])`` (one QSO, whatever the
    batch). Blueward of Lyα the Lyα forest removes exp(−τ), τ =
    0.0036 (λ/1215.67 Å)^3.46 (Madau-like effective optical depth).

    Returns
    -------
    flux, continuum
        (n, 3909) float64 (observed frame; the continuum without lines and forest).
    """
    from scipy.special import ndtri

    wave = spx.native_wavelength()
    z = np.asarray(redshift, dtype=np.float64)
    n = z.size
    cont = (wave[None, :] / 5000.0) ** np.asarray(alpha, dtype=np.float64)[:, None]
    flux = cont.copy()
    draws = np.array(
        [np.random.default_rng(np.random.SeedSequence(seed)).random(1 + len(QSO_LINES)) for seed in seeds]
    ).reshape(n, 1 + len(QSO_LINES))
    fwhm_broad = 2500.0 + 3500.0 * draws[:, 0]
    for k, (_name, lam0, ew, broad) in enumerate(QSO_LINES):
        centre = lam0 * (1.0 + z)
        fwhm = fwhm_broad if broad else np.full(n, 500.0)
        sigma = centre * fwhm / spx.C_KMS / 2.3548
        ew_obs = ew * 10.0 ** (0.15 * ndtri(draws[:, 1 + k])) * (1.0 + z)
        c_local = (centre / 5000.0) ** np.asarray(alpha, dtype=np.float64)
        profile = np.exp(-0.5 * ((wave[None, :] - centre[:, None]) / sigma[:, None]) ** 2)
        flux += (ew_obs * c_local / (np.sqrt(2.0 * np.pi) * sigma))[:, None] * profile
    lya = 1215.67 * (1.0 + z)
    tau = 0.0036 * (wave[None, :] / 1215.67) ** 3.46
    flux *= np.where(wave[None, :] < lya[:, None], np.exp(-tau), 1.0)
    return flux, cont


def contaminant_flux_native(
    stars: pd.DataFrame, rv_kms: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``stellar_flux`` for :func:`survey_scale.mock.spectra.observe`: cool stars and QSOs of a batch.

    ``stars`` has one row per visit (the contaminant star table's columns); ``seed`` is the release's (a
    QSO's line widths and strengths come from ``SeedSequence([seed, 9409, star_index])``).
    """
    n = len(stars)
    flux = np.empty((n, spx.NATIVE_NPIX))
    cont = np.empty((n, spx.NATIVE_NPIX))
    qso = (stars["population"] == POPULATION_QSO).to_numpy()
    if (~qso).any():
        flux[~qso], cont[~qso] = cool_flux_native(stars[~qso], np.asarray(rv_kms)[~qso])
    if qso.any():
        q = stars[qso]
        seeds = [[int(seed), 9409, int(i)] for i in q["star_index"]]
        flux[qso], cont[qso] = qso_flux_native(q["redshift"].to_numpy(), q["qso_alpha"].to_numpy(), seeds)
    return flux, cont, np.zeros(n)
