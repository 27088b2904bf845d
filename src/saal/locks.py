"""File locks that let independent processes share one run or experiment directory.

Processes (on one machine or several, over a shared filesystem) coordinate through nothing but the
run directory: a unit of work is *claimed* by creating its lock file with ``O_CREAT | O_EXCL``, which
succeeds for exactly one process. The file holds who claimed it (pid, host, process start time, wall
time) so that a human can see who is working on what, and so that the lock of a process that died
(killed, out of memory, machine rebooted) does not block the cell forever: a lock whose process no
longer exists *on this host* is stale and is taken over. Locks of other hosts are never taken over
automatically, since their processes cannot be checked from here; delete such a file by hand when
its machine is gone.

Taking over a stale lock needs care: two processes may both find the same stale file. The takeover
(re-read, remove, create) runs under a short ``fcntl.flock`` on the folder's ``.takeover`` file, so
only the first one removes the stale lock; the second re-reads a live lock and backs off. Ordinary
claims never take that mutex: they rely on ``O_EXCL`` alone.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


#: The folder of an experiment directory that holds its lock files (cells, the shared stage).
LOCKS_DIR = "locks"


@dataclass(frozen=True)
class LockOwner:
    """Who holds a lock: what the lock file says."""

    pid: int
    host: str
    started: str  # the process's start time as the kernel reports it ("" where unknown): guards pid reuse
    time: float  # when the lock was taken (seconds since the epoch)

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.time))
        return f"pid {self.pid} on {self.host} since {when}"


def _process_start(pid: int) -> str:
    """The start time of ``pid`` in clock ticks since boot (Linux ``/proc``), or "" where unavailable.

    A pid is reused once its process has exited; the start time tells a new process with the
    same pid apart from the one that took the lock.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # Field 22 (starttime) counted after the parenthesised command name, which may contain spaces.
    return stat.rsplit(")", 1)[-1].split()[19]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def current_owner() -> LockOwner:
    pid = os.getpid()
    return LockOwner(pid=pid, host=socket.gethostname(), started=_process_start(pid), time=time.time())


def read_owner(path: str | os.PathLike) -> LockOwner | None:
    """The owner recorded in a lock file; None when the file is gone or unreadable (half-written)."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
        return LockOwner(pid=int(record["pid"]), host=str(record["host"]), started=str(record.get("started", "")),
                         time=float(record["time"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_stale(owner: LockOwner) -> bool:
    """Whether the process that holds a lock is known to be gone (only decidable on its own host)."""
    if owner.host != socket.gethostname():
        return False
    if not _alive(owner.pid):
        return True
    return bool(owner.started) and _process_start(owner.pid) not in ("", owner.started)


def _create(path: Path, owner: LockOwner) -> bool:
    """Create the lock file holding ``owner``; False when it exists already."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"pid": owner.pid, "host": owner.host, "started": owner.started, "time": owner.time}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    return True


# A lock file younger than this whose content cannot be read is being written right now (create, then write).
_UNREADABLE_GRACE_S = 30.0


def _take_over_stale(path: Path, owner: LockOwner) -> bool:
    """Replace a stale lock at ``path`` by ours, under the takeover mutex; False if it is not stale."""
    mutex_path = path.parent / ".takeover"
    with open(mutex_path, "a+") as mutex:
        fcntl.flock(mutex, fcntl.LOCK_EX)
        try:
            found = read_owner(path)
            if found is None:
                try:
                    age = time.time() - path.stat().st_mtime
                except FileNotFoundError:
                    return _create(path, owner)
                if age < _UNREADABLE_GRACE_S:
                    return False
            elif not is_stale(found):
                return False
            path.unlink(missing_ok=True)
            return _create(path, owner)
        finally:
            fcntl.flock(mutex, fcntl.LOCK_UN)


class FileLock:
    """A claim on one unit of work, held by this process until :meth:`release`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.owner: LockOwner | None = None

    @property
    def held(self) -> bool:
        return self.owner is not None

    def acquire(self) -> bool:
        """Claim the lock without waiting: True if this process now holds it.

        A stale lock (its process is gone from this host) is taken over; a live one is left alone.
        """
        if self.held:
            raise RuntimeError(f"{self.path}: already held by this process")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        owner = current_owner()
        if _create(self.path, owner) or _take_over_stale(self.path, owner):
            self.owner = owner
            return True
        return False

    def release(self) -> None:
        """Give the lock up; a lock file that someone else took over in the meantime is left in place."""
        if not self.held:
            return
        found = read_owner(self.path)
        if found == self.owner:
            self.path.unlink(missing_ok=True)
        self.owner = None

    def holder(self) -> LockOwner | None:
        """Who holds the lock now (None when free)."""
        return read_owner(self.path) if self.path.exists() else None


@contextmanager
def locked(path: str | os.PathLike, *, poll_s: float = 0.5, on_wait=None) -> Iterator[FileLock]:
    """Hold the lock at ``path`` for the ``with`` block, waiting while another live process holds it.

    ``on_wait(owner)`` is called once when the lock is busy (e.g. to tell the user whom we wait for).
    There is no timeout: a holder that dies leaves a stale lock, which is taken over.
    """
    lock = FileLock(path)
    told = False
    while not lock.acquire():
        owner = lock.holder()
        if on_wait is not None and not told and owner is not None:
            on_wait(owner)
            told = True
        time.sleep(poll_s)
    try:
        yield lock
    finally:
        lock.release()
