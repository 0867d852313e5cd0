"""The time-left estimate of a search's progress view, smoothed so that it does not jump.

A raw estimate (trials left x mean trial time / trials at once) swings with every unusually fast
or slow trial: 1h15m, then 2h04m, then 58m. Here:

- trial times are timed from start to finish and averaged with an exponential moving average
  (`alpha`), each counted as at most twice the current mean, so one outlier moves the mean a
  little and a real trend (larger architectures later in the search) shows within a few trials;
- trials at once is the most seen running together (the concurrency the cluster gives);
- what is smoothed and shown is the estimated *finish time*: each finished trial moves it a
  fraction (`beta`) of the way towards the new raw estimate, and between trials the time left
  counts down with the clock instead of standing still;
- until `min_trials` trials have been timed it says "estimating", not a number.

    eta = TimeLeft()
    eta.started("t1"); ...; eta.finished("t1")
    eta.text(left=7)   # 'time left: estimating (1 of 3 trials timed)' or '~12m30s left'
"""
from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["TimeLeft", "format_duration"]


def format_duration(seconds: float) -> str:
    """'1h05m', '4m07s', '9s'."""
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class TimeLeft:
    def __init__(self, clock: Callable[[], float] = time.monotonic, min_trials: int = 3, alpha: float = 0.3,
                 beta: float = 0.3) -> None:
        if min_trials < 1 or not 0 < alpha <= 1 or not 0 < beta <= 1:
            raise ValueError("TimeLeft: min_trials >= 1, alpha and beta in (0, 1]")
        self.clock, self.min_trials, self.alpha, self.beta = clock, min_trials, alpha, beta
        self.starts: dict[str, float] = {}
        self.timed = 0
        self.mean: float | None = None  # EMA of trial durations (s)
        self.slots = 0  # most trials seen running at once
        self.finish_at: float | None = None  # smoothed estimated finish time (clock)

    def started(self, trial_id: str) -> None:
        self.starts[trial_id] = self.clock()
        self.slots = max(self.slots, len(self.starts))

    def finished(self, trial_id: str, left: int) -> None:
        """`trial_id` ended (any status); `left`: trials still to finish after it."""
        start = self.starts.pop(trial_id, None)
        if start is None:  # started before this process (a resumed run): not timed
            return
        duration = max(0.0, self.clock() - start)
        self.timed += 1
        if self.mean is None:
            self.mean = duration
        else:  # one outlier counts as at most twice the mean: a trend still shows within a few trials
            self.mean += self.alpha * (min(duration, 2 * self.mean) - self.mean)
        if self.timed < self.min_trials:
            return
        raw = self.clock() + self.mean * max(0, left) / max(1, self.slots)
        self.finish_at = raw if self.finish_at is None else self.finish_at + self.beta * (raw - self.finish_at)

    def seconds(self) -> float | None:
        """Estimated seconds left, or None while estimating."""
        if self.finish_at is None:
            return None
        return max(0.0, self.finish_at - self.clock())

    def text(self, left: int) -> str | None:
        """For the status line; None when nothing is left."""
        if left <= 0:
            return None
        seconds = self.seconds()
        if seconds is None:
            return f"time left: estimating ({self.timed} of {self.min_trials} trials timed)"
        return f"~{format_duration(seconds)} left"
