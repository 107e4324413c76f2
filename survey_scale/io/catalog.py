"""Release catalogs and cross-match tables (SPEC §2).

Both tables are read from CSV, FITS (first table HDU) or Parquet, chosen by the file suffix. Column names
are matched case-insensitively against the aliases below (LAMOST's and Gaia/2MASS's own names, and the
cube's names) and renamed to the cube's names. Values of −9999 (LAMOST's missing value) become NaN.

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
=============  =========================================  ====================================

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


def _rename(df: pd.DataFrame, columns: tuple[Column, ...], path: Path) -> pd.DataFrame:
    exact = {c.name: c for c in columns}
    by_lower: dict[str, Column] = {}
    for col in columns:
        for alias in col.aliases:
            # "G" (Gaia) and "g" (survey) differ only by case: match those two names exactly.
            if not (col.name in _CASE_SENSITIVE and alias == col.name.lower()):
                by_lower.setdefault(alias.lower(), col)
    out: dict[str, pd.Series] = {}
    for raw in df.columns:
        col = exact.get(str(raw)) or by_lower.get(str(raw).lower())
        if col is not None and col.name not in out:
            out[col.name] = _coerce(df[raw], col, path)
    return pd.DataFrame(out, index=df.index)


def _coerce(series: pd.Series, col: Column, path: Path) -> pd.Series:
    if col.dtype == "str":
        return series.astype("string").str.strip().fillna("")
    values = pd.to_numeric(series, errors="coerce")
    bad = values.isna() & series.notna() & (series.astype("string").str.strip() != "")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise CatalogError(f"{path}: column {series.name!r} row {row}: {series.iloc[row]!r} is not a number")
    if col.dtype.startswith("int"):
        if values.isna().any():
            if col.name == "obsid":
                row = int(np.flatnonzero(values.isna().to_numpy())[0])
                raise CatalogError(f"{path}: column 'obsid' row {row} is empty")
            return values.fillna(-1).astype(col.dtype)
        return values.astype(col.dtype)
    values = values.astype("float64").where(values != LAMOST_MISSING)
    return values.astype(col.dtype)


def read_catalog(path: str | Path) -> pd.DataFrame:
    """Read a release catalog and rename its columns to the cube's names (see module docstring).

    Returns
    -------
    pandas.DataFrame
        One row per catalog entry with the recognized columns; ``obsid`` is always present.

    Raises
    ------
    CatalogError
        If the table is unreadable or has no ``obsid`` column.
    """
    path = Path(path)
    df = _rename(read_table(path), CATALOG_COLUMNS, path)
    if "obsid" not in df:
        raise CatalogError(f"{path}: release catalog has no 'obsid' column (needed to join files)")
    if "rv" not in df and "z" in df:
        df["rv"] = (df["z"] * 299792.458).astype("float32")
        if "z_err" in df:
            df["rv_err"] = (df["z_err"] * 299792.458).astype("float32")
    return df


def read_crossmatch(path: str | Path) -> pd.DataFrame:
    """Read a cross-match table (Gaia, 2MASS, photometry) and rename its columns to the cube's names.

    Raises
    ------
    CatalogError
        If the table is unreadable, has no ``obsid`` column or repeats an obsid.
    """
    path = Path(path)
    df = _rename(read_table(path), CROSSMATCH_COLUMNS, path)
    if "obsid" not in df:
        raise CatalogError(f"{path}: cross-match table has no 'obsid' column (needed to join)")
    dup = df["obsid"].duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise CatalogError(f"{path}: row {row}: obsid {int(df['obsid'].iloc[row])} appears more than once")
    return df
