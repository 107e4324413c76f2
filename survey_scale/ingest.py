"""Ingest LAMOST FITS files into the cube — the first stage on the runner (SPEC §2).

An ingest adds one **batch** (a directory of files, with or without the release catalog and cross-match
table) in four resumable steps, each recorded under ``<cube>/_survey_scale/ingest/batch-NNNN/``:

1. **inspect** (Dask, blocks of ``ingest.files_per_task`` files): read every new file completely, check it
   (structure, all-NaN flux, negative ivar, wavelength order) and extract its header metadata. Files already
   in the cube (same path) are not read again. Each block's result is saved, so a re-run skips it.
2. **plan** (client): build specids from the headers, join the catalog (by obsid, or by specid for files
   without OBSID) and the cross-match table, take the radial velocity (catalog, else Z·c from the header),
   check header ranges and grid coverage, drop specids already in the cube, report duplicates, and give
   each accepted file a row (sorted by specid). Rejects — files and catalog rows — are written with a
   reason a person can act on. The plan is saved before the cube changes.
3. **allocate**: grow every per-spectrum array of the cube to the new length.
4. **write** (the ``ingest`` stage on :mod:`survey_scale.runner`): per shard-aligned chunk, re-read the
   planned files, shift to the rest frame, resample flux and ivar onto the grid
   (:func:`survey_scale.resample.resample_to_grid`) and write them with the metadata.

Every file found ends up in the cube or in ``rejects``: ``n_files = n_ingested + n_rejected``, where
``n_ingested`` counts new spectra and those already in the cube. A re-ingest of the same directory is a
no-op; a killed ingest resumes its pending batch and ends with the same store as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from distributed import Client, as_completed
from tqdm.auto import tqdm

from survey_scale.config import Config
from survey_scale.cube import (
    atomic_write_json,
    create_cube,
    meta_dir,
    open_group,
    read_column,
    resize_spec,
    spec_length,
)
from survey_scale.io.catalog import CATALOG_COLUMNS, CROSSMATCH_COLUMNS, read_catalog, read_crossmatch
from survey_scale.io.lamost import LamostReadError, LamostSpectrum, read_lamost
from survey_scale.resample import C_KMS, grid_coverage, resample_to_grid, rest_frame
from survey_scale.runner import ChunkContext, Output, Stage, StageResult, rebuild_rejects, run_stage

log = logging.getLogger(__name__)

INGEST_STAGE_VERSION = "1"

# --- per-spectrum metadata written by the ingest ------------------------------------------------------

_CATALOG = {c.name: c for c in CATALOG_COLUMNS}
_XMATCH = {c.name: c for c in CROSSMATCH_COLUMNS}


def _col(name: str, dtype: str, unit: str, description: str) -> Output:
    return Output(
        name, dtype, ("spec",), {"units": unit, "long_name": description} if unit else {"long_name": description}
    )


METADATA: tuple[Output, ...] = (
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
    _col("rv", "float32", "km s-1", "heliocentric radial velocity used for the rest-frame shift"),
    _col("rv_err", "float32", "km s-1", "radial velocity uncertainty"),
    _col("rv_source", "str", "", "catalog or header (Z*c)"),
    _col("z", "float64", "", "redshift in the header"),
    _col("class", "str", "", "LAMOST class"),
    _col("subclass", "str", "", "LAMOST subclass"),
    _col("coverage", "float32", "", "fraction of the common grid covered by the spectrum"),
    *(
        _col(c.name, "int64" if c.dtype == "int64" else "float32", c.unit, c.description)
        for c in CROSSMATCH_COLUMNS
        if c.name != "obsid"
    ),
)
"""Per-spectrum variables the ingest writes (all present in every cube; NaN / −1 / "" when unknown)."""

SPECTRA: tuple[Output, ...] = (
    Output("flux", "float32", ("spec", "wave")),
    Output("ivar", "float32", ("spec", "wave")),
    Output("pixmask", "uint8", ("spec", "wave")),
)

_FILL = {"str": "", "int64": -1, "int32": -1, "int16": -1, "float32": np.nan, "float64": np.nan}


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
}
_HEADER_STRINGS = {"planid", "class", "subclass", "data_v"}


def _as_number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def _specid_from_name(path: str) -> str:
    match = _FILENAME.search(Path(path).name)
    return make_specid(*match.groups()) if match else ""


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
    return None


def inspect_file(path: str) -> dict[str, Any]:
    """Read and check one file; its metadata and ``status`` (``ok`` or ``rejected`` with code/reason)."""
    record: dict[str, Any] = {"path": path}
    try:
        stat = os.stat(path)
        record.update(size=stat.st_size, mtime_ns=stat.st_mtime_ns)
        sp = read_lamost(path)
    except LamostReadError as exc:
        return {**record, "status": "rejected", "code": exc.code, "reason": exc.message}
    except OSError as exc:
        return {**record, "status": "rejected", "code": "unreadable", "reason": str(exc)}
    record.update(header_metadata(sp))
    problem = check_content(sp)
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


def inspect_block(paths: list[str], out: str) -> int:
    """Inspect a block of files and save the records as Parquet at ``out`` (atomically)."""
    table = pd.DataFrame([inspect_file(p) for p in paths]).reindex(columns=RECORD_COLUMNS)
    for col in RECORD_COLUMNS:
        if col in _HEADER_STRINGS or col in ("path", "status", "code", "reason", "layout"):
            table[col] = table[col].map(lambda v: "" if pd.isna(v) else str(v))
        elif col in ("size", "mtime_ns"):
            table[col] = pd.to_numeric(table[col], errors="coerce").fillna(-1).astype("int64")
        else:
            table[col] = pd.to_numeric(table[col], errors="coerce").astype("float64")
    target = Path(out)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    table.to_parquet(tmp, index=False)
    os.replace(tmp, target)
    return len(table)


# --- the write stage (pure function on a chunk) ------------------------------------------------------


def load_chunk_files(start: int, stop: int, params: Mapping[str, Any]) -> dict[str, Any]:
    """Inputs of one write chunk: the planned rows and their spectra, read again from the files."""
    plan = pd.read_parquet(params["plan"])
    rows = plan.iloc[start - params["row0"] : stop - params["row0"]]
    spectra = []
    for path, size, mtime in zip(rows["path"], rows["size"], rows["mtime_ns"]):
        stat = os.stat(path)
        if stat.st_size != size or stat.st_mtime_ns != mtime:
            raise RuntimeError(f"{path}: the file changed after it was inspected; re-run the ingest")
        spectra.append(read_lamost(path))
    return {"plan": rows, "spectra": spectra}


def resample_chunk(inputs: Mapping[str, Any], params: Mapping[str, Any], ctx: ChunkContext) -> StageResult:
    """Resample a chunk of planned spectra onto the grid and assemble their metadata (pure)."""
    rows: pd.DataFrame = inputs["plan"]
    n = len(rows)
    flux = np.empty((n, 3802), np.float32)
    ivar = np.empty_like(flux)
    pixmask = np.empty(flux.shape, np.uint8)
    coverage = np.empty(n, np.float32)
    for i, (sp, rv) in enumerate(zip(inputs["spectra"], rows["rv"].to_numpy(np.float64))):
        flux[i], ivar[i], pixmask[i], coverage[i] = resample_to_grid(
            rest_frame(sp.wavelength, rv),
            sp.flux,
            sp.ivar,
            sp.andmask,
            sp.ormask,
            min_good_fraction=params["min_good_fraction"],
            mask_andmask=params["mask_andmask"],
        )
    outputs: dict[str, np.ndarray] = {"flux": flux, "ivar": ivar, "pixmask": pixmask, "coverage": coverage}
    for out in METADATA:
        if out.name not in outputs:
            outputs[out.name] = rows[out.name].to_numpy()
    return StageResult(outputs)


def ingest_stage(plan_path: Path, row0: int, config: Config) -> Stage:
    """The ``ingest`` write stage for a planned batch."""
    params = {
        "plan": str(plan_path),
        "row0": row0,
        "min_good_fraction": config.ingest.min_good_fraction,
        "mask_andmask": config.ingest.mask_andmask,
    }
    return Stage(
        name="ingest",
        version=INGEST_STAGE_VERSION,
        func=resample_chunk,
        outputs=(*SPECTRA, *METADATA),
        params=params,
        load_inputs=load_chunk_files,
        block_rows=config.ingest.files_per_task,
    )


# --- planning ------------------------------------------------------------------------------------------


@dataclass
class IngestSummary:
    """Counts of one ingest (SPEC §2): ``n_files = n_new + n_already + n_rejected``."""

    batch: int
    n_files: int
    n_new: int
    n_already: int
    n_rejected: int
    n_catalog_rejected: int
    rows: tuple[int, int]

    @property
    def n_ingested(self) -> int:
        return self.n_new + self.n_already

    def balance_line(self) -> str:
        ok = "holds" if self.n_files == self.n_ingested + self.n_rejected else "DOES NOT HOLD"
        return (
            f"batch {self.batch}: n_files = n_ingested + n_rejected: {self.n_files} = {self.n_ingested} + "
            f"{self.n_rejected} ({self.n_new} new, {self.n_already} already in the cube) — {ok}; "
            f"{self.n_catalog_rejected} catalog row(s) rejected"
        )


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
    config: Config,
    batch: int,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Decide the rows and rejects of a batch from its inspect records (pure, deterministic).

    Parameters
    ----------
    records
        One inspect record per file (:data:`RECORD_COLUMNS`).
    existing_specids
        Specids already in the cube.
    config
        Configuration (``ingest`` section: catalog, RV source and limits).
    batch
        Batch number.

    Returns
    -------
    plan, rejects, already
        Accepted files with the cube's metadata columns, sorted by specid; file and catalog-row rejects
        (:data:`survey_scale.cube.REJECT_COLUMNS`); files whose specid is already in the cube.
    """
    cfg = config.ingest
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
        cat = read_catalog(cfg.catalog).reset_index(names="catalog_row")
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
        _reject(
            rec,
            missing,
            "no_catalog_row",
            [
                f"no row of {cfg.catalog} has obsid {o} (or specid {s}); add it to the catalog or ingest without one"
                for o, s in zip(rec.loc[missing, "obsid"], rec.loc[missing, "specid"])
            ],
        )
        for col in joined.columns:
            if col in _CATALOG and col not in ("obsid", *parts, "rv", "rv_err"):
                # the catalog's values take precedence over the header's where it has them
                rec[col] = joined[col].where(found & joined[col].notna(), rec[col] if col in rec else np.nan)
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

    # radial velocity: the catalog's, else Z·c from the header
    use_cat = rec["rv_cat"].notna() & (cfg.rv_source != "header")
    header_ok = cfg.rv_source != "catalog"
    rec["rv"] = np.where(use_cat, rec["rv_cat"], rec["z"] * C_KMS if header_ok else np.nan)
    rec["rv_err"] = np.where(use_cat, rec["rv_err_cat"], rec["z_err"] * C_KMS if header_ok else np.nan)
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
    bad_rv = ok & ~(rv.abs() <= cfg.max_abs_rv)
    _reject(
        rec,
        bad_rv,
        "rv_out_of_range",
        [
            f"radial velocity {v:.0f} km/s ({src or 'none'}) is missing or beyond ±{cfg.max_abs_rv:.0f} km/s "
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
    plan = accepted[["path", "size", "mtime_ns"]].copy()
    for out in METADATA:
        values = accepted[out.name] if out.name in accepted else pd.Series(_FILL[out.dtype], index=accepted.index)
        if out.dtype == "str":
            plan[out.name] = values.fillna("").astype(str).str.strip()
        else:
            plan[out.name] = pd.to_numeric(values, errors="coerce").fillna(_FILL[out.dtype]).astype(out.dtype)
    rejects = pd.concat([_reject_frame(rec[rec["status"] == "rejected"], batch), *catalog_rejects], ignore_index=True)
    return plan, rejects, already


def _join_crossmatch(plan: pd.DataFrame, path: Path | None) -> pd.DataFrame:
    if path is None or plan.empty:
        return plan
    xm = read_crossmatch(path).set_index("obsid")
    joined = plan[["obsid"]].join(xm, on="obsid")
    for name, col in _XMATCH.items():
        if name == "obsid" or name not in joined:
            continue
        dtype = "int64" if col.dtype == "int64" else "float32"
        plan[name] = pd.to_numeric(joined[name], errors="coerce").fillna(_FILL[dtype]).astype(dtype)
    return plan


# --- orchestration -------------------------------------------------------------------------------------


def _batch_dirs(cube: Path) -> list[Path]:
    return sorted((meta_dir(cube) / "ingest").glob("batch-*"))


def _state(batch_dir: Path) -> dict[str, Any]:
    return json.loads((batch_dir / "state.json").read_text())


def _set_state(batch_dir: Path, state: dict[str, Any], **changes: Any) -> dict[str, Any]:
    state = {**state, **changes}
    atomic_write_json(batch_dir / "state.json", state)
    return state


def ingest_with_client(config: Config, client: Client, *, progress: bool = True) -> list[IngestSummary]:
    """Ingest ``config.ingest.input`` into ``config.cube.path`` on an existing Dask client.

    A batch left unfinished by an earlier, interrupted ingest is completed first (with its own inputs). The
    caller must hold the cube's writer lock (:class:`survey_scale.lock.WriterLock`).
    """
    cube = Path(config.cube.path)
    summaries = []
    for batch_dir in _batch_dirs(cube):
        state = _state(batch_dir)
        if state["phase"] != "complete":
            log.info(
                "resuming unfinished ingest batch %d (input %s)", state["batch"], state["config"]["ingest"]["input"]
            )
            pending = Config.model_validate(state["config"])
            summaries.append(_run_batch(pending, client, batch_dir, state, progress))
    if config.ingest.input is not None:
        batch_dir, state = _new_batch(config)
        summaries.append(_run_batch(config, client, batch_dir, state, progress))
    return summaries


def _new_batch(config: Config) -> tuple[Path, dict[str, Any]]:
    cube = Path(config.cube.path)
    existing = _batch_dirs(cube)
    batch = int(existing[-1].name.split("-")[1]) + 1 if existing else 1
    batch_dir = meta_dir(cube) / "ingest" / f"batch-{batch:04d}"
    batch_dir.mkdir(parents=True)
    state = {"batch": batch, "phase": "inspect", "config": json.loads(config.model_dump_json())}
    return batch_dir, _set_state(batch_dir, state)


def _run_batch(config: Config, client: Client, batch_dir: Path, state: dict[str, Any], progress: bool) -> IngestSummary:
    cube = Path(config.cube.path)
    cfg = config.ingest
    batch = state["batch"]
    if state["phase"] == "inspect":
        if "todo" not in state:  # the file list is fixed at the first attempt, so a resume sees the same blocks
            files = find_files(Path(cfg.input), cfg.patterns)
            root = open_group(cube)
            known = set(read_column(root, "source_path")) if "source_path" in root else set()
            todo = [str(p) for p in files if str(p) not in known]
            state = _set_state(
                batch_dir, state, n_files=len(files), n_skipped_by_path=len(files) - len(todo), todo=todo
            )
        records = _inspect(client, state["todo"], batch_dir, cfg.files_per_task, progress)
        root = open_group(cube)
        existing = set(read_column(root, "specid")) if "specid" in root else set()
        n_old = spec_length(root)
        plan, rejects, already = plan_batch(records, existing, config, batch)
        plan = _join_crossmatch(plan, cfg.crossmatch)
        plan.to_parquet(batch_dir / "plan.parquet", index=False)
        _record_rejects(cube, batch, rejects)
        state = _set_state(
            batch_dir,
            state,
            phase="planned",
            n_old=n_old,
            n_new=len(plan),
            n_already=len(already) + state["n_skipped_by_path"],
            n_rejected=int((rejects["source"].isin(records["path"])).sum()),
            n_catalog_rejected=int((~rejects["source"].isin(records["path"])).sum()),
        )
    n_old, n_new = state["n_old"], state["n_new"]
    if state["phase"] == "planned":
        if spec_length(open_group(cube)) != n_old + n_new:
            resize_spec(cube, n_old + n_new)
        state = _set_state(batch_dir, state, phase="allocated")
    if state["phase"] == "allocated":
        if n_new:
            run_stage(
                cube,
                ingest_stage(batch_dir / "plan.parquet", n_old, config),
                client,
                rows=(n_old, n_old + n_new),
                progress=progress,
            )
        else:
            rebuild_rejects(cube)
        state = _set_state(batch_dir, state, phase="complete")
    summary = IngestSummary(
        batch,
        state["n_files"],
        n_new,
        state["n_already"],
        state["n_rejected"],
        state["n_catalog_rejected"],
        (n_old, n_old + n_new),
    )
    log.info(summary.balance_line())
    return summary


def _inspect(client: Client, paths: list[str], batch_dir: Path, per_task: int, progress: bool) -> pd.DataFrame:
    folder = batch_dir / "inspect"
    folder.mkdir(exist_ok=True)
    blocks = [paths[i : i + per_task] for i in range(0, len(paths), per_task)]
    targets = [folder / f"block-{i:06d}.parquet" for i in range(len(blocks))]
    pending = [(b, t) for b, t in zip(blocks, targets) if not t.exists()]
    log.info(
        "inspect: %d files in %d blocks (%d already inspected)", len(paths), len(blocks), len(blocks) - len(pending)
    )
    futures = [client.submit(inspect_block, b, str(t), pure=False) for b, t in pending]
    with tqdm(total=len(paths), desc="inspect", unit="file", disable=not progress) as bar:
        for future in as_completed(futures):
            bar.update(future.result())
    if not targets:
        return pd.DataFrame(columns=list(RECORD_COLUMNS))
    return pd.concat([pd.read_parquet(t) for t in targets], ignore_index=True)


def _record_rejects(cube: Path, batch: int, rejects: pd.DataFrame) -> None:
    folder = meta_dir(cube) / "rejects"
    folder.mkdir(parents=True, exist_ok=True)
    seen = set(rejects["source"])
    # A file rejected by an earlier batch and seen again now is judged by this batch alone.
    for older in sorted(folder.glob("ingest-batch-*.parquet")):
        table = pd.read_parquet(older)
        kept = table[~table["source"].isin(seen)]
        if len(kept) != len(table):
            kept.to_parquet(older, index=False)
    rejects.to_parquet(folder / f"ingest-batch-{batch:04d}.parquet", index=False)


def ingest(config: Config, *, progress: bool = True) -> list[IngestSummary]:
    """Ingest with a Dask client made from ``config.cluster`` (creating the cube if needed), under the lock."""
    from survey_scale.cluster import dask_client
    from survey_scale.lock import WriterLock

    cube = Path(config.cube.path)
    if not (cube / "zarr.json").exists():
        create_cube(cube, config.cube)
    with WriterLock(cube, config.runner.lock_stale_after_s), dask_client(config.cluster) as client:
        return ingest_with_client(config, client, progress=progress)
