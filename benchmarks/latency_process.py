"""Where a latency is timed: the search's driver, a fresh process, a fresh process with OpenMP's default pool.

Runs a short search (4 trials of 40 steps, 2 at a time, no retime or confirm) on the architectures
of `latency_repeatability.py`, then times its architectures, in alternating order round by round,
with the same protocol (`measure_latency`: 100 paired runs, both layouts, 1 thread, the run's
reference scale) in three places:

- `driver`: this process, right after `run_search` returned (Ray still up in it);
- `child`: a fresh process as the retime phase uses it (`lknas.measure.isolated.ChildTimer`,
  `OMP_NUM_THREADS=1` as Ray sets it for a 1-CPU trial);
- `child_omp_default`: a fresh process with OpenMP's default pool (the machine's core count).

Reports each architecture's median per place and each place's median ratio to `child`.

    python benchmarks/latency_process.py            # ~5 minutes on 2 cores

Writes results/benchmarks/latency_process.json and .md. Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLACES = ("driver", "child", "child_omp_default")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--out", default=str(REPO / "results" / "benchmarks"))
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "benchmarks"))
    from latency_repeatability import _derived_space

    from lknas.arch import ArchConfig
    from lknas.io import write_text_atomic
    from lknas.measure import measure_latency
    from lknas.search import load_results, run_search
    from lknas.search.trial import LATENCY_REPEATS

    with tempfile.TemporaryDirectory() as tmp:
        space = _derived_space("peleK_space.yaml", Path(tmp), None, 4, 40)
        out = Path(tmp) / "run"
        run_search(space, out=out, quiet=True, max_concurrent=2, cpus_per_trial=1, retime=0, confirm=0)
        df = load_results(out)
        reference = json.loads((out / "run.json").read_text())["latency_reference"]["ms"]
        resolution = int(df["train"].iloc[0]["resolution"])
    yamls = list(df[df["status"] == "ok"].groupby("hash")["arch_yaml"].first().items())
    setting = {"resolution": resolution, "threads": 1, "repeats": LATENCY_REPEATS, "reference_ms": reference,
               "num_classes": 2, "in_chans": 3, "device": "cpu"}
    from lknas.measure.isolated import ChildTimer

    timers = {"child": ChildTimer(setting), "child_omp_default": ChildTimer(setting, pin_openmp=False)}

    def driver(arch_yaml: str) -> dict:
        return measure_latency(ArchConfig.from_yaml(arch_yaml), resolution, threads=1, num_classes=2,
                               repeats=LATENCY_REPEATS, throughput_batch=None, reference_ms=reference)

    timers["driver"] = driver
    ms = {h: {p: [] for p in PLACES} for h, _ in yamls}
    try:
        for r in range(args.rounds):
            order = PLACES[r % len(PLACES):] + PLACES[:r % len(PLACES)]  # each place first in turn
            for h, y in yamls:
                for place in order:
                    ms[h][place].append(timers[place](y)["latency_ms"])
            print(f"round {r + 1} of {args.rounds}", flush=True)
    finally:
        for place in ("child", "child_omp_default"):
            timers[place].close()
    rows = [{"hash": h, "summary": ArchConfig.from_yaml(y).summary(),
             **{p: statistics.median(ms[h][p]) for p in PLACES}, "runs": ms[h]} for h, y in yamls]
    ratios = {p: statistics.median(r[p] / r["child"] for r in rows) for p in PLACES}
    report = {"rows": rows, "ratio_to_child": ratios, "rounds": args.rounds, "reference_ms": reference,
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
              "command": "python benchmarks/latency_process.py " + " ".join(sys.argv[1:])}
    dest = Path(args.out)
    dest.mkdir(parents=True, exist_ok=True)
    write_text_atomic(dest / "latency_process.json", json.dumps(report, indent=2) + "\n")
    lines = [f"# Where a latency is timed\n\n`{report['command']}`: {len(rows)} architectures, {args.rounds} "
             f"rounds in alternating order, median ms (scaled to the run's reference time) per place.\n",
             "| architecture | " + " | ".join(PLACES) + " |", "|---|" + "---|" * len(PLACES)]
    lines += [f"| {r['summary']} | " + " | ".join(f"{r[p]:.2f}" for p in PLACES) + " |" for r in rows]
    lines += ["", "Median ratio to `child` (the retime phase's timer): "
              + ", ".join(f"{p} {ratios[p]:.3f}" for p in PLACES), ""]
    text = "\n".join(lines)
    write_text_atomic(dest / "latency_process.md", text)
    print(text)
    import ray

    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
