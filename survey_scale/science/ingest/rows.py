"""The cube's per-spectrum rows written by the ingest (SPEC §2): their columns, identifiers and fill values.

- :data:`METADATA` is the fixed schema of a row (name, dtype, attributes), the same in every cube;
- :func:`make_specid` and :func:`make_star_id` build a spectrum's and a star's ids;
- :func:`cube_rows` turns a batch's accepted inspect records into rows of that schema (release, batch, file
  origin, star id, the Gaia / 2MASS / photometry columns of the cross-match table), ``""`` / −1 / NaN where
  a value is unknown.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from survey_scale.io.input_tables import CROSSMATCH_COLUMNS

_XMATCH = {c.name: c for c in CROSSMATCH_COLUMNS}


@dataclass(frozen=True)
class MetadataColumn:
    """A per-spectrum column of the cube written by the ingest: name, dtype (``"str"`` or numpy) and attributes."""

    name: str
    dtype: str
    attrs: dict[str, str] = field(default_factory=dict)


def _col(name: str, dtype: str, unit: str, description: str) -> MetadataColumn:
    return MetadataColumn(
        name, dtype, {"units": unit, "long_name": description} if unit else {"long_name": description}
    )


METADATA: tuple[MetadataColumn, ...] = (
    _col("specid", "str", "", "LAMOST spectrum id date-planid-spid-fiberid"),
    _col("obsid", "int64", "", "LAMOST unique spectrum id (-1 if the file has none)"),
    _col("fitsname", "str", "", "name of the LAMOST FITS file"),
    _col("source_path", "str", "", "absolute path of the ingested file"),
    _col("star_id", "str", "", "star id from RA/Dec, Sdddmmss+ddmmss"),
    _col("release", "str", "", "data release"),
    _col("batch", "int32", "", "ingest batch that added the spectrum"),
    _col("layout", "str", "", "FITS layout: image (DR1-DR7) or coadd (DR8+)"),
    _col("lmjd", "int32", "d", "local MJD of the plan"),
    _col("planid", "str", "", "LAMOST plan id"),
    _col("spid", "int16", "", "spectrograph id"),
    _col("fiberid", "int16", "", "fibre id"),
    _col("ra", "float64", "deg", "right ascension (J2000)"),
    _col("dec", "float64", "deg", "declination (J2000)"),
    _col("mjd", "float64", "d", "modified Julian day of the observation"),
    *(_col(f"snr_{b}", "float32", "", f"S/N per pixel, {b} band") for b in "ugriz"),
    _col(
        "rv",
        "float32",
        "km s-1",
        "heliocentric radial velocity used for the rest-frame shift (NaN for LAMOST class QSO/GALAXY: not shifted)",
    ),
    _col("rv_err", "float32", "km s-1", "radial velocity uncertainty"),
    _col("rv_source", "str", "", "catalog or header (Z*c); empty for LAMOST class QSO/GALAXY (no stellar RV)"),
    _col("z", "float64", "", "redshift in the header"),
    _col("class", "str", "", "LAMOST class"),
    _col("subclass", "str", "", "LAMOST subclass"),
    _col("lasp_teff", "float32", "K", "effective temperature from the LAMOST pipeline (LASP; release catalog)"),
    _col("lasp_logg", "float32", "dex", "surface gravity log g from the LAMOST pipeline (LASP; release catalog)"),
    _col(
        "file_origin",
        "str",
        "",
        "mock: written by survey_scale's mock release (header TSOURCE = 'MOCK_HOT'); lamost: a real LAMOST file",
    ),
    _col("coverage", "float32", "", "fraction of the common grid covered by the spectrum"),
    *(
        _col(c.name, "int64" if c.dtype == "int64" else "float32", c.unit, c.description)
        for c in CROSSMATCH_COLUMNS
        if c.name != "obsid"
    ),
)
"""Per-spectrum variables the ingest writes (all present in every cube; NaN / −1 / "" when unknown)."""

MOCK_TSOURCE = "MOCK_HOT"
"""The header TSOURCE (name of the input catalog) of every file survey_scale's mock release writes
(:func:`survey_scale.mock.writer.lamost_header_entries`): no LAMOST input catalog has that name, so it tells
a mock file from a real one (``file_origin``, which decides the default emulator)."""
ORIGIN_MOCK = "mock"
ORIGIN_LAMOST = "lamost"

_FILL = {"str": "", "int64": -1, "int32": -1, "int16": -1, "float32": np.nan, "float64": np.nan}


def make_specid(lmjd: int, planid: str, spid: int, fiberid: int) -> str:
    """LAMOST specid "date-planid-spid-fiberid", e.g. ``55859-F5902-01-001`` (date = local MJD)."""
    return f"{int(lmjd)}-{planid}-{int(spid):02d}-{int(fiberid):03d}"


def make_star_id(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Star ids "Sdddmmss±ddmmss" from RA and Dec in degrees (rounded to the arcsecond; P1 Table 1)."""
    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    ok = np.isfinite(ra) & np.isfinite(dec)
    ra_s = np.rint(np.where(ok, ra % 360.0, 0) * 3600).astype(np.int64) % (360 * 3600)
    dec_s = np.rint(np.abs(np.where(ok, dec, 0)) * 3600).astype(np.int64)
    sign = np.where(np.where(ok, dec, 0) < 0, "-", "+")
    out = [
        f"S{r // 3600:03d}{r // 60 % 60:02d}{r % 60:02d}{s}{d // 3600:02d}{d // 60 % 60:02d}{d % 60:02d}"
        if good
        else ""
        for r, d, s, good in zip(ra_s, dec_s, sign, ok)
    ]
    return np.array(out, dtype=object)


