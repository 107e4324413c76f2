"""The tables of a mock release (SPEC §10): the truth, the release catalog and the cross-match.

``truth.parquet`` has one row per input (every visit, valid or not, and every duplicate file) with the true
labels and defects; ``truth_stars.parquet`` and ``truth_contaminants.parquet`` the star tables;
``catalog.csv`` and ``crossmatch.parquet`` what LAMOST's release catalog and a Gaia/2MASS/g,r,i cross-match
give (read by :mod:`survey_scale.io.input_tables`). Parquet files are written deterministically (no index).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from survey_scale.core.labels import LABEL_NAMES
from survey_scale.mock import contaminants as con
from survey_scale.mock import spectra as spx
from survey_scale.mock.invalid import EXPECTED_REJECT, STRUCTURAL_KINDS

CATALOG_COLUMNS: tuple[str, ...] = (
    "obsid", "designation", "obsdate", "lmjd", "mjd", "planid", "spid", "fiberid", "ra", "dec",
    "snru", "snrg", "snrr", "snri", "snrz", "objtype", "class", "subclass", "z", "z_err", "rv", "rv_err",
)  # fmt: skip
"""Columns of ``catalog.csv`` (LAMOST release-catalog names, read by ``io.input_tables.read_catalog``)."""

CROSSMATCH_COLUMNS: tuple[str, ...] = (
    "obsid", "gaia_source_id", "ra", "dec", "parallax", "parallax_error", "pmra", "pmra_error", "pmdec",
    "pmdec_error", "ruwe", "phot_g_mean_mag", "phot_g_mean_mag_error", "phot_bp_mean_mag",
    "phot_bp_mean_mag_error", "phot_rp_mean_mag", "phot_rp_mean_mag_error", "j_m", "j_msigcom", "h_m",
    "h_msigcom", "ks_m", "ks_msigcom", "g_mag", "g_mag_err", "r_mag", "r_mag_err", "i_mag", "i_mag_err",
)  # fmt: skip
"""Columns of ``crossmatch.parquet`` (Gaia, 2MASS and survey names; ``io.input_tables.read_crossmatch``)."""

_XMATCH_SOURCE: dict[str, str] = {
    "parallax": "parallax", "parallax_error": "parallax_error", "pmra": "pmra", "pmra_error": "pmra_error",
    "pmdec": "pmdec", "pmdec_error": "pmdec_error", "ruwe": "ruwe",
    "phot_g_mean_mag": "G", "phot_g_mean_mag_error": "G_err", "phot_bp_mean_mag": "BP",
    "phot_bp_mean_mag_error": "BP_err", "phot_rp_mean_mag": "RP", "phot_rp_mean_mag_error": "RP_err",
    "j_m": "J", "j_msigcom": "J_err", "h_m": "H", "h_msigcom": "H_err", "ks_m": "Ks", "ks_msigcom": "Ks_err",
    "g_mag": "g", "g_mag_err": "g_err", "r_mag": "r", "r_mag_err": "r_err",
    "i_mag": "i", "i_mag_err": "i_err",
}  # fmt: skip


CONTAMINANTS_TABLE: str = "truth_contaminants.parquet"
"""Per-contaminant truth table (cool stars and QSOs): STAR_COLUMNS + contaminants.CONTAMINANT_COLUMNS."""


OUTPUT_TABLES: tuple[str, ...] = (
    "catalog.csv", "crossmatch.parquet", "truth.parquet", "truth_stars.parquet", CONTAMINANTS_TABLE, "release.json",
)  # fmt: skip


def _write_tables(
    outdir: Path,
    visits: pd.DataFrame,
    stars: pd.DataFrame,
    contam: pd.DataFrame,
    release: str,
    duplicates: list[dict[str, Any]],
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """Write the catalog, cross-match and truth tables of every input (``visits``: the hot stars' visits, then
    the contaminants'); return the star table of every object, the truth table and the release's counts."""
    all_stars = _with_population(stars, contam)
    truth = _truth_table(visits, all_stars, release, duplicates)
    catalog_visits = visits[visits["invalid_kind"] != "no_catalog_row"]
    catalog = _catalog_table(catalog_visits, all_stars)
    crossmatch = _crossmatch_table(catalog_visits, all_stars)
    catalog.to_csv(outdir / "catalog.csv", index=False)
    _write_parquet(crossmatch, outdir / "crossmatch.parquet")
    _write_parquet(truth, outdir / "truth.parquet")
    stars_out = stars.copy()
    valid_counts = truth[~truth["invalid"]].groupby("star_index").size()
    stars_out["n_visits"] = valid_counts.reindex(stars_out["star_index"]).fillna(0).to_numpy(dtype=np.int64)
    _write_parquet(stars_out, outdir / "truth_stars.parquet")
    if len(contam):
        contam_out = contam.copy()
        contam_out["n_visits"] = valid_counts.reindex(contam_out["star_index"]).fillna(0).to_numpy(dtype=np.int64)
        _write_parquet(contam_out, outdir / CONTAMINANTS_TABLE)
    return all_stars, truth, _release_counts(truth, stars, stars_out, contam, len(catalog))


def _release_counts(
    truth: pd.DataFrame, stars: pd.DataFrame, stars_out: pd.DataFrame, contam: pd.DataFrame, n_catalog_rows: int
) -> dict[str, int]:
    """The ``counts`` of ``release.json``: files by layout, stars by kind, contaminants, catalog rows."""
    valid_files = int((truth["file_written"] & ~truth["invalid"]).sum())
    population = truth["population"]
    return {
        "image_files": int((truth["file_written"] & (truth["layout"] == "image")).sum()),
        "coadd_files": int((truth["file_written"] & (truth["layout"] == "coadd")).sum()),
        "gzip_files": int((truth["file_written"] & truth["gzip"]).sum()),
        "valid_spectra": valid_files,
        "binary_stars": int(stars["binary"].sum()),
        "emission_stars": int(stars["emission"].sum()),
        "multi_visit_stars": int((stars_out["n_visits"] > 1).sum()),
        "corrupted_spectra": int((truth["corrupted"] & ~truth["invalid"]).sum()),
        "catalog_rows": n_catalog_rows,
        "cool_contaminant_stars": int((contam["population"] == con.POPULATION_COOL).sum()),
        "misclassified_a_stars": int(contam["misclassified"].sum()),
        "qso_objects": int((contam["population"] == con.POPULATION_QSO).sum()),
        "cool_contaminant_spectra": int((population == con.POPULATION_COOL).sum()),
        "misclassified_a_spectra": int(truth["misclassified"].sum()),
        "qso_spectra": int((population == con.POPULATION_QSO).sum()),
    }


def _with_population(stars: pd.DataFrame, contam: pd.DataFrame) -> pd.DataFrame:
    """Hot stars (with the contaminant columns filled: population "hot", class STAR, their subclass) and the
    contaminants in one star table."""
    hot = stars.copy()
    hot["population"] = con.POPULATION_HOT
    hot["lamost_class"] = "STAR"
    hot["true_subclass"] = hot["subclass"]
    hot["misclassified"] = False
    hot["cool_class"] = ""
    hot["redshift"] = np.nan
    return pd.concat([hot, contam], ignore_index=True) if len(contam) else hot


def _truth_table(
    visits: pd.DataFrame, stars: pd.DataFrame, release: str, duplicates: list[dict[str, Any]]
) -> pd.DataFrame:
    """One row per input: every visit (valid, invalid, or catalog-only) and every duplicate file."""
    st = stars.set_index("star_index").loc[visits["star_index"].to_numpy()].reset_index()
    t = pd.DataFrame(
        {
            "specid": visits["specid"].to_numpy(),
            "obsid": visits["obsid"].to_numpy(),
            "fitsname": visits["fitsname_written"].to_numpy(),
            "release": release,
            "star_index": visits["star_index"].to_numpy(),
            "star_id": visits["star_id"].to_numpy(),
            "visit": visits["visit"].to_numpy(),
            "lmjd": visits["lmjd"].to_numpy(),
            "mjd": visits["mjd"].to_numpy(),
            "obs_mjd": visits["obs_mjd"].to_numpy(),
            "planid": visits["planid"].to_numpy(),
            "spid": visits["spid"].to_numpy(),
            "fiberid": visits["fiberid"].to_numpy(),
            "layout": visits["layout"].to_numpy(),
            "gzip": visits["gzip"].to_numpy(dtype=bool),
            "file_written": visits["file_written"].to_numpy(dtype=bool),
        }
    )
    for name in LABEL_NAMES:
        t[name] = st[name].to_numpy()
    t["rv"] = visits["rv"].to_numpy()
    t["rv2"] = visits["rv2"].to_numpy()
    t["rv_meas"] = visits["rv_meas"].to_numpy()
    t["rv_err"] = visits["rv_err"].to_numpy()
    t["snr"] = visits["snr"].to_numpy()
    for b in ("snru", "snrg", "snrr", "snri", "snrz"):
        t[b] = visits[b].to_numpy()
    t["resolution"] = visits["resolution"].to_numpy()
    t["helio_rv"] = visits["helio_rv"].to_numpy()
    t["airmass"] = visits["airmass"].to_numpy()
    t["pwv_mm"] = visits["pwv_mm"].to_numpy()
    for name in ("ra", "dec", "ebv", "distance_pc", "mks", "mks_system", "G_true", "Ks_true"):
        t[name] = st[name].to_numpy()
    t["binary"] = st["binary"].to_numpy(dtype=bool)
    for name in ("q", *(f"{label}2" for label in LABEL_NAMES), "mass", "mass2", "radius", "radius2"):
        t[name] = st[name].to_numpy()
    t["light_frac2_g"] = visits["light_frac2_g"].to_numpy()
    t["emission"] = st["emission"].to_numpy(dtype=bool)
    for name in ("ha_ew", "hb_ew", "pa_ew"):
        t[name] = visits[name].to_numpy()
    t["corrupted"] = visits["corrupted"].to_numpy(dtype=bool)
    t["corrupt_kind"] = visits["corrupt_kind"].to_numpy()
    for name in ("corrupt_lo", "corrupt_hi", "corrupt_amount"):
        t[name] = visits[name].to_numpy()
    kind = visits["invalid_kind"].to_numpy()
    t["invalid"] = kind != ""
    t["invalid_kind"] = kind
    t["expected_reject"] = np.array([EXPECTED_REJECT.get(k, "") for k in kind])
    t["structural"] = np.isin(kind, list(STRUCTURAL_KINDS))
    t["in_catalog"] = kind != "no_catalog_row"
    t["duplicate_of"] = ""
    # What kind of object (hot star, cool contaminant, QSO) and how LAMOST classes it (contaminants module).
    defaults = {"population": con.POPULATION_HOT, "lamost_class": "STAR", "misclassified": False, "redshift": np.nan}
    for name, default in defaults.items():
        t[name] = st[name].to_numpy() if name in st else default
    t["misclassified"] = t["misclassified"].astype(bool)
    t["lamost_subclass"] = st["subclass"].to_numpy()
    t["true_subclass"] = st["true_subclass"].to_numpy() if "true_subclass" in st else st["subclass"].to_numpy()
    rows = []
    for dup in duplicates:
        # Two names, one spectrum: the ingest keeps the name that sorts first (".fits" before ".fits.gz");
        # the other is the expected duplicate_specid reject (normally the copy).
        src = int(dup["source_index"])
        original = t.loc[src].copy()
        copy = original.copy()
        copy["fitsname"], copy["gzip"] = dup["fitsname_written"], dup["gzip"]
        keep, reject = (original, copy) if original["fitsname"] < copy["fitsname"] else (copy, original)
        reject = reject.copy()
        reject["duplicate_of"] = keep["fitsname"]
        reject["invalid"], reject["structural"] = True, False
        reject["invalid_kind"] = reject["expected_reject"] = "duplicate_specid"
        t.loc[src] = keep
        rows.append(reject)
    if rows:
        t = pd.concat([t, pd.DataFrame(rows)], ignore_index=True)
    return t


def _catalog_table(visits: pd.DataFrame, stars: pd.DataFrame) -> pd.DataFrame:
    """The release catalog (LAMOST column names), one row per catalogued spectrum.

    The spectrum with an out-of-range RA in its header has it in its catalog row too (LAMOST builds the
    catalog from the headers), so an ingest that prefers catalog values still sees it.
    """
    st = stars.set_index("star_index").loc[visits["star_index"].to_numpy()]
    ra = np.round(st["ra"].to_numpy(), 6)
    ra = np.where((visits["invalid_kind"] == "header_out_of_range").to_numpy(), 400.0, ra)
    return pd.DataFrame(
        {
            "obsid": visits["obsid"].to_numpy(),
            "designation": st["designation"].str.replace("LAMOST ", "", regex=False).to_numpy(),
            "obsdate": visits["date_obs"].str.slice(0, 10).to_numpy(),
            "lmjd": visits["lmjd"].to_numpy(),
            "mjd": visits["mjd"].to_numpy(),
            "planid": visits["planid"].to_numpy(),
            "spid": visits["spid"].to_numpy(),
            "fiberid": visits["fiberid"].to_numpy(),
            "ra": ra,
            "dec": np.round(st["dec"].to_numpy(), 6),
            "snru": visits["snru"].to_numpy(),
            "snrg": visits["snrg"].to_numpy(),
            "snrr": visits["snrr"].to_numpy(),
            "snri": visits["snri"].to_numpy(),
            "snrz": visits["snrz"].to_numpy(),
            "objtype": "Star",
            "class": st["lamost_class"].to_numpy() if "lamost_class" in st else "STAR",
            "subclass": st["subclass"].to_numpy(),
            "z": np.round(visits["rv_meas"].to_numpy() / spx.C_KMS, 8),
            "z_err": np.round(visits["rv_err"].to_numpy() / spx.C_KMS, 8),
            "rv": np.round(visits["rv_meas"].to_numpy(), 2),
            "rv_err": np.round(visits["rv_err"].to_numpy(), 2),
        },
        columns=list(CATALOG_COLUMNS),
    )


def _crossmatch_table(visits: pd.DataFrame, stars: pd.DataFrame) -> pd.DataFrame:
    """Gaia DR2 / 2MASS / g,r,i values of each catalogued spectrum's star (NaN where missing)."""
    st = stars.set_index("star_index").loc[visits["star_index"].to_numpy()]
    out = pd.DataFrame({"obsid": visits["obsid"].to_numpy(), "gaia_source_id": st["gaia_source_id"].to_numpy()})
    out["ra"] = st["ra"].to_numpy()
    out["dec"] = st["dec"].to_numpy()
    for name, source in _XMATCH_SOURCE.items():
        out[name] = st[source].to_numpy(dtype=np.float64)
    return out[list(CROSSMATCH_COLUMNS)]


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    """Parquet without the pandas index, deterministic for a given pyarrow version."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)
    pq.write_table(table, path, compression="zstd")
