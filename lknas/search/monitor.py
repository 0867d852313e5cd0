"""A Ray Tune callback that records each finished trial and shows the search's progress.

Each finished trial is appended to the run's `trials.jsonl` and the derived files are rewritten,
so results are on disk the moment a trial ends. The view: trials done / running / failed /
infeasible, best so far per objective, elapsed and estimated time left (smoothed, "estimating"
until a few trials are timed: `lknas.search.time_left`); redrawn in place on a
terminal, one line per event otherwise, and with `quiet` only a log line per finished trial.
"""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from ray.tune import Callback

from lknas.search.objectives import metric_of
from lknas.search.store import RunStore
from lknas.search.time_left import TimeLeft, format_duration
from lknas.search.trial import INTERNAL_KEYS, NUMBER_KEY
from lknas.space.configs import Objective
from lknas.status import FAILED, TrialStatus

__all__ = ["SearchMonitor", "clean_row", "format_duration"]

# Ray Tune's own bookkeeping keys that are not worth a column
_RAY_KEYS = {
    "timestamp", "training_iteration", "date", "time_this_iter_s", "pid", "config", "time_since_restore",
    "iterations_since_restore", "done", "experiment_tag", "checkpoint_dir_name", "should_checkpoint",
    "hostname", "timesteps_total", "episodes_total", "timesteps_since_restore",
}


def clean_row(result: dict[str, Any]) -> dict[str, Any]:
    row = {k: v for k, v in result.items() if k not in _RAY_KEYS and k not in INTERNAL_KEYS}
    if "time_total_s" in row:
        row["wall_time"] = row.pop("time_total_s")
    return row


