"""The ``distances`` catalog of SPEC §13 (P1 Table 1) from a block of cube rows — pure numpy, one row per spectrum.

Columns, in order: P1 Table 1's (specid, fitsname, ra, dec, uniqflag, star_id, snr_g, rv, rv_err, mks,
mks_err, mks_geo, mks_geo_err, dis, dis_low, dis_high, logdis, logdis_err, ebv, ebv_err, aks, aks_err,
snr_dparallax, binary_flag, em_flag, gaia_id, parallax, parallax_error, parallax_offset, pmra, pmra_error,
pmdec, pmdec_error, ruwe, J, J_err, H, H_err, Ks, Ks_err, X, Y, Z), then what a user needs to judge a row:
``parallax_s``, ``parallax_s_err``, ``dis_parallax_only``, ``mks_network``, ``ebv_n_colors``,
``bad_spectrum_flag``, ``bad_spectrum_reason``. ``parallax`` is Gaia's as published; the distance used
``parallax + parallax_offset``.
Missing values as in :mod:`survey_scale.science.label_catalog` (NaN, −9 for flags, −9999 for ``gaia_id``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from survey_scale.science.label_catalog import column_or_missing

DISTANCE_CATALOG_VERSION = "1"

_F4, _F8, _I2, _I8, _S = np.float32, np.float64, np.int16, np.int64, object
COLUMNS: tuple[tuple[str, Any, str, str], ...] = (
    # name, dtype, unit, description
    ("specid", _S, "", "LAMOST spectrum ID, date-planid-spid-fiberid"),
    ("fitsname", _S, "", "name of the LAMOST FITS file"),
    ("ra", _F8, "deg", "right ascension (J2000)"),
    ("dec", _F8, "deg", "declination (J2000)"),
    ("uniqflag", _I2, "", "1 = the star's highest-S/N visit, 2..n its other visits by decreasing S/N"),
    ("star_id", _S, "", "star ID from RA/Dec"),
    ("snr_g", _F4, "", "S/N per pixel in the g band"),
    ("rv", _F4, "km / s", "heliocentric radial velocity"),
    ("rv_err", _F4, "km / s", "radial velocity uncertainty"),
    ("mks", _F4, "mag", "spectroscopic absolute Ks magnitude (P1 5)"),
    ("mks_err", _F4, "mag", "sqrt(sigma_int^2 + (sigma_s100 / (S/N / 100))^2 + (kappa mks_spread)^2) (P1 5.3)"),
    ("mks_geo", _F4, "mag", "geometric MKs from the corrected parallax, Ks and A_Ks"),
    ("mks_geo_err", _F4, "mag", "uncertainty of mks_geo"),
    ("dis", _F8, "pc", "mode of the distance posterior (P1 7)"),
    ("dis_low", _F8, "pc", "16th percentile of the distance posterior"),
    ("dis_high", _F8, "pc", "84th percentile of the distance posterior"),
    ("logdis", _F4, "", "posterior mean of log10(d / pc)"),
    ("logdis_err", _F4, "", "posterior standard deviation of log10(d / pc)"),
    ("ebv", _F4, "mag", "E(B-V) from adjacent-band colour excesses (P1 4)"),
    ("ebv_err", _F4, "mag", "uncertainty of ebv"),
    ("aks", _F4, "mag", "A_Ks = R_Ks E(B-V)"),
    ("aks_err", _F4, "mag", "uncertainty of aks"),
    ("snr_dparallax", _F4, "", "(parallax_s - parallax) / combined error (P1 6)"),
    ("binary_flag", _I2, "", "1 = snr_dparallax >= 2, 0 = below, -9 = no parallax or Ks"),
    ("em_flag", _I2, "", "1 = H-alpha emission (P1 3)"),
    ("gaia_id", _I8, "", "Gaia source id"),
    ("parallax", _F4, "mas", "Gaia parallax as published"),
    ("parallax_error", _F4, "mas", "Gaia parallax uncertainty"),
    ("parallax_offset", _F4, "mas", "correction added to parallax (Leung & Bovy 2019 by default)"),
    ("pmra", _F4, "mas / yr", "proper motion in RA cos(Dec)"),
    ("pmra_error", _F4, "mas / yr", "pmra uncertainty"),
    ("pmdec", _F4, "mas / yr", "proper motion in Dec"),
    ("pmdec_error", _F4, "mas / yr", "pmdec uncertainty"),
    ("ruwe", _F4, "", "Gaia renormalised unit weight error"),
    ("J", _F4, "mag", "2MASS J"),
    ("J_err", _F4, "mag", "2MASS J uncertainty"),
    ("H", _F4, "mag", "2MASS H"),
    ("H_err", _F4, "mag", "2MASS H uncertainty"),
    ("Ks", _F4, "mag", "2MASS Ks"),
    ("Ks_err", _F4, "mag", "2MASS Ks uncertainty"),
    ("X", _F4, "kpc", "Galactic X, Sun at X = -8.1 kpc"),
    ("Y", _F4, "kpc", "Galactic Y (towards l = 90 deg)"),
    ("Z", _F4, "kpc", "Galactic Z (towards the North Galactic Pole)"),
    ("parallax_s", _F4, "mas", "spectro-photometric parallax (P1 Eq. 15)"),
    ("parallax_s_err", _F4, "mas", "uncertainty of parallax_s (P1 Eq. 17)"),
    ("dis_parallax_only", _I2, "", "1 = distance from the parallax alone (binary, or no MKs/Ks/A_Ks), -9 = none"),
    ("mks_network", _I2, "", "0 = non-emission network, 1 = emission network (clean windows)"),
    ("ebv_n_colors", _I2, "", "colours in the E(B-V) mean"),
    ("bad_spectrum_flag", _I2, "", "1 = erroneous spectrum (P1 App. A)"),
    (
        "bad_spectrum_reason",
        _I2,
        "",
        "evidence that flagged it, sum of: 1 pca_chi2, 2 pca_local, 4 fit_local, 8 chi2ratio, 16 wavelength, "
        "32 halpha, 64 flux_step",
    ),
)
"""(name, dtype, unit, description) of each column, in order."""

CUBE_INPUTS: tuple[str, ...] = tuple(name for name, *_ in COLUMNS)
"""Cube variables the catalog reads (each column is the cube variable of the same name)."""


def distances_catalog_block(data: Mapping[str, np.ndarray], params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The catalog's columns (ordered) for a block of rows; ``data`` maps cube variables to their values."""
    n = int(np.asarray(data["specid"]).shape[0])
    out: dict[str, np.ndarray] = {}
    for name, dtype, _, _ in COLUMNS:
        value = column_or_missing(data, name, n, dtype)
        out[name] = value if dtype is _S else np.asarray(value).astype(dtype)
    return out


def column_meta() -> dict[str, dict[str, str]]:
    """Each column's unit and description (FITS TUNIT/TCOMM, Parquet field metadata)."""
    return {name: {"unit": unit, "description": text} for name, _, unit, text in COLUMNS}
