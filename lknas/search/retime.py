"""The retime phase: the architectures near the latency front, timed again on the idle node.

Each search trial times its deploy model once, at its own minute of the search: the node's other
trials are paused meanwhile (`lknas.quiet`), but the machine's speed still drifts between minutes
and the reference-net scaling follows it only in part (a default search on the 2-core machine
timed one architecture 4.88 ms in its trial and 5.95 ms in a confirm re-training). A front decided
by single timings is partly decided by that noise.

So when the trials are done, every architecture that could be on the front within `MARGIN` of
timing error (the front itself first, then the nearest others, at most `MAX_ARCHS`) is timed again
with nothing else running: `rounds` times each, in interleaved rounds (every architecture once per
round, so a slow minute slows all of them alike), with the trials' own settings (threads, repeats,
the run's reference scale), in a fresh process with a trial's OpenMP pool
(`lknas.measure.isolated`), not in the driver that ran the search, and in the memory layout the
architecture's trial chose and recorded (`latency_layout`, the layout its latency is quoted in):
deciding the layout again at each timing would keep the faster of two noisy timings (and costs
0.79-0.91 s a timing against 0.66-0.71 s, `results/benchmarks/search_overhead_retime_layout.md`).
Their mean becomes the architecture's `latency_ms` for the front, `pareto.csv`, `archs/`,
`summary.txt`, the report and the confirm plan, with `latency_std_ms` and `latency_timings` beside
it; the trial's own timing stays in `latency_search_ms`. The Optuna study keeps the in-search
values it sampled with.

The timings land in `RUN/retime.json`, rewritten atomically after each one: a kill loses at most
the timing under way, and a resumed search times only what is missing. The file is read
defensively (it is data, never code): entries that are not what this module writes are ignored.
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lknas.io import write_json_atomic
from lknas.search.hypervolume import minimized
from lknas.search.noise import search_rows
from lknas.search.objectives import metric_of, objective_values
from lknas.space.configs import Objective
from lknas.status import TrialStatus

__all__ = ["RETIME_FILE", "MARGIN", "MAX_ARCHS", "read_retimed", "apply_retimed", "retime_candidates", "run_retime",
           "timer_setting", "TimerPrestart"]

RETIME_FILE = "retime.json"
VERSION = 1
MARGIN = 0.20  # an architecture is re-timed unless another is better on every objective even 20% slower
MAX_ARCHS = 12  # re-timed per search at most: the front, then the nearest others
LATENCY = metric_of("latency")


def read_retimed(root: str | Path) -> dict[str, list[float]]:
    """hash -> the re-timed latencies (ms) in RUN/retime.json; {} when there is none or it is not
    what `run_retime` writes (timings that are not positive finite numbers are left out)."""
    out = {}
    for key, runs in _read_record(Path(root) / RETIME_FILE).get("timings", {}).items():
        ms = [float(v) for v in (r.get("latency_ms") for r in runs) if isinstance(v, (int, float))
              and not isinstance(v, bool) and math.isfinite(v) and v > 0]
        if ms:
            out[key] = ms
    return out


def apply_retimed(df: pd.DataFrame, retimed: dict[str, list[float]]) -> pd.DataFrame:
    """`df` with the re-timed architectures' `latency_ms` replaced by the mean of their re-timings
    (every row of the same hash), `latency_search_ms` the trial's own timing, `latency_std_ms`
    (sample std; NaN for one timing) and `latency_timings` (how many)."""
    if not retimed or df.empty or "hash" not in df.columns or LATENCY not in df.columns:
        return df
    hit = df["hash"].astype(str).isin(retimed)
    if not hit.any():
        return df
    out = df.copy()
    out["latency_search_ms"] = out[LATENCY]
    keys = out.loc[hit, "hash"].astype(str)
    out.loc[hit, LATENCY] = [statistics.fmean(retimed[k]) for k in keys]
    out["latency_std_ms"] = np.nan
    out.loc[hit, "latency_std_ms"] = [statistics.stdev(retimed[k]) if len(retimed[k]) > 1 else np.nan for k in keys]
    out["latency_timings"] = 0
    out.loc[hit, "latency_timings"] = [len(retimed[k]) for k in keys]
    return out


def retime_candidates(df: pd.DataFrame, objectives: tuple[Objective, ...], margin: float = MARGIN,
                      limit: int = MAX_ARCHS) -> list[str]:
    """Hashes of the search's feasible architectures that a timing error of up to `margin` could
    put on the front: those no other one dominates with its latency made `1 + margin` times
    slower. The front comes first, then the others by how much faster they would have to be to
    join it; at most `limit`. Empty unless latency is an objective."""
    names = [o.name for o in objectives]
    if "latency" not in names or df.empty or "status" not in df.columns:
        return []
    rows = search_rows(df)
    rows = rows[rows["status"] == TrialStatus.OK].drop_duplicates("hash") if "hash" in rows.columns else rows.iloc[0:0]
    points, hashes = [], []
    for _, row in rows.iterrows():
        values = objective_values(row.to_dict(), objectives)
        if values is not None:
            points.append(values)
            hashes.append(str(row["hash"]))
    if not points:
        return []
    values = minimized(points, [o.mode for o in objectives])
    col = names.index("latency")
    others = [k for k in range(values.shape[1]) if k != col]
    need = []  # per point: the factor its latency must shrink by to join the front (1: on it)
    for i, a in enumerate(values):
        factor = 1.0
        for j, b in enumerate(values):
            if j == i or not all(b[k] <= a[k] for k in others):
                continue
            if b[col] < a[col] or (b[col] == a[col] and any(b[k] < a[k] for k in others)):
                factor = max(factor, a[col] / b[col] if b[col] > 0 else math.inf)
        need.append(factor)
    order = sorted((f, i) for i, f in enumerate(need) if f <= 1 + margin)
    return [hashes[i] for _, i in order[:limit]]


def run_retime(store, ctx, objectives: tuple[Objective, ...], rounds: int, resolution: int, *, stream,
               margin: float = MARGIN, limit: int = MAX_ARCHS, timer=None) -> int:
    """Time the candidates (`retime_candidates`) `rounds` times each in interleaved rounds, with the
    node's lknas work paused, appending to RUN/retime.json. Returns how many timings it took (0
    when there was nothing to do). `timer` ((arch YAML, layout) -> `measure_latency`'s dict; the
    layout is the trial's recorded one, None where it has none) defaults to a fresh child process
    (`lknas.measure.isolated.ChildTimer`)."""
    if rounds <= 0:
        return 0
    raw = pd.DataFrame(store.rows())  # the trials' own timings decide what is re-timed
    hashes = retime_candidates(raw, objectives, margin, limit)
    if not hashes:
        return 0
    path = store.root / RETIME_FILE
    setting = _record_setting(ctx, resolution)
    record = _read_record(path)
    if record.get("setting") != setting:  # timed at other settings: not comparable, start again
        record = {"version": VERSION, "setting": setting, "timings": {}}
    record.update(rounds=rounds, margin=margin, candidates=hashes)
    timings = record["timings"]
    yaml_of = dict(zip(raw["hash"].astype(str), raw["arch_yaml"]))
    layout_of = _trial_layouts(raw)
    todo = sum(max(0, rounds - len(timings.get(h, []))) for h in hashes)
    if todo == 0:
        return 0
    print(f"retime: {len(hashes)} architecture(s) within {margin:.0%} of the latency front, {rounds} interleaved "
          f"round(s) on the idle node ({todo} timing(s))", file=stream, flush=True)
    own = timer is None
    if own:
        from lknas.measure.isolated import ChildTimer

        timer = ChildTimer(timer_setting(ctx, resolution))
    done = 0
    try:
        for k in range(rounds):
            for h in hashes:
                runs = timings.setdefault(h, [])
                if len(runs) > k:
                    continue
                lat = timer(yaml_of[h], layout_of.get(h))
                runs.append({"round": k, "latency_ms": lat["latency_ms"], "raw_ms": lat["raw_ms"],
                             "layout": lat["layout"], "foreign": lat["foreign_load"], "attempts": lat["attempts"]})
                write_json_atomic(path, record)
                done += 1
            print(f"retime: round {k + 1} of {rounds} done", file=stream, flush=True)
    finally:
        if own:
            timer.close(wait=False)  # its exit overlaps what the search does next
    return done


def _trial_layouts(raw: pd.DataFrame) -> dict[str, str]:
    """hash -> the memory layout its trials recorded (the most frequent where re-trainings differ;
    rows without a known layout are left out, so those architectures are timed in both)."""
    from lknas.measure.layout import LAYOUTS

    if "latency_layout" not in raw.columns:
        return {}
    known = raw[raw["latency_layout"].isin(LAYOUTS)]
    by_hash = known.groupby(known["hash"].astype(str))["latency_layout"]
    return {str(h): str(group.mode().iloc[0]) for h, group in by_hash}


def _record_setting(ctx, resolution: int) -> dict[str, Any]:
    """What retime.json's timings were taken with (a change starts them again); `layout: trial`:
    each in its trial's layout (files written before timed both)."""
    from lknas.search.trial import LATENCY_REPEATS

    return {"resolution": resolution, "threads": ctx.latency_threads, "reference_ms": ctx.latency_reference_ms,
            "repeats": LATENCY_REPEATS, "layout": "trial"}


def timer_setting(ctx, resolution: int) -> dict[str, Any]:
    """The `ChildTimer` setting of a run's retime phase: the trials' own timing settings."""
    return {**_record_setting(ctx, resolution), "num_classes": ctx.num_classes, "in_chans": ctx.in_chans,
            "device": "cpu" if ctx.device == "cpu" else ctx.device}


class TimerPrestart:
    """The retime phase's timing process, started ahead (`start`) when the search's tail begins:
    every remaining trial is running and a slot stays free, so the child's start-up (a fresh
    Python importing torch: ~5 s on the 2-core machine) runs on an otherwise idle core instead
    of after the last trial. It only imports; nothing is timed until the retime phase asks.
    `take()` hands the timer over (None when it was never started); `close()` ends an unused one."""

    def __init__(self, setting: dict[str, Any]):
        self.setting = setting
        self._timer = None

    def start(self) -> None:
        if self._timer is None:
            from lknas.measure.isolated import ChildTimer

            self._timer = ChildTimer(self.setting)

    def take(self):
        timer, self._timer = self._timer, None
        return timer

    def close(self) -> None:
        timer = self.take()
        if timer is not None:
            timer.close(wait=False)


def _read_record(path: Path) -> dict[str, Any]:
    """RUN/retime.json as `run_retime` writes it, its timings a dict of lists of dicts; {} when
    absent, unreadable or of another version."""
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("timings"), dict):
        return {}
    data["timings"] = {str(k): [v for v in runs if isinstance(v, dict)] for k, runs in data["timings"].items()
                       if isinstance(runs, list)}
    return data
