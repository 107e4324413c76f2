"""The ``labels`` catalog of SPEC §13 (P2 Table 5) from a block of cube rows — pure numpy, one row per spectrum.

:func:`labels_catalog_block` turns the cube variables of some rows into the catalog's columns, in order:

- P2 Table 5: specid, fitsname, ra, dec, uniqflag, star_id, snr_g, rv, rv_err, teff, teff_err, logg,
  logg_err, vsini, vsini_err, fe_h, fe_h_err, si_h, si_h_err, the ten corr_<a>_<b>, chisq_red, chi2ratio,
  gaia_id, parallax, parallax_error, pmra, pmra_error, pmdec, pmdec_error, ruwe, G, BP, RP, J, H, Ks;
- right after star_id, LAMOST's own classification and parameters (SPEC §13): ``lasp_class``,
  ``lasp_subclass`` (cube ``class``, ``subclass``: FITS header or release catalog; "" when unknown) and
  ``lasp_teff``, ``lasp_logg`` (LASP's Teff and log g where the release catalog gives them, else NaN);
- the other six labels with their (calibrated) errors: vmic, he_frac, c_h, n_h, o_h, s_h;
- every label's formal error ``<label>_err_formal``; ``vsini_raw`` (before P2 §5.1's clip at 0);
- the fit flags: ``fit_flags`` (bits of :data:`survey_scale.core.fit_flags.FLAG_BITS`), ``fit_converged``,
  ``fit_n_iter``, ``labels_fitted`` (bit i set: label i of :data:`survey_scale.core.labels.LABEL_NAMES` was
  fitted; 2047 = all 11, 1035 = teff, logg, vsini, fe_h for the shipped ``physical`` emulator),
  ``fit_component`` (the emulator set's component kept: 0 cool, 1 hot for ``physical``), the evidence of the
  intrinsically-cool rule (``teff_cool``, ``chi2_red_cool``, ``chi2_red_hot``, ``bp_rp0``), and P2 §5.1's
  final-sample rules as flags, one column each (:data:`survey_scale.science.final_sample.RULES`:
  ``flag_teff_lt_7000``, ``flag_snr_lt_5``, ``flag_not_converged``, ``flag_chi2ratio``, ``flag_cool_star``,
  ``flag_non_stellar``), with ``final_sample`` = 1 where none is set and the fit has labels (step
  ``final_sample``). Nothing is deleted: P2 removed these rows, the catalog flags them.
- ``release`` and ``mjd`` of the visit.

``<label>_err`` are the errors calibrated on repeat visits (SPEC §6); a label the emulator does not fit is
NaN with its errors, and its bit of ``labels_fitted`` is 0. A cube variable that is absent (no cross-match
given, say) gives NaN, −9999 for the integer ``gaia_id`` or −9 for a flag (the papers' missing values).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from survey_scale.core.labels import LABEL_NAMES, LABEL_UNITS, P2_TABLE5_CORRELATIONS
from survey_scale.science.final_sample import DESCRIPTIONS as FINAL_SAMPLE_DESCRIPTIONS
from survey_scale.science.final_sample import RULES

CATALOG_VERSION = "1"
TABLE5_LABELS = ("teff", "logg", "vsini", "fe_h", "si_h")
OTHER_LABELS = tuple(n for n in LABEL_NAMES if n not in TABLE5_LABELS)
CORR_COLUMNS = tuple(f"corr_{a}_{b}" for a, b in P2_TABLE5_CORRELATIONS)
ASTROMETRY = ("gaia_id", "parallax", "parallax_error", "pmra", "pmra_error", "pmdec", "pmdec_error", "ruwe")
PHOTOMETRY = ("G", "BP", "RP", "J", "H", "Ks")
MISSING_INT = -9999
MISSING_FLAG = -9
COOL_STAR_CHECK = ("teff_cool", "chi2_red_cool", "chi2_red_hot", "bp_rp0")
"""The evidence of the intrinsically-cool rule (steps ``fit`` and ``final_sample``)."""

_VO_UNITS = {"km s-1": "km / s", "dex (cm s-2)": "dex", "N_He/N_tot": ""}
LABEL_CATALOG_UNITS: dict[str, str] = {name: _VO_UNITS.get(unit, unit) for name, unit in LABEL_UNITS.items()}
"""FITS/VOUnit forms of :data:`survey_scale.core.labels.LABEL_UNITS` (log g in dex of cm s⁻²; N_He/N_tot
dimensionless)."""

COLUMN_UNITS: dict[str, str] = {
    "ra": "deg",
    "dec": "deg",
    "rv": "km / s",
    "rv_err": "km / s",
    "parallax": "mas",
    "parallax_error": "mas",
    "pmra": "mas / yr",
    "pmra_error": "mas / yr",
    "pmdec": "mas / yr",
    "pmdec_error": "mas / yr",
    "mjd": "d",
    "lasp_teff": "K",
    "lasp_logg": "dex",
    "vsini_raw": "km / s",
    "teff_cool": "K",
    "bp_rp0": "mag",
    **{band: "mag" for band in PHOTOMETRY},
    **LABEL_CATALOG_UNITS,
    **{f"{n}_err": u for n, u in LABEL_CATALOG_UNITS.items()},
    **{f"{n}_err_formal": u for n, u in LABEL_CATALOG_UNITS.items()},
}
"""Unit of each catalog column that has one (TUNIT in FITS, field metadata in Parquet)."""

CUBE_INPUTS: tuple[str, ...] = (
    "specid",
    "fitsname",
    "ra",
    "dec",
    "uniqflag",
    "star_id",
    "class",
    "subclass",
    "lasp_teff",
    "lasp_logg",
    "snr_g",
    "rv",
    "rv_err",
    "labels",
    "label_err",
    *(f"{n}_err" for n in LABEL_NAMES),
    *CORR_COLUMNS,
    "chi2_red",
    "chi2ratio",
    "flag_chi2ratio",
    *ASTROMETRY,
    *PHOTOMETRY,
    "vsini_raw",
    "fit_flags",
    "fit_converged",
    "fit_n_iter",
    "labels_fitted",
    "fit_component",
    *COOL_STAR_CHECK,
    *RULES,
    "final_sample",
    "release",
    "mjd",
)
"""Cube variables the catalog reads (those absent from a cube are filled, see the module docstring)."""


def column_or_missing(data: Mapping[str, np.ndarray], name: str, n: int, dtype: Any = np.float32) -> np.ndarray:
    """``data[name]``, or the papers' missing value when the cube lacks it: NaN, "" for text, −9 for a small
    integer flag, −9999 for a larger integer (``gaia_id``)."""
    if name in data:
        return np.asarray(data[name])
    if np.dtype(dtype).kind in "iu":
        small = np.dtype(dtype).itemsize <= 2
        return np.full(n, MISSING_FLAG if small else MISSING_INT, dtype=np.int16 if small else dtype)
    if np.dtype(dtype).kind in "OUT":
        return np.full(n, "", dtype=object)
    return np.full(n, np.nan, dtype=dtype)


def labels_catalog_block(data: Mapping[str, np.ndarray], params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The catalog's columns (ordered) for a block of rows (see the module docstring).

    ``data`` maps cube variables to their values at the block's rows; ``params["label_names"]`` is the
    cube's ``label`` dimension. Returns name → (n,) array.
    """
    n = int(np.asarray(data["specid"]).shape[0])
    fitted: Sequence[str] = list(params["label_names"])
    labels = np.asarray(data["labels"], dtype=np.float32)
    formal = np.asarray(data["label_err"], dtype=np.float32)

    def label(name: str) -> np.ndarray:
        return labels[:, fitted.index(name)] if name in fitted else np.full(n, np.nan, np.float32)

    def formal_err(name: str) -> np.ndarray:
        return formal[:, fitted.index(name)] if name in fitted else np.full(n, np.nan, np.float32)

    def err(name: str) -> np.ndarray:
        return column_or_missing(data, f"{name}_err", n) if name in fitted else np.full(n, np.nan, np.float32)

    out: dict[str, np.ndarray] = {}
    for name in ("specid", "fitsname"):
        out[name] = column_or_missing(data, name, n, object)
    out["ra"] = column_or_missing(data, "ra", n, np.float64)
    out["dec"] = column_or_missing(data, "dec", n, np.float64)
    out["uniqflag"] = column_or_missing(data, "uniqflag", n, np.int16)
    out["star_id"] = column_or_missing(data, "star_id", n, object)
    out["lasp_class"] = column_or_missing(data, "class", n, object)
    out["lasp_subclass"] = column_or_missing(data, "subclass", n, object)
    out["lasp_teff"] = column_or_missing(data, "lasp_teff", n)
    out["lasp_logg"] = column_or_missing(data, "lasp_logg", n)
    for name in ("snr_g", "rv", "rv_err"):
        out[name] = column_or_missing(data, name, n)
    for name in TABLE5_LABELS:
        out[name] = label(name)
        out[f"{name}_err"] = err(name)
    for name in CORR_COLUMNS:
        out[name] = column_or_missing(data, name, n)
    out["chisq_red"] = column_or_missing(data, "chi2_red", n)
    out["chi2ratio"] = column_or_missing(data, "chi2ratio", n)
    out["gaia_id"] = column_or_missing(data, "gaia_id", n, np.int64)
    for name in (*ASTROMETRY[1:], *PHOTOMETRY):
        out[name] = column_or_missing(data, name, n)
    for name in OTHER_LABELS:
        out[name] = label(name)
        out[f"{name}_err"] = err(name)
    for name in LABEL_NAMES:
        out[f"{name}_err_formal"] = formal_err(name)
    out["vsini_raw"] = column_or_missing(data, "vsini_raw", n)
    flags = column_or_missing(data, "fit_flags", n, np.uint8).astype(np.int64)
    out["fit_flags"] = flags.astype(np.int16)
    out["fit_converged"] = column_or_missing(data, "fit_converged", n, np.int8).astype(np.int16)
    out["fit_n_iter"] = column_or_missing(data, "fit_n_iter", n, np.int32)
    out["labels_fitted"] = _labels_fitted(data, fitted, n)
    out["fit_component"] = column_or_missing(data, "fit_component", n, np.int8).astype(np.int16)
    for name in COOL_STAR_CHECK:
        out[name] = column_or_missing(data, name, n)
    for name in (*RULES, "final_sample"):
        out[name] = column_or_missing(data, name, n, np.int8).astype(np.int16)
    out["release"] = column_or_missing(data, "release", n, object)
    out["mjd"] = column_or_missing(data, "mjd", n, np.float64)
    return out


