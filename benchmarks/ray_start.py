"""What a local Ray's worker prestart costs a search's start.

A local Ray prestarts one task worker per CPU when the driver connects; a search's trials are Ray
Tune actors, which get new processes, so those workers are never used. This times, in fresh
processes alternating the two settings (`--rounds` pairs), `lknas.search.cluster.init_ray` (the
search's start of a local Ray) and then a 2-trial Ray Tune run whose trainable imports torch (as a trial does first),
with Ray's default prestart and with `cluster.LOCAL_SYSTEM_CONFIG` (prestart off):

- init: `init_ray` (s);
- first: `Tuner.fit` to the first trial's start (s);
- total: init + the fit (s; a 2 s pause between them, to count the workers, left out);
- idle workers: prestarted task workers alive 2 s after `init_ray`, and their resident memory.

    python benchmarks/ray_start.py --rounds 5

Writes results/benchmarks/ray_start.json and .md. Run it on an otherwise idle machine.
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import torch, ray
from ray import tune
from lknas.search import cluster
if sys.argv[1] == "on":
    cluster.LOCAL_SYSTEM_CONFIG = {}  # Ray's default: the prestart on
cluster.init_ray(None, quiet=True)  # as a search starts its local Ray
init = time.perf_counter() - t0
time.sleep(2)  # a prestarted worker is up within 1-2 s; not counted below
import psutil  # Ray's own copy, on the path once ray is imported
def idle_rss(p):  # the resident bytes of a prestarted worker, else 0 (also for a process that ended)
    try:
        return p.memory_info().rss if "ray::IDLE" in " ".join(p.cmdline()) else 0
    except psutil.Error:
        return 0
rss = [idle_rss(p) for p in psutil.Process().children(recursive=True)]
idle, idle_mb = sum(r > 0 for r in rss), sum(rss) / 2**20

def trainable(config):
    import torch  # noqa: F401 - a trial's first import
    tune.report({"t": time.time()})

fit_start = time.time()
results = tune.Tuner(tune.with_resources(trainable, {"cpu": 1}),
                     tune_config=tune.TuneConfig(num_samples=2, reuse_actors=True),
                     run_config=tune.RunConfig(storage_path=sys.argv[2], verbose=0)).fit()
first = min(r.metrics["t"] for r in results) - fit_start
total = init + time.time() - fit_start
print(json.dumps({"init": init, "first": first, "total": total, "idle_workers": idle, "idle_rss_mb": idle_mb}))
"""


def run_once(prestart: str, storage: str) -> dict:
    env = {**os.environ, "RAY_AIR_NEW_OUTPUT": "0", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", CHILD, prestart, storage], capture_output=True, text=True,
                         env=env, timeout=300)
    if out.returncode != 0:
        raise SystemExit(f"ray_start: the {prestart} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=str(REPO / "results" / "benchmarks"))
    args = ap.parse_args()
    runs: dict[str, list[dict]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            for prestart in ("on", "off"):
                runs[prestart].append(run_once(prestart, str(Path(tmp) / f"{prestart}{i}")))
                print(prestart, {k: round(v, 2) for k, v in runs[prestart][-1].items()}, flush=True)
    keys = ("init", "first", "total", "idle_workers", "idle_rss_mb")
    medians = {p: {k: statistics.median(r[k] for r in rs) for k in keys} for p, rs in runs.items()}
    pairs_first = sum(a["first"] > b["first"] for a, b in zip(runs["on"], runs["off"]))
    result = {"rounds": args.rounds, "runs": runs, "medians": medians,
              "rounds_where_off_started_the_first_trial_sooner": pairs_first,
              "machine": {"platform": platform.platform(), "python": platform.python_version()},
              "command": "python benchmarks/ray_start.py " + " ".join(sys.argv[1:])}
    rows = "\n".join(f"| {p} | {m['init']:.2f} s | {m['first']:.2f} s | {m['total']:.2f} s "
                     f"| {m['idle_workers']:.0f} | {m['idle_rss_mb']:.0f} MiB |" for p, m in medians.items())
    text = (f"# A local Ray's worker prestart, on and off\n\n`{result['command']}`\n\n"
            f"Medians of {args.rounds} fresh processes each, alternating.\n\n"
            "| prestart | init_ray | fit to the first trial | total | idle task workers | their memory |\n"
            "|---|---|---|---|---|---|\n"
            f"{rows}\n\nThe first trial started sooner with the prestart off in {pairs_first} of "
            f"{args.rounds} pairs.\n")
    sys.path.insert(0, str(REPO))
    from lknas.io import write_json_atomic, write_text_atomic

    write_json_atomic(Path(args.out) / "ray_start.json", result)
    write_text_atomic(Path(args.out) / "ray_start.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
