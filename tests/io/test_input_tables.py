"""Release catalogs and cross-match tables in CSV, FITS and Parquet (SPEC §2); bad rows are rejects, not errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from survey_scale.io.input_tables import REJECT_COLUMNS, CatalogError, read_catalog, read_crossmatch

CATALOG = pd.DataFrame(
    {
        "OBSID": [1, 2, 3],
        "ra": [10.0, 20.0, 30.0],
        "dec": [-5.0, 0.0, 5.0],
        "SNRG": [50.0, -9999.0, 12.5],
        "rv": [3.0, -7.5, 12.0],
        "rv_err": [1.0, 2.0, 3.0],
        "class": ["STAR", "STAR", "STAR"],
    }
)


def _write(df: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        df.to_parquet(path, index=False)
    else:
        Table.from_pandas(df).write(path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".fits", ".parquet"])
def test_catalog_formats_read_alike(tmp_path: Path, suffix: str) -> None:
    cat, rejects = read_catalog(_write(CATALOG, tmp_path / f"cat{suffix}"))
    assert rejects.empty and tuple(rejects.columns) == REJECT_COLUMNS
    assert list(cat["obsid"]) == [1, 2, 3] and cat["obsid"].dtype == np.int64
    assert np.isnan(cat["snr_g"].iloc[1])  # -9999 is LAMOST's missing value
    assert cat["snr_g"].iloc[0] == 50.0 and list(cat["class"]) == ["STAR"] * 3
    assert cat["rv"].tolist() == [3.0, -7.5, 12.0]


def test_rv_from_redshift_when_absent(tmp_path: Path) -> None:
    df = CATALOG.drop(columns=["rv", "rv_err"]).assign(z=[1e-4, 0.0, -1e-4])
    cat, _ = read_catalog(_write(df, tmp_path / "cat.csv"))
    np.testing.assert_allclose(cat["rv"], [29.9792458, 0.0, -29.9792458], rtol=1e-6)


def test_catalog_errors_name_file_and_row(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="no 'obsid' column"):
        read_catalog(_write(CATALOG.drop(columns=["OBSID"]), tmp_path / "a.csv"))
    with pytest.raises(CatalogError, match="unknown table format"):
        read_catalog(_write(CATALOG, tmp_path / "c.csv").rename(tmp_path / "c.xlsx"))
    with pytest.raises(CatalogError, match="not found"):
        read_catalog(tmp_path / "missing.csv")


def test_crossmatch_aliases_and_case(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "obsid": [1, 2],
            "gaia_source_id": [11, 22],
            "parallax": [1.0, 0.5],
            "phot_g_mean_mag": [12.0, 13.0],
            "g_mag": [12.5, 13.5],
            "j_m": [11.0, 12.0],
            "ks_m": [10.5, np.nan],
            "ks_msigcom": [0.02, np.nan],
        }
    )
    xm, rejects = read_crossmatch(_write(df, tmp_path / "xm.parquet"))
    assert rejects.empty
    assert xm["gaia_id"].tolist() == [11, 22]
    assert xm["G"].tolist() == [12.0, 13.0] and xm["g"].tolist() == [12.5, 13.5]
    assert xm["J"].tolist() == [11.0, 12.0] and np.isnan(xm["Ks"].iloc[1]) and xm["Ks_err"].iloc[0] == np.float32(0.02)
    with pytest.raises(CatalogError, match=r"xm\.csv: cross-match table has no 'obsid' column"):
        read_crossmatch(_write(df.drop(columns=["obsid"]), tmp_path / "xm.csv"))


def test_bad_catalog_value_rejects_the_row_not_the_table(tmp_path: Path) -> None:
    bad = CATALOG.astype({"ra": object, "OBSID": object})
    bad.loc[1, "ra"] = "twenty"
    bad.loc[2, "OBSID"] = "3.5"
    path = _write(bad, tmp_path / "b.csv")
    cat, rejects = read_catalog(path)
    assert list(cat["obsid"]) == [1] and list(cat.index) == [0]  # the index stays the row of the file
    assert cat["obsid"].dtype == np.int64 and cat["ra"].dtype == np.float64
    assert tuple(rejects.columns) == REJECT_COLUMNS
    assert list(rejects["source"]) == [f"{path}#row=1", f"{path}#row=2"]
    assert set(rejects["code"]) == {"bad_catalog_value"} and set(rejects["stage"]) == {"ingest"}
    assert list(rejects["batch"]) == [-1, -1] and list(rejects["specid"]) == ["", ""]
    assert re.search(r"b\.csv: column 'ra' row 1: 'twenty' is not a number", rejects["reason"].iloc[0])
    assert re.search(r"b\.csv: column 'OBSID' row 2: 3\.5 is not an integer", rejects["reason"].iloc[1])


def test_empty_obsid_rejects_the_row(tmp_path: Path) -> None:
    bad = CATALOG.astype({"OBSID": object})
    bad.loc[0, "OBSID"] = None
    cat, rejects = read_catalog(_write(bad, tmp_path / "e.csv"))
    assert list(cat["obsid"]) == [2, 3]
    assert list(rejects["code"]) == ["bad_catalog_value"]
    assert "column 'OBSID' row 0 is empty" in rejects["reason"].iloc[0]


def test_crossmatch_duplicate_obsid_rejects_all_its_rows(tmp_path: Path) -> None:
    df = pd.DataFrame({"obsid": [1, 2, 1, 3], "parallax": [1.0, 2.0, 3.0, 4.0]})
    path = _write(df, tmp_path / "dup.parquet")
    xm, rejects = read_crossmatch(path)
    assert list(xm["obsid"]) == [2, 3] and list(xm.index) == [1, 3]
    assert list(rejects["source"]) == [f"{path}#row=0", f"{path}#row=2"]
    assert set(rejects["code"]) == {"duplicate_crossmatch_row"}
    for reason in rejects["reason"]:
        assert "obsid 1 appears more than once (rows 0, 2)" in reason and "no cross-match values" in reason


def test_crossmatch_bad_values_reject_rows(tmp_path: Path) -> None:
    df = pd.DataFrame({"obsid": ["1", "x", "2", "2"], "parallax": ["1.0", "2.0", "huge", "4.0"]})
    path = _write(df, tmp_path / "bad.csv")
    xm, rejects = read_crossmatch(path)
    assert list(xm["obsid"]) == [1]  # row 1: bad obsid; rows 2, 3: obsid 2 twice (row 2 also a bad parallax)
    assert list(rejects["code"]) == ["bad_crossmatch_value", "bad_crossmatch_value", "duplicate_crossmatch_row"]
    assert "column 'obsid' row 1: 'x' is not a number" in rejects["reason"].iloc[0]
    assert "column 'parallax' row 2: 'huge' is not a number" in rejects["reason"].iloc[1]
    assert "obsid 2 appears more than once (rows 2, 3)" in rejects["reason"].iloc[1]
    assert "obsid 2 appears more than once (rows 2, 3)" in rejects["reason"].iloc[2]
