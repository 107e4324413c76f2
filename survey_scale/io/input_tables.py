"""The input tables of an ingest (SPEC §2): the release catalog (``ingest.catalog``) and the cross-match table.

Both tables are read from CSV, FITS (first table HDU) or Parquet, chosen by the file suffix. Column names
are matched case-insensitively against the aliases below (LAMOST's and Gaia/2MASS's own names, and the
cube's names) and renamed to the cube's names. Values of −9999 (LAMOST's missing value) become NaN.

Untrusted input never stops the read for one bad row: :func:`read_catalog` and :func:`read_crossmatch` return
``(table, row_rejects)``. A row with a bad value (a non-number in a numeric column, an obsid that is empty or
not an integer; in the cross-match table, an obsid on several rows) is left out of the table and reported in
``row_rejects`` (columns :data:`REJECT_COLUMNS`, source ``"{path}#row={i}"``, ``i`` the 0-based data row).
Only problems of the whole table (unreadable file, unknown format, no ``obsid`` column) raise
:class:`CatalogError`.

Release catalog (one row per spectrum), joined to the files by ``obsid`` — or, for files whose header
carries no OBSID (early DR1–DR2 files), by ``specid`` built from ``lmjd``, ``planid``, ``spid``,
``fiberid``:

=============  =========================================  ====================================
cube name      accepted column names                      meaning
=============  =========================================  ====================================
obsid          obsid                                      LAMOST unique spectrum id (required)
lmjd           lmjd                                       local MJD of the plan (specid part)
planid         planid                                     plan id (specid part)
spid           spid                                       spectrograph 1–16 (specid part)
fiberid        fiberid                                    fibre 1–250 (specid part)
ra, dec        ra, dec                                    J2000 position, deg
mjd            mjd                                        MJD of the observation
snr_u…snr_z    snru, snrg, snrr, snri, snrz, snr_g, …     S/N per pixel in u, g, r, i, z
rv, rv_err     rv, rv_err                                 heliocentric radial velocity, km/s
z, z_err       z, z_err                                   redshift (rv = z·c when rv is absent)
class          class                                      LAMOST class (STAR, QSO, ...)
subclass       subclass                                   LAMOST subclass
lasp_teff      teff, teff_lasp                            LAMOST pipeline (LASP) Teff, K (optional)
lasp_logg      logg, logg_lasp                            LASP log g, dex (optional)
=============  =========================================  ====================================

The LASP parameters come from LAMOST's A, F, G and K star catalogs (columns ``teff``, ``logg``); a release
catalog without them gives NaN.

Cross-match table (Gaia, 2MASS and optical photometry), joined by ``obsid``:

==============  ==============================================  ==========================
cube name       accepted column names                           meaning
==============  ==============================================  ==========================
gaia_id         gaia_source_id, source_id, gaia_id              Gaia source id
parallax…       parallax, parallax_error                        mas
pmra…           pmra, pmra_error, pmdec, pmdec_error            mas/yr
ruwe            ruwe                                            Gaia RUWE
G, BP, RP       phot_g_mean_mag, phot_bp_mean_mag, ...          Gaia magnitudes (+ ``_err``)
J, H, Ks        j_m, h_m, ks_m / k_m (+ j_msigcom, ...)         2MASS magnitudes (+ ``_err``)
g, r, i         g_mag, r_mag, i_mag (+ g_mag_err, ...)          survey g/r/i (XSTPS-GAC, APASS)
==============  ==============================================  ==========================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from survey_scale.core.errors import SurveyScaleError

LAMOST_MISSING = -9999.0


@dataclass(frozen=True)
class Column:
    """One cube column filled from a table: its aliases in input tables and its dtype."""

    name: str
    aliases: tuple[str, ...]
    dtype: str
    unit: str
    description: str


def _c(name: str, aliases: tuple[str, ...], dtype: str, unit: str, description: str) -> Column:
    return Column(name, (name.lower(), *aliases), dtype, unit, description)


CATALOG_COLUMNS: tuple[Column, ...] = (
    _c("obsid", (), "int64", "", "LAMOST unique spectrum id"),
    _c("lmjd", (), "int64", "d", "local modified Julian day of the plan"),
    _c("planid", (), "str", "", "LAMOST plan id"),
    _c("spid", (), "int64", "", "spectrograph id"),
    _c("fiberid", (), "int64", "", "fibre id"),
    _c("ra", ("ra_obs",), "float64", "deg", "right ascension (J2000)"),
    _c("dec", ("dec_obs",), "float64", "deg", "declination (J2000)"),
    _c("mjd", (), "float64", "d", "modified Julian day of the observation"),
    _c("snr_u", ("snru", "sn_u"), "float32", "", "S/N per pixel, u band"),
    _c("snr_g", ("snrg", "sn_g"), "float32", "", "S/N per pixel, g band"),
    _c("snr_r", ("snrr", "sn_r"), "float32", "", "S/N per pixel, r band"),
    _c("snr_i", ("snri", "sn_i"), "float32", "", "S/N per pixel, i band"),
    _c("snr_z", ("snrz", "sn_z"), "float32", "", "S/N per pixel, z band"),
    _c("rv", ("rv_lasp", "helio_rv_star"), "float32", "km s-1", "heliocentric radial velocity"),
    _c("rv_err", ("rv_lasp_err",), "float32", "km s-1", "radial velocity uncertainty"),
    _c("z", (), "float64", "", "redshift from the LAMOST pipeline"),
    _c("z_err", (), "float64", "", "redshift uncertainty"),
    _c("class", (), "str", "", "LAMOST spectral class"),
    _c("subclass", (), "str", "", "LAMOST spectral subclass"),
    _c("lasp_teff", ("teff", "teff_lasp"), "float32", "K", "effective temperature from the LAMOST pipeline (LASP)"),
    _c("lasp_logg", ("logg", "logg_lasp"), "float32", "dex", "surface gravity log g from the LAMOST pipeline (LASP)"),
)

CROSSMATCH_COLUMNS: tuple[Column, ...] = (
    _c("obsid", (), "int64", "", "LAMOST unique spectrum id"),
    _c("gaia_id", ("gaia_source_id", "source_id"), "int64", "", "Gaia source id"),
    _c("parallax", ("plx",), "float32", "mas", "Gaia parallax (as published, no zero-point correction)"),
    _c("parallax_error", ("plx_err", "e_plx"), "float32", "mas", "parallax uncertainty"),
    _c("pmra", (), "float32", "mas yr-1", "proper motion in RA·cos(Dec)"),
    _c("pmra_error", (), "float32", "mas yr-1", "pmra uncertainty"),
    _c("pmdec", (), "float32", "mas yr-1", "proper motion in Dec"),
    _c("pmdec_error", (), "float32", "mas yr-1", "pmdec uncertainty"),
    _c("ruwe", (), "float32", "", "Gaia renormalised unit weight error"),
    _c("G", ("phot_g_mean_mag", "gmag"), "float32", "mag", "Gaia G"),
    _c("G_err", ("phot_g_mean_mag_error", "e_gmag"), "float32", "mag", "Gaia G uncertainty"),
    _c("BP", ("phot_bp_mean_mag", "bpmag"), "float32", "mag", "Gaia BP"),
    _c("BP_err", ("phot_bp_mean_mag_error", "e_bpmag"), "float32", "mag", "Gaia BP uncertainty"),
    _c("RP", ("phot_rp_mean_mag", "rpmag"), "float32", "mag", "Gaia RP"),
    _c("RP_err", ("phot_rp_mean_mag_error", "e_rpmag"), "float32", "mag", "Gaia RP uncertainty"),
    _c("J", ("j_m", "jmag"), "float32", "mag", "2MASS J"),
    _c("J_err", ("j_msigcom", "e_jmag", "j_cmsig"), "float32", "mag", "2MASS J uncertainty"),
    _c("H", ("h_m", "hmag"), "float32", "mag", "2MASS H"),
    _c("H_err", ("h_msigcom", "e_hmag", "h_cmsig"), "float32", "mag", "2MASS H uncertainty"),
    _c("Ks", ("ks_m", "k_m", "kmag"), "float32", "mag", "2MASS Ks"),
    _c("Ks_err", ("ks_msigcom", "k_msigcom", "e_kmag", "k_cmsig"), "float32", "mag", "2MASS Ks uncertainty"),
    _c("g", ("g_mag", "gmag_survey"), "float32", "mag", "survey g (XSTPS-GAC or APASS)"),
    _c("g_err", ("g_mag_err", "e_g_mag"), "float32", "mag", "survey g uncertainty"),
    _c("r", ("r_mag",), "float32", "mag", "survey r (XSTPS-GAC or APASS)"),
    _c("r_err", ("r_mag_err", "e_r_mag"), "float32", "mag", "survey r uncertainty"),
    _c("i", ("i_mag",), "float32", "mag", "survey i (XSTPS-GAC or APASS)"),
    _c("i_err", ("i_mag_err", "e_i_mag"), "float32", "mag", "survey i uncertainty"),
)

# Columns whose canonical (cube) name is case-sensitive: "G" (Gaia) vs "g" (survey), "H" vs "h_m".
_CASE_SENSITIVE = {"G", "g", "G_err", "g_err"}


class CatalogError(SurveyScaleError, ValueError):
    """A catalog or cross-match table cannot be used; the message names the file and column or row."""


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV, FITS or Parquet table into a DataFrame (no renaming).

    Raises
    ------
    CatalogError
        If the file is missing, of an unknown format or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"{path}: table file not found")
    suffixes = "".join(path.suffixes).lower()
    try:
        if suffixes.endswith((".csv", ".csv.gz", ".txt")):
            return pd.read_csv(path)
        if suffixes.endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
        if suffixes.endswith((".fits", ".fit", ".fits.gz", ".fit.gz")):
            from astropy.table import Table

            table = Table.read(path)
            # FITS strings arrive as bytes in some astropy versions; make them str.
            df = table.to_pandas()
            for col in df.columns:
                if df[col].dtype == object and len(df) and isinstance(df[col].iloc[0], bytes):
                    df[col] = df[col].str.decode("utf-8").str.strip()
            return df
    except Exception as exc:  # the reader libraries raise many types; name the file
        raise CatalogError(f"{path}: cannot read table: {type(exc).__name__}: {exc}") from exc
    raise CatalogError(f"{path}: unknown table format {suffixes!r} (use .csv, .fits or .parquet)")


def _rename(
    df: pd.DataFrame, columns: tuple[Column, ...], path: Path
) -> tuple[pd.DataFrame, dict[int, list[tuple[str, str]]]]:
    """Rename and type the recognized columns; the problems of each bad row (row -> ``(column, text)``)."""
    exact = {c.name: c for c in columns}
    by_lower: dict[str, Column] = {}
    for col in columns:
        for alias in col.aliases:
            # "G" (Gaia) and "g" (survey) differ only by case: match those two names exactly.
            if not (col.name in _CASE_SENSITIVE and alias == col.name.lower()):
                by_lower.setdefault(alias.lower(), col)
    out: dict[str, pd.Series] = {}
    problems: dict[int, list[tuple[str, str]]] = {}
    for raw in df.columns:
        col = exact.get(str(raw)) or by_lower.get(str(raw).lower())
        if col is not None and col.name not in out:
            out[col.name], bad = _coerce(df[raw], col, path)
            for row, text in bad:
                problems.setdefault(row, []).append((col.name, text))
    return pd.DataFrame(out, index=df.index), problems


def _show(value: object) -> str:
    """A table value as a person reads it: strings quoted, numpy scalars as plain numbers."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _coerce(series: pd.Series, col: Column, path: Path) -> tuple[pd.Series, list[tuple[int, str]]]:
    """The column in its cube dtype, and ``(row, problem)`` for each value that is not of that type.

    A bad value is replaced by the column's fill (−1 or NaN) so that the dtype holds; its row is left out by
    the caller.
    """
    if col.dtype == "str":
        return series.astype("string").str.strip().fillna(""), []
    values = pd.to_numeric(series, errors="coerce")
    if pd.api.types.is_numeric_dtype(series.dtype):  # parsed as numbers already: nothing failed to convert
        bad = np.zeros(len(series), dtype=bool)
    else:
        text = series.astype("string").str.strip()
        bad = (values.isna() & series.notna() & (text != "")).to_numpy()
    problems = [
        (int(i), f"{path}: column {series.name!r} row {i}: {_show(series.iloc[i])} is not a number")
        for i in np.flatnonzero(bad)
    ]
    if col.dtype.startswith("int"):
        empty = values.isna().to_numpy() & ~bad
        if values.dtype.kind == "f":
            with np.errstate(invalid="ignore"):
                fractional = (values.notna() & ((values % 1 != 0) | (values.abs() >= 2.0**63))).to_numpy()
            problems += [
                (int(i), f"{path}: column {series.name!r} row {i}: {_show(series.iloc[i])} is not an integer")
                for i in np.flatnonzero(fractional)
            ]
            values = values.where(~fractional)
        if col.name == "obsid":
            problems += [
                (int(i), f"{path}: column {series.name!r} row {i} is empty (every row needs an obsid)")
                for i in np.flatnonzero(empty)
            ]
        return values.fillna(-1).astype(col.dtype), problems
    values = values.astype("float64").where(values != LAMOST_MISSING)
    return values.astype(col.dtype), problems


