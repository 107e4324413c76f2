"""Content hashes, durable atomic writes and system errors: the one helper of each that every layer uses.

Provenance keys (stage parameters, model training keys, configuration sections) are :func:`stable_hash`
of their parts; model files are identified by :func:`file_sha256`. Every small bookkeeping or model file is
written with :func:`atomic_write`, so a process killed mid-write never leaves a torn file under its final name,
and a file it wrote survives a power loss once it returns (the file and its folder are synced: a done marker
written after a result never outlives it). :func:`is_system_error` says whether an exception is the machine's
fault (memory, a disk, the storage) rather than the fault of the one input being processed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def stable_hash(*parts: Any) -> str:
    """A 16-hex-digit SHA-256 key of ``parts``, the same in every process and on every machine.

    A numpy array contributes its bytes, a mapping or list its sorted JSON (``default=str``), anything else
    (strings, numbers) its ``repr``.
    """
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(part.tobytes())
        elif isinstance(part, dict | list):
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
        else:
            digest.update(repr(part).encode())
    return digest.hexdigest()[:16]


def file_sha256(path: str | Path) -> str:
    """Full SHA-256 of a file (model provenance)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_file(path: str | Path) -> None:
    """Flush a file's data and metadata to its storage (``fsync``)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries (files created, renamed or removed in it) to its storage.

    A file system that cannot sync a folder (``EINVAL``, ``ENOTSUP``: some network and FUSE file systems) is
    left as it is: there, a rename is as durable as the file system makes it.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ENOTSUP, errno.EACCES):
            return
        raise
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def fsync_tree(path: str | Path) -> None:
    """``fsync`` every file and folder under ``path`` (``path`` included): a folder written by another library
    (a Zarr array) made durable before it is renamed into place."""
    path = Path(path)
    if path.is_file():
        fsync_file(path)
        return
    for folder, _, files in os.walk(path, topdown=False):
        for name in files:
            fsync_file(os.path.join(folder, name))
        fsync_dir(folder)


def fsync_up(path: str | Path, top: str | Path) -> None:
    """``fsync`` the file ``path`` (if it exists) and every folder from its own up to ``top`` (included): a file
    written in folders that may have been created for it, made durable with their entries."""
    path, top = Path(path), Path(top)
    if path.is_file():
        fsync_file(path)
    for folder in (path.parent, *path.parent.parents):
        if folder.is_dir():
            fsync_dir(folder)
        if folder == top or top not in folder.parents:
            break


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Write ``path`` atomically and durably: ``write(tmp)`` fills a temporary file beside it, which is synced,
    renamed to ``path``, and its folder synced.

    So a kill leaves the old file or the new one, never a torn one; a power loss after the return keeps the new
    one; and a file written after this one returned (a done marker after its result) never survives without it.
    The temporary name carries the process id, so two processes writing the same file never share one; it is
    removed when the write fails (a full disk). An ``OSError`` without a file name gets ``path``, so a message
    names the file that could not be written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        if exc.errno is not None and exc.filename is None:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` to exactly ``path`` (numpy would append ``.npz`` to a name that lacks it)."""
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write bytes atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_json(path: str | Path, value: Any) -> Path:
    """Write JSON atomically (indented, sorted keys; see :func:`atomic_write`)."""
    return atomic_write_bytes(path, json.dumps(value, indent=1, sort_keys=True, default=str).encode())


FILE_FAULT_ERRNOS = frozenset(
    {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.ELOOP, errno.ENAMETOOLONG}
)
"""``errno`` values that describe one file rather than the machine: missing, a folder, not permitted, a bad
name. Reading an input file, such an error is that file's fault (a reject), not a system error."""


def is_system_error(exc: BaseException, *, reading_file: bool = False) -> bool:
    """Whether ``exc`` is the machine's fault, not the fault of the one input or spectrum being processed: out of
    memory (``MemoryError``, torch's ``OutOfMemoryError``) or an ``OSError`` (a full disk, a storage or network
    error).

    Such an error must never become a permanent reject: the work fails unmarked, so a rerun retries it.

    ``reading_file``: ``exc`` was raised while reading and parsing one input file. There an ``OSError`` is the
    machine's only when the operating system raised it (an ``errno``) for a reason other than the file's own
    state (:data:`FILE_FAULT_ERRNOS`): a parser's ``OSError`` without an ``errno`` (astropy's "Header missing END
    card", gzip's ``BadGzipFile``) is a complaint about the file's bytes, and a missing or forbidden file is that
    file's. torch is not imported: its error is recognised by its class's name and module.
    """
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, OSError):
        return not reading_file or (exc.errno is not None and exc.errno not in FILE_FAULT_ERRNOS)
    return any(
        cls.__name__ == "OutOfMemoryError" and cls.__module__.split(".")[0] == "torch" for cls in type(exc).__mro__
    )
