"""The mock population: determinism, fractions, label ranges, Galaxy model, photometry, astrometry."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from survey_scale.core.labels import LABEL_NAMES, LABEL_RANGES
from survey_scale.mock import photometry as ph
from survey_scale.mock import population as pop

N = 1500


@pytest.fixture(scope="module")
def stars() -> pd.DataFrame:
    return pop.make_population(N, 5)


def _within(k: float, n: int, p: float, n_sigma: float = 4.0) -> bool:
    return abs(k / n - p) < n_sigma * np.sqrt(p * (1 - p) / n)


def test_same_seed_same_table_other_seed_differs() -> None:
    a = pop.make_population(150, 1)
    pd.testing.assert_frame_equal(a, pop.make_population(150, 1))
    b = pop.make_population(150, 2)
    assert not np.allclose(a["teff"], b["teff"])


def test_columns_and_ids(stars: pd.DataFrame) -> None:
    assert list(stars.columns) == list(pop.STAR_COLUMNS)
    assert stars["star_index"].tolist() == list(range(N))
    assert stars["star_id"].is_unique and stars["gaia_source_id"].is_unique
    assert all(re.fullmatch(r"S\d{7}[+-]\d{6}", s) for s in stars["star_id"])
    assert all(re.fullmatch(r"LAMOST J\d{6}\.\d{2}[+-]\d{6}\.\d", s) for s in stars["designation"])
    # the ingest's rule: RA/Dec rounded to the arcsecond
    ra_s = np.rint(stars["ra"].to_numpy() * 3600).astype(int)
    assert [int(s[1:4]) * 3600 + int(s[4:6]) * 60 + int(s[6:8]) for s in stars["star_id"]] == list(ra_s % 1296000)


def test_fractions_within_sampling_error(stars: pd.DataFrame) -> None:
    assert _within(stars["binary"].sum(), N, 0.15)
    assert _within(stars["emission"].sum(), N, 0.13)
    assert _within((stars["n_visits"] > 1).sum(), N, 0.30)
    assert set(stars["n_visits"]) <= {1, 2, 3, 4, 5} and stars["n_visits"].max() >= 4


def test_labels_within_ranges_and_teff_distribution(stars: pd.DataFrame) -> None:
    for name in LABEL_NAMES:
        lo, hi = LABEL_RANGES[name]
        assert stars[name].between(lo, hi).all(), name
    teff = stars["teff"]
    assert 0.70 < teff.between(7000, 15000).mean() < 0.9
    assert (teff > 20000).mean() > 0.04 and teff.max() <= 45000
    assert 0.07 < stars["he_frac"].median() < 0.1
    assert stars.loc[stars["logg"] > 3.8, "vmic"].median() < 3.0
    assert 80 < stars["vsini"].median() < 200 and stars["vsini"].max() <= 420
    # abundances correlated around solar with scatter
    assert abs(stars["fe_h"].median()) < 0.35
    assert np.corrcoef(stars["fe_h"], stars["o_h"])[0, 1] > 0.5


def test_positions_toward_the_anticentre_in_the_plane(stars: pd.DataFrame) -> None:
    assert (np.abs(stars["b"]) < 15).mean() > 0.8
    assert stars["l"].between(120, 240).mean() > 0.6
    assert stars["dec"].between(-15, 70).all()
    d = stars["distance_pc"]
    assert d.between(200, 15000).all() and d.median() > 1000
    x_sun = -stars["X"] - 8.1  # heliocentric distance along the anti-centre direction
    assert (x_sun > 0).mean() > 0.8


def test_reddening_grows_with_distance(stars: pd.DataFrame) -> None:
    assert (stars["ebv"] >= 0).all()
    assert spearmanr(stars["distance_pc"], stars["ebv"]).statistic > 0.2  # patchy clouds blur the trend
    # along each sight line the column only grows: without the clouds' modulation the trend is tight
    column = (stars["ebv"] - stars["ebv_local"]) / stars["dust_patch"]
    near_plane = np.abs(stars["b"]) < 3
    assert spearmanr(stars["distance_pc"][near_plane], column[near_plane]).statistic > 0.7
    em = stars["emission"]
    assert stars.loc[em, "ebv_local"].mean() > 0.04 and (stars.loc[~em, "ebv_local"] == 0).all()


def test_magnitudes_like_the_lamost_hot_star_sample(stars: pd.DataFrame) -> None:
    g = stars["G_true"]
    assert 12.5 < g.median() < 15.0
    assert g.between(10, 18).mean() > 0.85


def test_mks_relation_and_scatter(stars: pd.DataFrame) -> None:
    np.testing.assert_allclose(
        stars["mks"], pop.absolute_mag_ks(stars["teff"], stars["logg"], stars["log_mass"]), atol=1e-9
    )
    scatter = stars["mks"] - pop.absolute_mag_ks(stars["teff"], stars["logg"])
    assert 0.08 < scatter.std() < 0.12


def test_photometry_is_extinction_plus_intrinsic_colour(stars: pd.DataFrame) -> None:
    single = stars[~stars["binary"] & ~stars["emission"]]
    col = ph.intrinsic_colors(single["teff"].to_numpy())
    for band in ("G", "BP", "J", "g", "i"):
        excess = single[f"{band}_true"] - single["Ks_true"] - col[band] - single[f"colour_offset_{band}"]
        r = ph.EXTINCTION_COEFFS[band] - ph.EXTINCTION_COEFFS["Ks"]
        np.testing.assert_allclose(excess, r * single["ebv"], atol=1e-9)
    # Stars are off the table the pipeline uses, as real stars are: by a few hundredths of a magnitude in
    # adjacent-band colours, more for giants (whose Balmer jumps and colours differ from dwarfs').
    off = single["colour_offset_g"] - single["colour_offset_r"]
    assert 0.005 < off.std() < 0.05
    giants = single["logg"] < ph.dwarf_logg(single["teff"].to_numpy()) - 0.7
    assert (single.loc[giants, "colour_offset_g"] - single.loc[giants, "colour_offset_J"]).mean() > 0.05
    obs = stars.dropna(subset=["J"])
    pull = (obs["J"] - obs["J_true"]) / obs["J_err"]
    assert 0.8 < pull.std() < 1.3


def test_binaries_are_brighter_and_consistent(stars: pd.DataFrame) -> None:
    b = stars[stars["binary"]]
    assert (b["mks_system"] < b["mks"]).all()
    assert b["q"].between(0.1, 1.0).all()
    assert b["light_frac_ks"].between(0.0, 0.5 + 1e-9).all()
    np.testing.assert_allclose(b["mass2"], b["mass"] * b["q"])
    np.testing.assert_allclose(b["k2"], b["k1"] / b["q"])
    assert (b["a_rsun"] >= 2.5 * (b["radius"] + b["radius2"]) - 1e-9).all()
    # equal-mass binaries are 0.75 mag brighter in Ks than their primaries (P1 §6)
    twins = b[b["q"] > 0.97]
    assert len(twins) > 0
    assert np.all(np.abs(twins["mks"] - twins["mks_system"] - 0.75) < 0.15)
    low_q = b[b["q"] < 0.4]
    assert np.all(low_q["mks"] - low_q["mks_system"] < 0.3)  # faint companions barely add light
    assert stars.loc[~stars["binary"], ["q", "teff2"]].isna().all().all()


def test_parallax_zero_point_and_errors(stars: pd.DataFrame) -> None:
    s = stars.dropna(subset=["parallax"])
    pull = (s["parallax"] - s["parallax_true"] - ph.parallax_zero_point(s["G_true"])) / s["parallax_error"]
    assert abs(pull.mean()) < 4 / np.sqrt(len(s))
    assert 0.85 < pull.std() < 1.25
    # the offset itself: weighted fit of (observed - true) against G recovers SPEC §8's relation
    w = 1 / s["parallax_error"] ** 2
    design = np.vstack([np.ones(len(s)), s["G_true"] - 12.2]).T
    coef = np.linalg.solve(
        design.T @ (design * w.to_numpy()[:, None]), design.T @ (w * (s["parallax"] - s["parallax_true"]))
    )
    assert coef[0] == pytest.approx(-0.0528, abs=0.008)
    assert coef[1] == pytest.approx(0.00421, abs=0.004)


def test_missing_values_and_ruwe(stars: pd.DataFrame) -> None:
    assert stars["Ks"].isna().any() and stars["parallax"].isna().any()
    assert stars["G"].notna().all()
    assert stars["ruwe"].median() == pytest.approx(1.0, abs=0.05)


def test_emission_equivalent_widths(stars: pd.DataFrame) -> None:
    em = stars[stars["emission"]]
    assert em["ha_ew"].between(1.0, 50.0).all()
    assert 0.6 < np.log10(em["ha_ew"]).median() < 1.1  # log-uniform in 1-50 A: median ~0.85
    assert (em["hb_ew"] < em["ha_ew"]).all() and (em["hb_ew"] > 0).mean() > 0.5
    assert (em["ks_excess"] < 0).all() and (stars.loc[~stars["emission"], "ha_ew"] == 0).all()


def test_reserved_ids_and_index_offset() -> None:
    a = pop.make_population(50, 9)
    b = pop.make_population(50, 9, star_index_start=1000, reserved_star_ids=set(a["star_id"]))
    assert b["star_index"].min() == 1000
    assert not set(a["star_id"]) & set(b["star_id"])  # same seed, same sky: every id had to move
