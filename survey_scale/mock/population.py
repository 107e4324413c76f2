"""The mock stellar population: the star table and the order of its draws (SPEC §10).

:func:`make_population` draws a seeded table of stars as LAMOST's hot-star sample looks (P2 §2): a
magnitude-limited sample toward the Galactic anti-centre, concentrated to the plane, G ≈ 10–18 peaking
near 14. The physics and its limits are summarised in :mod:`survey_scale.mock`; each step is documented
where it is drawn: :mod:`.galaxy` (fields, densities, extinction, distances, kinematics), :mod:`.stellar`
(mass, MKs, radius, subclass), :mod:`.labels`, :mod:`.binaries`, :mod:`.emission`, :mod:`.measurements`
(catalogue photometry, astrometry, S/N) and :mod:`.identifiers` (star ids); their names stay importable
from here. Everything is numpy, vectorized over stars; spectra are made later (:mod:`survey_scale.mock.spectra`)
from this table and the visit table (:mod:`survey_scale.mock.schedule`).

Units: Teff K, log g cgs dex, velocities km/s, distances pc (``distance_pc``) and kpc (X, Y, Z), angles
deg, magnitudes mag, masses and radii solar units, parallaxes mas, proper motions mas/yr.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from survey_scale.core.labels import LABEL_NAMES
from survey_scale.mock import photometry as ph
from survey_scale.mock.binaries import _orbits, _secondary_labels
from survey_scale.mock.emission import _emission_lines, _emission_probability
from survey_scale.mock.galaxy import (
    EBV_PER_KPC,
    R_SUN_GC_KPC,
    PatchyExtinction,
    _draw_fields,
    _galactocentric_rz,
    _kinematics,
    _sample_distances,
    dust_density,
    positions_in_fields,
    selection_probability,
    young_disc_density,
)
from survey_scale.mock.identifiers import _unique_positions, lamost_designation, star_id_from_radec
from survey_scale.mock.labels import _draw_other_labels, _draw_teff_logg
from survey_scale.mock.measurements import SNR_CEILING, _astrometry, _photometry, snr_from_g
from survey_scale.mock.stellar import (
    LOGG_SUN,
    TEFF_SUN,
    Columns,
    _combine_mags,
    absolute_mag_ks,
    evolved_weight,
    log_mass_from_labels,
    logg_lower_limit,
    radius_from_mass,
    spectral_subclass,
    spectroscopic_luminosity,
)

__all__ = [  # the names of this module before its split stay importable from it
    "EBV_PER_KPC",
    "LOGG_SUN",
    "R_SUN_GC_KPC",
    "SNR_CEILING",
    "STAR_COLUMNS",
    "TEFF_SUN",
    "Columns",
    "PatchyExtinction",
    "PopulationConfig",
    "_astrometry",
    "_combine_mags",
    "_draw_fields",
    "_draw_other_labels",
    "_draw_teff_logg",
    "_emission_lines",
    "_emission_probability",
    "_galactocentric_rz",
    "_kinematics",
    "_orbits",
    "_photometry",
    "_sample_distances",
    "_secondary_labels",
    "_unique_positions",
    "absolute_mag_ks",
    "dust_density",
    "evolved_weight",
    "lamost_designation",
    "log_mass_from_labels",
    "logg_lower_limit",
    "make_population",
    "population_fields",
    "positions_in_fields",
    "radius_from_mass",
    "selection_probability",
    "snr_from_g",
    "spectral_subclass",
    "spectroscopic_luminosity",
    "star_id_from_radec",
    "young_disc_density",
]


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


# --- drawing the population -------------------------------------------------------------------------------


def _rng(seed: int | np.random.SeedSequence, stream: int) -> np.random.Generator:
    base = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(int(seed))
    return np.random.default_rng(np.random.SeedSequence(base.entropy, spawn_key=(*base.spawn_key, stream)))


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
