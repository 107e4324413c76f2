"""Whole mock releases: determinism, both layouts, headers, tables, invalid inputs, a second release."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from survey_scale.io.input_tables import read_catalog, read_crossmatch
from survey_scale.io.lamost import LamostReadError, read_lamost
from survey_scale.mock import spectra as spx
from survey_scale.mock.release import EXPECTED_REJECT, INVALID_KINDS, ReleaseSummary, make_release
from survey_scale.products.figures.mock import plot_observations, plot_population


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _truth(rel: ReleaseSummary) -> pd.DataFrame:
    return pd.read_parquet(rel.outdir / "truth.parquet")


def test_same_seed_gives_byte_identical_files(release_a: ReleaseSummary, release_a_again: ReleaseSummary) -> None:
    a, b = _files(release_a.outdir), _files(release_a_again.outdir)
    assert a.keys() == b.keys() and len(a) > 50
    different = [name for name in a if a[name] != b[name]]
    assert not different


def test_other_seed_differs(tmp_path: Path, release_a: ReleaseSummary) -> None:
    other = make_release(tmp_path / "o", 10, 4, "MOCK1", n_invalid=0)
    assert (other.outdir / "catalog.csv").read_bytes() != (release_a.outdir / "catalog.csv").read_bytes()
    assert not np.array_equal(_truth(other)["teff"].to_numpy()[:5], _truth(release_a)["teff"].to_numpy()[:5])


def test_layout_of_the_release(release_a: ReleaseSummary) -> None:
    out = release_a.outdir
    for name in ("catalog.csv", "crossmatch.parquet", "truth.parquet", "truth_stars.parquet", "release.json"):
        assert (out / name).is_file(), name
    truth = _truth(release_a)
    on_disk = sorted(p.name for p in (out / "spectra").iterdir())
    assert on_disk == sorted(truth.loc[truth["file_written"], "fitsname"])
    assert not list((out / "spectra").glob(".*.tmp"))
    meta = json.loads((out / "release.json").read_text())
    assert meta["seed"] == 3 and meta["release"] == "MOCK1" and meta["n_files"] == len(on_disk)
    assert meta["invalid"] == {k: EXPECTED_REJECT[k] for k in INVALID_KINDS}
    assert meta["code_version"] and meta["counts"]["catalog_rows"] == int(truth["in_catalog"].sum() - 1)


def test_valid_files_read_in_both_layouts(release_a: ReleaseSummary) -> None:
    truth = _truth(release_a)
    valid = truth[truth["file_written"] & ~truth["invalid"]]
    combos = set(zip(valid["layout"], valid["gzip"], strict=True))
    assert combos == {("image", True), ("image", False), ("coadd", True), ("coadd", False)}
    wave = spx.native_wavelength()
    for row in valid.itertuples():
        sp = read_lamost(release_a.outdir / "spectra" / row.fitsname)
        assert sp.layout == row.layout and sp.flux.size == 3909
        np.testing.assert_allclose(sp.wavelength, wave, rtol=1e-7)
        assert np.all(np.isfinite(sp.flux)) and np.all(sp.ivar >= 0)
        h = sp.header
        assert h["OBSID"] == row.obsid and h["DATA_V"] == "MOCK1" and h["CLASS"] == row.lamost_class
        assert f"{h['LMJD']}-{h['PLANID']}-{h['SPID']:02d}-{h['FIBERID']:03d}" == row.specid
        assert h["FILENAME"] == row.fitsname.removesuffix(".gz")
        assert h["RA"] == pytest.approx(row.ra, abs=1e-6) and h["DEC"] == pytest.approx(row.dec, abs=1e-6)
        assert h["Z"] * spx.C_KMS == pytest.approx(row.rv_meas, abs=0.01)
        assert h["SNRG"] == pytest.approx(row.snrg, abs=0.006)
        assert h["SUBCLASS"] == row.lamost_subclass and h["COEFF0"] == 3.5682 and h["COEFF1"] == 1e-4
        assert row.population != "hot" or h["SUBCLASS"][0] in "OBAF"


def test_catalog_and_crossmatch_read(release_a: ReleaseSummary) -> None:
    truth = _truth(release_a)
    cat, cat_rejects = read_catalog(release_a.outdir / "catalog.csv")
    xm, xm_rejects = read_crossmatch(release_a.outdir / "crossmatch.parquet")
    assert cat_rejects.empty and xm_rejects.empty
    expected = set(truth.loc[truth["in_catalog"], "obsid"])
    assert set(cat["obsid"]) == expected == set(xm["obsid"]) and cat["obsid"].is_unique
    for col in (
        "lmjd",
        "planid",
        "spid",
        "fiberid",
        "ra",
        "dec",
        "mjd",
        "snr_g",
        "rv",
        "rv_err",
        "z",
        "subclass",
    ):
        assert col in cat.columns, col
    for col in (
        "gaia_id",
        "parallax",
        "parallax_error",
        "ruwe",
        "G",
        "BP",
        "RP",
        "J",
        "H",
        "Ks",
        "g",
        "r",
        "i",
    ):
        assert col in xm.columns, col
    merged = cat.merge(truth.drop_duplicates("obsid"), on="obsid", suffixes=("", "_t"))
    np.testing.assert_allclose(merged["rv"], merged["rv_meas"], atol=0.006)
    assert (np.abs(merged["rv"] - merged["rv_t"]) < 6 * merged["rv_err"] + 1).mean() > 0.9


def test_invalid_inputs(release_a: ReleaseSummary) -> None:
    truth = _truth(release_a)
    spectra = release_a.outdir / "spectra"
    bad = truth[truth["invalid"]].set_index("invalid_kind")
    assert set(bad.index) == set(INVALID_KINDS)
    for kind in ("truncated_gz", "truncated_fits", "not_fits", "wrong_shape", "missing_column"):
        with pytest.raises(LamostReadError) as err:
            read_lamost(spectra / bad.loc[kind, "fitsname"])
        assert err.value.code == bad.loc[kind, "expected_reject"] == EXPECTED_REJECT[kind]
    assert np.all(np.isnan(read_lamost(spectra / bad.loc["all_nan_flux", "fitsname"]).flux))
    assert np.any(read_lamost(spectra / bad.loc["negative_ivar", "fitsname"]).ivar < 0)
    assert np.any(np.diff(read_lamost(spectra / bad.loc["wavelength_not_increasing", "fitsname"]).wavelength) <= 0)
    assert read_lamost(spectra / bad.loc["header_out_of_range", "fitsname"]).header["RA"] == 400.0
    cat = pd.read_csv(release_a.outdir / "catalog.csv")
    assert cat.loc[cat["obsid"] == bad.loc["header_out_of_range", "obsid"], "ra"].item() == 400.0
    xm = pd.read_parquet(release_a.outdir / "crossmatch.parquet")
    orphan_file = bad.loc["no_catalog_row"]
    read_lamost(spectra / orphan_file["fitsname"])  # a valid file ...
    assert orphan_file["obsid"] not in set(cat["obsid"]) | set(xm["obsid"])  # ... that no catalog row names
    orphan_row = bad.loc["catalog_row_without_file"]
    assert orphan_row["obsid"] in set(cat["obsid"]) and not (spectra / orphan_row["fitsname"]).exists()
    dup = bad.loc["duplicate_specid"]
    original = truth[(truth["fitsname"] == dup["duplicate_of"])].iloc[0]
    assert original["specid"] == dup["specid"] and not original["invalid"]
    a, b = read_lamost(spectra / dup["fitsname"]), read_lamost(spectra / dup["duplicate_of"])
    np.testing.assert_array_equal(a.flux, b.flux)
    assert sorted([dup["fitsname"], dup["duplicate_of"]])[0] == dup["duplicate_of"]  # the copy sorts last


def test_truth_tables(release_a: ReleaseSummary) -> None:
    truth = _truth(release_a)
    stars = pd.read_parquet(release_a.outdir / "truth_stars.parquet")
    for col in ("specid", "obsid", "fitsname", "star_index", "star_id", "visit", "teff", "logg", "fe_h", "rv",
                "snr", "resolution", "ebv", "distance_pc", "mks", "binary", "q", "teff2", "light_frac2_g",
                "emission", "ha_ew", "hb_ew", "corrupted", "corrupt_kind", "invalid",
                "expected_reject"):  # fmt: skip
        assert col in truth.columns, col
    valid = truth[~truth["invalid"]]
    assert valid["specid"].is_unique and truth.drop_duplicates("specid")["obsid"].is_unique
    counts = valid.groupby("star_index").size()
    np.testing.assert_array_equal(counts.reindex(stars["star_index"]).fillna(0), stars["n_visits"])
    assert (valid.loc[valid["binary"], "light_frac2_g"] > 0).all()
    assert (valid.loc[~valid["emission"], "ha_ew"] == 0).all()


def test_second_release_shares_stars_without_collisions(
    release_a: ReleaseSummary, release_next: ReleaseSummary
) -> None:
    t1, t2 = _truth(release_a), _truth(release_next)
    s1 = pd.read_parquet(release_a.outdir / "truth_stars.parquet").set_index("star_index")
    s2 = pd.read_parquet(release_next.outdir / "truth_stars.parquet").set_index("star_index")
    old = s2.index[s2.index.isin(s1.index)]
    assert release_next.n_revisited_stars == len(old) > 0 and release_next.n_new_stars == 25
    for col in ("star_id", "ra", "dec", "teff", "logg", "fe_h", "binary", "q", "distance_pc", "ebv"):
        pd.testing.assert_series_equal(s1.loc[old, col], s2.loc[old, col])
    assert s2.index.difference(old).min() > s1.index.max()
    assert not set(t1["specid"]) & set(t2["specid"])
    assert not set(t1["obsid"]) & set(t2["obsid"])
    assert not set(t1["fitsname"]) & set(t2["fitsname"])
    assert t2["lmjd"].min() > t1["lmjd"].max()
    assert not set(s1["star_id"]) & set(s2.loc[s2.index.difference(old), "star_id"])
    # visit numbers continue the first release's
    first_max = t1[~t1["invalid"]].groupby("star_index")["visit"].max()
    again = t2[t2["star_index"].isin(old)].groupby("star_index")["visit"].min()
    assert (again > first_max.reindex(again.index)).all()
    assert json.loads((release_next.outdir / "release.json").read_text())["previous_release"] == "MOCK1"


def test_plots(tmp_path: Path, release_a: ReleaseSummary) -> None:
    stars = pd.read_parquet(release_a.outdir / "truth_stars.parquet")
    for path in (
        plot_population(stars, tmp_path / "pop.png"),
        plot_observations(_truth(release_a), tmp_path / "o.png"),
    ):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_fractions_of_a_larger_release(tmp_path: Path) -> None:
    rel = make_release(tmp_path / "big", 400, 12, n_invalid=0)
    truth = _truth(rel)
    stars = pd.read_parquet(rel.outdir / "truth_stars.parquet")
    n = len(stars)
    for frac, expected in (
        (stars["binary"].mean(), 0.15),
        (stars["emission"].mean(), 0.13),
        ((stars["n_visits"] > 1).mean(), 0.30),
    ):
        assert abs(frac - expected) < 4 * np.sqrt(expected * (1 - expected) / n)
    assert truth["corrupted"].sum() <= 0.01 * len(truth) + 4 * np.sqrt(0.01 * len(truth)) + 1
    assert 28 < truth["snrg"].median() < 55
    ratio = truth["snrg"] / truth["snr"]
    assert ratio.median() == pytest.approx(1.0, abs=0.02)


def test_rewrite_replaces_a_mock_release_but_refuses_other_folders(tmp_path: Path) -> None:
    first = make_release(tmp_path / "r", 8, 1, n_invalid=0)
    before = _files(first.outdir)
    make_release(tmp_path / "r", 8, 2, n_invalid=0)  # an earlier mock release is replaced
    make_release(tmp_path / "r", 8, 1, n_invalid=0)
    assert _files(tmp_path / "r") == before
    foreign = tmp_path / "real" / "spectra"
    foreign.mkdir(parents=True)
    (foreign / "spec-55859-F5902_sp01-001.fits").write_bytes(b"SIMPLE  =")
    with pytest.raises(FileExistsError):
        make_release(tmp_path / "real", 8, 1)
    assert (foreign / "spec-55859-F5902_sp01-001.fits").exists()
    with pytest.raises(ValueError):
        make_release(tmp_path / "r", 8, 1, previous=tmp_path / "r")


def test_duplicate_reject_is_the_name_that_sorts_last(tmp_path: Path) -> None:
    rel = make_release(tmp_path / "gz", 6, 2, gzip_fraction=1.0, n_invalid=12)
    truth = _truth(rel)
    dup = truth[truth["invalid_kind"] == "duplicate_specid"].iloc[0]
    kept = truth[(truth["specid"] == dup["specid"]) & ~truth["invalid"]].iloc[0]
    assert kept["fitsname"] < dup["fitsname"] and dup["duplicate_of"] == kept["fitsname"]
    assert (rel.outdir / "spectra" / dup["fitsname"]).is_file() and (
        rel.outdir / "spectra" / kept["fitsname"]
    ).is_file()
