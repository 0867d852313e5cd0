"""One-shot GPU check (issue 15), run by benchmarks/gpu_check.sh on a machine with one CUDA GPU.

Each step runs as its own process with a time limit, so one failure or hang costs only its own
slot, and the whole check stays under `--budget-s` (default 480 s: a lent GPU machine's
command may run 10 minutes and a session has 15; the limits below are what each step took on an H200
on 2026-12-04, with room):

1. the CUDA tests (`pytest -k "cuda or gpu"`);
2. `benchmarks/dwconv.py --suite issue15` against cuDNN in NCHW and channels_last, in float32
   (with `torch.compile`), bfloat16 and float16;
3. `benchmarks/proxy_step.py --quick` (training steps, stock layouts against the fast path);
4. a 4-trial search of peleK_space with `--gpus-per-trial 0.5` (two trials share the GPU);
5. its best architecture exported, trained with the full recipe on the GPU (2 short epochs),
   deployed and timed (`benchmarks/found_arch_check.py`).

Writes results/benchmarks/gpu_check-<device>.json and .md (per step: command, exit status, seconds,
the end of its output) beside what the benchmarks write themselves; with $OUT set (the device
tool), it also packs every results/benchmarks/*cuda* file into $OUT/gpu_check.tar.gz.

    python benchmarks/gpu_check.py --dry-run     # print the plan; needs no GPU
    bash benchmarks/gpu_check.sh --only "proxy step,search,found"   # rerun some steps (name prefixes)

A run with --only writes gpu_check-<device>-rerun.json and .md, so the full check's file stays.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results" / "benchmarks"
TAIL_CHARS = 3000
SEARCH_MODULES = ("ray", "optuna", "fvcore", "plotly", "pandas", "timm", "yaml")


@dataclass
class Step:
    name: str
    argv: list[str]
    limit_s: int
    needs: tuple[str, ...] = ()
    verify: Callable[[], str | None] | None = None  # after exit 0: why the step still failed, or None
    result: dict = field(default_factory=dict)


def plan(python: str, search_out: Path) -> list[Step]:
    """The check's steps, in order, each with its own time limit (seconds)."""
    dw = [python, "benchmarks/dwconv.py", "--suite", "issue15", "--repeats", "7", "--device", "cuda"]
    return [
        Step("cuda tests", [python, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", "tests",
                            "-k", "cuda or gpu", "--continue-on-collection-errors"], 80),
        Step("dwconv float32", dw + ["--dtype", "float32"], 35),
        Step("dwconv bfloat16", dw + ["--dtype", "bfloat16", "--no-compile"], 20),
        Step("dwconv float16", dw + ["--dtype", "float16", "--no-compile"], 20),
        # --no-compile: compiling each proxy model took 81-87 s on an H200 and its step was no faster than
        # eager (proxy_step-cuda-nvidia-h200-quick-bfloat16.md; 2026-12-04); run proxy_step.py alone for it
        Step("proxy step", [python, "benchmarks/proxy_step.py", "--quick", "--device", "cuda", "--no-compile"], 60),
        Step("search 4 trials, 0.5 GPU each",
             [python, "-m", "lknas", "search", "--space", "peleK_space.yaml", "--trials", "4", "--steps", "150",
              "--gpus-per-trial", "0.5", "--confirm", "0", "--out", str(search_out), "--quiet"], 130,
             needs=SEARCH_MODULES, verify=lambda: search_verdict(search_out)),
        Step("found architecture trained, deployed, timed",
             [python, "benchmarks/found_arch_check.py", str(search_out), "--device", "cuda"], 90,
             needs=SEARCH_MODULES),
    ]


def select(steps: list[Step], only: str | None) -> list[Step]:
    """The steps whose names start with one of `only`'s comma-separated prefixes (all when None)."""
    if only is None:
        return steps
    prefixes = [p.strip() for p in only.split(",") if p.strip()]
    chosen = [s for s in steps if any(s.name.startswith(p) for p in prefixes)]
    if not chosen:
        raise SystemExit(f"gpu_check: --only {only!r} names no step; the steps are: "
                         + ", ".join(s.name for s in steps))
    return chosen


def search_verdict(out: Path) -> str | None:
    """None when at least one of the search's trials finished ok; else why the search failed
    (`lknas search` exits 1 only when every trial that ran raised: all infeasible or diverged
    trials still exit 0, and measured nothing)."""
    path = out / "trials.csv"
    if not path.exists():
        return f"the search wrote no {path}"
    from lknas.status import TrialStatus  # light: no torch

    with path.open(newline="") as f:
        statuses = Counter(row.get("status", "") for row in csv.DictReader(f))
    if statuses[TrialStatus.OK] == 0:
        return "no trial finished ok (" + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) + ")"
    return None


def missing_modules(names: tuple[str, ...]) -> list[str]:
    return [n for n in names if importlib.util.find_spec(n) is None]


