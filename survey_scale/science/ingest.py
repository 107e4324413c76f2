"""The ingest's science, pure (SPEC §2): read and check one LAMOST file, and plan a batch.

- :func:`inspect_file` reads a file completely, checks it (structure, all-NaN flux, negative ivar,
  wavelength order) and extracts its header metadata; :func:`inspect_files` does a block of files.
- :func:`plan_batch` builds specids from the headers, joins the release catalog (by obsid, or by specid for
  files without OBSID), keeps the LAMOST classes of ``ingest.classes`` (:func:`lamost_class_names`), takes
  the radial velocity (catalog, else Z·c from the header; none for a non-stellar CLASS, QSO or GALAXY, which
  is kept unshifted with rv NaN and flagged downstream, SPEC §13), checks header ranges and grid coverage, drops
  specids already in the cube, reports duplicates, gives each accepted file a row (sorted by specid), notes
  whether it is a survey_scale mock file (``file_origin``) and joins the Gaia / 2MASS / photometry columns of
  the cross-match table; every rejected file, catalog row or cross-match row gets a reason a person can act
  on.

The orchestration (inspect on the cluster → plan → allocate → write) is :mod:`survey_scale.stages.ingest`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from survey_scale.io.catalog import (
    CATALOG_COLUMNS,
    CROSSMATCH_COLUMNS,
    REJECT_COLUMNS,
    read_catalog,
    read_crossmatch,
)
from survey_scale.io.lamost import LamostReadError, LamostSpectrum, read_lamost
from survey_scale.science.resample import C_KMS, grid_coverage

# --- per-spectrum metadata written by the ingest ------------------------------------------------------

_CATALOG = {c.name: c for c in CATALOG_COLUMNS}
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

NON_STELLAR_CLASSES = ("QSO", "GALAXY")
"""LAMOST CLASSes that are not stars (the same as :data:`survey_scale.science.final_sample.NON_STELLAR_CLASSES`).
Their redshift is no stellar radial velocity: :func:`plan_batch` keeps such a spectrum with rv NaN, unshifted
(observed frame) and not checked against ``ingest.max_abs_rv``; step ``final_sample`` flags it
(``flag_non_stellar``, SPEC §13: P2's rules are flags, not deletions)."""


def is_non_stellar(lamost_class: Any) -> np.ndarray:
    """Whether each LAMOST CLASS (text, any case and padding; missing = no) is in :data:`NON_STELLAR_CLASSES`."""
    values = pd.Series(np.atleast_1d(np.asarray(lamost_class, dtype=object)))
    text = values.map(lambda v: "" if pd.isna(v) else str(v))
    return text.str.strip().str.upper().isin(NON_STELLAR_CLASSES).to_numpy()


# --- small pure helpers --------------------------------------------------------------------------------


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


_FILENAME = re.compile(r"spec-(\d+)-(.+?)_sp(\d+)-(\d+)", re.IGNORECASE)

_HEADER_KEYS: dict[str, tuple[str, ...]] = {
    "obsid": ("OBSID",),
    "lmjd": ("LMJD",),
    "planid": ("PLANID",),
    "spid": ("SPID",),
    "fiberid": ("FIBERID",),
    "ra": ("RA", "RA_OBS"),
    "dec": ("DEC", "DEC_OBS"),
    "mjd": ("MJD",),
    "snr_u": ("SNRU", "SN_U"),
    "snr_g": ("SNRG", "SN_G"),
    "snr_r": ("SNRR", "SN_R"),
    "snr_i": ("SNRI", "SN_I"),
    "snr_z": ("SNRZ", "SN_Z"),
    "z": ("Z",),
    "z_err": ("Z_ERR",),
    "class": ("CLASS",),
    "subclass": ("SUBCLASS",),
    "data_v": ("DATA_V",),
    "tsource": ("TSOURCE",),
}
_HEADER_STRINGS = {"planid", "class", "subclass", "data_v", "tsource"}


def _as_number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def _specid_from_name(path: str) -> str:
    match = _FILENAME.search(Path(path).name)
    return make_specid(*match.groups()) if match else ""


_M_PREFIX = re.compile(r"^(sd|d|g)(?=M)", re.IGNORECASE)
"""LAMOST's M-type prefixes: dM (dwarf), gM (giant), sdM (subdwarf)."""


def lamost_class_names(lamost_class: str, subclass: str) -> set[str]:
    """The names (upper case) a LAMOST classification answers to in ``ingest.classes``.

    LAMOST's CLASS is STAR, GALAXY, QSO or Unknown; a star's SUBCLASS is an MK type ("A2V", "B9", "K5", "O",
    "OB"), an M type with a prefix ("dM5", "gM0", "sdM2"), or a kind ("WD", "DA", "Carbon", "DoubleStar",
    "EM"); "Non" means none. A classification answers to its CLASS, its whole SUBCLASS and, for a star, the
    spectral letter of its SUBCLASS once an M type's d/g/sd is dropped ("OB" answers to O and B). So
    ``["O", "B", "A"]`` keeps the hot stars, ``["WD"]`` the white dwarfs, ``["STAR"]`` every star.
    """
    cls = str(lamost_class or "").strip()
    sub = str(subclass or "").strip()
    names = {cls.upper()} if cls else set()
    if sub and sub.lower() != "non":
        names.add(sub.upper())
        if cls.upper() in ("", "STAR"):
            core = _M_PREFIX.sub("", sub).upper()
            if core.startswith("OB"):
                names |= {"O", "B"}
            elif core[:1] in tuple("OBAFGKM"):
                names.add(core[0])
    return names


def header_metadata(sp: LamostSpectrum) -> dict[str, Any]:
    """Metadata of one spectrum from its header (NaN / "" when missing), plus the wavelength range."""
    meta: dict[str, Any] = {}
    for name, keys in _HEADER_KEYS.items():
        value = sp.get(*keys)
        meta[name] = ("" if value is None else str(value)) if name in _HEADER_STRINGS else _as_number(value)
    if np.isnan(meta["lmjd"]) or not meta["planid"]:
        match = _FILENAME.search(Path(sp.path).name)  # early files: take the specid parts from the name
        if match:
            meta["lmjd"], meta["planid"] = float(match.group(1)), match.group(2)
            meta["spid"], meta["fiberid"] = float(match.group(3)), float(match.group(4))
    finite = np.isfinite(sp.wavelength)
    meta["wave_min"] = float(sp.wavelength[finite].min()) if finite.any() else np.nan
    meta["wave_max"] = float(sp.wavelength[finite].max()) if finite.any() else np.nan
    meta["layout"] = sp.layout
    return meta


def check_content(sp: LamostSpectrum) -> tuple[str, str] | None:
    """Content checks of a read spectrum; ``(code, reason)`` of the first failure, or None."""
    n = sp.flux.size
    if n < 100:
        return "wrong_shape", f"only {n} pixels (a LAMOST spectrum has ~3,900)"
    if not np.all(np.isfinite(sp.wavelength)):
        return "bad_wavelength", "wavelength array has non-finite values"
    if not np.all(np.diff(sp.wavelength) > 0):
        i = int(np.flatnonzero(np.diff(sp.wavelength) <= 0)[0])
        return "wavelength_not_increasing", f"wavelength does not increase at pixel {i} ({sp.wavelength[i]:.2f} Å)"
    if not np.any(np.isfinite(sp.flux)):
        return "all_nan_flux", "flux is NaN at every pixel"
    negative = np.isfinite(sp.ivar) & (sp.ivar < 0)
    if negative.any():
        return (
            "negative_ivar",
            f"inverse variance is negative at {int(negative.sum())} pixel(s), "
            f"first at pixel {int(np.flatnonzero(negative)[0])}",
        )
    if not np.any((sp.ivar > 0) & np.isfinite(sp.flux)):
        return "no_valid_pixels", "no pixel has ivar > 0 and a finite flux"
    # the cube stores float32: a value it cannot hold (a damaged float64 file) would become inf or 1/0
    f32 = np.finfo(np.float32)
    beyond = (np.isfinite(sp.flux) & (np.abs(sp.flux) > f32.max)) | (
        np.isfinite(sp.ivar) & (sp.ivar > 0) & ((sp.ivar > f32.max) | (sp.ivar < f32.tiny))
    )
    if beyond.any():
        i = int(np.flatnonzero(beyond)[0])
        return (
            "value_out_of_range",
            f"flux or ivar beyond the float32 range at {int(beyond.sum())} pixel(s), first at pixel {i} "
            f"(flux {sp.flux[i]:.3g}, ivar {sp.ivar[i]:.3g})",
        )
    return None


def inspect_file(path: str, **read_options: Any) -> dict[str, Any]:
    """Read and check one file; its metadata and ``status`` (``ok`` or ``rejected`` with code/reason).

    ``read_options`` go to :func:`survey_scale.io.lamost.read_lamost` (``max_bytes``, ``time_limit_s``).

    Never raises for a bad file: a :class:`LamostReadError` gives its own code, an ``OSError`` ``unreadable``,
    and any other exception while reading or checking the file (from astropy, or a bug) ``read_error`` with
    the exception's type and message — so one bad file cannot stop the inspection of its block.
    """
    record: dict[str, Any] = {"path": path}
    try:
        stat = os.stat(path)
        record.update(size=stat.st_size, mtime_ns=stat.st_mtime_ns)
        sp = read_lamost(path, **read_options)
        meta = header_metadata(sp)
        problem = check_content(sp)
    except LamostReadError as exc:
        return {**record, "status": "rejected", "code": exc.code, "reason": exc.message}
    except OSError as exc:
        return {**record, "status": "rejected", "code": "unreadable", "reason": str(exc)}
    except Exception as exc:  # untrusted input: whatever a reader raises becomes a reject of this file
        return {
            **record,
            "status": "rejected",
            "code": "read_error",
            "reason": f"unexpected error while reading or checking the file: {type(exc).__name__}: {exc}",
        }
    record.update(meta)
    if problem:
        return {**record, "status": "rejected", "code": problem[0], "reason": problem[1]}
    return {**record, "status": "ok", "code": "", "reason": ""}


RECORD_COLUMNS = (
    "path",
    "status",
    "code",
    "reason",
    "size",
    "mtime_ns",
    *_HEADER_KEYS,
    "wave_min",
    "wave_max",
    "layout",
)
"""Columns of an inspect record (one per file)."""


def inspect_files(paths: list[str], **read_options: Any) -> pd.DataFrame:
    """Inspect a block of files: one record per file (:data:`RECORD_COLUMNS`, typed for Parquet)."""
    return records_frame([inspect_file(p, **read_options) for p in paths])


def records_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Inspect records (dicts as :func:`inspect_file` gives, keys may be missing) as a typed table.

    Columns :data:`RECORD_COLUMNS`: strings "" when missing, ``size``/``mtime_ns`` −1, numbers NaN.
    """
    table = pd.DataFrame(records).reindex(columns=RECORD_COLUMNS)
    for col in RECORD_COLUMNS:
        if col in _HEADER_STRINGS or col in ("path", "status", "code", "reason", "layout"):
            table[col] = table[col].map(lambda v: "" if pd.isna(v) else str(v))
        elif col in ("size", "mtime_ns"):
            # from the records, not the frame: a column with a missing value would pass through float64,
            # which rounds nanosecond times (and a file's mtime must match exactly when it is written)
            values = [r.get(col) for r in records]
            table[col] = pd.array([-1 if v is None or pd.isna(v) else int(v) for v in values], dtype="int64")
        else:
            table[col] = pd.to_numeric(table[col], errors="coerce").astype("float64")
    return table


def find_files(folder: Path, patterns: list[str]) -> list[Path]:
    """All files under ``folder`` (recursively) matching any of ``patterns``, sorted, absolute."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: input folder not found")
    found = {p.resolve() for pattern in patterns for p in folder.rglob(pattern) if p.is_file()}
    return sorted(found)