def _release_name(data_v: Any, configured: str | None) -> str:
    if configured:
        return configured
    text = str(data_v or "").strip()
    return re.sub(r"^LAMOST\s+", "", text) or "unknown"


def cube_rows(
    accepted: pd.DataFrame, batch: int, release: str | None, crossmatch: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The cube's rows of a batch's accepted files: ``path``, ``size``, ``mtime_ns`` and :data:`METADATA`.

    Parameters
    ----------
    accepted
        The accepted inspect records, in the cube's order, with what the plan decided (``specid``, ``rv``,
        ``rv_err``, ``rv_source``, ``coverage``, the catalog's values); a column it lacks is filled.
    batch
        Batch number.
    release
        The release's name; None: from each header's DATA_V ("LAMOST DR9" -> "DR9"), else ``"unknown"``.
    crossmatch
        The cross-match table (unique obsids; :func:`survey_scale.io.input_tables.read_crossmatch`), or None.
    """
    accepted = accepted.copy()
    accepted["fitsname"] = [os.path.basename(p) for p in accepted["path"].tolist()]
    accepted["source_path"] = accepted["path"]
    accepted["star_id"] = make_star_id(accepted["ra"], accepted["dec"])
    accepted["release"] = [_release_name(v, release) for v in accepted["data_v"].tolist()]
    accepted["batch"] = batch
    accepted["file_origin"] = np.where(
        accepted["tsource"].astype(object).fillna("").astype(str).str.strip() == MOCK_TSOURCE,
        ORIGIN_MOCK,
        ORIGIN_LAMOST,
    )
    rows = accepted[["path", "size", "mtime_ns"]].copy()
    for out in METADATA:
        values = accepted[out.name] if out.name in accepted else pd.Series(_FILL[out.dtype], index=accepted.index)
        if out.dtype == "str":
            rows[out.name] = values.fillna("").astype(str).str.strip()
        else:
            rows[out.name] = pd.to_numeric(values, errors="coerce").fillna(_FILL[out.dtype]).astype(out.dtype)
    return rows if crossmatch is None else _add_crossmatch(rows, crossmatch)


def _add_crossmatch(plan: pd.DataFrame, xm: pd.DataFrame) -> pd.DataFrame:
    """The plan with the cross-match columns of ``xm`` (unique obsids) filled where its obsid matches."""
    if plan.empty:
        return plan
    plan = plan.copy()
    table = xm.set_index("obsid")
    obsid = plan["obsid"].where(plan["obsid"] > 0).to_numpy()  # a file without OBSID (-1) has no cross-match row
    for name, col in _XMATCH.items():
        if name == "obsid" or name not in table:
            continue
        dtype = "int64" if col.dtype == "int64" else "float32"
        # nullable Int64 keeps large ids (Gaia source_id > 2**53) exact where a spectrum has no row
        values = table[name].astype("Int64" if dtype == "int64" else "float64").reindex(obsid)
        plan[name] = values.fillna(_FILL[dtype]).astype(dtype).to_numpy()
    return plan
