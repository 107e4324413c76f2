"""The writer lock: one process at a time writes a cube (SPEC §11).

The lock is a file, ``<cube>/_survey_scale/writer.lock``, holding the owner's host, pid, start time, command
and a random **token**. While held, a heartbeat thread touches it every ``stale_after_s / 8`` seconds (at
least 1 s). A second writer is refused with a message naming the owner. A lock is **stale**, and is broken
(with a warning) rather than waited on, when its owner is a dead process on this host or when its heartbeat
is older than ``runner.lock_stale_after_s`` (an owner on another node that died).

The protocol (local and NFS file systems alike; it needs only atomic ``open(O_EXCL)``, ``link`` and
``rename``):

- **Taking.** The lock's content is written to a file of a unique name, which is then hard-linked to
  ``writer.lock``: ``link`` fails if the name exists, so exactly one process takes a free lock, and the
  lock is never seen half-written. (Where hard links are not supported, ``O_CREAT | O_EXCL``.)
- **Ages come from the file system's clock.** A lock's age is the modification time of a probe file just
  created next to it minus the lock's own modification time. On NFS both are the server's clock, so a
  client whose clock is off neither breaks a live lock nor waits on a dead one.
- **Breaking is atomic and verified.** A given lock file is removed — by a breaker or by its owner's
  release — only by the one process that creates its **claim** ``writer.lock.claim-<token>``
  (``O_EXCL``). Holding the claim, the breaker looks at ``writer.lock`` again: the same inode and the same
  content (token) as the file it judged, and still stale? Only then it renames it to a unique
  ``writer.lock.broken-<id>`` (atomic), checks the renamed file's inode and content once more and deletes
  it, drops the claim and takes the lock as above. So of two processes that judged the same lock stale,
  the second, finding under the claim a fresh lock (another token, another inode) where the stale one
  was, backs off and is refused: it can never rename the first one's new lock away. Should the renamed
  file still not be the one judged (someone removed the lock outside this protocol), it is linked back
  (``link`` never replaces a file) and the lock is not taken. A claim left by a breaker that died (older
  than the stale age, by the file system's clock) is removed the same verified way.
- **The heartbeat refreshes only its own lock.** It opens ``writer.lock``, checks device, inode and content
  (token) against the file it created and touches *that open file* (``futimens``), never whatever file is
  there. If the lock is gone or another's — broken as stale while this process was paused, deleted by
  hand — the lock is **lost**: the heartbeat logs it and interrupts the holder's main thread; the context
  manager's exit turns that into :class:`LockLostError` (a :class:`SurveyScaleError`), and
  :meth:`WriterLock.check`, the cheap check point for callers, raises it from then on. A release after a
  loss leaves the other writer's lock alone.

Limits: this is a lease. A holder paused longer than the stale age can be broken; it stops at its next
heartbeat or :meth:`~WriterLock.check` (which reads the lock file itself when the heartbeat is overdue),
but what it writes in between is not fenced.
"""

from __future__ import annotations

import _thread
import errno
import json
import logging
import os
import re
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from survey_scale.core.errors import SurveyScaleError
from survey_scale.store.bookkeeping import Bookkeeping

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"[0-9a-f]{32}\Z")
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK}


class StoreLockedError(SurveyScaleError, RuntimeError):
    """Another live process holds the cube's writer lock."""


class LockLostError(SurveyScaleError, RuntimeError):
    """This process held the cube's writer lock and lost it (broken as stale by another process, removed)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class _Seen:
    """One look at a lock (or claim) file: its identity (device, inode, content) and its modification time."""

    dev: int
    ino: int
    mtime: float
    data: bytes

    def same_file(self, other: _Seen | None) -> bool:
        return other is not None and (self.dev, self.ino, self.data) == (other.dev, other.ino, other.data)

    @property
    def owner(self) -> dict[str, Any]:
        try:
            owner = json.loads(self.data)
        except ValueError:
            return {}
        return owner if isinstance(owner, dict) else {}

    @property
    def key(self) -> str:
        """The name of its claim: the owner's token (the inode for a lock without one)."""
        token = self.owner.get("token")
        return token if isinstance(token, str) and _TOKEN.match(token) else f"ino{self.dev}-{self.ino}"


