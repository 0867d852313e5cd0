"""One writer per run directory: an exclusive lock on `RUN/.lock` for the life of a search or study.

The lock is `fcntl.flock` on that file, taken without waiting. The kernel drops a flock when the
last descriptor of its holder closes, however the holder ends (return, exception, Ctrl-C,
`kill -9`), so a lock left by a killed process is simply free: the next search takes it over
with no pid probing and no timeouts, which could both be wrong (a reused pid, a slow host).

The file also says who holds it (pid, host, command, since), written once the lock is taken. That
text only feeds the message a refused second writer prints; it never decides anything. It is
emptied on a clean release, so text found there by a new holder means the last one was killed
(`RunLock.previous`). The file is never deleted: unlinking a lock file lets two processes lock two
different files under one name. The descriptor is not inherited by the processes the holder
starts (Python opens files non-inheritable), so a Ray daemon never keeps a run locked.

Where the file system cannot lock (some FUSE mounts; local disks and NFS can), a RuntimeWarning
says so and the run goes on unlocked, as it did before this lock existed.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import logging
import os
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lknas.errors import LknasError
from lknas.io import make_run_dir

__all__ = ["RunLock", "RunBusyError", "hold_run", "LOCK_NAME"]

LOCK_NAME = ".lock"
logger = logging.getLogger(__name__)


class RunBusyError(LknasError):
    """Another process writes this run directory."""


class RunLock:
    """The held lock of one run directory; `release()` (or leaving `hold_run`) gives it back."""

    def __init__(self, root: Path, fd: int | None, previous: dict[str, Any] | None):
        self.root, self._fd = root, fd
        self.previous = previous  # who held it last and was killed before releasing it, if anyone

    @classmethod
    def acquire(cls, root: str | os.PathLike, command: str) -> RunLock:
        """Lock `root` (created if missing) for `command` ("search", "scale").

        Raises:
            RunBusyError: another process holds the lock; the message names its pid and host.
        """
        root = Path(root)
        make_run_dir(root, results=("trials.jsonl",))  # a new directory is taken back if the command then fails
        fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _read(fd)
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunBusyError(_busy_message(root, holder)) from None
            warnings.warn(f"{root}: cannot lock {LOCK_NAME} ({err.strerror}); make sure no other search or "
                          f"study writes this run directory", RuntimeWarning, stacklevel=2)
            return cls(root, None, None)
        previous = _read(fd) or None
        if previous:
            logger.info("%s: taking over the lock of pid %s on %s, which ended without releasing it",
                        root, previous.get("pid", "?"), previous.get("host", "?"))
        me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
              "since": dt.datetime.now().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        return cls(root, fd, previous)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Empty the holder text, then drop the lock (idempotent)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the only descriptor releases the flock


@contextlib.contextmanager
def hold_run(root: str | os.PathLike, command: str) -> Iterator[RunLock]:
    """Hold `root`'s lock inside the block; released however the block ends."""
    lock = RunLock.acquire(root, command)
    try:
        yield lock
    finally:
        lock.release()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _read(fd: int) -> dict[str, Any]:
    """The holder text, {} when empty or unreadable (e.g. caught mid-write)."""
    try:
        data = os.pread(fd, 4096, 0)
        holder = json.loads(data) if data.strip() else {}
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _busy_message(root: Path, holder: dict[str, Any]) -> str:
    who = (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, a {holder.get('command', 'run')} "
           f"started {holder.get('since', '?')}") if holder else "a process that has not said who it is yet"
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int) and not _alive(holder["pid"]):
        who += "; that pid has ended, so a process it forked still holds the lock: stop that one"
    return (f"{root} is in use by another process ({who}); one run directory takes one writer at a time: "
            f"wait for it to finish, or stop it and then continue the run, or choose another --out")
