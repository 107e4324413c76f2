"""Content hashes and atomic writes: the one helper of each that every layer uses.

Provenance keys (stage parameters, model training keys, configuration sections) are :func:`stable_hash`
of their parts; model files are identified by :func:`file_sha256`. Every small bookkeeping or model file is
written with :func:`atomic_write`, so a process killed mid-write never leaves a torn file under its final name.
"""

from __future__ import annotations

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


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Write ``path`` atomically: ``write(tmp)`` fills a temporary file beside it, which is then renamed.

    The temporary name carries the process id, so two processes writing the same file never share one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
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
