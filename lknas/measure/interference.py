"""How much of the machine other processes used while this one timed something.

`lknas.quiet` pauses every lknas trial on the node during a timing, but not the rest: a Ray worker
starting up for the next trial (importing torch takes seconds of CPU), the Tune driver's
bookkeeping, a user's shell. Measured in a default search, such moments slowed single timings by up
to 2.2x. `CpuWatch` reads the node's busy CPU time (/proc/stat) and this process's own
(/proc/self/stat), both in clock ticks, before and after a block, and reports the difference as
`foreign`: the other processes' load over the block, in cores (1.0 is one core kept busy), and
`on_cpu`: the share of the block's wall time the calling thread spent on a CPU (its
CLOCK_THREAD_CPUTIME over the wall time; below 1 when it was descheduled or waited, for whatever
reason: another thread of this process, another process, the hypervisor). `on_cpu` is only
meaningful when the thread does all the work itself (torch at 1 thread), so it is None otherwise.
The latency measurement repeats a timing while `foreign` is too high or `on_cpu` too low. Clock ticks are coarse
(10 ms), so a window shorter than `min_window_s` is padded with a sleep: the foreign load is then
the average over the timing and the moment after it. Given the `threshold` the caller judges the
load against, the pad is slept only when the short window's reading could lie on either side of
it (each CPU's tick counter can be off by one tick at either end): the latency measurement's
timings run under the node lock, where a pad stalls every trial on the node, and a retime-phase
timing of 0.3 s was padded by 0.2 s.

Linux only: elsewhere (no /proc) `foreign` is None, and no timing is ever repeated.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

__all__ = ["CpuWatch", "CpuSample", "available"]

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _node_busy_ticks() -> int | None:
    """user + nice + system + irq + softirq + steal over all CPUs (not idle, iowait or guest)."""
    try:
        with open("/proc/stat", "rb") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != b"cpu" or len(fields) < 9:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return user + nice + system + irq + softirq + steal


def _own_ticks() -> int | None:
    """This process's utime + stime (all its threads)."""
    try:
        with open("/proc/self/stat", "rb") as f:
            rest = f.read().rsplit(b")", 1)[1].split()  # after the command name, which may hold spaces
    except (OSError, IndexError):
        return None
    return int(rest[11]) + int(rest[12])  # fields 14 and 15 of proc(5)


def _cpus() -> int:
    return os.cpu_count() or 1


def available() -> bool:
    """True where the node's and the process's CPU times can be read."""
    return _node_busy_ticks() is not None and _own_ticks() is not None


@dataclass(frozen=True)
class CpuSample:
    """The load measured over one block: `foreign` (other processes, in cores; None where it
    cannot be read), the window's `wall_s` and the calling thread's `on_cpu` share (None unless
    `single_thread`)."""

    foreign: float | None
    wall_s: float
    on_cpu: float | None = None


class CpuWatch:
    """`with CpuWatch() as w: ...` then `w.sample`: the other processes' load during the block
    (padded to `min_window_s`)."""

    def __init__(self, min_window_s: float = 0.5, single_thread: bool = False,
                 threshold: float | None = None) -> None:
        self.min_window_s = min_window_s
        self.single_thread = single_thread
        self.threshold = threshold  # the load the caller compares with: no pad when the verdict is already clear
        self.sample: CpuSample | None = None

    def __enter__(self) -> CpuWatch:
        self._node, self._own = _node_busy_ticks(), _own_ticks()
        self._t0, self._cpu0 = time.perf_counter(), time.thread_time()
        return self

    def __exit__(self, *exc) -> None:
        busy = time.perf_counter() - self._t0
        on_cpu = (time.thread_time() - self._cpu0) / busy if self.single_thread and busy > 0 else None
        if self._node is None or self._own is None:
            self.sample = CpuSample(None, busy, on_cpu)
            return
        short = self.min_window_s - busy
        if short > 0 and self.threshold is not None and self._clear(busy):
            short = 0.0
        if short > 0:
            time.sleep(short)
        self.sample = self._read(time.perf_counter() - self._t0, on_cpu)

    def _read(self, wall: float, on_cpu: float | None) -> CpuSample:
        node, own = _node_busy_ticks(), _own_ticks()
        if node is None or own is None:
            return CpuSample(None, wall, on_cpu)
        node_s, own_s = (node - self._node) / _TICK, (own - self._own) / _TICK
        return CpuSample(foreign=max(0.0, node_s - own_s) / wall, wall_s=wall, on_cpu=on_cpu)

    def _clear(self, wall: float) -> bool:
        """True when the load over the `wall` seconds so far is on one side of `threshold` even
        with every CPU's tick count off by one at both ends (node and process: 2 per CPU)."""
        sample = self._read(wall, None)
        if sample.foreign is None or wall <= 0:
            return False
        error = 2 * _cpus() / _TICK / wall
        return abs(sample.foreign - self.threshold) > error