REJECT_COLUMNS = ("stage", "source", "specid", "code", "reason", "batch")
"""Columns of the row rejects returned by :func:`read_catalog` and :func:`read_crossmatch`: those of the cube's
rejects table (``survey_scale.store.cube.REJECT_COLUMNS``, which this layer may not import)."""


def _row_rejects(path: Path, rows: dict[int, tuple[str, str]]) -> pd.DataFrame:
    """Rejects of table rows (row position -> ``(code, reason)``), sorted by row; ``batch`` −1 (set by the caller)."""
    order = sorted(rows)
    return pd.DataFrame(
        {
            "stage": pd.Series(["ingest"] * len(order), dtype=object),
            "source": pd.Series([f"{path}#row={i}" for i in order], dtype=object),
            "specid": pd.Series([""] * len(order), dtype=object),
            "code": pd.Series([rows[i][0] for i in order], dtype=object),
            "reason": pd.Series([rows[i][1] for i in order], dtype=object),
            "batch": pd.Series([-1] * len(order), dtype=np.int64),
        },
        columns=list(REJECT_COLUMNS),
    )


def _read(
    path: Path, columns: tuple[Column, ...], what: str, code: str
) -> tuple[pd.DataFrame, dict[int, tuple[str, str]], set[int]]:
    """Read, rename and type a table; raise for a whole-table problem.

    Returns the table (all rows), the rows with a bad value (row -> ``(code, reason)``) and, among them, those
    whose obsid itself is bad.
    """
    df, problems = _rename(read_table(path).reset_index(drop=True), columns, path)
    if "obsid" not in df:
        raise CatalogError(f"{path}: {what} has no 'obsid' column (needed to join)")
    rejected = {
        row: (code, "; ".join(text for _, text in found) + "; the row is left out") for row, found in problems.items()
    }
    bad_obsid = {row for row, found in problems.items() if any(name == "obsid" for name, _ in found)}
    return df, rejected, bad_obsid