def _labels_fitted(data: Mapping[str, np.ndarray], cube_labels: Sequence[str], n: int) -> np.ndarray:
    """``labels_fitted`` on :data:`LABEL_NAMES`' bits from the cube's (bits of its ``label`` dimension); −9 when
    the cube has none."""
    if "labels_fitted" not in data:
        return np.full(n, MISSING_FLAG, dtype=np.int16)
    cube_bits = np.asarray(data["labels_fitted"]).astype(np.int64)
    out = np.zeros(n, dtype=np.int64)
    for i, name in enumerate(cube_labels):
        if name in LABEL_NAMES:
            out |= ((cube_bits >> i) & 1) << LABEL_NAMES.index(name)
    return out.astype(np.int16)


COLUMN_DESCRIPTIONS: dict[str, str] = {
    "specid": "LAMOST spectrum ID, date-planid-spid-fiberid",
    "fitsname": "name of the LAMOST FITS file",
    "uniqflag": "1 = the star's highest-S/N visit, 2..n its other visits by decreasing S/N",
    "star_id": "star ID from RA/Dec, Sdddmmss+ddmmss",
    "lasp_class": "LAMOST class (STAR, GALAXY, QSO, Unknown; header or release catalog)",
    "lasp_subclass": "LAMOST subclass (e.g. A2V, B9, K5, dM5, WD; header or release catalog)",
    "lasp_teff": "Teff from the LAMOST pipeline (LASP), where the release catalog gives it",
    "lasp_logg": "log g from the LAMOST pipeline (LASP), where the release catalog gives it",
    "snr_g": "S/N per pixel in the g band",
    "chisq_red": "reduced chi2 of the label fit",
    "chi2ratio": "(chisq_red - median) / dispersion at the spectrum's Teff and S/N (P2 5.2)",
    "fit_flags": "label-fit flag bits (1 teff<7000, 2 snr<5, 4 not converged, 8 no data, 16 vsini<0, 32 refit, "
    "64 at bound)",
    "labels_fitted": "bit i set: label i fitted (1 teff, 2 logg, 4 vmic, 8 vsini, 16 he_frac, 32 c_h, 64 n_h, "
    "128 o_h, 256 si_h, 512 s_h, 1024 fe_h); labels not fitted are NaN",
    **{name: FINAL_SAMPLE_DESCRIPTIONS[name] for name in (*RULES, "final_sample", "bp_rp0")},
    "fit_component": "emulator set component kept: lowest full-spectrum chi2 (physical: 0 cool, 1 hot; 0 one emulator)",
    "teff_cool": "Teff of the cool-star model's full-spectrum fit (independent cool-star Teff, P2 5.1)",
    "chi2_red_cool": "reduced chi2 of the cool-star model's full-spectrum fit",
    "chi2_red_hot": "reduced chi2 of the hot-star model's full-spectrum fit",
    "vsini_raw": "vsini before the clip at 0 (P2 5.1)",
    **{f"{n}_err": f"{n} uncertainty calibrated on repeat visits (P2 5.6)" for n in LABEL_NAMES},
    **{f"{n}_err_formal": f"{n} formal uncertainty of the fit" for n in LABEL_NAMES},
}
