"""Other processes' load during a timing: measured from the node's and the process's CPU ticks,
and a latency timed under load is repeated until the load passes (or the wait runs out)."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from lknas.measure import interference
from lknas.measure import latency as latency_mod
from lknas.measure.interference import CpuWatch
from lknas.measure.latency import measure_latency
from tests.helpers import small_arch

linux_only = pytest.mark.skipif(not interference.available(), reason="needs /proc (Linux)")


@linux_only
def test_a_busy_process_beside_the_block_is_foreign_load():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        with CpuWatch() as watch:
            time.sleep(0.05)
    finally:
        spinner.kill()
        spinner.wait()
    assert watch.sample.foreign >= 0.6 and watch.sample.wall_s >= 0.5  # ~1 core; the window is padded


def test_own_work_is_not_foreign_and_the_arithmetic(monkeypatch):
    """Ticks read before and after: the node's busy ticks less this process's, over the window."""
    node, own = iter([1000, 1000 + 150]), iter([500, 500 + 50])  # 1.5 s of node CPU, 0.5 s of it ours
    monkeypatch.setattr(interference, "_TICK", 100)
    monkeypatch.setattr(interference, "_node_busy_ticks", lambda: next(node))
    monkeypatch.setattr(interference, "_own_ticks", lambda: next(own))
    clock = iter([10.0, 10.5, 11.0])  # start; the window check; the end (1 s)
    monkeypatch.setattr(interference.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(interference.time, "sleep", lambda s: None)
    with CpuWatch(min_window_s=0.5) as watch:
        pass
    assert watch.sample.foreign == pytest.approx(1.0) and watch.sample.wall_s == pytest.approx(1.0)


def _ticks(monkeypatch, node, own, clock, cpus=2):
    """Feed CpuWatch these node / own tick readings and clock values; returns the sleeps it asked for."""
    node, own, clock, slept = iter(node), iter(own), iter(clock), []
    monkeypatch.setattr(interference, "_TICK", 100)
    monkeypatch.setattr(interference, "_cpus", lambda: cpus)
    monkeypatch.setattr(interference, "_node_busy_ticks", lambda: next(node))
    monkeypatch.setattr(interference, "_own_ticks", lambda: next(own))
    monkeypatch.setattr(interference.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(interference.time, "sleep", slept.append)
    return slept


def test_a_short_window_is_not_padded_when_its_reading_is_clear_of_the_threshold(monkeypatch):
    """0.4 s of which ours 0.4 s: no foreign load, +- 2 ticks per CPU = 0.1 cores of doubt, far
    below 0.3: the verdict cannot change, so the block ends without the pad's sleep."""
    slept = _ticks(monkeypatch, [1000, 1040, 1040], [500, 540, 540], [10.0, 10.4, 10.4, 10.4])
    with CpuWatch(min_window_s=0.5, threshold=0.3) as watch:
        pass
    assert slept == [] and watch.sample.foreign == pytest.approx(0.0) and watch.sample.wall_s == pytest.approx(0.4)


def test_a_short_window_near_the_threshold_is_padded(monkeypatch):
    """0.25 cores of foreign load read over 0.4 s (+- 0.1): it could be above 0.3, so the window is
    padded to its minimum and read again."""
    slept = _ticks(monkeypatch, [1000, 1050, 1070], [500, 540, 550], [10.0, 10.4, 11.0])
    with CpuWatch(min_window_s=1.0, threshold=0.3) as watch:
        pass
    assert slept == [pytest.approx(0.6)]
    assert watch.sample.foreign == pytest.approx(0.2) and watch.sample.wall_s == pytest.approx(1.0)


def test_without_a_threshold_a_short_window_is_always_padded(monkeypatch):
    slept = _ticks(monkeypatch, [1000, 1000], [500, 500], [10.0, 10.1, 10.5])
    with CpuWatch(min_window_s=0.5) as watch:
        pass
    assert slept == [pytest.approx(0.4)] and watch.sample.wall_s == pytest.approx(0.5)


