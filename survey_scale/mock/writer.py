"""Write LAMOST low-resolution spectrum files byte-for-byte deterministically (SPEC §2, §10).

Two layouts, copied from the real files in ``../shared/data/lamost/``:

``image`` (DR1–DR7)
    Primary HDU, BITPIX −32, NAXIS1 = n_pix, NAXIS2 = 5: rows flux, inverse variance, wavelength, and-mask,
    or-mask (float32, big-endian); ``EXTEN0 = 'Flux, Inverse, Wavelength, Andmask, Ormask'``,
    ``N_EXTEN = 1``, ``EXTNAME = 'Flux'``.
``coadd`` (DR8+)
    Empty primary HDU (BITPIX 16, NAXIS 0, and — as MWRFITS writes them — NAXIS1/NAXIS2 cards) with
    ``N_EXTEN = 2``, ``NORM``, then a one-row binary table ``COADD`` with the float32 vector columns FLUX,
    IVAR, WAVELENGTH, ANDMASK, ORMASK, NORMALIZATION (TFORM ``'3909E'``).

The header cards are formatted here (fixed-format FITS cards, LAMOST's key order and comments) rather than
by astropy: it is faster, and nothing in the bytes depends on the time of writing — a fixed ``DATE`` is
passed in — so the same input gives the same file. Gzipped files are written with ``mtime = 0`` and no file
name in the gzip header, for the same reason.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from survey_scale.core.files import atomic_write_bytes

BLOCK = 2880
CARD = 80
IMAGE_ROWS: tuple[str, ...] = ("FLUX", "IVAR", "WAVELENGTH", "ANDMASK", "ORMASK")
COADD_COLUMNS: tuple[str, ...] = ("FLUX", "IVAR", "WAVELENGTH", "ANDMASK", "ORMASK", "NORMALIZATION")
EXTEN0 = "Flux, Inverse, Wavelength, Andmask, Ormask"
MWRFITS = "Primary Header created by MWRFITS v1.11b"

Value = bool | int | float | str | None
HeaderEntry = tuple[str, Value, str, str | None]
"""(keyword, value, comment, float format) — ``keyword == "COMMENT"`` writes a COMMENT card with ``value``;
``keyword == ""`` a blank card; a None value a key with an empty string."""


# --- FITS cards ---------------------------------------------------------------------------------------------


def format_card(key: str, value: Value, comment: str = "", fmt: str | None = None) -> str:
    """One 80-character fixed-format FITS header card.

    Parameters
    ----------
    key
        Keyword (≤ 8 characters), ``"COMMENT"``, or ``""`` for a blank card.
    value
        bool, int, float (finite), str or None (written as an empty string).
    comment
        Comment text (truncated to fit the card).
    fmt
        Python format spec for floats (e.g. ``".6f"``); default: the shortest repr.

    Returns
    -------
    str
        The card image, exactly 80 ASCII characters.
    """
    if key == "":
        return " " * CARD
    if key == "COMMENT":
        return f"COMMENT {value}"[:CARD].ljust(CARD)
    if len(key) > 8:
        raise ValueError(f"FITS keyword {key!r} longer than 8 characters")
    if isinstance(value, bool | np.bool_):
        text = ("T" if value else "F").rjust(20)
    elif isinstance(value, int | np.integer):
        text = str(int(value)).rjust(20)
    elif isinstance(value, float | np.floating):
        if not np.isfinite(value):
            raise ValueError(f"FITS keyword {key}: non-finite value {value!r}")
        text = (format(float(value), fmt) if fmt else _float_repr(float(value))).rjust(20)
    else:
        s = "" if value is None else str(value)
        text = ("'" + s.replace("'", "''").ljust(8) + "'").ljust(20)
    card = f"{key:<8}= {text}"
    if comment:
        card += " / " + comment
    card = card[:CARD]
    if not card.isascii():
        raise ValueError(f"FITS card for {key} is not ASCII: {card!r}")
    return card.ljust(CARD)


def _float_repr(value: float) -> str:
    text = repr(value)
    if "e" in text or "E" in text:
        mantissa, exponent = text.lower().split("e")
        if "." not in mantissa:
            mantissa += ".0"
        text = f"{mantissa}E{int(exponent):+03d}"
    elif "." not in text:
        text += ".0"
    return text


def header_block(cards: Sequence[str]) -> bytes:
    """Cards + END, padded with blanks to a multiple of 2880 bytes."""
    text = "".join(cards) + "END".ljust(CARD)
    pad = -len(text) % BLOCK
    return (text + " " * pad).encode("ascii")


def data_block(data: bytes) -> bytes:
    """Data padded with zero bytes to a multiple of 2880 bytes."""
    return data + b"\0" * (-len(data) % BLOCK)


# --- the two layouts ----------------------------------------------------------------------------------------


def _entries_to_cards(entries: Sequence[HeaderEntry]) -> list[str]:
    return [format_card(k, v, c, f) for k, v, c, f in entries]


def image_hdu_bytes(entries: Sequence[HeaderEntry], rows: Sequence[np.ndarray], *, bitpix: int = -32) -> bytes:
    """A DR1–DR7 primary-image file: (len(rows), n_pix) float array plus the LAMOST header ``entries``.

    Parameters
    ----------
    entries
        LAMOST header entries (after the structural cards; see :data:`HeaderEntry`).
    rows
        Equal-length 1-D arrays (normally 5: flux, ivar, wavelength, andmask, ormask).
    bitpix
        −32 (float32, DR7) or −64 (float64, DR2).
    """
    image = np.vstack([np.asarray(r) for r in rows]).astype(">f4" if bitpix == -32 else ">f8")
    n_rows, n_pix = image.shape
    structural = [
        format_card("SIMPLE", True, MWRFITS),
        format_card("BITPIX", bitpix),
        format_card("NAXIS", 2, "Number of array dimensions"),
        format_card("NAXIS1", n_pix),
        format_card("NAXIS2", n_rows),
        format_card("EXTEND", True),
        format_card("", None),
    ]
    return header_block(structural + _entries_to_cards(entries)) + data_block(image.tobytes())


def coadd_bytes(
    entries: Sequence[HeaderEntry], columns: Mapping[str, np.ndarray], *, n_pix_header: int | None = None
) -> bytes:
    """A DR8+ file: empty primary HDU with the LAMOST header, then the one-row ``COADD`` binary table.

    Parameters
    ----------
    entries
        LAMOST header entries for the primary HDU.
    columns
        Column name → 1-D array, written in the given order as float32 vector columns (TFORM ``nE``).
    n_pix_header
        Value of the primary's NAXIS1 card (MWRFITS leaves NAXIS1/NAXIS2 in the empty primary); default the
        column length.
    """
    arrays = {name: np.asarray(col, dtype=">f4") for name, col in columns.items()}
    lengths = {a.size for a in arrays.values()}
    n_pix = n_pix_header if n_pix_header is not None else max(lengths)
    primary = [
        format_card("SIMPLE", True, MWRFITS),
        format_card("BITPIX", 16),
        format_card("NAXIS", 0, "Number of array dimensions"),
        format_card("NAXIS1", n_pix),
        format_card("NAXIS2", 5),
        format_card("EXTEND", True),
        format_card("", None),
    ]
    row = b"".join(a.tobytes() for a in arrays.values())
    ext = [
        format_card("XTENSION", "BINTABLE", "Binary table written by MWRFITS v1.11b"),
        format_card("BITPIX", 8, "Required value"),
        format_card("NAXIS", 2, "Required value"),
        format_card("NAXIS1", len(row), "Number of bytes per row"),
        format_card("NAXIS2", 1, "Number of rows"),
        format_card("PCOUNT", 0, "Normally 0 (no varying arrays)"),
        format_card("GCOUNT", 1, "Required value"),
        format_card("TFIELDS", len(arrays), "Number of columns in table"),
        format_card("COMMENT", ""),
        format_card("COMMENT", " *** End of mandatory fields ***"),
        format_card("COMMENT", ""),
        format_card("EXTNAME", "COADD", "The extension name"),
        format_card("COMMENT", ""),
        format_card("COMMENT", " *** Column names ***"),
        format_card("COMMENT", ""),
        *(format_card(f"TTYPE{i}", name) for i, name in enumerate(arrays, 1)),
        format_card("COMMENT", ""),
        format_card("COMMENT", " *** Column formats ***"),
        format_card("COMMENT", ""),
        *(format_card(f"TFORM{i}", f"{a.size}E") for i, a in enumerate(arrays.values(), 1)),
    ]
    return header_block(primary + _entries_to_cards(entries)) + header_block(ext) + data_block(row)


def spectrum_bytes(
    layout: str,
    entries: Sequence[HeaderEntry],
    arrays: Mapping[str, np.ndarray],
) -> bytes:
    """Serialize one spectrum in ``layout`` (``"image"`` or ``"coadd"``).

    ``arrays`` holds FLUX, IVAR, WAVELENGTH, ANDMASK, ORMASK (and NORMALIZATION for the coadd layout, ones if
    absent). The image layout writes the five rows of :data:`IMAGE_ROWS`.
    """
    if layout == "image":
        return image_hdu_bytes(entries, [arrays[name] for name in IMAGE_ROWS])
    if layout == "coadd":
        cols = {name: arrays[name] if name in arrays else np.ones_like(arrays["FLUX"]) for name in COADD_COLUMNS}
        return coadd_bytes(entries, cols)
    raise ValueError(f"unknown layout {layout!r}; expected 'image' or 'coadd'")


def write_bytes(path: str | Path, data: bytes, *, compress: bool, level: int = 6) -> Path:
    """Write ``data`` to ``path`` (``.gz`` appended and gzip applied when ``compress``), deterministically.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    path = Path(path)
    if compress:
        if not path.name.endswith(".gz"):
            path = path.with_name(path.name + ".gz")
        data = gzip.compress(data, compresslevel=level, mtime=0)
    return atomic_write_bytes(path, data)  # a killed run never leaves a half-written spectrum under its name


