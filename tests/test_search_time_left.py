"""The smoothed time-left estimate, on a fake clock."""
from __future__ import annotations

import heapq
import random

import pytest

from lknas.search.time_left import TimeLeft, format_duration


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _simulate(durations: list[float], slots: int):
    """Run trials of these durations `slots` at a time; (time, true seconds left, estimate) at each finish."""
    clock = FakeClock()
    eta = TimeLeft(clock)
    queue = list(enumerate(durations))
    running: list[tuple[float, int]] = []
    out = []

    def start_next():
        while queue and len(running) < slots:
            i, d = queue.pop(0)
            eta.started(str(i))
            heapq.heappush(running, (clock.t + d, i))

    start_next()
    end = _makespan(durations, slots) + clock.t
    done = 0
    while running:
        clock.t, i = heapq.heappop(running)
        done += 1
        eta.finished(str(i), left=len(durations) - done)
        start_next()
        out.append((clock.t, end - clock.t, eta.seconds(), eta.text(len(durations) - done)))
    return out, eta, clock


def _makespan(durations: list[float], slots: int) -> float:
    free = [0.0] * slots
    for d in durations:
        t = heapq.heappop(free)
        heapq.heappush(free, t + d)
    return max(free)


def test_says_estimating_until_three_trials_are_timed():
    events, _, _ = _simulate([60.0] * 10, slots=2)
    assert [e[3] for e in events[:2]] == ["time left: estimating (1 of 3 trials timed)",
                                          "time left: estimating (2 of 3 trials timed)"]
    assert all(e[2] is not None and e[3].endswith(" left") for e in events[2:-1])
    assert events[-1][3] is None  # nothing left


def test_steady_trials_give_the_true_time_left_and_it_counts_down_between_trials():
    events, eta, clock = _simulate([60.0] * 11, slots=2)
    for _, true_left, estimate, _ in events[2:-1]:
        assert estimate == pytest.approx(true_left, abs=60)  # within one trial time
    # counting down with the clock between two finishes
    eta.finish_at = clock.t + 300
    before = eta.seconds()
    clock.t += 40
    assert eta.seconds() == pytest.approx(before - 40)


def _band(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Range of (next estimate) / (previous estimate counted down by the time between them): 1 is no jump."""
    r = [e1 / (e0 - (t1 - t0)) for (t0, e0), (t1, e1) in zip(points, points[1:]) if e0 - (t1 - t0) >= 60]
    return min(r), max(r)


def _raw_rule(events, n: int) -> list[tuple[float, float]]:
    """The unsmoothed rule this replaced: elapsed / finished x left."""
    return [(t, (t - 1000.0) / (i + 1) * (n - i - 1)) for i, (t, *_rest) in enumerate(events)][2:]


@pytest.mark.parametrize("durations", [
    [60.0] * 6 + [300.0] + [60.0] * 13,  # one trial 5x slower
    [random.Random(0).uniform(30, 150) for _ in range(30)],  # architectures of every size
], ids=["outlier", "noisy"])
def test_the_estimate_moves_by_fractions_not_jumps(durations):
    events, _, _ = _simulate(durations, slots=2)
    lo, hi = _band([(t, est) for t, _, est, _ in events if est is not None])
    assert 0.75 <= lo and hi <= 1.35, (lo, hi)
    if len(durations) == 30:
        raw_lo, raw_hi = _band(_raw_rule(events, len(durations)))
        assert raw_lo < 0.75 or raw_hi > 1.35  # what it replaced jumped


def test_a_real_trend_still_shows():
    events, _, _ = _simulate([60.0] * 8 + [120.0] * 12, slots=2)
    finish = [t + est for t, _, est, _ in events if est is not None]  # the estimated end of the search
    assert max(finish[6:]) > finish[4] + 120  # trials got twice as slow: the end moved out, smoothly


def test_the_status_line_uses_it(tmp_path):
    import io
    from types import SimpleNamespace

    from lknas.search.monitor import SearchMonitor
    from lknas.search.store import RunStore
    from lknas.space.configs import Objective

    clock = FakeClock()
    monitor = SearchMonitor(RunStore(tmp_path), (Objective("accuracy", "max"),), total=6, done_before=0,
                            stream=io.StringIO(), clock=clock)
    lines = []
    for i in range(4):
        trial = SimpleNamespace(trial_id=f"t{i}", config={}, last_result={"trial": i, "status": "error", "error": "x"})
        monitor.on_trial_start(0, [], trial)
        clock.t += 30
        monitor.on_trial_complete(0, [], trial)
        lines.append(monitor.status_line())
    assert "time left: estimating (2 of 3 trials timed)" in lines[1] and "~" not in lines[1]
    assert "~1m00s left" in lines[3]  # 2 trials of 30 s, one at a time
    assert "2m00s elapsed" in lines[3]


def test_bad_settings_are_refused_and_durations_formatted():
    with pytest.raises(ValueError, match="min_trials"):
        TimeLeft(min_trials=0)
    assert [format_duration(s) for s in (9.4, 247, 3900)] == ["9s", "4m07s", "1h05m"]
