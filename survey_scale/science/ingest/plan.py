"""Plan an ingest batch (SPEC §2), pure: inspect records and the user's tables in, rows and rejects out.

:func:`plan_batch` builds specids from the headers, joins the release catalog (by obsid, or by specid for
files without OBSID), keeps the LAMOST classes asked for (:func:`lamost_class_names`), takes the radial
velocity (catalog, else Z·c from the header; none for a non-stellar CLASS, QSO or GALAXY, which is kept
unshifted with rv NaN and flagged downstream, SPEC §13), checks header ranges and grid coverage, drops specids
already in the cube, reports duplicates, gives each accepted file a row (sorted by specid;
:func:`survey_scale.science.ingest.rows.cube_rows`) and joins the Gaia / 2MASS / photometry columns of the
cross-match table; every rejected file, catalog row or cross-match row gets a reason a person can act on.

It reads no file: the step (:mod:`survey_scale.stages.ingest`) reads the catalog and the cross-match table
(:func:`survey_scale.io.input_tables.read_catalog`, :func:`~survey_scale.io.input_tables.read_crossmatch`) and passes
them as :class:`InputTable` s, with the ``ingest`` section's parameters.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from survey_scale.io.input_tables import CATALOG_COLUMNS, REJECT_COLUMNS
from survey_scale.science.ingest.inspect import RECORD_COLUMNS, as_number, specid_from_name
from survey_scale.science.ingest.rows import cube_rows, make_specid
from survey_scale.science.resample import C_KMS, grid_coverage

_CATALOG = {c.name: c for c in CATALOG_COLUMNS}

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


@dataclass(frozen=True)
class InputTable:
    """A user's table, already read (:func:`survey_scale.io.input_tables.read_catalog` or ``read_crossmatch``).

    ``rows``: the rows kept, indexed by their position in the file (0-based data row); ``row_rejects``: the
    rows left out for bad values (:data:`survey_scale.io.input_tables.REJECT_COLUMNS`, batch filled by the plan);
    ``name``: how messages name the table (its path, as in the row rejects' ``"{name}#row={i}"``).
    """

    rows: pd.DataFrame
    row_rejects: pd.DataFrame
    name: str


def isin_strings(column: pd.Series, values: Any) -> np.ndarray:
    """``column.isin(values)`` for a column of strings, as a bool array, by set lookups.

    pandas' ``isin`` on its pyarrow strings makes a pyarrow scalar of every value (0.2 s per 40,000 values): a
    planner comparing a release's paths or the cube's specids spent most of its time there.
    """
    among = values if isinstance(values, set | frozenset) else set(values)
    return np.fromiter((v in among for v in column.to_numpy(dtype=object)), dtype=bool, count=len(column))


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
    batch: int,
    *,
    catalog: InputTable | None = None,
    crossmatch: InputTable | None = None,
    input_name: str,
    classes: Sequence[str] | None = None,
    rv_source: str,
    max_abs_rv: float,
    min_coverage: float,
    release: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Decide the rows and rejects of a batch from its inspect records and tables (pure, deterministic).

    Parameters
    ----------
    records
        One inspect record per file (:data:`RECORD_COLUMNS`).
    existing_specids
        Specids already in the cube.
    batch
        Batch number.
    catalog
        The release catalog (``ingest.catalog``), or None: headers only.
    crossmatch
        The Gaia / 2MASS / photometry cross-match table (``ingest.crossmatch``), or None.
    input_name
        The input folder, as the reason of a catalog row without a file names it (``ingest.input``).
    classes
        LAMOST classes to keep (``ingest.classes``, :func:`lamost_class_names`); None keeps every class.
    rv_source
        ``"auto"`` (the catalog's rv, else the header's Z·c), ``"catalog"`` or ``"header"`` (``ingest.rv_source``).
    max_abs_rv
        km/s; a star with a larger |rv| is rejected (``ingest.max_abs_rv``).
    min_coverage
        Fraction of the grid the rest-frame spectrum must cover (``ingest.min_coverage``).
    release
        The release's name (``ingest.release``); None: from each header's DATA_V.

    Returns
    -------
    plan, rejects, already
        Accepted files with the cube's metadata columns (cross-match columns included), sorted by specid;
        the rejects (:data:`survey_scale.store.cube.REJECT_COLUMNS`) of files, of catalog rows and of
        cross-match rows (bad values, duplicate obsids; a row's source is ``"{table}#row={i}"``); files whose
        specid is already in the cube.
    """
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
    if catalog is not None:
        cat, row_rejects = catalog.rows, catalog.row_rejects
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
            [f"obsid {o} appears in more than one row of {catalog.name}" for o in rec.loc[ambiguous, "obsid"]],
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
                f"no row of {catalog.name} has obsid {o} (or specid {s}); add it to the catalog or ingest without one"
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
        file_specids = set(rec["specid"]) | {specid_from_name(p) for p in rec["path"].tolist()}
        has_file = cat["obsid"].isin(rec.loc[rec["obsid"] > 0, "obsid"]) | isin_strings(cat["specid"], file_specids)
        orphans = cat[~has_file & ~isin_strings(cat["specid"], existing_specids)]
        catalog_rejects.append(
            pd.DataFrame(
                {
                    "stage": "ingest",
                    "source": [f"{catalog.name}#row={r}" for r in orphans["catalog_row"]],
                    "specid": orphans["specid"].astype(str),
                    "code": np.where(
                        orphans["obsid"].isin(cat.loc[dup, "obsid"]),
                        "duplicate_catalog_row",
                        "catalog_row_without_file",
                    ),
                    "reason": [
                        f"catalog row {r} (obsid {o}) has no file in {input_name}"
                        for r, o in zip(orphans["catalog_row"], orphans["obsid"])
                    ],
                    "batch": batch,
                }
            )
        )
    ok = rec["status"] == "ok"

    # LAMOST classification (the catalog's where it has one, else the header's): ingest.classes keeps some
    if classes is not None:
        wanted = {c.upper() for c in classes}
        cls = rec["class"].astype(object).fillna("").astype(str).str.strip()
        sub = rec["subclass"].astype(object).fillna("").astype(str).str.strip()
        kept = pd.Series([bool(lamost_class_names(c, s) & wanted) for c, s in zip(cls, sub)], index=rec.index)
        unselected = ok & ~kept
        _reject(
            rec,
            unselected,
            "class_not_selected",
            [
                f"LAMOST class {c or '?'}, subclass {s or '?'} is not among ingest.classes [{', '.join(classes)}]; "
                "add it there (or set ingest.classes: null) to ingest it"
                for c, s in zip(cls[unselected], sub[unselected])
            ],
        )
        ok = rec["status"] == "ok"

    # radial velocity: the catalog's, else Z·c from the header; none for a QSO or a galaxy (its redshift is no
    # stellar RV: kept in the observed frame with rv NaN, neither no_rv nor rv_out_of_range, flagged downstream)
    non_stellar = pd.Series(is_non_stellar(rec["class"].to_numpy()), index=rec.index)
    use_cat = rec["rv_cat"].notna() & (rv_source != "header") & ~non_stellar
    header_ok = rv_source != "catalog"
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
            _no_rv_reason(o, s, z, r, rv_source, None if catalog is None else catalog.name)
            for o, s, z, r in rec.loc[no_rv, ["obsid", "specid", "z", "rv_cat"]].itertuples(index=False)
        ],
    )
    ok = rec["status"] == "ok"
    bad_rv = ok & ~(rv.abs() <= max_abs_rv) & ~non_stellar
    _reject(
        rec,
        bad_rv,
        "rv_out_of_range",
        [
            f"radial velocity {v:.0f} km/s ({src}) is beyond ±{max_abs_rv:.0f} km/s "
            f"(class {c or '?'}); raise ingest.max_abs_rv to keep it"
            for v, src, c in zip(rv[bad_rv], rec.loc[bad_rv, "rv_source"], rec.loc[bad_rv, "class"])
        ],
    )
    ok = rec["status"] == "ok"
    factor = 1.0 + rv.fillna(0) / C_KMS
    rec["coverage"] = grid_coverage(rec["wave_min"].fillna(0) / factor, rec["wave_max"].fillna(0) / factor)
    low = ok & (rec["coverage"] < min_coverage)
    _reject(
        rec,
        low,
        "no_overlap",
        [
            f"rest-frame wavelengths cover {c:.0%} of the 3750–9000 Å grid (< ingest.min_coverage {min_coverage:.0%})"
            for c in rec.loc[low, "coverage"]
        ],
    )

    # duplicates inside the batch: the file under LAMOST's own name for the specid wins, then the first path
    stems = [
        f"spec-{int(lmjd)}-{planid}_sp{int(spid):02d}-{int(fib):03d}" if status == "ok" else ""
        for lmjd, planid, spid, fib, status in rec[[*parts, "status"]].itertuples(index=False)
    ]
    canonical = [os.path.basename(p).split(".")[0] == stem for p, stem in zip(rec["path"].tolist(), stems)]
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
    in_cube = isin_strings(rec["specid"], existing_specids)
    already = rec[ok & in_cube]
    accepted = rec[ok & ~in_cube].reset_index(drop=True)

    # the plan: path, size, mtime and the cube's metadata columns (a fixed schema)
    plan = cube_rows(accepted, batch, release, None if crossmatch is None else crossmatch.rows)
    xmatch_rejects = [] if crossmatch is None else [crossmatch.row_rejects.assign(batch=batch)]
    frames = [_reject_frame(rec[rec["status"] == "rejected"], batch), *catalog_rejects, *xmatch_rejects]
    rejects = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else frames[0]
    return plan, rejects.reindex(columns=list(REJECT_COLUMNS)), already


def _no_rv_reason(obsid: int, specid: str, z: float, rv_cat: float, rv_source: str, catalog: str | None) -> str:
    """Why a spectrum has no usable radial velocity, and what would give it one."""
    who = f"obsid {obsid}" if obsid > 0 else f"specid {specid}"
    z, rv_cat = as_number(z), as_number(rv_cat)
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
