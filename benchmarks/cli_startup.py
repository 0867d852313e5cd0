"""Start-up time of the command line: `python -m lknas --help` and `python -m lknas validate
peleK_space.yaml`, median wall time of N fresh interpreters each.

    python benchmarks/cli_startup.py [--runs 5] [--before REF]

`--before REF` also times the tree of git commit REF (extracted to a temporary directory), run by
run in alternation with the working tree, so load from other processes hits both alike. Writes
results/benchmarks/cli_startup.json (every run, the load average) and cli_startup.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results" / "benchmarks"
COMMANDS = {"--help": ["--help"], "validate peleK_space.yaml": ["validate", "peleK_space.yaml"]}


def time_once(tree: Path, argv: list[str]) -> float:
    """Seconds for one `python -m lknas ARGV` with `tree` first on the import path."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lknas", *argv], cwd=tree, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def extract(ref: str, into: Path) -> Path:
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--before", metavar="REF", help="also time this git commit's tree")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"now": ROOT}
        if args.before:
            trees[f"before ({args.before})"] = extract(args.before, Path(tmp))
        load = [os.getloadavg()[0]]
        runs: dict[str, dict[str, list[float]]] = {t: {c: [] for c in COMMANDS} for t in trees}
        for name, argv in COMMANDS.items():
            for tree, path in trees.items():
                time_once(path, argv)  # warm the file cache
            for _ in range(args.runs):
                for tree, path in trees.items():
                    runs[tree][name].append(time_once(path, argv))
        load.append(os.getloadavg()[0])
    medians = {t: {c: statistics.median(v) for c, v in r.items()} for t, r in runs.items()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    info = {"python": platform.python_version(), "cpus": os.cpu_count(), "load_average_1min": load,
            "runs": runs, "median_s": medians}
    (RESULTS / "cli_startup.json").write_text(json.dumps(info, indent=2) + "\n")
    lines = ["# CLI start-up (median wall seconds of fresh interpreters)", "",
             f"{args.runs} runs each, {os.cpu_count()} CPUs, 1-min load average {load[0]:.1f} -> {load[1]:.1f}.", "",
             "| tree | " + " | ".join(f"`python -m lknas {c}`" for c in COMMANDS) + " |",
             "|---|" + "---:|" * len(COMMANDS)]
    for tree, med in medians.items():
        lines.append(f"| {tree} | " + " | ".join(f"{med[c]:.2f}" for c in COMMANDS) + " |")
    (RESULTS / "cli_startup.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