class SearchMonitor(Callback):
    def __init__(self, store: RunStore, objectives: tuple[Objective, ...], total: int, done_before: int,
                 quiet: bool = False, stream: TextIO | None = None, summary=None, phase: str | None = None,
                 clock: Callable[[], float] = time.monotonic, on_tail: Callable[[], None] | None = None):
        """`phase`: count (and tag) only the trials of that phase (e.g. 'confirm'); default: the
        search's own trials. `clock`: seconds, for the elapsed time and the time-left estimate.
        `on_tail`: called once when a trial ends while every remaining trial is already running
        (a slot stays free until the end: the search's tail); an error in it is ignored."""
        self.store, self.objectives = store, objectives
        self.total, self.done_before = total, done_before
        self.quiet = quiet
        self._stream = stream
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.summary = summary
        self.clock = clock
        self.started = clock()
        self.time_left = TimeLeft(clock)
        self.running: set[str] = set()
        self.actors: dict[str, str] = {}  # trial id -> the Ray actor that runs it
        self.counts = {"ok": 0, "infeasible": 0, "failed": 0, "truncated": 0}
        self.best: dict[str, tuple[float, int]] = {}
        self.phase = phase
        self.on_tail = on_tail
        for row in store.rows():
            if row.get("phase") == phase:
                self._count(row)

    def __getstate__(self) -> dict[str, Any]:
        """Ray pickles the Tuner's callbacks with its state: leave out the stream and hooks."""
        state = dict(self.__dict__)
        state.update(_stream=None, summary=None, tty=False, on_tail=None)
        return state

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stdout

    # ------------------------------------------------------------------ Ray Tune hooks
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.add(trial.trial_id)
        actor = getattr(getattr(trial, "temporary_state", None), "ray_actor", None)
        if actor is not None:
            self.actors[trial.trial_id] = actor._actor_id.hex()
        self.time_left.started(trial.trial_id)
        self._render()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        row = clean_row(trial.last_result or {})
        if row.get("status") in (None, TrialStatus.RUNNING):
            row["status"] = TrialStatus.TRUNCATED.value  # stopped by the scheduler before its last epoch
            row.setdefault("reason", "stopped early by the scheduler" + (f" after epoch {row['epoch']}" if "epoch" in row else ""))
        self._finish(trial, row)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        row = clean_row(trial.last_result or {})
        row["trial"] = row.get("trial", trial.config.get(NUMBER_KEY, -1))
        row["status"] = TrialStatus.ERROR.value
        row.setdefault("error", f"the trial's worker failed: {getattr(trial, 'error_file', None) or 'see Ray logs'}")
        if not row.get("node"):  # it failed before its first report (e.g. its node died): ask Ray where it ran
            row.update(self._actor_node(trial.trial_id))
        self._finish(trial, row)

    def _actor_node(self, trial_id: str) -> dict[str, Any]:
        """{'node', 'node_ip'} of the actor that ran `trial_id`, from Ray's actor table ({} if unknown)."""
        try:
            from ray._private.state import actors

            address = actors(self.actors[trial_id])["Address"]
            return {"node": address["NodeID"], "node_ip": address["IPAddress"]} if address.get("NodeID") else {}
        except Exception:  # no record of it: the row keeps no node
            return {}

    # ------------------------------------------------------------------ bookkeeping
    def _finish(self, trial: Any, row: dict[str, Any]) -> None:
        self.running.discard(trial.trial_id)
        row["trial_id"] = trial.trial_id
        row["finished_at"] = round(time.time(), 3)  # when the search had this result (benchmarks/search_efficiency.py)
        if self.phase is not None:
            row["phase"] = self.phase
        self.store.append(row)
        self.store.refresh(self.objectives, self.summary() if self.summary else None)
        self._count(row)
        self.time_left.finished(trial.trial_id, self.total - self.done)
        self._log(row)
        self._render()
        if self.on_tail is not None and self.done < self.total <= self.done + len(self.running):
            tail, self.on_tail = self.on_tail, None
            try:
                tail()
            except Exception:  # noqa: BLE001 - a head start only: the phase it serves starts its own
                pass

    def _count(self, row: dict[str, Any]) -> None:
        status = row.get("status")
        key = "failed" if status in FAILED else status
        if key in self.counts:
            self.counts[key] += 1
        if status != TrialStatus.OK:
            return
        for obj in self.objectives:
            value = row.get(metric_of(obj))
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            best = self.best.get(obj.name)
            if best is None or (value > best[0] if obj.mode == "max" else value < best[0]):
                self.best[obj.name] = (float(value), int(row.get("trial", -1)))

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def status_line(self) -> str:
        c = self.counts
        parts = [f"{self.done}/{self.total} done", f"{len(self.running)} running", f"ok {c['ok']}",
                 f"infeasible {c['infeasible']}", f"failed {c['failed']}"]
        if c["truncated"]:
            parts.append(f"truncated {c['truncated']}")
        for obj in self.objectives:
            if obj.name in self.best:
                value, number = self.best[obj.name]
                parts.append(f"best {obj.name} {_fmt(obj.name, value)} (#{number})")
        parts.append(f"{format_duration(self.clock() - self.started)} elapsed")
        left = self.time_left.text(self.total - self.done)
        if left:
            parts.append(left)
        return "[lknas] " + " | ".join(parts)

    def _log(self, row: dict[str, Any]) -> None:
        status = row.get("status")
        text = f"trial {row.get('trial', '?'):>3} {status:<10} {row.get('summary', '')}"
        if status == TrialStatus.OK:
            text += "  " + "  ".join(
                f"{o.name} {_fmt(o.name, row.get(metric_of(o)))}" for o in self.objectives
            )
        elif row.get("reason") or row.get("error"):
            text += f"  ({row.get('reason') or row.get('error')})"
        if self.tty and not self.quiet:
            self.stream.write("\r\033[K")
        print(text, file=self.stream, flush=True)

    def _render(self) -> None:
        if self.quiet:
            return
        if self.tty:
            self.stream.write("\r\033[K" + self.status_line())
            self.stream.flush()
        else:
            print(self.status_line(), file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty and not self.quiet:
            self.stream.write("\n")
            self.stream.flush()


def _fmt(name: str, value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    if name == "accuracy":
        return f"{value:.1f}%"
    if name == "latency":
        return f"{value:.2f} ms"
    if name in ("params", "flops"):
        return f"{value / 1e6:.2f}M"
    return f"{value:.3g}"