# --- LAMOST header ------------------------------------------------------------------------------------------


def lamost_header_entries(meta: Mapping[str, Any], layout: str) -> list[HeaderEntry]:
    """The LAMOST primary-header entries (after SIMPLE…EXTEND) in the real files' order.

    Parameters
    ----------
    meta
        Values by keyword (upper case, as in the files): FILENAME, OBSID, DATA_V, DATE, DATE-OBS, DATE-BEG,
        DATE-END, LMJD, MJD, LMJMLIST, PLANID, RA, DEC, DESIG, FIBERID, CELL_ID, X_VALUE, Y_VALUE, OBJNAME,
        MAG1–MAG3, NEXP, EXPTIME, BESTEXP, SPID, SPRA, SPDEC, SEEING, MOONPHA, TEMP_AIR, HELIO_RV, COEFF0,
        COEFF1, SUBCLASS, Z, Z_ERR, SNRU, SNRG, SNRR, SNRI, SNRZ; optional ones fall back to constants.
    layout
        ``"image"`` adds EXTEN0, N_EXTEN = 1, EXTNAME; ``"coadd"`` N_EXTEN = 2 and NORM.
    """
    m = dict(meta)
    g = m.get
    e: list[HeaderEntry] = [("COMMENT", "--------FILE INFORMATION", "", None)]
    e += [
        ("FILENAME", m["FILENAME"], "", None),
        ("OBSID", int(m["OBSID"]), "Unique number ID of this spectrum", None),
        ("AUTHOR", "LAMOST Pipeline", "Who compiled the information", None),
        ("DATA_V", m["DATA_V"], "Data release version", None),
    ]
    if layout == "image":
        e += [
            ("EXTEN0", EXTEN0, "", None),
            ("N_EXTEN", 1, "The extension number", None),
            ("EXTNAME", "Flux", "The extension name", None),
        ]
    else:
        e += [
            ("N_EXTEN", 2, "The amount of extension", None),
            ("NORM", int(g("NORM", 1)), "1 if there exists a normalized spectrum", None),
        ]
    e += [
        ("ORIGIN", "NAOC-LAMOST", "Organization responsible for creating this file", None),
        ("DATE", m["DATE"], "Time when this HDU is created (UTC)", None),
        ("COMMENT", "--------TELESCOPE PARAMETERS", "", None),
        ("TELESCOP", "LAMOST", "GuoShouJing Telescope", None),
        ("LONGITUD", 117.58, "[deg] Longitude of site", ".2f"),
        ("LATITUDE", 40.39, "[deg] Latitude of site", ".2f"),
        ("FOCUS", 19964, "[mm] Telescope focus", None),
        ("CAMPRO", "NEWCAM", "Camera program name", None),
        ("CAMVER", "v2.0", "Camera program version", None),
        ("COMMENT", "--------OBSERVATION PARAMETERS", "", None),
        ("DATE-OBS", m["DATE-OBS"], "The observation median UTC", None),
        ("DATE-BEG", m["DATE-BEG"], "The observation start local time", None),
        ("DATE-END", m["DATE-END"], "The observation end local time", None),
        ("LMJD", int(m["LMJD"]), "Local Modified Julian Day", None),
        ("MJD", int(m["MJD"]), "Modified Julian Day", None),
        ("LMJMLIST", m["LMJMLIST"], "Local Modified Julian Minute list", None),
        ("PLANID", m["PLANID"], "Plan ID in use", None),
        ("RA", float(m["RA"]), "[deg] Right ascension of object", ".6f"),
        ("DEC", float(m["DEC"]), "[deg] Declination of object", ".6f"),
        ("RA_OBS", float(g("RA_OBS", m["RA"])), "[deg] Right ascension during observing", ".6f"),
        ("DEC_OBS", float(g("DEC_OBS", m["DEC"])), "[deg] Declination during observing", ".6f"),
        ("OFFSET", False, "Whether there's a offset during observing", None),
        ("OFFSET_V", 0.0, "Offset value in arcsecond", ".2f"),
        ("DESIG", m["DESIG"], "Designation of LAMOST target", None),
        ("FIBERID", int(m["FIBERID"]), "Fiber ID of Object", None),
        ("CELL_ID", m["CELL_ID"], "Fiber Unit ID on the focal plane", None),
        ("X_VALUE", m["X_VALUE"], "[mm] X coordinate of object on the focal plane", None),
        ("Y_VALUE", m["Y_VALUE"], "[mm] Y coordinate of object on the focal plane", None),
        ("OBJNAME", m["OBJNAME"], "Name of object", None),
        ("OBJTYPE", "Star", "Object type from input catalog", None),
        ("TSOURCE", "MOCK_HOT", "Name of input catalog", None),
        ("TCOMMENT", "-", "Target information", None),
        ("TFROM", "LRS_HOT", "Target catalog", None),
    ]
    if layout == "image":  # DR7 names: magnitudes of the input catalogue, 99 when absent
        e += [
            ("FIBERTYP", "Obj", "Fiber type of object", None),
            ("FIBERMAS", 0, "Bitmask of warning values, 0 means all is well", None),
            ("MAGTYPE", "gri", "Magnitude type of object", None),
            ("MAG1", float(g("MAG1", 99.0)), "[mag] Mag1 of object", ".2f"),
            ("MAG2", float(g("MAG2", 99.0)), "[mag] Mag2 of object", ".2f"),
            ("MAG3", float(g("MAG3", 99.0)), "[mag] Mag3 of object", ".2f"),
            *((f"MAG{k}", 99.0, f"[mag] Mag{k} of object", ".2f") for k in range(4, 8)),
        ]
    else:  # DR9 names: Pan-STARRS-like g, r, i, z, y; -999 when absent
        mags = [float(g(key, 99.0)) for key in ("MAG1", "MAG2", "MAG3")] + [99.0, 99.0]
        e += [
            ("FIB_TYPE", "Obj", "Fiber type of object", None),
            ("FIB_MASK", 0, "Bitmask of warning values, 0 means good", None),
            *(
                (f"MAG_PS_{band}", m if m < 99.0 else -999.0, "[mag] Magnitude of object", ".2f")
                for band, m in zip("GRIZY", mags, strict=True)
            ),
        ]
    e += [
        ("OBS_TYPE", "OBJ", "The type of target (OBJ, FLAT, ARC or BIAS)", None),
        ("OBSCOMM", "Science", "Science or Test", None),
        ("RADECSYS", "FK5", "Equatorial coordinate system", None),
        ("EQUINOX", 2000.0, "Equinox in years", ".2f"),
        ("LAMPLIST", "lamphgcdne.dat", "Arc lamp emission line list", None),
        ("SKYLIST", "skylines.dat", "Sky emission line list", None),
        ("NEXP", int(g("NEXP", 3)), "Number of valid exposures", None),
        ("NEXP_B", int(g("NEXP", 3)), "Number of valid blue exposures", None),
        ("NEXP_R", int(g("NEXP", 3)), "Number of valid red exposures", None),
        ("EXPT_B", float(m["EXPTIME"]), "[s] Blue exposure duration time", ".2f"),
        ("EXPT_R", float(m["EXPTIME"]), "[s] Red exposure duration time", ".2f"),
        ("EXPTIME", float(m["EXPTIME"]), "[s] Minimum of exposure time for all cameras", ".2f"),
        ("BESTEXP", int(m["BESTEXP"]), "LMJM of the best exposure", None),
        ("SCAMEAN", float(g("SCAMEAN", 3.3)), "[ADU] Mean level of scatter light", ".2f"),
        ("COMMENT", "--------SPECTROGRAPH PARAMETERS", "", None),
        ("SPID", int(m["SPID"]), "Spectrograph ID", None),
        ("SPRA", float(m["SPRA"]), "[deg] Average RA of this spectrograph", ".7f"),
        ("SPDEC", float(m["SPDEC"]), "[deg] Average DEC of this spectrograph", ".7f"),
        ("SLIT_MOD", "x2/3", "Slit mode, x1, x2/3 or x1/2", None),
        ("COMMENT", "--------WEATHER CONDITION", "", None),
        ("TEMPCCDB", -118.4, "[deg] The temperature of blue CCD", ".2f"),
        ("TEMPCCDR", -117.7, "[deg] The temperature of red CCD", ".2f"),
        ("SEEING", float(m["SEEING"]), "[arcsec] Seeing during exposure", ".2f"),
        ("MOONPHA", float(m["MOONPHA"]), "[day] Moon phase for a 29.53 days period", ".2f"),
        ("TEMP_AIR", float(g("TEMP_AIR", 0.0)), "[deg] Temperature outside dome", ".2f"),
        ("TEMP_FP", float(g("TEMP_AIR", 0.0)) + 7.0, "[degree celsius] Temprature of the focalplane", ".2f"),
        ("DEWPOINT", -12.8, "[deg]", ".2f"),
        ("DUST", "", "Reservation", None),
        ("HUMIDITY", 0.3, "", ".2f"),
        ("WINDD", 18.8, "[deg] Wind direction", ".2f"),
        ("WINDS", 4.4, "[m/s] Wind speed", ".2f"),
        ("SKYLEVEL", "", "Reservation", None),
        ("COMMENT", "--------DATA REDUCTION PARAMETERS", "", None),
        ("EXTRACT", "aperture", "Extraction method", None),
        ("SFLATTEN", True, "Super flat has been applied", None),
        ("PCASKYSB", True, "PCA sky-subtraction has been applied", None),
        ("NSKIES", int(g("NSKIES", 20)), "Sky fiber number", None),
        ("SKYCHI2", 2.0, "Mean chi^2 of sky-subtraction", ".1f"),
        ("SCHI2MIN", 1.5, "Minimum chi^2 of sky-subtraction", ".1f"),
        ("SCHI2MAX", 2.5, "Maximum chi^2 of sky-subtraction", ".1f"),
        ("NSTD", 4, "Number of (good) standard stars", None),
        ("FSTAR", g("FSTAR", "6-91-118-232"), "FiberID of flux standard stars", None),
        ("FCBY", "auto", "Standard stars origin (auto, manual or catalog)", None),
        ("HELIO", True, "Heliocentric correction", None),
        ("HELIO_RV", float(m["HELIO_RV"]), "[km/s] Heliocentric correction", ".5f"),
        ("VACUUM", True, "Wavelengths are in vacuum", None),
        ("NWORDER", 2, "Number of linear-log10 coefficients", None),
        ("WFITTYPE", "LOG-LINEAR", "Linear-log10 dispersion", None),
        ("COEFF0", float(m["COEFF0"]), "Central wavelength (log10) of first pixel", ".4f"),
        ("COEFF1", float(m["COEFF1"]), "Log10 dispersion per pixel", ".4f"),
        ("WAT0_001", "system=linear", "", None),
        ("WAT1_001", "wtype=linear label=Wavelength units=Angstroms", "", None),
        ("CRVAL1", float(m["COEFF0"]), "Central wavelength (log10) of first pixel", ".4f"),
        ("CD1_1", float(m["COEFF1"]), "Log10 dispersion per pixel", ".4f"),
        ("CRPIX1", 1, "Starting pixel (1-indexed)", None),
        ("CTYPE1", "LINEAR", "", None),
        ("DC-FLAG", 1, "Log-linear flag", None),
        ("COMMENT", "--------SPECTRA ANALYSIS RESULTS", "", None),
        ("VERSPIPE", g("VERSPIPE", "v2.9.8"), "Version of Pipeline", None),
        ("CLASS", g("CLASS", "STAR"), "Class of object", None),
        ("SUBCLASS", m["SUBCLASS"], "Subclass of object", None),
        ("Z", float(m["Z"]), "Redshift of object", ".8f"),
        ("Z_ERR", float(m["Z_ERR"]), "Redshift error of object", ".8f"),
        ("ZFLAG", "LASP", "Which method computes the redshift", None),
        ("SNRU", float(m["SNRU"]), "SNR of u filter", ".2f"),
        ("SNRG", float(m["SNRG"]), "SNR of g filter", ".2f"),
        ("SNRR", float(m["SNRR"]), "SNR of r filter", ".2f"),
        ("SNRI", float(m["SNRI"]), "SNR of i filter", ".2f"),
        ("SNRZ", float(m["SNRZ"]), "SNR of z filter", ".2f"),
    ]
    return e


# --- invalid files ------------------------------------------------------------------------------------------


def truncate(data: bytes, fraction: float = 0.5) -> bytes:
    """The first ``fraction`` of ``data`` (a file cut short by an interrupted transfer)."""
    return data[: max(1, int(len(data) * fraction))]


def not_fits_bytes(name: str) -> bytes:
    """Content that is not FITS at all: the HTML error page a failed download leaves behind."""
    return (
        "<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n"
        f"<body><h1>Not Found</h1><p>The requested file {name} was not found on this server.</p>"
        "</body></html>\n"
    ).encode("ascii")
