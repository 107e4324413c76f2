"""FITS headers and declared sizes of an untrusted file, checked before any data is read (SPEC §2).

Every card the reader relies on is parsed and type-checked (``bad_header`` names the card), and the data size
each HDU declares (BITPIX, NAXISn, PCOUNT, GCOUNT, the TFORMn widths, THEAP, variable-length descriptors) must
be sane and fit in the bytes present (else ``truncated``): astropy only sees files that passed these checks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.io.fits.card import Undefined

from survey_scale.io.lamost_bytes import _Deadline
from survey_scale.io.lamost_spectrum import LamostReadError, _short

BLOCK = 2880
CARD = 80


MAX_HEADER_BLOCKS = 100
"""Largest header (2880-byte blocks, 36 cards each) the reader parses; LAMOST headers have 4."""

MAX_HDUS = 64
"""Most HDUs the reader walks; LAMOST files have 1 or 2."""


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