def run_step(step: Step, limit_s: float) -> dict:
    """Run one step with `limit_s` seconds; its exit status, seconds and the end of its output."""
    missing = missing_modules(step.needs)
    if missing:
        return {"status": "skipped", "reason": f"missing Python packages {', '.join(missing)} "
                "(carry them as wheels: see the device tool's README)", "seconds": 0.0}
    start = time.perf_counter()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        proc = subprocess.run(step.argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit_s)
        out, rc = proc.stdout + proc.stderr, proc.returncode
        status = "passed" if rc == 0 else "failed"
        reason = step.verify() if rc == 0 and step.verify else None
        if reason:
            return {"status": "failed", "reason": reason, "returncode": rc,
                    "seconds": round(time.perf_counter() - start, 1), "output_tail": out[-TAIL_CHARS:]}
    except subprocess.TimeoutExpired as exc:
        # what the step printed before it was killed (bytes here, whatever `text` says)
        out = "".join(x.decode(errors="replace") if isinstance(x, bytes) else x for x in (exc.stdout, exc.stderr) if x)
        rc, status = None, f"timed out after {limit_s:.0f} s"
    return {"status": status, "returncode": rc, "seconds": round(time.perf_counter() - start, 1),
            "output_tail": out[-TAIL_CHARS:]}


def table(device: str, steps: list[Step], total_s: float) -> str:
    lines = [f"GPU check on {device}: {total_s:.0f} s in all. Each step's full numbers are in the files "
             "it writes (results/benchmarks/*-cuda-*.json, .md).", "",
             "| step | status | seconds | command |", "|---|---|---|---|"]
    for s in steps:
        r = s.result
        lines.append(f"| {s.name} | {r.get('status', 'not run')}{': ' + r['reason'] if 'reason' in r else ''} | "
                     f"{r.get('seconds', '-')} | `{' '.join(s.argv[1:])}` |")
    return "\n".join(lines) + "\n"


def pack(out_dir: Path) -> Path:
    """Every results/benchmarks/*cuda* file in one archive (the device tool returns at most 8 files)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = out_dir / "gpu_check.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(RESULTS.glob("*cuda*")):
            tar.add(path, arcname=f"results/benchmarks/{path.name}")
    return archive


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="print the steps and their limits; run nothing")
    ap.add_argument("--budget-s", type=float, default=480.0, help="the whole check's time limit (default 480)")
    ap.add_argument("--only", default=None,
                    help="comma-separated prefixes of the step names to run (e.g. 'proxy step,search,found')")
    args = ap.parse_args(argv)
    search_out = Path(os.environ.get("TMPDIR", "/tmp")) / f"lknas-gpu-check-search-{os.getpid()}"
    steps = select(plan(sys.executable, search_out), args.only)
    if args.dry_run:
        for s in steps:
            need = f"  (needs {', '.join(s.needs)})" if s.needs else ""
            print(f"{s.limit_s:4d} s  {s.name}: {' '.join(s.argv[1:])}{need}")
        print(f"budget {args.budget_s:.0f} s; steps sum to {sum(s.limit_s for s in steps)} s")
        return 0
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on a machine with one GPU "
              "(or see the plan with --dry-run)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _timing

    device = _timing.device_name(torch.device("cuda"))
    start = time.perf_counter()
    for s in steps:
        left = args.budget_s - (time.perf_counter() - start)
        if left < 10:
            s.result = {"status": "not run", "reason": "the check's time budget was spent"}
            continue
        print(f"[{time.perf_counter() - start:5.0f} s] {s.name} (limit {min(s.limit_s, left):.0f} s)", flush=True)
        s.result = run_step(s, min(s.limit_s, left))
        print(f"    {s.result['status']} in {s.result['seconds']} s", flush=True)
        if s.result["status"] not in ("passed", "skipped"):
            print(s.result.get("output_tail", "")[-1500:], flush=True)
    total = time.perf_counter() - start
    if (search_out / "trials.csv").exists():  # each trial's status, device and error travel back too
        shutil.copyfile(search_out / "trials.csv", RESULTS / f"gpu_check-search-{device}.csv")
    data = {"benchmark": "gpu_check", "device": device, "budget_s": args.budget_s, "seconds": round(total, 1),
            "environment": _timing.environment(),
            "steps": [{"name": s.name, "command": s.argv[1:], "limit_s": s.limit_s, **s.result} for s in steps]}
    stem = f"gpu_check-{device}" + ("-rerun" if args.only else "")
    jpath, mpath = _timing.write(stem, data, table(device, steps, total))
    print(f"wrote {jpath} and {mpath}")
    if os.environ.get("OUT"):
        print(f"packed {pack(Path(os.environ['OUT']))}")
    return 0 if all(s.result.get("status") in ("passed", "skipped") for s in steps) else 1


if __name__ == "__main__":
    raise SystemExit(main())