def read_catalog(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a release catalog and rename its columns to the cube's names (see module docstring).

    A row with a bad value (a non-number in a numeric column, an obsid that is empty or not an integer) does
    not stop the read: it is left out of the table and reported as a row reject (code ``bad_catalog_value``,
    reason naming the file, row, column and value).

    Returns
    -------
    table : pandas.DataFrame
        One row per usable catalog entry with the recognized columns; ``obsid`` is always present. The index
        is each row's position in the file (0-based, header excluded), so row numbers stay those of the file.
    row_rejects : pandas.DataFrame
        One row per rejected catalog row, columns :data:`REJECT_COLUMNS`: ``stage`` "ingest", ``source``
        ``"{path}#row={i}"``, ``specid`` "", ``batch`` −1 (the caller sets its batch).

    Raises
    ------
    CatalogError
        If the table is unreadable or has no ``obsid`` column (problems of the whole table).
    """
    path = Path(path)
    df, rejected, _ = _read(path, CATALOG_COLUMNS, "release catalog", "bad_catalog_value")
    df = df.drop(index=list(rejected))
    if "rv" not in df and "z" in df:
        df["rv"] = (df["z"] * 299792.458).astype("float32")
        if "z_err" in df:
            df["rv_err"] = (df["z_err"] * 299792.458).astype("float32")
    return df, _row_rejects(path, rejected)


def read_crossmatch(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a cross-match table (Gaia, 2MASS, photometry) and rename its columns to the cube's names.

    Bad rows do not stop the read; they are left out of the table and reported as row rejects:

    - ``bad_crossmatch_value``: a non-number in a numeric column, an obsid that is empty or not an integer;
    - ``duplicate_crossmatch_row``: an obsid on more than one row. Which row holds its values is ambiguous,
      so *all* its rows are rejected, each reason naming the rows. The spectra of that obsid are not
      rejected: they simply get no cross-match values (−1 / NaN), as photometry is optional.

    Returns
    -------
    table : pandas.DataFrame
        The usable rows (unique obsids), indexed by their position in the file (0-based, header excluded).
    row_rejects : pandas.DataFrame
        One row per rejected row, columns :data:`REJECT_COLUMNS` (``batch`` −1: the caller sets its batch).

    Raises
    ------
    CatalogError
        If the table is unreadable or has no ``obsid`` column (problems of the whole table).
    """
    path = Path(path)
    df, rejected, bad_obsid = _read(path, CROSSMATCH_COLUMNS, "cross-match table", "bad_crossmatch_value")
    usable = df.drop(index=list(bad_obsid))
    dup = usable[usable["obsid"].duplicated(keep=False)]
    for obsid, index in dup.groupby("obsid").groups.items():
        rows = sorted(int(r) for r in index)
        text = (
            f"obsid {int(obsid)} appears more than once (rows {', '.join(map(str, rows))}): which row holds its "
            "values is ambiguous, so all its rows are left out and its spectra get no cross-match values"
        )
        for row in rows:
            if row in rejected:
                rejected[row] = (rejected[row][0], f"{rejected[row][1]}; also, {text}")
            else:
                rejected[row] = ("duplicate_crossmatch_row", f"{path}: row {row}: {text}")
    return df.drop(index=list(rejected)), _row_rejects(path, rejected)
