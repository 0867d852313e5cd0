"""Quiet timing (lknas.quiet): a timing never overlaps another process's work.

Worker processes record the wall-clock interval of every unit of work they do between yield
points; a timing process records the interval it held the node. No unit may overlap a timing.
"""
from __future__ import annotations

import multiprocessing as mp
import time

import pytest

from lknas import quiet


def _worker(lock_dir: str, out, start, units: int, unit_s: float) -> None:
    import os

    os.environ["LKNAS_QUIET_DIR"] = lock_dir
    spans = []
    with quiet.working():
        start.wait()
        for _ in range(units):
            start = time.monotonic()
            end = start + unit_s
            while time.monotonic() < end:  # busy work, as a training step
                pass
            spans.append((start, time.monotonic()))
            quiet.yield_point()
    out.put(("work", spans, quiet.stats()["yields"]))


def _timer(lock_dir: str, out, start, timings: int, hold_s: float, delay_s: float) -> None:
    import os

    os.environ["LKNAS_QUIET_DIR"] = lock_dir
    spans = []
    start.wait()
    for _ in range(timings):
        time.sleep(delay_s)
        with quiet.exclusive():
            start = time.monotonic()
            time.sleep(hold_s)
            spans.append((start, time.monotonic()))
    out.put(("timing", spans, 0))


def _overlaps(a, b) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _run(tmp_path, workers: int, timers: int, units: int = 60, unit_s: float = 0.01):
    """Workers enter their work, then everybody starts at once (a barrier)."""
    ctx = mp.get_context("fork")  # cheap: the children only take locks and sleep
    out = ctx.Queue()
    start = ctx.Barrier(workers + timers)
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), out, start, units, unit_s)) for _ in range(workers)]
    procs += [ctx.Process(target=_timer, args=(str(tmp_path), out, start, 3, 0.03, 0.05)) for _ in range(timers)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    work = [s for kind, spans, _ in results if kind == "work" for s in spans]
    timing = [s for kind, spans, _ in results if kind == "timing" for s in spans]
    yields = sum(y for kind, _, y in results if kind == "work")
    return work, timing, yields


def test_no_unit_of_work_overlaps_a_timing(tmp_path):
    work, timing, yields = _run(tmp_path, workers=2, timers=1)
    assert len(timing) == 3 and len(work) == 120
    overlapping = [(w, t) for w in work for t in timing if _overlaps(w, t)]
    assert not overlapping, overlapping[:3]
    assert yields >= 1  # the workers did step aside (they were running when the timings came)


def test_two_timers_never_overlap_each_other_or_the_work(tmp_path):
    work, timing, _ = _run(tmp_path, workers=1, timers=2)
    assert len(timing) == 6
    for i, a in enumerate(timing):
        for b in timing[i + 1:]:
            assert not _overlaps(a, b)
    assert not any(_overlaps(w, t) for w in work for t in timing)


def test_without_the_lock_timings_do_overlap_work(tmp_path, monkeypatch):
    """The control: the same schedule with LKNAS_QUIET=0 overlaps (so the test above can fail)."""
    monkeypatch.setenv("LKNAS_QUIET", "0")
    work, timing, _ = _run(tmp_path, workers=2, timers=1)
    assert any(_overlaps(w, t) for w in work for t in timing)


def test_a_timing_inside_work_gives_up_its_own_share(tmp_path, monkeypatch):
    """A trial that times its own deploy model (exclusive inside working) does not deadlock."""
    monkeypatch.setenv("LKNAS_QUIET_DIR", str(tmp_path))
    with quiet.working():
        with quiet.exclusive():
            with quiet.exclusive():  # re-entrant
                pass
        quiet.yield_point()
    with quiet.exclusive():
        pass


def test_disabled_is_a_no_op(tmp_path, monkeypatch):
    monkeypatch.setenv("LKNAS_QUIET", "off")
    monkeypatch.setenv("LKNAS_QUIET_DIR", str(tmp_path / "never"))
    with quiet.working(), quiet.exclusive():
        quiet.yield_point()
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("value,expected", [("1", True), ("0", False), ("false", False), ("yes", True)])
def test_enabled_switch(monkeypatch, value, expected):
    monkeypatch.setenv("LKNAS_QUIET", value)
    assert quiet.enabled() is expected
