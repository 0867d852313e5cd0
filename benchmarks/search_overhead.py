"""How much the search engine costs over the trials themselves.

Runs a real search (local Ray, Optuna, the results store) whose trials each train for about
`--trial-seconds` (the trainer's time limit), then reports

    overhead = search wall time / (sum of trial times / concurrency)

where a trial's time is Ray's `time_total_s` for it (everything the trainable does: counting,
latency, data, training, evaluation, ERF). Target (issue 5): <= 1.15 with ~30 s trials.

    python benchmarks/search_overhead.py                # 8 trials of ~30 s, 2 at a time
    python benchmarks/search_overhead.py --trials 4 --trial-seconds 10

Writes results/benchmarks/search_overhead.json and .md.
"""
from __future__ import annotations

import argparse
import json
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
    args = ap.parse_args()

    sys.path.insert(0, str(REPO))
    from lknas.search import load_results, run_search
    from lknas.space import resolve_space_path

    raw = yaml.safe_load(resolve_space_path(args.space).read_text())
    raw.setdefault("train", {}).update(epochs=1000, time_limit=args.trial_seconds)
    raw.pop("constraints", None)  # every trial trains: infeasible ones would cost nothing
    with tempfile.TemporaryDirectory() as tmp:
        space = Path(tmp) / "space.yaml"
        space.write_text(yaml.safe_dump(raw, sort_keys=False))
        start = time.perf_counter()
        run_search(space, out=Path(tmp) / "run", quiet=True, trials=args.trials,
                   max_concurrent=args.concurrency, cpus_per_trial=1, sampler="random")
        wall = time.perf_counter() - start
        df = load_results(Path(tmp) / "run")
    trial_times = [float(t) for t in df["wall_time"]]
    ideal = sum(trial_times) / args.concurrency
    result = {
        "space": args.space, "trials": len(df), "statuses": df["status"].value_counts().to_dict(),
        "concurrency": args.concurrency, "trial_seconds_target": args.trial_seconds,
        "trial_time_mean_s": sum(trial_times) / len(trial_times), "search_wall_s": wall,
        "ideal_wall_s": ideal, "overhead_ratio": wall / ideal, "target_ratio": 1.15,
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "command": "python benchmarks/search_overhead.py " + " ".join(sys.argv[1:]),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "search_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    table = (
        "| trials | concurrency | mean trial time | search wall | ideal (sum / concurrency) | ratio | target |\n"
        "|---|---|---|---|---|---|---|\n"
        f"| {len(df)} | {args.concurrency} | {result['trial_time_mean_s']:.1f} s | {wall:.1f} s | {ideal:.1f} s "
        f"| {result['overhead_ratio']:.3f} | <= 1.15 |\n"
    )
    (out / "search_overhead.md").write_text(f"# Search engine overhead\n\n`{result['command']}`\n\n{table}")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