def _release_name(data_v: Any, configured: str | None) -> str:
    if configured:
        return configured
    text = str(data_v or "").strip()
    return re.sub(r"^LAMOST\s+", "", text) or "unknown"


def _reject_frame(records: pd.DataFrame, batch: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "stage": "ingest",
            "source": records["path"].astype(str),
            "specid": records.get("specid", pd.Series("", index=records.index)).fillna("").astype(str),
            "code": records["code"].astype(str),
            "reason": records["reason"].astype(str),
            "batch": batch,
        }
    )


def _reject(rec: pd.DataFrame, mask: pd.Series, code: str, reasons: Any) -> None:
    rec.loc[mask, "status"] = "rejected"
    rec.loc[mask, "code"] = code
    rec.loc[mask, "reason"] = reasons


def plan_batch(
    records: pd.DataFrame,
    existing_specids: set[str],
    settings: Any,
    batch: int,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Decide the rows and rejects of a batch from its inspect records (pure, deterministic).

    Parameters
    ----------
    records
        One inspect record per file (:data:`RECORD_COLUMNS`).
    existing_specids
        Specids already in the cube.
    settings
        The ``ingest`` section (:class:`survey_scale.stages.ingest.IngestConfig`, or any object with its
        attributes ``input``, ``catalog``, ``crossmatch``, ``classes``, ``rv_source``, ``max_abs_rv``).
    batch
        Batch number.

    Returns
    -------
    plan, rejects, already
        Accepted files with the cube's metadata columns (cross-match columns included), sorted by specid;
        the rejects (:data:`survey_scale.store.cube.REJECT_COLUMNS`) of files, of catalog rows and of
        cross-match rows (bad values, duplicate obsids; a row's source is ``"{table}#row={i}"``); files whose
        specid is already in the cube.

    Raises
    ------
    survey_scale.io.catalog.CatalogError
        Only for a problem of a whole table (unreadable, no ``obsid`` column); a bad row is a reject.
    """
    cfg = settings
    rec = records.reindex(columns=list(RECORD_COLUMNS)).reset_index(drop=True)
    ok = rec["status"] == "ok"

    # specid from the header (or from the file name, for early files without LMJD/PLANID)
    parts = ["lmjd", "planid", "spid", "fiberid"]
    has_id = ok & rec[["lmjd", "spid", "fiberid"]].notna().all(axis=1) & (rec["planid"].fillna("") != "")
    _reject(
        rec, ok & ~has_id, "missing_header_key", "header lacks LMJD/PLANID/SPID/FIBERID and the file name has no specid"
    )
    ok = rec["status"] == "ok"
    rec["specid"] = ""
    rec.loc[ok, "specid"] = [make_specid(*v) for v in rec.loc[ok, parts].itertuples(index=False)]
    rec["obsid"] = rec["obsid"].fillna(-1).astype(np.int64)
    rec["rv_cat"] = np.nan
    rec["rv_err_cat"] = np.nan

    # catalog: join by obsid where the file has one, else by specid
    catalog_rejects = []
    if cfg.catalog is not None:
        cat, row_rejects = read_catalog(cfg.catalog)
        catalog_rejects.append(row_rejects.assign(batch=batch))
        cat = cat.reset_index(names="catalog_row")  # the index is the row's position in the file
        cat["specid"] = (
            [make_specid(*v) for v in cat[parts].itertuples(index=False)] if set(parts) <= set(cat.columns) else ""
        )
        dup = (cat["obsid"] > 0) & cat["obsid"].duplicated(keep=False)
        keyed = pd.concat(
            [
                cat[(cat["obsid"] > 0) & ~dup].set_axis("o" + cat.loc[(cat["obsid"] > 0) & ~dup, "obsid"].astype(str)),
                cat[cat["specid"] != ""]
                .drop_duplicates("specid", keep=False)
                .pipe(lambda c: c.set_axis("s" + c["specid"])),
            ]
        )
        keyed = keyed[~keyed.index.duplicated()]
        key = np.where(rec["obsid"] > 0, "o" + rec["obsid"].astype(str), "s" + rec["specid"])
        joined = keyed.reindex(key).set_axis(rec.index)
        found = ok & joined["catalog_row"].notna()
        ambiguous = ok & ~found & rec["obsid"].isin(cat.loc[dup, "obsid"])
        _reject(
            rec,
            ambiguous,
            "ambiguous_catalog_row",
            [f"obsid {o} appears in more than one row of {cfg.catalog}" for o in rec.loc[ambiguous, "obsid"]],
        )
        missing = ok & ~found & ~ambiguous
        left_out = (
            f" ({len(row_rejects)} row(s) of the catalog were left out for bad values, see their rejects; "
            "fix the row if one is this file's)"
            if len(row_rejects)
            else ""
        )
        _reject(
            rec,
            missing,
            "no_catalog_row",
            [
                f"no row of {cfg.catalog} has obsid {o} (or specid {s}); add it to the catalog or ingest without one"
                f"{left_out}"
                for o, s in zip(rec.loc[missing, "obsid"], rec.loc[missing, "specid"])
            ],
        )
        for col in joined.columns:
            if col in _CATALOG and col not in ("obsid", *parts, "rv", "rv_err"):
                # the catalog's values take precedence over the header's where it has them (an empty string
                # is none: a catalog without a subclass keeps the header's)
                given = joined[col].notna() & (joined[col].astype(str).str.strip() != "")
                rec[col] = joined[col].where(found & given, rec[col] if col in rec else np.nan)
        if "rv" in joined:
            rec["rv_cat"] = pd.to_numeric(joined["rv"], errors="coerce").where(found)
        if "rv_err" in joined:
            rec["rv_err_cat"] = pd.to_numeric(joined["rv_err"], errors="coerce").where(found)
        # A catalog row has a file if any input — accepted or rejected — carries its obsid or its specid
        # (from the header, or from the file name when the file could not be read).
        file_specids = set(rec["specid"]) | {_specid_from_name(p) for p in rec["path"]}
        has_file = cat["obsid"].isin(rec.loc[rec["obsid"] > 0, "obsid"]) | cat["specid"].isin(file_specids)
        orphans = cat[~has_file & ~cat["specid"].isin(existing_specids)]
        catalog_rejects.append(
            pd.DataFrame(
                {
                    "stage": "ingest",
                    "source": [f"{cfg.catalog}#row={r}" for r in orphans["catalog_row"]],
                    "specid": orphans["specid"].astype(str),
                    "code": np.where(
                        orphans["obsid"].isin(cat.loc[dup, "obsid"]),
                        "duplicate_catalog_row",
                        "catalog_row_without_file",
                    ),
                    "reason": [
                        f"catalog row {r} (obsid {o}) has no file in {cfg.input}"
                        for r, o in zip(orphans["catalog_row"], orphans["obsid"])
                    ],
                    "batch": batch,
                }
            )
        )
    ok = rec["status"] == "ok"

    # LAMOST classification (the catalog's where it has one, else the header's): ingest.classes keeps some
    if cfg.classes is not None:
        wanted = {c.upper() for c in cfg.classes}
        cls = rec["class"].astype(object).fillna("").astype(str).str.strip()
        sub = rec["subclass"].astype(object).fillna("").astype(str).str.strip()
        kept = pd.Series([bool(lamost_class_names(c, s) & wanted) for c, s in zip(cls, sub)], index=rec.index)
        unselected = ok & ~kept
        _reject(
            rec,
            unselected,
            "class_not_selected",
            [
                f"LAMOST class {c or '?'}, subclass {s or '?'} is not among ingest.classes [{', '.join(cfg.classes)}]; "
                "add it there (or set ingest.classes: null) to ingest it"
                for c, s in zip(cls[unselected], sub[unselected])
            ],
        )
        ok = rec["status"] == "ok"

    # radial velocity: the catalog's, else Z·c from the header; none for a QSO or a galaxy (its redshift is no
    # stellar RV: kept in the observed frame with rv NaN, neither no_rv nor rv_out_of_range, flagged downstream)
    non_stellar = pd.Series(is_non_stellar(rec["class"].to_numpy()), index=rec.index)
    use_cat = rec["rv_cat"].notna() & (cfg.rv_source != "header") & ~non_stellar
    header_ok = cfg.rv_source != "catalog"
    rv_values = np.where(use_cat, rec["rv_cat"], rec["z"] * C_KMS if header_ok else np.nan)
    rec["rv"] = pd.to_numeric(pd.Series(rv_values, index=rec.index), errors="coerce").astype("float64")
    rec.loc[non_stellar, "rv"] = np.nan
    rec["rv_err"] = np.where(use_cat, rec["rv_err_cat"], rec["z_err"] * C_KMS if header_ok else np.nan)
    rec.loc[non_stellar, "rv_err"] = np.nan
    rec["rv_source"] = np.where(use_cat, "catalog", np.where(rec["rv"].notna(), "header", ""))

    # header values and coverage of the grid
    ra, dec, rv = rec["ra"], rec["dec"], rec["rv"]
    bad_pos = ok & ~((ra >= 0) & (ra < 360) & (dec >= -90) & (dec <= 90))
    _reject(
        rec,
        bad_pos,
        "header_out_of_range",
        [f"RA/Dec ({a}, {d}) missing or outside [0, 360) × [-90, 90] deg" for a, d in zip(ra[bad_pos], dec[bad_pos])],
    )
    ok = rec["status"] == "ok"
    no_rv = ok & ~np.isfinite(rv) & ~non_stellar
    _reject(
        rec,
        no_rv,
        "no_rv",
        [
            _no_rv_reason(o, s, z, r, cfg.rv_source, cfg.catalog)
            for o, s, z, r in rec.loc[no_rv, ["obsid", "specid", "z", "rv_cat"]].itertuples(index=False)
        ],
    )
    ok = rec["status"] == "ok"
    bad_rv = ok & ~(rv.abs() <= cfg.max_abs_rv) & ~non_stellar
    _reject(
        rec,
        bad_rv,
        "rv_out_of_range",
        [
            f"radial velocity {v:.0f} km/s ({src}) is beyond ±{cfg.max_abs_rv:.0f} km/s "
            f"(class {c or '?'}); raise ingest.max_abs_rv to keep it"
            for v, src, c in zip(rv[bad_rv], rec.loc[bad_rv, "rv_source"], rec.loc[bad_rv, "class"])
        ],
    )
    ok = rec["status"] == "ok"
    factor = 1.0 + rv.fillna(0) / C_KMS
    rec["coverage"] = grid_coverage(rec["wave_min"].fillna(0) / factor, rec["wave_max"].fillna(0) / factor)
    low = ok & (rec["coverage"] < cfg.min_coverage)
    _reject(
        rec,
        low,
        "no_overlap",
        [
            f"rest-frame wavelengths cover {c:.0%} of the 3750–9000 Å grid "
            f"(< ingest.min_coverage {cfg.min_coverage:.0%})"
            for c in rec.loc[low, "coverage"]
        ],
    )

    # duplicates inside the batch: the file under LAMOST's own name for the specid wins, then the first path
    stems = [
        f"spec-{int(lmjd)}-{planid}_sp{int(spid):02d}-{int(fib):03d}" if status == "ok" else ""
        for lmjd, planid, spid, fib, status in rec[[*parts, "status"]].itertuples(index=False)
    ]
    canonical = [Path(p).name.split(".")[0] == stem for p, stem in zip(rec["path"], stems)]
    rec["_alias"] = ~np.array(canonical, dtype=bool)
    rec = rec.sort_values(["specid", "_alias", "path"], kind="stable").reset_index(drop=True)
    ok = rec["status"] == "ok"
    dup = pd.Series(False, index=rec.index)
    dup[ok] = rec.loc[ok, "specid"].duplicated(keep="first")
    first = rec[ok & ~dup].set_index("specid")["path"]
    _reject(
        rec,
        dup,
        "duplicate_specid",
        [f"specid {s} is also in {first[s]} (ingested once, from that file)" for s in rec.loc[dup, "specid"]],
    )
    ok = rec["status"] == "ok"
    already = rec[ok & rec["specid"].isin(existing_specids)]
    accepted = rec[ok & ~rec["specid"].isin(existing_specids)].reset_index(drop=True)

    # the plan: path, size, mtime and the cube's metadata columns (a fixed schema)
    accepted["fitsname"] = [Path(p).name for p in accepted["path"]]
    accepted["source_path"] = accepted["path"]
    accepted["star_id"] = make_star_id(accepted["ra"], accepted["dec"])
    accepted["release"] = [_release_name(v, cfg.release) for v in accepted["data_v"]]
    accepted["batch"] = batch
    accepted["file_origin"] = np.where(
        accepted["tsource"].astype(object).fillna("").astype(str).str.strip() == MOCK_TSOURCE,
        ORIGIN_MOCK,
        ORIGIN_LAMOST,
    )
    plan = accepted[["path", "size", "mtime_ns"]].copy()
    for out in METADATA:
        values = accepted[out.name] if out.name in accepted else pd.Series(_FILL[out.dtype], index=accepted.index)
        if out.dtype == "str":
            plan[out.name] = values.fillna("").astype(str).str.strip()
        else:
            plan[out.name] = pd.to_numeric(values, errors="coerce").fillna(_FILL[out.dtype]).astype(out.dtype)
    xmatch_rejects = []
    if cfg.crossmatch is not None:
        xm, row_rejects = read_crossmatch(cfg.crossmatch)
        plan = _add_crossmatch(plan, xm)
        xmatch_rejects.append(row_rejects.assign(batch=batch))
    frames = [_reject_frame(rec[rec["status"] == "rejected"], batch), *catalog_rejects, *xmatch_rejects]
    rejects = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else frames[0]
    return plan, rejects.reindex(columns=list(REJECT_COLUMNS)), already


def _no_rv_reason(obsid: int, specid: str, z: float, rv_cat: float, rv_source: str, catalog: Path | None) -> str:
    """Why a spectrum has no usable radial velocity, and what would give it one."""
    who = f"obsid {obsid}" if obsid > 0 else f"specid {specid}"
    z, rv_cat = _as_number(z), _as_number(rv_cat)
    if catalog is None:
        cat = "no release catalog is configured (ingest.catalog)"
    elif np.isnan(rv_cat):
        cat = f"the catalog {catalog} has no rv for {who}"
    else:
        cat = f"the catalog's rv for {who} is {rv_cat} (not finite)"
    header = "the header Z is missing or NaN" if np.isnan(z) else f"the header Z is {z} (not finite)"
    add = f"add the rv (km/s) of {who} to the release catalog (column rv, ingest.catalog)"
    if rv_source == "catalog":
        if np.isfinite(z):
            advice = f"{add}, or set ingest.rv_source to 'auto' to fall back on the header's Z·c"
        else:
            advice = f"{add} ({header} too, so no other ingest.rv_source would help)"
        return f"no radial velocity: ingest.rv_source is 'catalog' and {cat}; {advice}"
    if rv_source == "header":
        if np.isfinite(rv_cat):
            advice = "set ingest.rv_source to 'auto' (or 'catalog') to use the catalog's rv"
        else:
            advice = f"{add} and set ingest.rv_source to 'auto'"
        return f"no radial velocity: ingest.rv_source is 'header' and {header}; {advice}"
    return f"no radial velocity: {cat} and {header}; {add}"


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
