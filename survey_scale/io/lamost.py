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
- a cooperative time limit (``time_limit_s``) is checked between the phases (decompress, header parse,
  data parse) and gives ``too_slow``. It cannot interrupt a single C call (one inflate or one astropy
  parse); the size caps keep those short.

Header cards the reader does not use are parsed lazily (parsing all of them would double the cost of a
read); :meth:`LamostSpectrum.get` and :attr:`LamostSpectrum.header` treat a card whose value cannot be parsed
as absent, so a damaged OBJNAME, say, does not stop a run either.

Wavelengths are vacuum and heliocentric, as LAMOST publishes them (observed frame; the ingest shifts them
to the rest frame).
"""

from __future__ import annotations

import bz2
import contextlib
import math
import os
import re
import stat
import threading
import time
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.io.fits.card import Undefined
from astropy.utils.exceptions import AstropyUserWarning

from survey_scale.core.errors import SurveyScaleError

BLOCK = 2880
CARD = 80
COADD_COLUMNS = ("FLUX", "IVAR", "WAVELENGTH", "ANDMASK", "ORMASK")
_SKIP_CARDS = {"COMMENT", "HISTORY", ""}

DEFAULT_MAX_BYTES = 64 * 2**20
"""Largest decompressed file :func:`read_lamost` accepts (64 MiB). The largest real LAMOST file, a float64
DR2 image, is 170 kB (the float32 layouts 92–110 kB), so this leaves a factor of ~400 and still keeps a bomb
or a corrupt size from taking a worker's memory."""

DEFAULT_TIME_LIMIT_S = 10.0
"""Default cooperative per-file time limit (s); a real file reads in ~2 ms."""

MAX_HEADER_BLOCKS = 100
"""Largest header (2880-byte blocks, 36 cards each) the reader parses; LAMOST headers have 4."""

MAX_HDUS = 64
"""Most HDUs the reader walks; LAMOST files have 1 or 2."""

_INFLATE_CHUNK = 16 * 2**20  # output per decompress call: the time limit is checked between calls


