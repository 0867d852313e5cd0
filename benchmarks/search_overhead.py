"""How much the search engine costs over the trials themselves.

Runs a real search (local Ray, Optuna, the results store) whose trials each train for about
`--trial-seconds` (the trainer's time limit), then reports

    overhead = search wall time / (sum of trial times / concurrency)

where a trial's time is Ray's `time_total_s` for it (everything the trainable does: counting,
latency, data, training, evaluation, ERF). Target (issue 15): <= 1.05 with ~30 s trials. It also
prints where the time goes: the driver's phases (`SearchOutcome.timings`: data, latency reference,
study, Ray start, the trials, results), the gap between the trials phase and the ideal, and the
mean of each phase inside a trial (data, counting + latency, training, post-training measurement).

    python benchmarks/search_overhead.py                # 8 trials of ~30 s, 2 at a time
    python benchmarks/search_overhead.py --trials 4 --trial-seconds 10
    python benchmarks/search_overhead.py --cold-data    # the data set built as on a first search

It also records the latency reference the search timed before its first trial (every trial's
latency is scaled to it), so that a change to the search's start shows what it does to that.

Writes results/benchmarks/search_overhead.json and .md.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="peleK_space.yaml")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--trial-seconds", type=float, default=30.0)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "results" / "benchmarks"))
    ap.add_argument("--cold-data", action="store_true",
                    help="build the data set as a first search does (an empty LKNAS_CACHE), not from the cache")
    args = ap.parse_args()

    sys.path.insert(0, str(REPO))
    from lknas.search import load_results, run_search
    from lknas.search.store import RunStore
    from lknas.space import resolve_space_path

    raw = yaml.safe_load(resolve_space_path(args.space).read_text())
    raw.setdefault("train", {}).update(epochs=1000, time_limit=args.trial_seconds)
    raw.pop("constraints", None)  # every trial trains: infeasible ones would cost nothing
    with tempfile.TemporaryDirectory() as tmp:
        if args.cold_data:
            os.environ["LKNAS_CACHE"] = str(Path(tmp) / "cache")  # the trials' Ray workers inherit it
        space = Path(tmp) / "space.yaml"
        space.write_text(yaml.safe_dump(raw, sort_keys=False))
        start, start_clock = time.perf_counter(), time.time()
        outcome = run_search(space, out=Path(tmp) / "run", quiet=True, trials=args.trials,
                             max_concurrent=args.concurrency, cpus_per_trial=1, sampler="random", confirm=0)
        wall = time.perf_counter() - start
        df = load_results(Path(tmp) / "run")
        reference = RunStore(Path(tmp) / "run").read_settings().get("latency_reference") or {}
    trial_times = [float(t) for t in df["wall_time"]]
    ideal = sum(trial_times) / args.concurrency
    phases = dict(outcome.timings)
    phases["outside _search (checks, run directory, lock)"] = wall - sum(phases.values())
    in_trial = {k: float(df[k].mean()) for k in ("wall_time", "data_time", "static_time", "latency_wait", "train_time",
                                                 "measure_time") if k in df}
    in_trial["rest (process start, reports, checkpoints)"] = in_trial["wall_time"] - sum(
        in_trial.get(k, 0.0) for k in ("data_time", "static_time", "train_time", "measure_time"))
    train_ideal = float(df["train_time"].sum()) / args.concurrency
    before_trials = sum(v for k, v in outcome.timings.items()
                        if k in ("data", "latency_reference", "study", "ray_start"))
    first_start = (float(df["started_at"].min()) - start_clock - before_trials) if "started_at" in df else None
    tail = slot_tail(df["finished_at"].astype(float).tolist(), args.concurrency) if "finished_at" in df else None
    handoffs = slot_handoffs(df["started_at"].astype(float).tolist(), df["finished_at"].astype(float).tolist(),
                             args.concurrency) if {"started_at", "finished_at"} <= set(df.columns) else []
    result = {
        "space": args.space, "cold_data": args.cold_data, "trials": len(df),
        "statuses": df["status"].value_counts().to_dict(),
        "concurrency": args.concurrency, "trial_seconds_target": args.trial_seconds,
        "trial_time_mean_s": sum(trial_times) / len(trial_times), "search_wall_s": wall,
        "ideal_wall_s": ideal, "overhead_ratio": wall / ideal, "target_ratio": 1.05,
        "ratio_over_training_alone": wall / train_ideal,
        # the quiet re-timing of the front after the trials is a measurement the search makes, not scheduling
        "overhead_ratio_less_retime": (wall - phases.get("retime", 0.0)) / ideal,
        "driver_phases_s": phases, "slot_handoffs_s": handoffs,
        # timed once before the trials, every trial's latency scaled to it: a start that overlaps
        # other work must leave it where a quiet start puts it
        "latency_reference_ms": reference.get("ms"),
        "first_trial_start_s": first_start, "tail_idle_s": tail,
        "tune_loop_gap_s": phases.get("trials", 0.0) - ideal, "per_trial_mean_s": in_trial,
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "command": "python benchmarks/search_overhead.py " + " ".join(sys.argv[1:]),
    }
    out = Path(args.out)
    table = (
        "| trials | concurrency | mean trial time | search wall | ideal (sum / concurrency) | ratio | target "
        "| ratio less the retime phase | ratio over training alone |\n|---|---|---|---|---|---|---|---|---|\n"
        f"| {len(df)} | {args.concurrency} | {result['trial_time_mean_s']:.1f} s | {wall:.1f} s | {ideal:.1f} s "
        f"| {result['overhead_ratio']:.3f} | <= 1.05 | {result['overhead_ratio_less_retime']:.3f} "
        f"| {result['ratio_over_training_alone']:.3f} |\n"
    )
    rows = [f"| {name} | {sec:.1f} s | {100 * sec / wall:.1f}% |" for name, sec in phases.items()]
    rows.append(f"| of `trials`: beyond the ideal (trial start, scheduling, results between trials) | "
                f"{result['tune_loop_gap_s']:.1f} s | {100 * result['tune_loop_gap_s'] / wall:.1f}% |")
    if handoffs:
        rows.append(f"| of those: a freed slot waiting for its next trial to start ({len(handoffs)} hand-offs, "
                    f"mean {sum(handoffs) / len(handoffs):.2f} s, max {max(handoffs):.2f} s), / concurrency | "
                    f"{sum(handoffs) / args.concurrency:.1f} s | "
                    f"{100 * sum(handoffs) / args.concurrency / wall:.1f}% |")
    if first_start is not None:
        rows.append(f"| of those: the trials phase's start to the first trial's (worker start, imports) | "
                    f"{first_start:.1f} s | {100 * first_start / wall:.1f}% |")
    if tail is not None:
        rows.append(f"| of those: slots idle at the end (the last trials finishing one after another), "
                    f"/ concurrency | {tail:.1f} s | {100 * tail / wall:.1f}% |")
    breakdown = "| driver phase | seconds | of the wall time |\n|---|---|---|\n" + "\n".join(rows) + "\n"
    per_trial = ("| inside a trial (mean) | seconds |\n|---|---|\n"
                 + "\n".join(f"| {k} | {v:.2f} s |" for k, v in in_trial.items()) + "\n")
    ref_ms = result["latency_reference_ms"]
    reference_line = f"The latency reference, timed once before the first trial: {ref_ms:.3f} ms.\n" if ref_ms else ""
    text = f"# Search engine overhead\n\n`{result['command']}`\n\n{table}\n{breakdown}\n{per_trial}\n{reference_line}"
    from lknas.io import write_json_atomic, write_text_atomic

    write_json_atomic(out / "search_overhead.json", result)
    write_text_atomic(out / "search_overhead.md", text)
    print(text)
    return 0


def slot_handoffs(started: list[float], finished: list[float], concurrency: int) -> list[float]:
    """Seconds each trial slot stood empty: the (i + concurrency)-th trial to start took the slot
    the i-th trial to finish freed; its start (in the worker) minus that result (in the driver)."""
    starts, ends = sorted(started), sorted(finished)
    return [max(0.0, s - e) for s, e in zip(starts[concurrency:], ends)]


def slot_tail(finished: list[float], concurrency: int) -> float:
    """Slot-seconds left idle at the end, per slot: each of the last `concurrency` results
    frees a slot that waits for the search's last result."""
    ends = sorted(finished)[-concurrency:]
    return sum(ends[-1] - e for e in ends) / concurrency


if __name__ == "__main__":
    sys.exit(main())
