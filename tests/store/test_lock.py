"""The writer lock under races: breaking a stale lock, a lock lost under its holder, clock skew.

The races run in real processes (``python -c`` of :data:`WORKER`), synchronised through files; a hook in
one of them (a wrapper of ``WriterLock._is_stale`` or of ``os.rename``/``os.replace``) pauses it at the
point where the race happens, so the bad interleaving is forced rather than hoped for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from survey_scale.store import lock as lockmod
from survey_scale.store.lock import StoreLockedError, WriterLock

START_S = 120.0  # generous: a worker imports survey_scale (seconds on a loaded machine)

WORKER = r"""
import json, os, sys, time
from pathlib import Path
from survey_scale.store.lock import WriterLock

cube, role, hook, sync = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
stale_after_s, hold_s, wait_for_name = float(sys.argv[5]), float(sys.argv[6]), sys.argv[7]
lock_path = os.path.join(cube, "_survey_scale", "writer.lock")


def wait_for(name, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (sync / name).exists():
            return True
        time.sleep(0.005)
    return False


def mark(name):
    (sync / name).write_text("")


fired = []


def pause(what):
    if not fired:
        fired.append(what)
        mark(role + "-paused")
        wait_for("others-done", 60)


if hook == "judged":  # pause right after judging the lock stale, before breaking it
    judge = WriterLock._is_stale

    def _is_stale(self, *args, **kwargs):
        why = judge(self, *args, **kwargs)
        if why:
            pause("judged")
        return why

    WriterLock._is_stale = _is_stale
elif hook == "rename":  # pause right before renaming the lock file away
    def paused(fn):
        def wrapped(src, dst, *args, **kwargs):
            if os.fspath(src) == lock_path:
                pause("rename")
            return fn(src, dst, *args, **kwargs)
        return wrapped

    os.rename, os.replace = paused(os.rename), paused(os.replace)

mark(role + "-started")
if wait_for_name != "-":
    wait_for(wait_for_name, 120)
result = {"role": role, "acquired": False, "outcome": ""}
try:
    with WriterLock(cube, stale_after_s=stale_after_s):
        result["acquired"] = True
        result["t_acquired"] = time.time()
        mark(role + "-done")
        mark(role + "-held")
        deadline = time.monotonic() + hold_s
        while time.monotonic() < deadline:
            time.sleep(0.02)
        result["outcome"] = "held to the end"
except BaseException as exc:
    result["outcome"] = type(exc).__name__ + ": " + str(exc)
finally:
    result["t_end"] = time.time()
    (sync / (role + ".json")).write_text(json.dumps(result))
    mark(role + "-done")
"""


def start_worker(
    cube: Path, sync: Path, role: str, *, hook: str = "-", stale_after_s: float = 60.0, hold_s: float = 2.0, after="-"
) -> subprocess.Popen:
    args = [sys.executable, "-c", WORKER, str(cube), role, hook, str(sync), str(stale_after_s), str(hold_s), after]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(path: Path, timeout: float = START_S) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"timed out waiting for {path.name}"
        time.sleep(0.01)


def finish(procs: list[subprocess.Popen], sync: Path, roles: list[str]) -> dict[str, dict]:
    for proc in procs:
        out, _ = proc.communicate(timeout=2 * START_S)
        assert proc.returncode == 0, out
    return {role: json.loads((sync / f"{role}.json").read_text()) for role in roles}


def write_lock(
    path: Path, *, host: str = "elsewhere", pid: int = 1, age_s: float = 0.0, token: str | None = None
) -> str:
    """A lock file as another writer leaves it, its heartbeat ``age_s`` old; returns its token."""
    token = token or uuid.uuid4().hex
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": host, "pid": pid, "started": "x", "command": "other", "token": token}))
    if age_s:
        os.utime(path, (time.time() - age_s, time.time() - age_s))
    return token


def lock_path(cube: Path) -> Path:
    return cube / "_survey_scale" / "writer.lock"


# --- two processes break the same stale lock -----------------------------------------------------------


@pytest.mark.parametrize("hook", ["judged", "rename"])
def test_two_processes_breaking_one_stale_lock_leave_one_writer(tmp_path: Path, hook: str) -> None:
    """B judges the dead writer's lock stale and pauses (after judging it, or just before renaming it away);
    A breaks it and takes the lock (or tries to) before B goes on. Exactly one of them may hold the lock."""
    cube, sync = tmp_path / "cube.zarr", tmp_path / "sync"
    sync.mkdir()
    dead = write_lock(lock_path(cube), age_s=1000)
    b = start_worker(cube, sync, "B", hook=hook, hold_s=3.0)
    wait_for(sync / "B-paused")
    a = start_worker(cube, sync, "A", hold_s=3.0)
    wait_for(sync / "A-done")
    (sync / "others-done").write_text("")
    results = finish([a, b], sync, ["A", "B"])
    holders = [role for role, r in results.items() if r["acquired"]]
    assert len(holders) == 1, results
    (loser,) = {"A", "B"} - set(holders)
    assert "StoreLockedError" in results[loser]["outcome"], results
    assert results[holders[0]]["outcome"] == "held to the end", results
    assert not lock_path(cube).exists()  # the holder released it
    assert dead not in "".join(p.read_text() for p in lock_path(cube).parent.glob("writer.lock*"))


def test_processes_racing_on_a_stale_lock_without_pauses(tmp_path: Path) -> None:
    """Three processes let go at once on a stale lock: exactly one holds it."""
    cube, sync = tmp_path / "cube.zarr", tmp_path / "sync"
    sync.mkdir()
    write_lock(lock_path(cube), age_s=1000)
    roles = ["P0", "P1", "P2"]
    procs = [start_worker(cube, sync, role, hold_s=3.0, after="go") for role in roles]
    for role in roles:
        wait_for(sync / f"{role}-started")
    time.sleep(0.5)
    (sync / "go").write_text("")
    results = finish(procs, sync, roles)
    assert sum(r["acquired"] for r in results.values()) == 1, results
    assert not list(lock_path(cube).parent.glob("writer.lock*"))  # nothing left behind


# --- the holder loses its lock -------------------------------------------------------------------------


def test_a_holder_whose_lock_was_broken_stops_and_does_not_refresh_the_new_lock(tmp_path: Path) -> None:
    """The holder pauses past the stale age (simulated: its lock is renamed away and another writer's lock
    put in its place). Its heartbeat must not refresh the other lock, and its run must stop with
    LockLostError rather than go on writing."""
    cube, sync = tmp_path / "cube.zarr", tmp_path / "sync"
    sync.mkdir()
    holder = start_worker(cube, sync, "H", stale_after_s=8.0, hold_s=10.0)  # heartbeat every 1 s
    wait_for(sync / "H-held")
    path = lock_path(cube)
    os.rename(path, path.with_name("broken-by-the-other"))
    other = write_lock(path, age_s=500)
    mtime = path.stat().st_mtime
    (result,) = finish([holder], sync, ["H"]).values()
    problems = []
    if not result["outcome"].startswith("LockLostError"):
        problems.append(f"the holder did not stop: {result['outcome']!r}")
    if result["t_end"] - result["t_acquired"] > 8.0:
        problems.append("the holder ran to the end of its 10 s instead of stopping at its next heartbeat")
    if json.loads(path.read_text())["token"] != other:
        problems.append("the other writer's lock was removed")
    if path.stat().st_mtime != mtime:
        problems.append("the heartbeat refreshed the other writer's lock")
    assert not problems, problems


def test_check_raises_once_the_lock_is_gone(tmp_path: Path) -> None:
    cube = tmp_path / "cube.zarr"
    lock = WriterLock(cube, stale_after_s=60.0, interrupt_main=False)
    lock.acquire()
    try:
        lock.check()  # held: nothing
        os.rename(lock.path, lock.path.with_name("elsewhere"))
        write_lock(lock.path)
        lock.check()  # no file access: the heartbeat (every 7.5 s) has not seen it yet
        with pytest.raises(lockmod.LockLostError, match="lost the writer lock"):
            lock.check(verify=True)  # reads the lock file now
        with pytest.raises(lockmod.LockLostError):
            lock.check()  # and from now on without reading it
    finally:
        lock.release()
    assert lock.path.exists()  # release() leaves the other writer's lock


def test_context_exit_raises_when_the_lock_was_lost(tmp_path: Path) -> None:
    cube = tmp_path / "cube.zarr"
    with pytest.raises(lockmod.LockLostError) as caught:
        with WriterLock(cube, stale_after_s=60.0, interrupt_main=False) as lock:
            lock.path.unlink()
    assert isinstance(caught.value, lockmod.SurveyScaleError)


# --- verified break, leftover claims ---------------------------------------------------------------------


def test_a_break_that_renamed_another_lock_puts_it_back(tmp_path: Path, monkeypatch) -> None:
    """Between judging the lock stale and renaming it, the file there is replaced (here by hand: a tool that
    does not follow the protocol). The breaker sees after the rename that it holds a different file (token,
    inode), puts it back and does not take the lock."""
    cube = tmp_path / "cube.zarr"
    path = lock_path(cube)
    write_lock(path, age_s=1000)
    fresh = path.with_name("fresh")
    token = write_lock(fresh)
    rename = os.rename
    swapped = []

    def swap_then_rename(src, dst, *args, **kwargs):
        if os.fspath(src) == os.fspath(path) and not swapped:
            swapped.append(True)
            rename(fresh, path)  # the stale lock is replaced by a fresh one
        return rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(lockmod.os, "rename", swap_then_rename)
    monkeypatch.setattr(lockmod.os, "replace", swap_then_rename)
    with pytest.raises(StoreLockedError, match="another process is writing this cube"):
        WriterLock(cube, stale_after_s=60.0).acquire()
    assert swapped and json.loads(path.read_text())["token"] == token


def test_a_leftover_claim_of_a_crashed_breaker_expires(tmp_path: Path, caplog) -> None:
    cube = tmp_path / "cube.zarr"
    path = lock_path(cube)
    token = write_lock(path, age_s=1000)
    claim = path.with_name(f"writer.lock.claim-{token}")
    claim.write_text("{}")
    with pytest.raises(StoreLockedError, match="breaking"):  # a fresh claim: someone is breaking it right now
        WriterLock(cube, stale_after_s=60.0, claim_wait_s=0.3).acquire()
    os.utime(claim, (time.time() - 1000, time.time() - 1000))  # its breaker died long ago
    with WriterLock(cube, stale_after_s=60.0):
        pass
    assert "broke a stale writer lock" in caplog.text
    assert not list(path.parent.glob("writer.lock*"))


# --- ages from the file system's clock ------------------------------------------------------------------


class _SkewedTime:
    """The ``time`` module with a local wall clock ``offset_s`` away from the file server's."""

    def __init__(self, offset_s: float) -> None:
        self.offset_s = offset_s

    def time(self) -> float:
        return time.time() + self.offset_s

    def __getattr__(self, name: str):
        return getattr(time, name)


@pytest.mark.parametrize("offset_s", [3600.0, -3600.0])
def test_lock_ages_come_from_the_file_system_clock(tmp_path: Path, monkeypatch, offset_s: float) -> None:
    """On NFS a file's time is the server's: with the local clock an hour off, a live lock (heartbeat just
    now by the server's clock) is still respected, and a dead one (heartbeat 1000 s ago) still broken."""
    monkeypatch.setattr(lockmod, "time", _SkewedTime(offset_s))
    cube = tmp_path / "cube.zarr"
    path = lock_path(cube)
    write_lock(path, age_s=0.0)  # live: mtime now by the file system's clock
    with pytest.raises(StoreLockedError, match="pid 1 on elsewhere"):
        WriterLock(cube, stale_after_s=120.0).acquire()
    write_lock(path, age_s=1000.0)  # dead: its heartbeat stopped 1000 s ago
    with WriterLock(cube, stale_after_s=120.0) as held:
        assert held._owner()["pid"] == os.getpid()
