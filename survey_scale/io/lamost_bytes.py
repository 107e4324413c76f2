"""A LAMOST file's bytes, decompressed within limits (SPEC §2, untrusted input).

gzip and bzip2 are detected from the content and inflated incrementally, so that more than ``max_bytes`` of
output is refused (``too_large``) before it is produced; :class:`_Deadline` is the cooperative time limit of
one read (``too_slow``), checked between phases.
"""

from __future__ import annotations

import bz2
import os
import stat
import time
import zlib
from pathlib import Path
from typing import Any

from survey_scale.io.lamost_spectrum import LamostReadError

DEFAULT_MAX_BYTES = 64 * 2**20
"""Largest decompressed file :func:`read_lamost` accepts (64 MiB). The largest real LAMOST file, a float64
DR2 image, is 170 kB (the float32 layouts 92–110 kB), so this leaves a factor of ~400 and still keeps a bomb
or a corrupt size from taking a worker's memory."""

DEFAULT_TIME_LIMIT_S = 10.0
"""Default cooperative per-file time limit (s); a real file reads in ~2 ms."""


_INFLATE_CHUNK = 16 * 2**20  # output per decompress call: the time limit is checked between calls


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
