"""Read LAMOST low-resolution spectra in every published layout (SPEC §2).

Layouts
-------
``image`` (DR1–DR7)
    Primary HDU image of shape (5, n_pix), float32 or float64: flux, inverse variance, wavelength,
    and-mask, or-mask. Early pipelines (v2.6.x) wrote a normalized spectrum instead of the wavelength in
    the third row; the header's ``EXTEN0`` names the rows, and there the wavelength comes from the
    log-linear keys, λ_i = 10^(COEFF0 + COEFF1·i).
``coadd`` (DR8 and later)
    Empty primary HDU and a binary-table extension ``COADD`` with one row and the vector columns FLUX,
    IVAR, WAVELENGTH, ANDMASK, ORMASK (and NORMALIZATION).

Files may be gzipped or bzip2-compressed. The reader takes a lean path for the standard layouts: astropy
parses the headers and numpy views the big-endian data in place, which is 3–4× faster than building astropy
HDU objects (measured by ``benchmarks/bench_ingest.py``). Anything it does not recognize (a table with other
column formats, say) is read by :mod:`astropy.io.fits` instead, so every valid FITS file still reads.

Untrusted input (SPEC §2, issue "Untrusted input never stops a run")
---------------------------------------------------------------------
:func:`read_lamost` raises nothing but :class:`LamostReadError` for any content of the file, and its memory
stays within a small multiple of the file's decompressed size:

- the decompressed size is capped (``max_bytes``, :data:`DEFAULT_MAX_BYTES`) and inflation is incremental,
  so a gzip or bzip2 bomb is refused (code ``too_large``) before it is inflated;
- every header card the reader relies on is parsed and checked before any data is touched: an unparsable
  or ill-typed card is ``bad_header`` naming the card, and the declared sizes of every HDU walked (BITPIX,
  NAXIS, NAXISn, PCOUNT, GCOUNT, TFIELDS, the TFORMn widths, THEAP) must be sane and fit in the bytes
  actually present (else ``truncated``). astropy only sees files that passed these checks;
- any other exception raised while reading (a bug, or an astropy failure not foreseen) becomes
  ``unreadable`` with the exception's type and message — in one place, at the top of :func:`read_lamost`;
- except a system error, which is not the file's fault (:func:`survey_scale.core.files.is_system_error` with
  ``reading_file``): out of memory, or an ``OSError`` the operating system raised for another reason than the
  file's own state (an I/O error, a stale network handle — not a missing or forbidden file, which stays
  ``missing_file`` / ``unreadable``). It is raised as it is, so the ingest fails the work unmarked and a rerun
  retries it instead of rejecting the file for good;
- a cooperative time limit (``time_limit_s``) is checked between the phases (decompress, header parse,
  data parse) and gives ``too_slow``. It cannot interrupt a single C call (one inflate or one astropy
  parse); the size caps keep those short.

Header cards the reader does not use are parsed lazily (parsing all of them would double the cost of a
read); :meth:`LamostSpectrum.get` and :attr:`LamostSpectrum.header` treat a card whose value cannot be parsed
as absent, so a damaged OBJNAME, say, does not stop a run either.

Modules: this one detects the layout and reads it (the lean readers, the wavelength of the image layout,
the astropy fallback); :mod:`.lamost_spectrum` holds the result and error types (and the header-value rules),
:mod:`.lamost_bytes` the decompression within limits, :mod:`.lamost_hdus` the header and declared-size checks,
:mod:`.lamost_files` file names and relabelled copies. Their names stay importable from here.

Wavelengths are vacuum and heliocentric, as LAMOST publishes them (observed frame; the ingest shifts them
to the rest frame).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import numpy as np
from astropy.io import fits

from survey_scale.core.files import is_system_error
from survey_scale.io.lamost_bytes import DEFAULT_MAX_BYTES, DEFAULT_TIME_LIMIT_S, _Deadline, _read_bytes
from survey_scale.io.lamost_files import lamost_filename, relabel_lamost_file
from survey_scale.io.lamost_hdus import (
    BLOCK,
    CARD,
    MAX_HDUS,
    MAX_HEADER_BLOCKS,
    _check_descriptors,
    _float_card,
    _Hdu,
    _value,
    _walk_hdus,
)
from survey_scale.io.lamost_spectrum import LamostReadError, LamostSpectrum, _short, _untrusted

__all__ = [  # the reader, and the names of this module before its split that other code imports
    "BLOCK",
    "CARD",
    "COADD_COLUMNS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_TIME_LIMIT_S",
    "MAX_HDUS",
    "MAX_HEADER_BLOCKS",
    "LamostReadError",
    "LamostSpectrum",
    "_read_astropy",
    "_read_bytes",
    "lamost_filename",
    "read_lamost",
    "relabel_lamost_file",
]


COADD_COLUMNS = ("FLUX", "IVAR", "WAVELENGTH", "ANDMASK", "ORMASK")


def read_lamost(
    path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES, time_limit_s: float | None = DEFAULT_TIME_LIMIT_S
) -> LamostSpectrum:
    """Read one LAMOST low-resolution spectrum file (any layout, gzipped or not).

    Parameters
    ----------
    path
        A ``.fits``, ``.fits.gz`` or ``.fits.bz2`` file (the compression is detected from the content).
    max_bytes
        Largest accepted size of the file, decompressed (default :data:`DEFAULT_MAX_BYTES`, 64 MiB).
        Decompression stops as soon as it is exceeded, so a compression bomb costs at most ~2× this much
        memory.
    time_limit_s
        Cooperative time limit in seconds (None: none). It is checked between the phases of a read
        (decompress, header parse, data parse) and between HDUs; a single C call (one inflate step, one
        astropy parse) is not interrupted, so a read can overrun it by the length of one such call.

    Returns
    -------
    LamostSpectrum
        Arrays on the native grid and the primary header.

    Raises
    ------
    LamostReadError
        For every problem with the file, whatever its bytes, with a ``code`` and a message naming the file
        (see :class:`LamostReadError` for the codes): not FITS, truncated, too large, too slow, an
        unparsable or impossible header card, no spectrum HDU, missing column, wrong shape.
    MemoryError, OSError
        A system error, not the file's fault (see the module docstring): the caller retries later.
    ValueError
        Only for invalid ``max_bytes`` / ``time_limit_s`` arguments (a caller's bug, not the file's).
    """
    path = Path(path)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ValueError(f"max_bytes must be a positive integer, got {max_bytes!r}")
    if time_limit_s is not None and not time_limit_s >= 0:
        raise ValueError(f"time_limit_s must be >= 0 or None, got {time_limit_s!r}")
    try:
        with _untrusted():
            return _read(path, max_bytes, _Deadline(path, time_limit_s))
    except LamostReadError as exc:
        # a read error that the operating system raised (EIO, ESTALE, ...) and that was typed on the way: the
        # machine's, not the file's
        cause = exc.__cause__ or exc.__context__
        if cause is not None and is_system_error(cause, reading_file=True):
            _raise_system_error(cause, path)
        raise
    except Exception as exc:  # the one catch-all (SPEC §2): untrusted input never escapes untyped
        if is_system_error(exc, reading_file=True):
            _raise_system_error(exc, path)
        raise LamostReadError(
            path, "unreadable", f"unexpected {type(exc).__name__} while reading: {_short(str(exc), 200)}"
        ) from exc


def _raise_system_error(exc: BaseException, path: Path) -> NoReturn:
    """Raise a system error as it was raised, with the file's name when the operating system gave none (a failed
    ``read``), so that its message says which read failed."""
    if isinstance(exc, OSError) and exc.errno is not None and exc.filename is None:
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    raise exc from None


def _read(path: Path, max_bytes: int, deadline: _Deadline) -> LamostSpectrum:
    raw = _read_bytes(path, max_bytes, deadline)
    deadline.check("reading and decompressing the file")
    if not raw.startswith(b"SIMPLE  ="):
        raise LamostReadError(path, "not_fits", "not a FITS file (no SIMPLE card at the start)")
    hdus = _walk_hdus(path, raw, deadline)
    primary = next(hdus)
    deadline.check("parsing the primary header")
    try:
        return _read_lean(path, raw, primary, hdus)
    except _NotLean:
        pass
    # astropy walks every HDU: check the declared sizes of the ones the lean reader did not reach first
    for _ in hdus:
        pass
    deadline.check("checking the HDUs")
    return _read_astropy(path, raw)


class _NotLean(Exception):
    """The lean path does not handle this file; astropy reads it."""


_BITPIX_DTYPE = {-32: ">f4", -64: ">f8", 16: ">i2", 32: ">i4"}


# --- lean reader ---------------------------------------------------------------------------------------


def _read_lean(path: Path, raw: bytes, primary: _Hdu, hdus: Iterator[_Hdu]) -> LamostSpectrum:
    header = primary.header
    naxis = len(primary.axes)  # the sizes were checked against the file by _checked_hdu
    if naxis == 2:
        bitpix = primary.bitpix
        if bitpix not in (-32, -64) or _value(path, header, "BZERO", 0) != 0 or _value(path, header, "BSCALE", 1) != 1:
            raise _NotLean
        n_pix, n_rows = primary.axes
        image = np.frombuffer(raw, dtype=_BITPIX_DTYPE[bitpix], count=n_pix * n_rows, offset=primary.data_start)
        return _from_image(path, image.reshape(n_rows, n_pix), header)
    if naxis == 0 and _value(path, header, "EXTEND", False):
        for ext in hdus:
            if str(_value(path, ext.header, "EXTNAME", "")).strip().upper() == "COADD":
                return _from_coadd_lean(path, raw, header, ext)
        raise LamostReadError(path, "missing_hdu", "no COADD extension and no spectrum image in the primary HDU")
    if naxis == 1 or naxis > 2:
        raise LamostReadError(
            path, "wrong_shape", f"primary image has NAXIS={naxis}; expected a (5, n_pix) image or a COADD table"
        )
    raise LamostReadError(path, "missing_hdu", "primary HDU holds no data and there is no COADD extension")


def _from_coadd_lean(path: Path, raw: bytes, primary: fits.Header, hdu: _Hdu) -> LamostSpectrum:
    ext = hdu.header
    if hdu.xtension != "BINTABLE":
        raise LamostReadError(path, "wrong_layout", "COADD extension is not a binary table")
    row_bytes, n_rows = hdu.axes  # checked by _checked_bintable, with the TFORMn widths
    if n_rows != 1:
        raise LamostReadError(path, "wrong_shape", f"COADD table has {n_rows} rows; expected 1")
    _check_descriptors(path, raw, hdu)
    names, offset, columns = {}, 0, {}
    for i, (count, code, option, width) in enumerate(hdu.columns, 1):
        if code not in "ED" or option.strip():
            raise _NotLean
        name = str(_value(path, ext, f"TTYPE{i}", "")).strip().upper()
        if _value(path, ext, f"TSCAL{i}", 1) != 1 or _value(path, ext, f"TZERO{i}", 0) != 0:
            raise _NotLean
        names[name] = (offset, count, ">f4" if code == "E" else ">f8")
        offset += width
    if offset != row_bytes:
        raise _NotLean
    missing = [c for c in COADD_COLUMNS if c not in names]
    if missing:
        raise LamostReadError(path, "missing_column", f"COADD table lacks column(s) {', '.join(missing)}")
    for col in COADD_COLUMNS:
        off, count, dtype = names[col]
        columns[col] = np.frombuffer(raw, dtype=dtype, count=count, offset=hdu.data_start + off)
    return _assemble(path, primary, columns, "coadd")


def _from_image(path: Path, image: np.ndarray, header: fits.Header) -> LamostSpectrum:
    n_rows = image.shape[0]
    if n_rows < 5:
        raise LamostReadError(
            path, "wrong_shape", f"primary image has {n_rows} rows; expected 5 (flux, ivar, wavelength, masks)"
        )
    if image.shape[1] == 0:
        raise LamostReadError(path, "wrong_shape", "primary image has no pixels (NAXIS1 = 0)")
    columns = {"FLUX": image[0], "IVAR": image[1], "ANDMASK": image[3], "ORMASK": image[4]}
    row_names = re.split(r"[,\s]+", str(_value(path, header, "EXTEN0", "")).strip())
    third = row_names[2].lower() if len(row_names) >= 3 else ""
    if third.startswith("wave") or (not third and _looks_like_wavelength(image[2])):
        columns["WAVELENGTH"] = image[2]
    elif "COEFF0" in header and "COEFF1" in header:
        coeff0, coeff1 = _float_card(path, header, "COEFF0"), _float_card(path, header, "COEFF1")
        with np.errstate(over="ignore", invalid="ignore"):  # absurd coefficients give inf/NaN, not a warning
            columns["WAVELENGTH"] = 10.0 ** (coeff0 + coeff1 * np.arange(image.shape[1]))
        return _assemble(path, header, columns, "image", wavelength_source="coeff")
    else:
        raise LamostReadError(
            path,
            "missing_wavelength",
            f"third image row is {row_names[2] if len(row_names) >= 3 else 'unnamed'!r}, not a wavelength, "
            "and the header has no COEFF0/COEFF1 to rebuild it",
        )
    return _assemble(path, header, columns, "image")


def _looks_like_wavelength(row: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(row)) and row[0] > 2000 and row[-1] < 12000 and np.all(np.diff(row) > 0))


def _assemble(
    path: Path, header: fits.Header, columns: dict[str, np.ndarray], layout: str, wavelength_source: str = "data"
) -> LamostSpectrum:
    lengths = {name: arr.shape for name, arr in columns.items()}
    if len({s for s in lengths.values()}) != 1 or len(next(iter(lengths.values()))) != 1:
        raise LamostReadError(path, "wrong_shape", f"arrays differ in shape: {lengths}")

    def mask(values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        # A non-finite mask value cannot be trusted: mark the pixel bad (bit 31).
        return np.where(np.isfinite(values), np.clip(values, 0, 2**31 - 1), 2**31).astype(np.uint32)

    return LamostSpectrum(
        path=str(path),
        wavelength=np.asarray(columns["WAVELENGTH"], dtype=np.float64),
        flux=np.asarray(columns["FLUX"], dtype=np.float64),
        ivar=np.asarray(columns["IVAR"], dtype=np.float64),
        andmask=mask(columns["ANDMASK"]),
        ormask=mask(columns["ORMASK"]),
        layout=layout,
        wavelength_source=wavelength_source,
        fits_header=header,
    )


# --- astropy fallback ----------------------------------------------------------------------------------


def _read_astropy(path: Path, raw: bytes) -> LamostSpectrum:
    """Read with astropy. :func:`read_lamost` calls it only once every HDU's declared sizes fit in ``raw``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # astropy only *warns* about truncation; make it fatal
            with fits.HDUList.fromstring(raw) as hdul:
                primary = hdul[0].header
                if "COADD" in hdul:
                    table = hdul["COADD"].data
                    missing = [c for c in COADD_COLUMNS if c not in table.columns.names]
                    if missing:
                        raise LamostReadError(
                            path, "missing_column", f"COADD table lacks column(s) {', '.join(missing)}"
                        )
                    if len(table) != 1:
                        raise LamostReadError(path, "wrong_shape", f"COADD table has {len(table)} rows; expected 1")
                    columns = {c: np.array(table[c][0]) for c in COADD_COLUMNS}
                    return _assemble(path, primary, columns, "coadd")
                data = hdul[0].data
                if data is None or data.ndim != 2:
                    raise LamostReadError(path, "missing_hdu", "no COADD extension and no 2-D primary image")
                # rows past the fifth are never used: convert only the first five
                return _from_image(path, np.array(data[:5], dtype=np.float64), primary)
    except LamostReadError:
        raise
    except Exception as exc:  # astropy raises OSError, ValueError, VerifyWarning, ...
        if is_system_error(exc, reading_file=True):  # out of memory; astropy's own OSErrors have no errno
            raise
        text = str(exc)
        code = "truncated" if "truncat" in text.lower() or "smaller than" in text.lower() else "bad_fits"
        raise LamostReadError(
            path, code, f"astropy cannot read it: {type(exc).__name__}: {_short(text, 200)}"
        ) from None
