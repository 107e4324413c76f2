"""The ingest's planner and file inspection without Dask (SPEC §2): untrusted input never stops a run.

A bad catalog or cross-match row is a reject of that row, a spectrum without a radial velocity is a reject
with advice that helps, and an unexpected exception while reading a file is a reject of that file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import survey_scale.science.ingest as ingest
from survey_scale.config import Config, load_config
from survey_scale.io.catalog import REJECT_COLUMNS
from survey_scale.science.ingest import RECORD_COLUMNS, inspect_file, inspect_files, plan_batch
from survey_scale.science.resample import C_KMS
from tests.conftest import DR2_FLOAT64, DR9_101001

BATCH = 7


def _record(obsid: float, fiberid: int, z: float = 1e-4, **overrides: Any) -> dict[str, Any]:
    """An ``ok`` inspect record of a DR9-like file covering the whole grid."""
    rec: dict[str, Any] = {
        "path": f"/data/spec-55859-F5902_sp01-{fiberid:03d}.fits.gz",
        "status": "ok",
        "code": "",
        "reason": "",
        "size": 1000,
        "mtime_ns": 1,
        "obsid": float(obsid),
        "lmjd": 55859.0,
        "planid": "F5902",
        "spid": 1.0,
        "fiberid": float(fiberid),
        "ra": 10.0 + fiberid,
        "dec": -5.0,
        "mjd": 55859.5,
        "snr_g": 20.0,
        "z": z,
        "z_err": 1e-5,
        "class": "STAR",
        "subclass": "G2",
        "data_v": "LAMOST DR9",
        "wave_min": 3700.0,
        "wave_max": 9100.0,
        "layout": "coadd",
    }
    rec.update(overrides)
    return rec


def _records(*records: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(list(records)).reindex(columns=list(RECORD_COLUMNS))


def _config(**overrides: Any) -> Config:
    return load_config(None, {k: str(v) if isinstance(v, Path) else v for k, v in overrides.items()})


def _by_code(rejects: pd.DataFrame) -> dict[str, list[str]]:
    return rejects.groupby("code")["source"].apply(list).to_dict()


def _catalog(obsids: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "obsid": obsids,
            "lmjd": 55859,
            "planid": "F5902",
            "spid": 1,
            "fiberid": obsids,
            "ra": [10.0 + o for o in obsids],
            "dec": -5.0,
            "rv": [10.0 * o for o in obsids],
            "rv_err": 1.0,
        }
    )


# --- bad catalog and cross-match rows ------------------------------------------------------------------------


def test_bad_catalog_value_rejects_its_row_and_plans_the_others(tmp_path: Path) -> None:
    catalog = _catalog([1, 2, 3]).astype({"ra": object})
    catalog.loc[1, "ra"] = "twenty"
    cat_path = tmp_path / "catalog.csv"
    catalog.to_csv(cat_path, index=False)
    records = _records(_record(1, 1), _record(2, 2), _record(3, 3))

    plan, rejects, already = plan_batch(records, set(), _config(**{"ingest.catalog": cat_path}), BATCH)

    assert list(plan["obsid"]) == [1, 3] and already.empty
    assert list(plan["rv_source"]) == ["catalog", "catalog"]
    assert plan["rv"].tolist() == [10.0, 30.0]
    assert tuple(rejects.columns) == REJECT_COLUMNS and set(rejects["batch"]) == {BATCH}
    codes = _by_code(rejects)
    assert codes["bad_catalog_value"] == [f"{cat_path}#row=1"]
    reason = rejects.set_index("code").loc["bad_catalog_value", "reason"]
    assert re.search(r"column 'ra' row 1: 'twenty' is not a number", reason)
    # the file of the left-out row cannot be joined: it is rejected, and its reason points at the left-out rows
    assert [Path(p).name for p in codes["no_catalog_row"]] == ["spec-55859-F5902_sp01-002.fits.gz"]
    assert "left out for bad values" in rejects.set_index("code").loc["no_catalog_row", "reason"]
    # n_catalog_rejected in stages/ingest.py counts the rejects whose source is not an input file
    assert int((~rejects["source"].isin(records["path"])).sum()) == 1


def test_duplicate_crossmatch_obsid_rejects_its_rows_not_its_spectra(tmp_path: Path) -> None:
    xm_path = tmp_path / "xm.parquet"
    pd.DataFrame(
        {
            "obsid": [1, 2, 1],
            "source_id": [11, 4295806720231208448, 33],  # a real Gaia DR3 id: > 2**53, must stay exact
            "parallax": [1.0, 2.0, 3.0],
            "phot_g_mean_mag": [12.0, 13.0, 14.0],
        }
    ).to_parquet(xm_path)
    records = _records(_record(1, 1), _record(2, 2), _record(3, 3), _record(np.nan, 4))

    plan, rejects, _ = plan_batch(records, set(), _config(**{"ingest.crossmatch": xm_path}), BATCH)

    assert len(plan) == 4  # photometry is optional: every spectrum is planned
    by_obsid = plan.set_index("specid")
    one, two, three, no_obsid = (by_obsid.loc[f"55859-F5902-01-{f:03d}"] for f in (1, 2, 3, 4))
    assert one["gaia_id"] == -1 and np.isnan(one["parallax"]) and np.isnan(one["G"])
    assert two["gaia_id"] == 4295806720231208448 and two["parallax"] == pytest.approx(2.0) and two["G"] == 13.0
    assert three["gaia_id"] == -1 and no_obsid["gaia_id"] == -1 and no_obsid["obsid"] == -1
    assert list(rejects["code"]) == ["duplicate_crossmatch_row"] * 2
    assert list(rejects["source"]) == [f"{xm_path}#row=0", f"{xm_path}#row=2"]
    assert set(rejects["batch"]) == {BATCH}
    assert all("obsid 1 appears more than once (rows 0, 2)" in r for r in rejects["reason"])


def test_bad_crossmatch_value_is_a_reject(tmp_path: Path) -> None:
    xm_path = tmp_path / "xm.csv"
    pd.DataFrame({"obsid": ["1", "2"], "parallax": ["1.5", "n/a?"]}).to_csv(xm_path, index=False)
    plan, rejects, _ = plan_batch(
        _records(_record(1, 1), _record(2, 2)), set(), _config(**{"ingest.crossmatch": xm_path}), BATCH
    )
    assert plan["parallax"].iloc[0] == pytest.approx(1.5) and np.isnan(plan["parallax"].iloc[1])
    assert list(rejects["code"]) == ["bad_crossmatch_value"]
    assert "column 'parallax' row 1: 'n/a?' is not a number" in rejects["reason"].iloc[0]


# --- radial velocity ---------------------------------------------------------------------------------------


def test_missing_rv_is_no_rv_with_useful_advice(tmp_path: Path) -> None:
    records = _records(_record(1, 1, z=np.nan), _record(2, 2, z=0.5), _record(3, 3))
    plan, rejects, _ = plan_batch(records, set(), _config(), BATCH)
    assert list(plan["obsid"]) == [3]
    by_code = rejects.set_index("code")
    no_rv = by_code.loc["no_rv", "reason"]
    assert Path(by_code.loc["no_rv", "source"]).name == "spec-55859-F5902_sp01-001.fits.gz"
    assert "header Z is missing or NaN" in no_rv and "column rv" in no_rv and "max_abs_rv" not in no_rv
    too_fast = by_code.loc["rv_out_of_range", "reason"]
    assert f"{0.5 * C_KMS:.0f} km/s" in too_fast and "raise ingest.max_abs_rv" in too_fast


def test_no_rv_advice_follows_rv_source(tmp_path: Path) -> None:
    cat_path = tmp_path / "catalog.csv"
    _catalog([1, 2]).assign(rv=[np.nan, 20.0]).to_csv(cat_path, index=False)
    records = _records(_record(1, 1), _record(2, 2, z=np.nan))

    # catalog only: obsid 1 has no catalog rv but a header Z -> suggest 'auto'
    plan, rejects, _ = plan_batch(
        records, set(), _config(**{"ingest.catalog": cat_path, "ingest.rv_source": "catalog"}), 1
    )
    assert list(plan["obsid"]) == [2] and list(rejects["code"]) == ["no_rv"]
    reason = rejects["reason"].iloc[0]
    assert "the catalog" in reason and "has no rv for obsid 1" in reason and "ingest.rv_source to 'auto'" in reason

    # header only: obsid 2 has no Z but a catalog rv -> suggest 'auto'
    plan, rejects, _ = plan_batch(
        records, set(), _config(**{"ingest.catalog": cat_path, "ingest.rv_source": "header"}), 1
    )
    assert list(plan["obsid"]) == [1] and list(rejects["code"]) == ["no_rv"]
    assert "header Z is missing or NaN" in rejects["reason"].iloc[0]
    assert "ingest.rv_source to 'auto'" in rejects["reason"].iloc[0]

    # auto: each takes what it has
    plan, rejects, _ = plan_batch(records, set(), _config(**{"ingest.catalog": cat_path}), 1)
    assert list(plan["rv_source"]) == ["header", "catalog"] and rejects.empty


# --- inspecting a file ---------------------------------------------------------------------------------------


def test_unexpected_read_exception_is_a_read_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "spec-55859-F5902_sp01-001.fits"
    path.write_bytes(b"x" * 100)

    def explode(_path: str) -> None:
        raise RuntimeError("astropy fell over")

    monkeypatch.setattr(ingest, "read_lamost", explode)
    record = inspect_file(str(path))
    assert (record["status"], record["code"]) == ("rejected", "read_error")
    assert "RuntimeError: astropy fell over" in record["reason"] and record["size"] == 100
    table = inspect_files([str(path), str(tmp_path / "missing.fits")])  # the block goes on
    assert list(table["code"]) == ["read_error", "unreadable"]


def test_unexpected_check_exception_is_a_read_error(
    lamost_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(_sp: Any) -> None:
        raise ValueError("bug in a check")

    monkeypatch.setattr(ingest, "check_content", explode)
    record = inspect_file(str(lamost_dir / DR9_101001))
    assert record["code"] == "read_error" and "ValueError: bug in a check" in record["reason"]


# --- real files ------------------------------------------------------------------------------------------------


def test_real_files_with_a_bad_catalog_row(lamost_dir: Path, tmp_path: Path) -> None:
    paths = [str(lamost_dir / n) for n in (DR9_101001, "spec-55859-F5902_sp01-002.fits.gz", DR2_FLOAT64)]
    records = inspect_files(paths)
    assert (records["status"] == "ok").all()
    catalog = pd.DataFrame(
        {
            "obsid": ["101001", "101002", "-1"],
            "lmjd": [55859, 55859, 55916],
            "planid": ["F5902", "F5902", "B5591606"],
            "spid": [1, 1, 1],
            "fiberid": [1, 2, 1],
            "rv": ["12.5", "not-a-velocity", "-3.0"],
        }
    )
    cat_path = tmp_path / "catalog.csv"
    catalog.to_csv(cat_path, index=False)
    plan, rejects, _ = plan_batch(records, set(), _config(**{"ingest.catalog": cat_path}), BATCH)
    assert list(plan["specid"]) == ["55859-F5902-01-001", "55916-B5591606-01-001"]
    assert list(plan["rv"]) == [12.5, -3.0] and set(plan["rv_source"]) == {"catalog"}
    codes = _by_code(rejects)
    assert codes["bad_catalog_value"] == [f"{cat_path}#row=1"]
    assert [Path(p).name for p in codes["no_catalog_row"]] == ["spec-55859-F5902_sp01-002.fits.gz"]
    assert (
        "column 'rv' row 1: 'not-a-velocity' is not a number"
        in rejects.set_index("code").loc["bad_catalog_value", "reason"]
    )


def test_empty_records_plan_nothing(tmp_path: Path) -> None:
    xm_path = tmp_path / "xm.parquet"
    pd.DataFrame({"obsid": [1, 1]}).to_parquet(xm_path)
    plan, rejects, already = plan_batch(
        pd.DataFrame(columns=list(RECORD_COLUMNS)), set(), _config(**{"ingest.crossmatch": xm_path}), BATCH
    )
    assert plan.empty and already.empty
    assert list(rejects["code"]) == ["duplicate_crossmatch_row"] * 2  # the table's bad rows are still recorded
