"""Contaminants of the mock hot-star candidate list: cool F/G/K stars and QSOs (SPEC §10)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from survey_scale.core.wavelength import wavelength_grid
from survey_scale.io.lamost import read_lamost
from survey_scale.mock import contaminants as con
from survey_scale.mock import population as pop
from survey_scale.mock import spectra as spx
from survey_scale.mock.release import CONTAMINANTS_TABLE, ReleaseSummary


def _truth(rel: ReleaseSummary) -> pd.DataFrame:
    return pd.read_parquet(rel.outdir / "truth.parquet")


def test_contaminants_at_the_configured_fraction_with_truth_rows(release_a: ReleaseSummary) -> None:
    stars = pd.read_parquet(release_a.outdir / "truth_stars.parquet")
    contam = pd.read_parquet(release_a.outdir / CONTAMINANTS_TABLE)
    cool = contam[contam["population"] == con.POPULATION_COOL]
    qso = contam[contam["population"] == con.POPULATION_QSO]
    assert len(stars) == 40 and set(contam["population"]) == {con.POPULATION_COOL, con.POPULATION_QSO}
    assert len(cool) == round(40 * 0.3 / 0.7) == 17
    assert abs(len(cool) / (len(cool) + len(stars)) - con.COOL_FRACTION) < 1.0 / len(stars)
    assert len(qso) >= 1 and release_a.n_contaminants == len(contam)
    assert not set(contam["star_index"]) & set(stars["star_index"])
    assert not set(contam["star_id"]) & set(stars["star_id"])
    truth = _truth(release_a)
    assert set(truth["population"]) == {"hot", con.POPULATION_COOL, con.POPULATION_QSO}
    # every contaminant has truth rows carrying its true labels, one per visit
    rows = truth[truth["population"] != "hot"].set_index("star_index")
    counts = rows.groupby(level=0).size()
    np.testing.assert_array_equal(counts.reindex(contam["star_index"]).to_numpy(), contam["n_visits"].to_numpy())
    labels = cool.set_index("star_index")[["teff", "logg", "vsini", "fe_h"]].add_suffix("_star")
    joined = rows.join(labels, how="inner")
    assert len(joined) == int(cool["n_visits"].sum())
    for name in ("teff", "logg", "vsini", "fe_h"):
        np.testing.assert_array_equal(joined[name], joined[f"{name}_star"])
    assert rows.loc[rows["population"] == con.POPULATION_COOL, "teff"].between(3700, 7500).all()
    assert rows.loc[rows["population"] == con.POPULATION_COOL, ["vmic", "si_h"]].isna().all().all()
    q = rows[rows["population"] == con.POPULATION_QSO]
    assert (q["redshift"] > 0.2).all() and q["teff"].isna().all()
    assert not rows["invalid"].any() and rows["file_written"].all()
    meta_counts = release_a.counts
    assert meta_counts["cool_contaminant_stars"] == len(cool) and meta_counts["qso_objects"] == len(qso)
    assert meta_counts["cool_contaminant_spectra"] == int((truth["population"] == con.POPULATION_COOL).sum())


def test_headers_and_catalog_carry_lamost_classes(release_a: ReleaseSummary) -> None:
    truth = _truth(release_a)
    rows = truth[truth["population"] != "hot"]
    cat = pd.read_csv(release_a.outdir / "catalog.csv").set_index("obsid")
    for row in rows.itertuples():
        h = read_lamost(release_a.outdir / "spectra" / row.fitsname).header
        assert h["CLASS"] == row.lamost_class == cat.loc[row.obsid, "class"]
        assert h["SUBCLASS"] == row.lamost_subclass
        if row.population == con.POPULATION_QSO:
            assert h["CLASS"] == "QSO" and h["Z"] == pytest.approx(row.redshift, abs=1e-3)
        else:
            assert h["CLASS"] == "STAR" and h["SUBCLASS"][0] in ("A" if row.misclassified else "AFGKM")
            assert row.misclassified == (h["SUBCLASS"] != row.true_subclass)
    cool = rows[rows["population"] == con.POPULATION_COOL]
    assert cool["misclassified"].any() and not cool["misclassified"].all()
    assert cool.loc[cool["misclassified"], "lamost_subclass"].isin(con.MISCLASSIFIED_SUBCLASSES).all()
    hot = truth[truth["population"] == "hot"]
    assert (hot["lamost_class"] == "STAR").all() and not hot["misclassified"].any()
    assert set(cat["class"]) == {"STAR", "QSO"}


def test_hot_stars_unchanged_by_contaminants(release_a: ReleaseSummary, release_a_hot_only: ReleaseSummary) -> None:
    with_c, without = release_a.outdir, release_a_hot_only.outdir
    t_with, t_without = _truth(release_a), _truth(release_a_hot_only)
    assert (t_without["population"] == "hot").all()
    hot = t_with[t_with["population"] == "hot"].reset_index(drop=True)
    pd.testing.assert_frame_equal(hot, t_without)
    pd.testing.assert_frame_equal(
        pd.read_parquet(with_c / "truth_stars.parquet"), pd.read_parquet(without / "truth_stars.parquet")
    )
    hot_files = sorted(p.name for p in (without / "spectra").iterdir())
    assert len(hot_files) > 50
    for name in hot_files:
        assert (with_c / "spectra" / name).read_bytes() == (without / "spectra" / name).read_bytes(), name
    for table, read in (("catalog.csv", pd.read_csv), ("crossmatch.parquet", pd.read_parquet)):
        a, b = read(with_c / table), read(without / table)
        pd.testing.assert_frame_equal(a[a["obsid"].isin(b["obsid"])].reset_index(drop=True), b)
    assert not set(t_with.loc[t_with["population"] != "hot", "specid"]) & set(t_without["specid"])


def test_cool_fraction_zero_gives_the_hot_only_release(
    release_a: ReleaseSummary, release_a_hot_only: ReleaseSummary
) -> None:
    out = release_a_hot_only.outdir
    assert not (out / CONTAMINANTS_TABLE).exists() and release_a_hot_only.n_contaminants == 0
    assert release_a_hot_only.counts["cool_contaminant_stars"] == release_a_hot_only.counts["qso_objects"] == 0
    truth = _truth(release_a_hot_only)
    assert (truth["lamost_class"] == "STAR").all() and truth["redshift"].isna().all()
    written = sorted(p.name for p in (release_a.outdir / "spectra").iterdir())
    hot = _truth(release_a)
    expected = sorted(hot.loc[(hot["population"] == "hot") & hot["file_written"], "fitsname"])
    assert sorted(p.name for p in (out / "spectra").iterdir()) == expected
    assert len(written) == len(expected) + int((hot["population"] != "hot").sum())


def test_contaminants_are_deterministic(release_a: ReleaseSummary, release_a_again: ReleaseSummary) -> None:
    truth = _truth(release_a)
    names = truth.loc[truth["population"] != "hot", "fitsname"]
    assert len(names) > 10
    for name in names:
        assert (release_a.outdir / "spectra" / name).read_bytes() == (
            release_a_again.outdir / "spectra" / name
        ).read_bytes()
    pd.testing.assert_frame_equal(
        pd.read_parquet(release_a.outdir / CONTAMINANTS_TABLE),
        pd.read_parquet(release_a_again.outdir / CONTAMINANTS_TABLE),
    )


def test_cool_population_physics() -> None:
    fields = pop.population_fields(400, 7)
    cool = con.make_cool_population(600, 7, fields, galaxy_seed=7, star_index_start=1000)
    assert len(cool) == 600 and cool["star_index"].iloc[0] == 1000 and cool["star_id"].is_unique
    assert cool["teff"].between(3500, 7600).all() and (cool["teff"] > 7000).mean() < 0.08
    dwarfs = cool[cool["cool_class"] == "dwarf"]
    giants = cool[cool["cool_class"] == "giant"]
    assert dwarfs["logg"].between(4.0, 4.75).all() and giants["logg"].between(2.0, 3.5).all()
    assert abs(len(giants) / len(cool) - 0.15) < 0.05 and giants["teff"].lt(5500).all()
    assert (cool["vsini"] < 20).mean() > 0.7 and cool["vsini"].max() < 121
    assert cool.loc[cool["teff"] < 6000, "vsini"].max() < 20
    assert cool["fe_h"].mean() == pytest.approx(-0.2, abs=0.05) and cool["fe_h"].std() == pytest.approx(0.3, abs=0.05)
    assert abs(cool["misclassified"].mean() - 0.15) < 0.05
    # the misclassified are mostly the hottest F stars
    assert cool.loc[cool["misclassified"], "teff"].median() > cool["teff"].median() + 200
    # colours and magnitudes from the dwarf sequence's relations, reddened as the hot stars are
    dereddened = cool["BP_true"] - cool["RP_true"] - (3.554 - 1.925) * cool["ebv"]
    assert (dereddened > 0.4).mean() > 0.9
    assert cool["G_true"].between(9.0, 19.5).all() and cool["ebv"].ge(0).all()
    assert cool["parallax_true"].corr(1000.0 / cool["distance_pc"]) == pytest.approx(1.0)
    assert (giants["mks"] < 0).mean() > 0.8 and (dwarfs.loc[dwarfs["teff"] < 5000, "mks"] > 3).all()


def test_common_to_native_is_an_exact_doppler_shift() -> None:
    wave = wavelength_grid()
    centre, v = 6000.0, 120.0
    norm = 1.0 - 0.5 * np.exp(-0.5 * ((wave - centre) / 3.0) ** 2)
    native = con.common_to_native(np.stack([norm, norm]), np.array([0.0, v]))
    w = spx.native_wavelength()
    for k, vel in enumerate((0.0, v)):
        sel = np.abs(w - centre) < 40
        found = np.sum(w[sel] * (1 - native[k, sel])) / np.sum(1 - native[k, sel])
        assert found == pytest.approx(centre * (1 + vel / spx.C_KMS), abs=0.05)
    assert native.shape == (2, spx.NATIVE_NPIX) and np.all(np.isfinite(native))


def test_cool_star_emulator_has_the_cool_labels() -> None:
    try:
        em = con.cool_star_emulator()
    except FileNotFoundError as err:  # neither the shipped component nor the temporary placeholder
        pytest.skip(str(err))
    assert set(em.label_names) == {"teff", "logg", "vsini", "fe_h"} and em.n_pixels == 3802
    teff = em.x_min[list(em.label_names).index("teff")], em.x_max[list(em.label_names).index("teff")]
    assert teff[0] <= 4000 and teff[1] >= 7500


def test_qso_spectrum_has_its_broad_lines() -> None:
    flux, cont = con.qso_flux_native(np.array([0.5]), np.array([-1.5]), [[1, 2, 3]])
    w = spx.native_wavelength()
    for lam0 in (2799.12, 4862.68):  # Mg II at 4199 Å, Hβ at 7294 Å
        k = int(np.argmin(np.abs(w - lam0 * 1.5)))
        assert flux[0, k] > 1.3 * cont[0, k]
    assert np.all(flux >= cont * 0.999)
