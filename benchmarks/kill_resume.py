"""Kill -9 a real search at N random points, resume it each time, and count what was lost.

Each round starts `python -m lknas search` (the first with --space, the others with --resume) in
its own process group, waits for a point drawn from a seeded rng (0 to 2 more finished trials,
then up to --max-delay seconds), and SIGKILLs the whole group, Ray's processes included. With
probability --tear the kill is then made a kill mid-write (a torn last line appended to
trials.jsonl), which a SIGKILL at a random time rarely hits by itself. After N kills (or when a
round finishes on its own) a last resume runs to the end. Counted:

- trials lost: a record the log held after some kill that is missing at the end;
- trials duplicated: a trial number recorded more than once;
- study disagreements: finished trials whose study.db entry has another architecture or state.

    python benchmarks/kill_resume.py                        # 20 kills of an 80-trial tiny search
    python benchmarks/kill_resume.py --kills 3 --trials 10  # a quick check (about 2 minutes)

Writes results/benchmarks/kill_resume.json (every kill) and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from lknas.search.store import parse_record  # noqa: E402

TINY_SPACE = """\
name: tiny_space
stem: {type: patch}
block: convnext
layer_scale: 1.0e-6
mlp_ratio: 2
kernel_type: {choice: [dense, stripe]}
stages:
  - {depth: 1, width: {choice: [8, 16]}, kernel: {choice: [3, 7, 9]}}
  - {depth: 1, width: 16, kernel: {choice: [3, 5]}}
constraints: {resolution: 32}
train: {dataset: "pathfinder:easy,train=96,val=32", resolution: 32, steps: 1, batch_size: 32, warmup_epochs: 0}
search: {sampler: tpe, objectives: [accuracy, latency], trials: 40, seed: 0}
"""


def logged(run: Path, phase: str | None | bool = False) -> list[tuple[int, str]]:
    """(trial, hash) of each whole record in the log, in order (only those of `phase`, None for the
    search's own trials, when given)."""
    path = run / "trials.jsonl"
    records = [parse_record(line)[0] for line in path.read_bytes().splitlines()] if path.exists() else []
    return [(r["trial"], str(r.get("hash"))) for r in records
            if r is not None and (phase is False or r.get("phase") == phase)]


def search(args: list[str], log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log, "a") as fh:
        return subprocess.Popen([sys.executable, "-m", "lknas", "search", *args, "--quiet"], cwd=REPO, env=env,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def kill_round(proc: subprocess.Popen, run: Path, wait_records: int, delay: float, timeout: float) -> bool:
    """Kill `proc` once the log holds `wait_records` records and `delay` more seconds passed;
    False if it ended by itself first."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline and len(logged(run)) < wait_records:
        time.sleep(0.1)
    end = time.monotonic() + delay
    while proc.poll() is None and time.monotonic() < end:
        time.sleep(0.05)
    if proc.poll() is not None:
        return False
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


def study_disagreements(run: Path) -> int:
    """Search trials whose study entry has another architecture, study trials finished but not in
    the log, plus trials left RUNNING. Confirm-phase re-trainings are not Optuna's: skipped."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study_name = json.loads((run / "run.json").read_text())["space_name"]
    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{run / 'study.db'}")
    trials = study.trials
    bad = 0
    searched = logged(run, phase=None)
    for number, hash_ in searched:
        t = trials[number] if 0 <= number < len(trials) else None
        if t is None or t.user_attrs.get("hash") != hash_:
            bad += 1
    numbers = {n for n, _ in searched}
    bad += sum(t.state.name in ("COMPLETE", "PRUNED") and t.number not in numbers for t in trials)
    return bad + sum(t.state.name == "RUNNING" for t in trials)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20, help="kill points (N)")
    ap.add_argument("--trials", type=int, default=80)
    ap.add_argument("--space", help="a space file (default: a tiny built-in space, 1 training step per trial)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill points")
    ap.add_argument("--max-delay", type=float, default=1.5, help="most seconds to wait past the chosen record")
    ap.add_argument("--tear", type=float, default=0.2, help="probability that a kill also leaves a torn last line")
    ap.add_argument("--max-concurrent", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "results" / "benchmarks"))
    args = ap.parse_args()

    rng = random.Random(args.seed)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lknas-kill-") as tmp:
        space = Path(args.space) if args.space else Path(tmp) / "tiny_space.yaml"
        if not args.space:
            space.write_text(TINY_SPACE)
        run, log = Path(tmp) / "run", Path(tmp) / "search.log"
        first = ["--space", str(space), "--out", str(run), "--trials", str(args.trials),
                 "--max-concurrent", str(args.max_concurrent)]
        seen: set[tuple[int, str]] = set()
        kills, finished_early = [], False
        for i in range(args.kills):
            before = len(logged(run))
            wait, delay = before + rng.randint(0, 2), rng.uniform(0, args.max_delay)
            proc = search(first if i == 0 else ["--resume", str(run)], log)
            if not kill_round(proc, run, wait, delay, timeout=600):
                finished_early = True
                break
            now = logged(run)
            torn = rng.random() < args.tear
            if torn:
                with open(run / "trials.jsonl", "a") as fh:
                    fh.write('{"trial": %d, "status": "ok", "accuracy": 5' % (len(now) + 1000))
            numbers = [n for n, _ in now]
            kills.append({"round": i, "records_before": before, "waited_for": wait, "delay_s": round(delay, 3),
                          "records_after": len(now), "lost_so_far": len(seen - set(now)),
                          "duplicated_numbers": len(numbers) - len(set(numbers)), "torn_tail_added": torn})
            seen |= set(now)
            print(f"kill {i + 1}/{args.kills}: {len(now)} records (was {before})", flush=True)
        proc = search(["--resume", str(run)], log)
        final_rc = proc.wait()
        final = logged(run)
        numbers = [n for n, _ in final]
        result = {
            "kills": len(kills), "kills_asked": args.kills, "finished_before_all_kills": finished_early,
            "trials_asked": args.trials, "trials_recorded": len(final),
            "confirm_records": len(logged(run, phase="confirm")),
            "trials_lost": len(seen - set(final)), "trials_duplicated": len(numbers) - len(set(numbers)),
            "study_disagreements": study_disagreements(run),
            "torn_tails_added": sum(k["torn_tail_added"] for k in kills), "final_exit_code": final_rc,
            "wall_s": round(time.perf_counter() - start, 1), "kill_points": kills,
            "machine": {"platform": platform.platform(), "python": platform.python_version(),
                        "cpus": os.cpu_count()},
            "command": "python benchmarks/kill_resume.py " + " ".join(sys.argv[1:]),
        }
        if final_rc != 0:
            result["search_log_tail"] = log.read_text()[-4000:]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "kill_resume.json").write_text(json.dumps(result, indent=2) + "\n")
    cells = [result["kills"], result["torn_tails_added"], args.trials,
             f"{len(final)} ({result.get('confirm_records', 0)} of them confirm re-trainings)", result["trials_lost"],
             result["trials_duplicated"], result["study_disagreements"]]
    table = ("| kill points | torn tails added | trials asked | recorded | lost | duplicated | study disagreements |\n"
             "|---|---|---|---|---|---|---|\n| " + " | ".join(str(c) for c in cells) + " |\n")
    (out / "kill_resume.md").write_text(f"# Kill -9 and resume\n\n`{result['command']}` ({result['wall_s']} s)\n\n"
                                        f"{table}")
    print(table)
    ok = (result["trials_lost"] == result["trials_duplicated"] == result["study_disagreements"] == 0
          and len(final) == args.trials and final_rc == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
