"""Quiet timing: no latency measurement overlaps another trial's work on the same node.

Trials that share a machine would otherwise time their deploy models while the other trials
train, and the latency objective would rank the noise (measured before this module: nets of 5 to
28 MFLOPs timed from 3.7 to 28.5 ms in one search, unrelated to their size).

Two advisory file locks per node (`fcntl.flock`, which the kernel releases when a process dies, so
a killed trial never leaves a lock behind) coordinate every lknas process of the machine, whatever
Ray worker or search it belongs to:

- `work.lock` is held *shared* by every process while it computes for a trial (`working()`):
  training, evaluation, counting, the ERF.
- `gate.lock` is a turnstile that gives timings priority over new work.

A timing (`exclusive()`) takes the gate exclusively, so no process can start or resume work, then
takes `work.lock` exclusively, which waits until every running trial has reached its next
`yield_point()` (the trainer calls it between steps) and released its share. It then times with
the node to itself, and releases both. A trial at a yield point that sees the gate taken releases
its share, waits at the gate and takes its share again when the timing is over.

The locks live in `$LKNAS_QUIET_DIR` (default: `<tmp>/lknas-quiet-<uid>`), one directory per node
and user. `LKNAS_QUIET=0` switches the coordination off (every call becomes a no-op).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["working", "idle", "yield_point", "exclusive", "enabled", "lock_dir", "METHOD", "stats"]

METHOD = "quiet-lock"  # recorded with every latency measured under `exclusive()`

_LOCKS: _Locks | None = None  # this process's lock files (reopened after a fork)


def enabled() -> bool:
    """False when LKNAS_QUIET is 0/false/off."""
    return os.environ.get("LKNAS_QUIET", "1").strip().lower() not in ("0", "false", "off", "no")


def lock_dir() -> Path:
    """The node's lock directory (created on first use)."""
    base = os.environ.get("LKNAS_QUIET_DIR") or os.path.join(tempfile.gettempdir(), f"lknas-quiet-{os.getuid()}")
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


class _Locks:
    """This process's open lock files and what it holds."""

    def __init__(self, d: Path) -> None:
        self.dir, self.pid = d, os.getpid()
        self.gate = os.open(d / "gate.lock", os.O_RDWR | os.O_CREAT, 0o666)
        self.work = os.open(d / "work.lock", os.O_RDWR | os.O_CREAT, 0o666)
        self.work_depth = 0  # nested working() blocks
        self.exclusive_depth = 0  # nested exclusive() blocks
        self.waited = 0.0  # seconds spent waiting for other processes (stats)
        self.yields = 0  # times this process paused its work for a timing

    def close(self) -> None:
        for fd in (self.gate, self.work):
            with contextlib.suppress(OSError):
                os.close(fd)


def _locks() -> _Locks:
    global _LOCKS
    d = lock_dir()
    if _LOCKS is None or _LOCKS.pid != os.getpid() or _LOCKS.dir != d:
        if _LOCKS is not None and _LOCKS.pid == os.getpid():
            if _LOCKS.work_depth or _LOCKS.exclusive_depth:
                return _LOCKS  # the directory changed while held: keep the held locks
            _LOCKS.close()
        _LOCKS = _Locks(d)
    return _LOCKS


def _timed_flock(locks: _Locks, fd: int, op: int) -> None:
    start = time.perf_counter()
    fcntl.flock(fd, op)
    locks.waited += time.perf_counter() - start


def _take_work_shared(locks: _Locks) -> None:
    """Pass the turnstile (waits while a timing holds or waits for it), then share the work lock."""
    _timed_flock(locks, locks.gate, fcntl.LOCK_SH)
    try:
        _timed_flock(locks, locks.work, fcntl.LOCK_SH)
    finally:
        fcntl.flock(locks.gate, fcntl.LOCK_UN)


@contextlib.contextmanager
def working() -> Iterator[None]:
    """Mark this process as computing for a trial until the block ends (re-entrant)."""
    if not enabled():
        yield
        return
    locks = _locks()
    if locks.work_depth == 0 and locks.exclusive_depth == 0:
        _take_work_shared(locks)
    locks.work_depth += 1
    try:
        yield
    finally:
        locks.work_depth -= 1
        if locks.work_depth == 0 and locks.exclusive_depth == 0:
            fcntl.flock(locks.work, fcntl.LOCK_UN)


@contextlib.contextmanager
def idle() -> Iterator[None]:
    """Inside `working()`: give up this process's share while it waits on something else (a Ray
    Tune report waits for the driver, which may itself wait at the gate), take it back after."""
    locks = _LOCKS
    if not enabled() or locks is None or locks.pid != os.getpid() or locks.work_depth == 0 or locks.exclusive_depth:
        yield
        return
    fcntl.flock(locks.work, fcntl.LOCK_UN)
    try:
        yield
    finally:
        _take_work_shared(locks)


def yield_point() -> None:
    """Between two units of work: if a timing is waiting, let it run first. Cheap (two system
    calls) when nobody waits; a no-op outside `working()`."""
    if not enabled():
        return
    locks = _LOCKS
    if locks is None or locks.pid != os.getpid() or locks.work_depth == 0 or locks.exclusive_depth:
        return
    try:
        fcntl.flock(locks.gate, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:  # a timing holds the gate: step aside until it is done
        fcntl.flock(locks.work, fcntl.LOCK_UN)
        locks.yields += 1
        _take_work_shared(locks)
        return
    fcntl.flock(locks.gate, fcntl.LOCK_UN)


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """Have the node to this process alone (among lknas processes) for a timing (re-entrant).

    Waits until the processes working for trials on this node have paused at their next yield
    point; this process's own share of the work lock is given up meanwhile and taken back after.
    """
    if not enabled():
        yield
        return
    locks = _locks()
    if locks.exclusive_depth:
        locks.exclusive_depth += 1
        try:
            yield
        finally:
            locks.exclusive_depth -= 1
        return
    if locks.work_depth:
        fcntl.flock(locks.work, fcntl.LOCK_UN)
    _timed_flock(locks, locks.gate, fcntl.LOCK_EX)
    locks.exclusive_depth = 1
    try:
        _timed_flock(locks, locks.work, fcntl.LOCK_EX)
        yield
    finally:
        locks.exclusive_depth = 0
        fcntl.flock(locks.work, fcntl.LOCK_UN)
        fcntl.flock(locks.gate, fcntl.LOCK_UN)
        if locks.work_depth:
            _take_work_shared(locks)


def stats() -> dict[str, float]:
    """This process's waiting time (s) and the number of times its work paused for a timing."""
    locks = _LOCKS if _LOCKS is not None and _LOCKS.pid == os.getpid() else None
    return {"waited_s": locks.waited if locks else 0.0, "yields": locks.yields if locks else 0}
