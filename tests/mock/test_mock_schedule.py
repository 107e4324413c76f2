"""The observing schedule: identifiers, nights, fibres, S/N distribution, velocities."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy.stats import gaussian_kde

from survey_scale.mock import population as pop
from survey_scale.mock import schedule as sch


@pytest.fixture(scope="module")
def stars() -> pd.DataFrame:
    return pop.make_population(1500, 21)


@pytest.fixture(scope="module")
def visits(stars: pd.DataFrame) -> pd.DataFrame:
    return sch.make_visits(stars, 22)


def test_identifiers(visits: pd.DataFrame) -> None:
    assert visits["specid"].is_unique and visits["obsid"].is_unique and visits["fitsname"].is_unique
    assert visits["obsid"].tolist() == list(range(500_000_001, 500_000_001 + len(visits)))
    for specid, name in zip(visits["specid"], visits["fitsname"], strict=True):
        m = re.fullmatch(r"(\d{5})-(GAC\d{3}[NS]\d{2}[BMF]\d+)-(\d{2})-(\d{3})", specid)
        assert m, specid
        assert name == f"spec-{m[1]}-{m[2]}_sp{m[3]}-{m[4]}.fits"
    assert visits["spid"].between(1, 16).all() and visits["fiberid"].between(1, 250).all()
    assert not visits.duplicated(["lmjd", "planid", "spid", "fiberid"]).any()
    assert (visits["mjd"] == visits["lmjd"] - 1).all()
    assert visits["date_obs"].str.match(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d$").all()


def test_repeat_visits_on_different_nights(stars: pd.DataFrame, visits: pd.DataFrame) -> None:
    counts = visits.groupby("star_index").size()
    np.testing.assert_array_equal(counts.reindex(stars["star_index"]).to_numpy(), stars["n_visits"].to_numpy())
    assert not visits.duplicated(["star_index", "lmjd"]).any()
    for _, group in visits.groupby("star_index"):
        assert sorted(group["visit"]) == list(range(1, len(group) + 1))
        assert (np.diff(group.sort_values("visit")["obs_mjd"]) > 0).all()


def test_snr_distribution_like_p2(visits: pd.DataFrame) -> None:
    snr = visits["snr"].to_numpy()
    assert 30.0 < np.median(snr) < 50.0  # P2 §2: median ~37
    grid = np.linspace(0.5, 3.0, 501)
    mode = grid[np.argmax(gaussian_kde(np.log10(snr), bw_method=0.15)(grid))]
    # P2 §2: peak at log S/N ~1.8; the top is flat from ~1.5 to ~1.9, so the mode of 1,500 stars wanders in it
    assert 1.45 < mode < 2.05
    assert (snr >= 2.0).all() and (snr < 1000).all()


def test_resolution_and_conditions(visits: pd.DataFrame) -> None:
    r = visits["resolution"]
    assert r.between(1800 * np.exp(-0.24) - 1, 1800 * np.exp(0.24) + 1).all()
    assert abs(np.median(r) - 1800) < 20 and 0.06 < np.std(np.log(r)) < 0.1
    assert visits["airmass"].between(1.0, 3.0).all()
    assert visits["helio_rv"].abs().max() < 31.0
    # all fibres of a plan share the exposure
    assert visits.groupby(["lmjd", "planid"])["obs_mjd"].nunique().max() == 1


def test_heliocentric_correction_sign_matches_real_lamost_header() -> None:
    # spec-55859-F5902_sp01-001: RA 332.202274, Dec -2.056767, DATE-OBS 2011-10-24T12:30:00, HELIO_RV 25.11536
    from astropy.time import Time

    mjd = Time("2011-10-24T12:30:00", scale="utc").mjd
    corr = sch.heliocentric_correction(np.array([332.202274]), np.array([-2.056767]), np.array([mjd]))
    assert -corr[0] == pytest.approx(25.11536, abs=0.1)


def test_radial_velocities(stars: pd.DataFrame, visits: pd.DataFrame) -> None:
    st = stars.set_index("star_index").loc[visits["star_index"]]
    single = ~st["binary"].to_numpy()
    np.testing.assert_allclose(visits["rv"].to_numpy()[single], st["rv_sys"].to_numpy()[single])
    assert visits["rv2"].to_numpy()[single].size and np.isnan(visits["rv2"].to_numpy()[single]).all()
    assert 5 < np.std(visits["rv"][single]) < 60  # a few tens of km/s
    pull = (visits["rv_meas"] - visits["rv"])[single] / visits["rv_err"][single]
    assert 0.85 < pull.std() < 1.2
    # close binaries change velocity between visits
    bv = visits[~single & (st["k1"].to_numpy() > 20)]
    spread = bv.groupby("star_index")["rv"].agg(lambda x: x.max() - x.min())
    assert (spread[bv.groupby("star_index").size() > 1] > 1.0).mean() > 0.8


def test_corrupted_fraction(visits: pd.DataFrame) -> None:
    n = int(visits["corrupted"].sum())
    expected = 0.01 * len(visits)
    assert abs(n - expected) < 4 * np.sqrt(expected)
    assert set(visits.loc[visits["corrupted"], "corrupt_kind"]) <= set(sch.CORRUPTION_KINDS)


def test_visit_numbers_continue(stars: pd.DataFrame) -> None:
    few = stars.iloc[:10]
    v = sch.make_visits(few, 1, n_visits=np.ones(10, int), first_visit_number=np.full(10, 4), lmjd_start=60000)
    assert (v["visit"] == 4).all() and v["lmjd"].min() >= 60000
