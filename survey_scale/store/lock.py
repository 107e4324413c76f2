"""The writer lock: one process at a time writes a cube (SPEC §11).

The lock is a file, ``<cube>/_survey_scale/writer.lock``, created with ``O_CREAT | O_EXCL`` (atomic on local
and NFS file systems) and holding the owner's host, pid, start time and command. While held, a heartbeat
thread touches it every few seconds. A second writer is refused with a message naming the owner. A lock is
**stale**, and is broken (with a warning) rather than waited on, when its owner is a dead process on this
host or when its heartbeat is older than ``runner.lock_stale_after_s`` (an owner on another node that died).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from survey_scale.core.errors import SurveyScaleError
from survey_scale.store.bookkeeping import Bookkeeping

log = logging.getLogger(__name__)


class StoreLockedError(SurveyScaleError, RuntimeError):
    """Another live process holds the cube's writer lock."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WriterLock:
    """Exclusive writer lock on a cube (a context manager).

    Parameters
    ----------
    cube_path
        The cube.
    stale_after_s
        Age of the last heartbeat after which a lock held from another host counts as stale.
    """

    def __init__(self, cube_path: str | Path, stale_after_s: float = 120.0) -> None:
        self.cube_path = Path(cube_path)
        self.path = Bookkeeping(cube_path).lock_path
        self.stale_after_s = stale_after_s
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _owner(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def _is_stale(self, owner: dict) -> str | None:
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return "it disappeared"
        if owner.get("host") == socket.gethostname() and "pid" in owner and not _pid_alive(int(owner["pid"])):
            return f"its process {owner['pid']} on this host is gone"
        if age > self.stale_after_s:
            return f"its heartbeat stopped {age:.0f} s ago (limit {self.stale_after_s:.0f} s)"
        return None

    def acquire(self) -> None:
        """Take the lock, breaking a stale one; raise :class:`StoreLockedError` if a live writer holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
            "token": self.token,
        }
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                why = self._is_stale(owner)
                if why is None:
                    raise StoreLockedError(
                        f"{self.cube_path}: another process is writing this cube (pid {owner.get('pid', '?')} on "
                        f"{owner.get('host', '?')} since {owner.get('started', '?')}: {owner.get('command', '?')!r}). "
                        f"Wait for it to finish; if that process no longer exists, delete {self.path}."
                    ) from None
                # Renaming is atomic: of two processes breaking the same stale lock, one wins the rename.
                try:
                    os.replace(self.path, self.path.with_name(f"writer.lock.stale-{uuid.uuid4().hex[:8]}"))
                    log.warning("%s: broke a stale writer lock (%s)", self.cube_path, why)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(info, fh)
            self._thread = threading.Thread(target=self._heartbeat, name="survey_scale-lock", daemon=True)
            self._thread.start()
            return
        raise StoreLockedError(f"{self.cube_path}: could not take the writer lock {self.path}")

    def _heartbeat(self) -> None:
        interval = max(1.0, self.stale_after_s / 8)
        while not self._stop.wait(interval):
            try:
                os.utime(self.path)
            except FileNotFoundError:
                log.error("%s: the writer lock file was removed while this process held it", self.cube_path)
                return

    def release(self) -> None:
        """Give the lock back (only if this process still owns it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._owner().get("token") == self.token:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