class LamostReadError(SurveyScaleError, ValueError):
    """A file is not a readable LAMOST spectrum.

    Attributes
    ----------
    path
        The file.
    code
        Short machine-readable reason, used to group rejects: ``missing_file``, ``empty_file``, ``not_fits``,
        ``truncated``, ``bad_header`` (a card that cannot be parsed or has an impossible value; the message
        names the card), ``too_large`` (beyond ``max_bytes`` decompressed, or a header or HDU count beyond
        reason), ``too_slow``, ``missing_hdu``, ``wrong_layout``, ``wrong_shape``, ``missing_column``,
        ``missing_wavelength``, ``bad_fits`` (astropy refused a non-standard file), ``unreadable`` (the file
        cannot be opened, or an unexpected exception while reading it; the message names the exception).
    message
        Human-readable reason.
    """

    def __init__(self, path: str | Path, code: str, message: str) -> None:
        self.path = str(path)
        self.code = code
        self.message = message
        super().__init__(f"{path}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        # picklable (Dask sends exceptions between processes): rebuild from the three fields
        return type(self), (self.path, self.code, self.message)


@dataclass
class LamostSpectrum:
    """One LAMOST spectrum on its native pixel grid (SPEC §12 ``ss.io.read_lamost``).

    Attributes
    ----------
    path
        The file it was read from.
    wavelength
        (n_pix,) float64, vacuum heliocentric wavelength in Å (observed frame).
    flux, ivar
        (n_pix,) float64 flux (LAMOST's relative flux units) and its inverse variance.
    andmask, ormask
        (n_pix,) uint32 LAMOST pixel bit masks (0 = good).
    layout
        ``"image"`` (DR1–DR7) or ``"coadd"`` (DR8+).
    wavelength_source
        ``"data"`` when the file's wavelength row/column was used, ``"coeff"`` when it was rebuilt from
        COEFF0/COEFF1 (early v2.6.x files).
    fits_header
        The primary header (cards the reader did not use are parsed on access and may be unparsable: prefer
        :meth:`get` and :attr:`header`, which treat such cards as absent).
    """

    path: str
    wavelength: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    andmask: np.ndarray
    ormask: np.ndarray
    layout: str
    wavelength_source: str
    fits_header: fits.Header = field(repr=False)

    @cached_property
    def header(self) -> dict[str, Any]:
        """The primary header as a dict (COMMENT/HISTORY cards and cards that cannot be parsed left out)."""
        out: dict[str, Any] = {}
        for card in self.fits_header.cards:
            try:
                key, value = card.keyword, card.value
            except Exception:  # untrusted file: an unparsable card counts as absent
                continue
            if key not in _SKIP_CARDS:
                out[key] = None if isinstance(value, Undefined) else value
        return out

    def get(self, *keys: str) -> Any:
        """First of ``keys`` present in the primary header with a usable value, else None.

        LAMOST writes missing values as −9999 or empty strings; both count as absent, and so does a card
        whose value cannot be parsed.
        """
        for key in keys:
            try:
                with _untrusted():
                    value = self.fits_header.get(key)
            except Exception:  # untrusted file: an unparsable card counts as absent
                continue
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value == -9999:
                continue
            return value.strip() if isinstance(value, str) else value
        return None


_FILTERS_LOCK = threading.RLock()


@contextlib.contextmanager
def _untrusted() -> Iterator[None]:
    """Quiet for damaged input: astropy's warnings about invalid cards (a bad card the reader needs becomes a
    ``bad_header`` error; others are ignored) and numpy's about non-finite or out-of-range values in a cast
    (the ingest's content checks judge the values)."""
    # The warning filters are process-wide: readers in threads of one process take turns (reading holds the
    # GIL anyway), so that one thread's filters are never restored under another's.
    with _FILTERS_LOCK, warnings.catch_warnings(), np.errstate(invalid="ignore", over="ignore"):
        warnings.simplefilter("ignore", AstropyUserWarning)
        yield


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
    except LamostReadError:
        raise
    except Exception as exc:  # the one catch-all (SPEC §2): untrusted input never escapes untyped
        raise LamostReadError(
            path, "unreadable", f"unexpected {type(exc).__name__} while reading: {_short(str(exc), 200)}"
        ) from exc


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


class _Deadline:
    """The cooperative time limit of one read."""

    def __init__(self, path: Path, limit_s: float | None) -> None:
        self.path = path
        self.limit_s = limit_s
        self.end = None if limit_s is None else time.monotonic() + limit_s

    def check(self, phase: str) -> None:
        if self.end is not None and time.monotonic() >= self.end:
            raise LamostReadError(
                self.path, "too_slow", f"reading took longer than time_limit_s = {self.limit_s:g} s ({phase})"
            )


def _short(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters (a card or an exception can carry a lot of text)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- bytes ---------------------------------------------------------------------------------------------


def _read_bytes(path: Path, max_bytes: int = DEFAULT_MAX_BYTES, deadline: _Deadline | None = None) -> bytes:
    """The file's bytes, decompressed (gzip or bzip2, detected from the content), at most ``max_bytes``."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            # read(n) allocates n bytes up front: ask for the file's size (+1 to see whether it grew past the
            # cap), or for the cap when the size is unknown (a pipe)
            size = st.st_size if stat.S_ISREG(st.st_mode) else max_bytes
            raw = f.read(min(size, max_bytes) + 1)
    except FileNotFoundError:
        raise LamostReadError(path, "missing_file", "file not found") from None
    except OSError as exc:
        raise LamostReadError(path, "unreadable", f"cannot read file: {exc.strerror or exc}") from None
    if not raw:
        raise LamostReadError(path, "empty_file", "file is empty (0 bytes)")
    if len(raw) > max_bytes:
        raise LamostReadError(path, "too_large", f"file is larger than max_bytes = {max_bytes} bytes")
    if raw[:2] == b"\x1f\x8b":
        return _inflate(path, raw, "gzip", max_bytes, deadline)
    if raw[:3] == b"BZh":
        return _inflate(path, raw, "bzip2", max_bytes, deadline)
    return raw


def _inflate(path: Path, raw: bytes, kind: str, max_bytes: int, deadline: _Deadline | None) -> bytes:
    """Decompress ``raw`` incrementally, refusing more than ``max_bytes`` of output before producing it.

    Concatenated members (gzip) or streams (bzip2) are joined, as ``gzip``/``bzip2 -d`` do; bytes after the
    last one that do not start another are ignored (zero padding, say).
    """
    magic = b"\x1f\x8b" if kind == "gzip" else b"BZh"
    chunks: list[bytes] = []
    total = 0
    data = raw
    while data[:3].startswith(magic):
        inflater: Any = zlib.decompressobj(47) if kind == "gzip" else bz2.BZ2Decompressor()
        while True:
            limit = min(max_bytes + 1 - total, _INFLATE_CHUNK)
            try:
                chunk = inflater.decompress(data, limit)
            except (zlib.error, OSError, EOFError, ValueError) as exc:
                raise LamostReadError(path, "truncated", f"{kind} stream is corrupt ({exc})") from None
            data = inflater.unconsumed_tail if kind == "gzip" else b""
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise LamostReadError(
                    path, "too_large", f"{kind} content is larger than max_bytes = {max_bytes} bytes (a bomb?)"
                )
            if deadline is not None:
                deadline.check("decompressing")
            if inflater.eof:
                break
            starved = inflater.needs_input if kind == "bzip2" else len(chunk) < limit and not data
            if starved:
                raise LamostReadError(path, "truncated", f"{kind} stream is truncated (ends before its end marker)")
        data = inflater.unused_data
    return b"".join(chunks)


# --- headers and declared sizes ------------------------------------------------------------------------


def _parse_header(raw: bytes, start: int, path: Path) -> tuple[fits.Header, int]:
    """Parse the header starting at byte ``start``; return it and the byte offset of its data."""
    limit = min(len(raw), start + MAX_HEADER_BLOCKS * BLOCK)
    for pos in range(start, limit - CARD + 1, CARD):
        # the END card (END and blanks; or, leniently, END followed by 5 blanks)
        if raw.startswith(b"END", pos) and (
            raw[pos : pos + 8] == b"END     " or raw[pos : pos + CARD].rstrip() == b"END"
        ):
            end = pos + CARD
            data_start = start + -(-(end - start) // BLOCK) * BLOCK
            try:
                header = fits.Header.fromstring(raw[start:end].decode("ascii"))
            except Exception as exc:  # astropy's many ways to refuse a header: all of them bad_header
                raise LamostReadError(
                    path, "bad_header", f"unparsable FITS header at byte {start}: {_short(str(exc), 200)}"
                ) from None
            return header, data_start
    if limit < len(raw):
        raise LamostReadError(
            path, "too_large", f"FITS header at byte {start} has no END card in its first {MAX_HEADER_BLOCKS} blocks"
        )
    raise LamostReadError(path, "truncated", f"FITS header at byte {start} has no END card (file truncated?)")


_REQUIRED = object()


def _bad_card(path: Path, key: str, what: str) -> LamostReadError:
    return LamostReadError(path, "bad_header", f"card {key}: {what}")


def _value(path: Path, header: fits.Header, key: str, default: Any = None) -> Any:
    """A card's value (``default`` when absent); an unparsable card is ``bad_header`` naming it."""
    try:
        value = header.get(key, _REQUIRED)
    except Exception as exc:  # astropy VerifyError & co. on a card that cannot be parsed
        raise _bad_card(path, key, _short(str(exc), 200)) from None
    if value is _REQUIRED:
        if default is _REQUIRED:
            raise _bad_card(path, key, "missing (required)")
        return default
    return value


def _int_card(
    path: Path, header: fits.Header, key: str, default: Any = _REQUIRED, lo: int | None = None, hi: int | None = None
) -> int:
    value = _value(path, header, key, default)
    if isinstance(value, Undefined):
        raise _bad_card(path, key, "has no value")
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise _bad_card(path, key, f"{_short(repr(value))} is not an integer")
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise _bad_card(path, key, f"{value} is out of range (must be {bounds})")
    return value


def _float_card(path: Path, header: fits.Header, key: str) -> float:
    value = _value(path, header, key, _REQUIRED)
    if not isinstance(value, bool) and isinstance(value, (int, float, str, np.number)):
        try:
            return float(value)
        except (TypeError, ValueError, OverflowError):
            pass
    raise _bad_card(path, key, f"{_short(repr(value))} is not a number")


_TFORM = re.compile(r"^\s*(\d*)\s*([A-Z])(.*)$", re.IGNORECASE | re.DOTALL)
_TFORM_BYTES = {"L": 1, "B": 1, "I": 2, "J": 4, "K": 8, "A": 1, "E": 4, "D": 8, "C": 8, "M": 16, "P": 8, "Q": 16}
_BITPIX_VALUES = (8, 16, 32, 64, -32, -64)


@dataclass(frozen=True)
class _Hdu:
    """One HDU whose declared sizes were checked, with the checked values of its structural cards."""

    header: fits.Header
    data_start: int  # byte offset of the data
    data_bytes: int  # declared size of the data, without the padding to a whole block
    bitpix: int
    axes: tuple[int, ...]  # NAXIS1, NAXIS2, ...
    pcount: int
    xtension: str  # "" for the primary HDU
    columns: tuple[tuple[int, str, str, int], ...] = ()  # binary table: (repeat, code, option, bytes) per TFORMn

    @property
    def end(self) -> int:
        return self.data_start + -(-self.data_bytes // BLOCK) * BLOCK


def _walk_hdus(path: Path, raw: bytes, deadline: _Deadline) -> Iterator[_Hdu]:
    """The HDUs of ``raw`` in order, each checked by :func:`_checked_hdu` before it is yielded."""
    pos, n = 0, 0
    while pos < len(raw):
        if n == MAX_HDUS:
            raise LamostReadError(path, "too_large", f"more than {MAX_HDUS} HDUs")
        if n:
            deadline.check(f"parsing HDU {n}")
        hdu = _checked_hdu(path, raw, pos, primary=n == 0)
        yield hdu
        pos, n = hdu.end, n + 1


def _checked_hdu(path: Path, raw: bytes, start: int, primary: bool) -> _Hdu:
    """Parse the header at ``start`` and check its declared data size for sanity and against the file."""
    header, data_start = _parse_header(raw, start, path)
    bitpix = _int_card(path, header, "BITPIX")
    if bitpix not in _BITPIX_VALUES:
        raise _bad_card(path, "BITPIX", f"{bitpix} is not a FITS BITPIX (one of {_BITPIX_VALUES})")
    naxis = _int_card(path, header, "NAXIS", lo=0, hi=999)
    axes = [_int_card(path, header, f"NAXIS{i}", lo=0) for i in range(1, naxis + 1)]
    pcount = _int_card(path, header, "PCOUNT", 0, lo=0) if naxis or not primary else 0
    gcount = _int_card(path, header, "GCOUNT", 1, lo=0) if naxis or not primary else 1
    xtension = "" if primary else str(_value(path, header, "XTENSION", "")).strip()
    columns: tuple[tuple[int, str, str, int], ...] = ()
    if xtension == "BINTABLE":
        columns = _checked_bintable(path, header, bitpix, axes, pcount)
    if naxis == 0:
        n_bytes = array_bytes = 0
    else:
        groups = primary and axes[0] == 0 and _value(path, header, "GROUPS", False) is True
        n_bytes = abs(bitpix) // 8 * gcount * (pcount + math.prod(axes[1:] if groups else axes))
        array_bytes = abs(bitpix) // 8 * math.prod(axes)  # what the lean reader views (GCOUNT = 0 aside)
    if data_start + max(n_bytes, array_bytes) > len(raw):
        raise LamostReadError(
            path,
            "truncated",
            f"HDU at byte {start} declares {max(n_bytes, array_bytes)} data bytes from byte {data_start}, "
            f"the file has {len(raw)} bytes (truncated, or a corrupt size card)",
        )
    return _Hdu(header, data_start, n_bytes, bitpix, tuple(axes), pcount, xtension, columns)


def _checked_bintable(
    path: Path, header: fits.Header, bitpix: int, axes: list[int], pcount: int
) -> tuple[tuple[int, str, str, int], ...]:
    """Check a binary table's TFIELDS, TFORMn and THEAP against its NAXIS1/NAXIS2/PCOUNT."""
    if bitpix != 8:
        raise _bad_card(path, "BITPIX", f"{bitpix} in a binary table (must be 8)")
    if len(axes) != 2:
        raise _bad_card(path, "NAXIS", f"{len(axes)} in a binary table (must be 2)")
    row_bytes, n_rows = axes
    tfields = _int_card(path, header, "TFIELDS", lo=0, hi=999)
    columns = []
    for i in range(1, tfields + 1):
        key = f"TFORM{i}"
        tform = _value(path, header, key, _REQUIRED)
        match = _TFORM.match(tform) if isinstance(tform, str) else None
        if match is None or match.group(2).upper() not in _TFORM_BYTES.keys() | {"X"}:
            raise _bad_card(path, key, f"{_short(repr(tform))} is not a binary-table column format")
        digits, code, option = match.group(1), match.group(2).upper(), match.group(3)
        if len(digits) > 12:
            raise _bad_card(path, key, f"repeat count {_short(digits)} is too large")
        repeat = int(digits) if digits else 1
        width = (repeat + 7) // 8 if code == "X" else repeat * _TFORM_BYTES[code]
        columns.append((repeat, code, option, width))
    width = sum(c[3] for c in columns)
    if width > row_bytes:
        raise _bad_card(path, "NAXIS1", f"{row_bytes} bytes per row, but the TFORMn columns take {width}")
    table = row_bytes * n_rows
    _int_card(path, header, "THEAP", table, lo=table, hi=table + pcount)
    return tuple(columns)


def _check_descriptors(path: Path, raw: bytes, hdu: _Hdu) -> None:
    """Variable-length (P/Q) columns: every descriptor must point inside the heap before astropy follows it."""
    if not any(code in "PQ" for _, code, _, _ in hdu.columns):
        return
    row_bytes, n_rows = hdu.axes
    heap_offset = int(hdu.header.get("THEAP", row_bytes * n_rows))  # checked by _checked_bintable
    heap_bytes = row_bytes * n_rows + hdu.pcount - heap_offset
    offset = 0
    for i, (repeat, code, option, width) in enumerate(hdu.columns, 1):
        if code in "PQ" and repeat:
            element = option.strip()[:1].upper()
            if repeat != 1 or element not in _TFORM_BYTES.keys() - {"P", "Q"} | {"X"}:
                raise _bad_card(
                    path, f"TFORM{i}", f"{_short(repr(f'{repeat}{code}{option}'))} is not a valid array descriptor"
                )
            size = 4 if code == "P" else 8
            pairs = np.ndarray(
                (n_rows, 2), dtype=f">i{size}", buffer=raw, offset=hdu.data_start + offset, strides=(row_bytes, size)
            )
            count, start = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
            ok = (count >= 0) & (start >= 0) & (count <= 8 * heap_bytes) & (start <= heap_bytes)
            if ok.all():
                n_bytes = (count + 7) // 8 if element == "X" else count * _TFORM_BYTES[element]
                ok &= start + n_bytes <= heap_bytes
            if not ok.all():
                raise LamostReadError(
                    path,
                    "bad_fits",
                    f"column {i} ({code} array) of row {int(np.flatnonzero(~ok)[0]) + 1} points outside the heap",
                )
        offset += width


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
        text = str(exc)
        code = "truncated" if "truncat" in text.lower() or "smaller than" in text.lower() else "bad_fits"
        raise LamostReadError(
            path, code, f"astropy cannot read it: {type(exc).__name__}: {_short(text, 200)}"
        ) from None


def lamost_filename(lmjd: int, planid: str, spid: int, fiberid: int, suffix: str = ".fits.gz") -> str:
    """LAMOST's file name for a spectrum: ``spec-<LMJD>-<PLANID>_sp<SS>-<FFF>.fits[.gz]``."""
    return f"spec-{int(lmjd)}-{planid}_sp{int(spid):02d}-{int(fiberid):03d}{suffix}"


def relabel_lamost_file(
    src: str | Path,
    folder: str | Path,
    *,
    obsid: int,
    fiberid: int,
    planid: str | None = None,
    spid: int | None = None,
    lmjd: int | None = None,
    suffix: str = ".fits.gz",
) -> Path:
    """Copy a LAMOST file under new identifiers (OBSID, PLANID, SPID, FIBERID, LMJD and FILENAME).

    The data are unchanged. Tests and benchmarks use it to build large inputs from the real files.

    Returns
    -------
    pathlib.Path
        The new file, named by :func:`lamost_filename` in ``folder``.
    """
    with fits.open(src) as hdul:
        header = hdul[0].header
        planid = planid or str(header["PLANID"]).strip()
        spid = int(header["SPID"]) if spid is None else spid
        lmjd = int(header["LMJD"]) if lmjd is None else lmjd
        name = lamost_filename(lmjd, planid, spid, fiberid, suffix)
        header["OBSID"] = obsid
        header["PLANID"] = planid
        header["SPID"] = spid
        header["FIBERID"] = fiberid
        header["LMJD"] = lmjd
        header["FILENAME"] = name.removesuffix(".gz")
        target = Path(folder) / name
        hdul.writeto(target, overwrite=True, output_verify="silentfix")
    return target