def _read_fd(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _look(path: Path) -> _Seen | None:
    """The file at ``path`` (identity and time from one open file), or None if there is none."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
        return _Seen(st.st_dev, st.st_ino, st.st_mtime, _read_fd(fd))
    finally:
        os.close(fd)


def _fs_now(folder: Path) -> float:
    """The time by the clock of the file system of ``folder``: the modification time of a new probe file."""
    probe = folder / f"writer.lock.probe-{uuid.uuid4().hex}"
    fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        return os.fstat(fd).st_mtime
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)


def _same_inode(a: Path, b: Path) -> bool:
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _remove_exact(path: Path, seen: _Seen) -> bool:
    """Remove the file at ``path`` if it is the file ``seen`` (inode and content, checked after an atomic
    rename to a unique name); a different file is put back (never over a file that appeared meanwhile)."""
    moved = path.with_name(f"writer.lock.broken-{uuid.uuid4().hex}")
    try:
        os.rename(path, moved)
    except FileNotFoundError:
        if not os.path.lexists(moved):  # (on NFS a retried rename that had succeeded reports ENOENT)
            return False
    got = _look(moved)
    if seen.same_file(got):
        moved.unlink(missing_ok=True)
        return True
    if got is not None:
        try:
            os.link(moved, path)
        except FileExistsError:
            if not _same_inode(moved, path):
                log.error("%s: renamed a file that was not the stale lock and could not put it back", path)
                return False
        except OSError as exc:
            log.error("%s: renamed a file that was not the stale lock and could not put it back: %s", path, exc)
            return False
        moved.unlink(missing_ok=True)
        log.warning("%s: the file renamed to break a stale lock was another one; it was put back", path)
    return False


def _write_new(path: Path, data: bytes) -> os.stat_result:
    """Create ``path`` (``FileExistsError`` if it exists), write ``data``, fsync; its stat."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
        return os.fstat(fd)
    finally:
        os.close(fd)


class WriterLock:
    """Exclusive writer lock on a cube (a context manager; see the module docstring for the protocol).

    Parameters
    ----------
    cube_path
        The cube.
    stale_after_s
        Age of the last heartbeat (by the file system's clock) after which a lock counts as stale.
    interrupt_main
        When the lock is lost, interrupt the main thread (if it took the lock) so that the run stops at once;
        the context exit raises :class:`LockLostError`. Without it, the run stops at the next
        :meth:`check` or at the context exit.
    claim_wait_s
        How long to wait while another process is breaking the same stale lock before giving up.
    """

    def __init__(
        self,
        cube_path: str | Path,
        stale_after_s: float = 120.0,
        *,
        interrupt_main: bool = True,
        claim_wait_s: float = 5.0,
    ) -> None:
        self.cube_path = Path(cube_path)
        self.path = Bookkeeping(cube_path).lock_path
        self.stale_after_s = stale_after_s
        self.interrupt_main = interrupt_main
        self.claim_wait_s = claim_wait_s
        self.token = uuid.uuid4().hex
        self._interval = max(min(1.0, stale_after_s / 4), stale_after_s / 8)
        self._mine: _Seen | None = None
        self._lost: str | None = None
        self._last_beat = 0.0
        self._main_holder = False
        self._stop = threading.Event()
        self._state = threading.Lock()  # orders "lost, interrupt the main thread" against "stopping"
        self._beating = threading.Lock()  # one heartbeat at a time (the thread's, or check()'s)
        self._thread: threading.Thread | None = None

    # --- looking at locks ---------------------------------------------------------------------------------

    def _owner(self) -> dict[str, Any]:
        seen = _look(self.path)
        return seen.owner if seen is not None else {}

    def _is_stale(self, seen: _Seen) -> str | None:
        """Why the lock ``seen`` is stale, or None if it is live."""
        owner = seen.owner
        try:
            pid = int(owner["pid"])
        except (KeyError, TypeError, ValueError):
            pid = None
        if owner.get("host") == socket.gethostname() and pid is not None and not _pid_alive(pid):
            return f"its process {pid} on this host is gone"
        age = _fs_now(self.path.parent) - seen.mtime
        if age > self.stale_after_s:
            return (
                f"its heartbeat stopped {age:.0f} s ago by the file system's clock (limit {self.stale_after_s:.0f} s)"
            )
        return None

    def _claim(self, key: str) -> Path | None:
        """Create the claim on removing the lock ``key``; None if another process holds it."""
        claim = self.path.with_name(f"writer.lock.claim-{key}")
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return None
        try:  # the claim is the file's creation; its content only tells a reader who made it
            with os.fdopen(fd, "w") as fh:
                json.dump({"host": socket.gethostname(), "pid": os.getpid(), "token": self.token}, fh)
        except OSError:  # e.g. a full disk: releasing or breaking must still work
            pass
        return claim

    def _clear_stale_claim(self, key: str) -> None:
        """Remove the claim ``key`` if its process died while breaking (older than the stale age)."""
        claim = self.path.with_name(f"writer.lock.claim-{key}")
        seen = _look(claim)
        if seen is None:
            return
        age = _fs_now(self.path.parent) - seen.mtime
        if age > self.stale_after_s and _remove_exact(claim, seen):
            log.warning("%s: removed the claim %s left %.0f s ago by a process that died", self.cube_path, claim, age)

    # --- taking and breaking ------------------------------------------------------------------------------

    def _create(self, data: bytes) -> _Seen | None:
        """Create the lock file with ``data``; None if a lock file is there."""
        tmp = self.path.with_name(f"writer.lock.new-{self.token}")
        st = _write_new(tmp, data)
        try:
            os.link(tmp, self.path)
        except FileExistsError:
            if os.stat(tmp).st_nlink < 2:  # (on NFS a retried link that had succeeded reports EEXIST)
                return None
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            return self._create_exclusive(data)
        finally:
            tmp.unlink(missing_ok=True)
        return _Seen(st.st_dev, st.st_ino, st.st_mtime, data)

    def _create_exclusive(self, data: bytes) -> _Seen | None:
        try:
            st = _write_new(self.path, data)
        except FileExistsError:
            return None
        return _Seen(st.st_dev, st.st_ino, st.st_mtime, data)

    def _break(self, seen: _Seen) -> bool:
        """Remove the stale lock ``seen`` under its claim; False if another process is breaking it or has."""
        claim = self._claim(seen.key)
        if claim is None:
            self._clear_stale_claim(seen.key)
            return False
        try:
            now = _look(self.path)
            if not seen.same_file(now):  # broken (and maybe taken again) by another process meanwhile
                return False
            why = self._is_stale(now)
            if why is None or not _remove_exact(self.path, now):
                return False
        finally:
            claim.unlink(missing_ok=True)
        owner = now.owner
        log.warning(
            "%s: broke a stale writer lock (%s; it was pid %s on %s since %s)",
            self.cube_path,
            why,
            owner.get("pid", "?"),
            owner.get("host", "?"),
            owner.get("started", "?"),
        )
        return True

    def acquire(self) -> None:
        """Take the lock, breaking a stale one; raise :class:`StoreLockedError` if a live writer holds it."""
        if self._mine is not None:
            raise RuntimeError(f"{self.path}: this WriterLock is held already")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
            "token": self.token,
        }
        data = json.dumps(info).encode()
        deadline = time.monotonic() + self.claim_wait_s
        while (mine := self._create(data)) is None:
            seen = _look(self.path)
            if seen is not None:
                if self._is_stale(seen) is None:
                    owner = seen.owner
                    raise StoreLockedError(
                        f"{self.cube_path}: another process is writing this cube (pid {owner.get('pid', '?')} on "
                        f"{owner.get('host', '?')} since {owner.get('started', '?')}: {owner.get('command', '?')!r}). "
                        f"Wait for it to finish; if that process no longer exists, delete {self.path}."
                    )
                if self._break(seen):
                    continue
            if time.monotonic() > deadline:
                raise StoreLockedError(
                    f"{self.cube_path}: another process is breaking the stale writer lock {self.path} at the same "
                    "time; try again"
                )
            time.sleep(0.05)
        self._mine, self._lost = mine, None
        self._last_beat = time.monotonic()
        self._main_holder = threading.current_thread() is threading.main_thread()
        self._stop.clear()
        self._thread = threading.Thread(target=self._heartbeat, name="survey_scale-lock", daemon=True)
        self._thread.start()

    # --- holding ------------------------------------------------------------------------------------------

    def _heartbeat(self) -> None:
        while not self._stop.wait(self._interval):
            if not self._beat(interrupt=True):
                return

    def _beat(self, *, interrupt: bool) -> bool:
        """Touch the lock file if it is still this process's own; False (and the lock lost) if not."""
        mine = self._mine
        with self._beating:
            if self._lost is not None or mine is None:
                return False
            try:
                fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return self._lose("its file was removed", interrupt)
            except OSError as exc:
                return self._beat_failed(exc, interrupt)
            try:
                st = os.fstat(fd)
                now = _Seen(st.st_dev, st.st_ino, st.st_mtime, _read_fd(fd))
                if not mine.same_file(now):
                    other = now.owner
                    return self._lose(
                        f"it is now pid {other.get('pid', '?')}'s on {other.get('host', '?')}"
                        if other.get("token") != self.token
                        else "its file was replaced",
                        interrupt,
                    )
                os.utime(fd)  # this very file: never another process's lock
            except OSError as exc:
                return self._beat_failed(exc, interrupt)
            finally:
                os.close(fd)
            self._last_beat = time.monotonic()
            return True

    def _beat_failed(self, exc: OSError, interrupt: bool) -> bool:
        if exc.errno == errno.ESTALE:
            return self._lose("its file was removed (stale NFS file handle)", interrupt)
        silent = time.monotonic() - self._last_beat
        if silent > self.stale_after_s:
            return self._lose(f"its heartbeat could not be written for {silent:.0f} s ({exc})", interrupt)
        log.warning("%s: could not refresh the writer lock (%s); trying again", self.cube_path, exc)
        return True

    def _lose(self, why: str, interrupt: bool) -> bool:
        with self._state:
            if self._lost is None:
                self._lost = why
                log.error("%s: this process lost the writer lock %s: %s", self.cube_path, self.path, why)
                if interrupt and self.interrupt_main and self._main_holder and not self._stop.is_set():
                    _thread.interrupt_main()
        return False

    def _lost_message(self) -> str:
        return (
            f"{self.cube_path}: this process lost the writer lock {self.path} ({self._lost}); another process "
            "may be writing this cube, so this run stopped. Make sure no other process writes the cube, then "
            "run the command again."
        )

    def check(self, *, verify: bool = False) -> None:
        """Raise :class:`LockLostError` if this process no longer holds the lock.

        Cheap (no file access) unless ``verify`` or the heartbeat is overdue (this process was paused):
        then the lock file is looked at now.
        """
        if self._lost is None and self._mine is None:
            raise LockLostError(f"{self.cube_path}: this process does not hold the writer lock {self.path}")
        if self._lost is None and (verify or time.monotonic() - self._last_beat > 2 * self._interval):
            self._beat(interrupt=False)
        if self._lost is not None:
            raise LockLostError(self._lost_message())

    @property
    def lost(self) -> str | None:
        """Why this process lost the lock, or None."""
        return self._lost

    def release(self) -> None:
        """Give the lock back: remove the lock file only if it is still this process's own (never another's)."""
        with self._state:
            self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        mine, self._mine = self._mine, None
        if mine is None or self._lost is not None:
            return
        deadline = time.monotonic() + self.claim_wait_s
        while (claim := self._claim(mine.key)) is None:  # a breaker looking at it: it backs off or breaks it
            if not mine.same_file(_look(self.path)):
                self._lose("another process broke it as stale", interrupt=False)
                return
            if time.monotonic() > deadline:
                self._clear_stale_claim(mine.key)
                if time.monotonic() > deadline + self.claim_wait_s:
                    self._lose("another process is breaking it as stale", interrupt=False)
                    return
            time.sleep(0.05)
        try:
            now = _look(self.path)
            if not mine.same_file(now):
                self._lose("its file was removed" if now is None else "it is now another process's", interrupt=False)
                return
            _remove_exact(self.path, now)
        finally:
            claim.unlink(missing_ok=True)

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.release()
        except KeyboardInterrupt as late:  # the heartbeat's interrupt landed here
            if self._lost is None:
                raise
            exc = exc if exc is not None else late
        if self._lost is not None and not isinstance(exc, LockLostError):  # (one from check() goes on as it is)
            raise LockLostError(self._lost_message()) from exc