def test_the_latency_timing_judges_its_window_against_max_foreign(monkeypatch):
    """measure_latency hands its repeat threshold to the watch, so a quiet timing is not padded."""
    thresholds = []
    real = latency_mod.CpuWatch

    def watch(*args, **kwargs):
        thresholds.append(kwargs.get("threshold"))
        return real(*args, **kwargs)

    monkeypatch.setattr(latency_mod, "CpuWatch", watch)
    measure_latency(small_arch(), 32, warmup=0, repeats=1, throughput_batch=None, max_foreign=0.25)
    assert thresholds and set(thresholds) == {0.25}


def test_without_proc_nothing_is_measured(monkeypatch):
    monkeypatch.setattr(interference, "_node_busy_ticks", lambda: None)
    with CpuWatch() as watch:
        pass
    assert watch.sample.foreign is None and not interference.available()


def _loads(monkeypatch, loads):
    """Let each timing attempt see the next foreign load in `loads`; returns the attempts' log."""
    seen = []
    real = latency_mod._attempt

    def attempt(*args, **kwargs):
        out = real(*args, **kwargs)
        load = loads[len(seen)]
        out["foreign"], out["on_cpu"] = (load, 1.0) if not isinstance(load, tuple) else load
        out["latency_ms"] = 10.0 + len(seen)  # tells the attempts apart
        seen.append(out)
        return out

    monkeypatch.setattr(latency_mod, "_attempt", attempt)
    monkeypatch.setattr(latency_mod, "RETRY_PAUSE_S", 0.0)
    return seen


def test_a_timing_under_load_is_repeated_until_the_node_is_quiet(monkeypatch):
    seen = _loads(monkeypatch, [1.8, 0.9, 0.05, 0.0])
    out = measure_latency(small_arch(), 32, warmup=0, repeats=2, throughput_batch=None)
    assert len(seen) == 3 and out["attempts"] == 3
    assert out["foreign_load"] == 0.05 and out["latency_ms"] == 12.0  # the quiet attempt counts


def test_when_the_load_never_passes_the_least_loaded_attempt_counts(monkeypatch):
    seen = _loads(monkeypatch, [1.8, 0.9, 1.2] + [1.0] * 50)
    clock = iter(range(0, 10_000, 4))  # each look at the clock: 4 s later
    monkeypatch.setattr(latency_mod.time, "monotonic", lambda: float(next(clock)))
    out = measure_latency(small_arch(), 32, warmup=0, repeats=1, throughput_batch=None, max_wait_s=10)
    assert 2 <= len(seen) < 50 and out["attempts"] == len(seen)
    assert out["foreign_load"] == min(a["foreign"] for a in seen) and out["latency_ms"] == 11.0


def test_a_timing_whose_thread_was_descheduled_is_repeated(monkeypatch):
    """Another thread of this process (or the hypervisor) can take the CPU without showing as
    another process's load: the timing thread's own CPU time tells."""
    seen = _loads(monkeypatch, [(0.0, 0.6), (0.0, 0.97)])
    out = measure_latency(small_arch(), 32, warmup=0, repeats=1, throughput_batch=None)
    assert len(seen) == 2 and out["on_cpu"] == 0.97 and out["latency_ms"] == 11.0


def test_a_thread_that_waits_is_not_on_cpu():
    with CpuWatch(single_thread=True) as watch:
        time.sleep(0.2)
    assert watch.sample.on_cpu is not None and watch.sample.on_cpu < 0.5
    with CpuWatch() as other:
        pass
    assert other.sample.on_cpu is None  # only measured for a 1-thread timing


def test_max_foreign_none_times_once(monkeypatch):
    seen = _loads(monkeypatch, [3.0, 0.0])
    out = measure_latency(small_arch(), 32, warmup=0, repeats=1, throughput_batch=None, max_foreign=None)
    assert len(seen) == 1 and out["attempts"] == 1 and out["foreign_load"] == 3.0
