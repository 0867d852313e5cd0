"""A search's best architecture reused the way a user reuses it: exported, trained with the full
recipe, deployed and timed, on one device (the GPU check's last step; any device works).

    python benchmarks/found_arch_check.py RUN_DIR --device cuda [--epochs 2 --subset 2048]

Runs `lknas export RUN --best accuracy`, `lknas train FOUND.yaml --device DEVICE` (short: a few
epochs on a subset of the search's own data set, at its resolution), `lknas deploy` of the
train checkpoint (on the CPU, as a deploy machine reads it) and `lknas latency FOUND.yaml
--device DEVICE`. Exit 0 only when every command succeeds and the deploy form's accuracy equals
the trained model's (summary.json's `deploy_matches`); prints each command's seconds and result.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def export_command(run: Path, work: Path) -> list[str]:
    """`lknas export RUN --best accuracy` into work/export (one YAML)."""
    return [sys.executable, "-m", "lknas", "export", str(run), "--best", "accuracy", "--out", str(work / "export")]


def reuse_commands(found: Path, work: Path, device: str, epochs: int, subset: int) -> list[tuple[str, list[str]]]:
    """Train, deploy and time the exported `found` YAML, in order, as (name, argv)."""
    lk = [sys.executable, "-m", "lknas"]
    train = work / "train"
    return [
        ("train", lk + ["train", str(found), "--epochs", str(epochs), "--warmup-epochs", "0", "--subset", str(subset),
                        "--device", device, "--out", str(train)]),
        ("deploy", lk + ["deploy", str(train / "checkpoint-last.pt"), "--out", str(work / "deploy.pt")]),
        ("latency", lk + ["latency", str(found), "--device", device, "--json"]),
    ]


def _run(name: str, cmd: list[str]) -> subprocess.CompletedProcess | None:
    """Run one command; print its seconds, or its failure and output tail (then None)."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        print(f"{name}: exit {proc.returncode} after {seconds:.1f} s: {' '.join(cmd[1:])}\n"
              f"{(proc.stdout + proc.stderr)[-2000:]}", file=sys.stderr)
        return None
    print(f"{name}: ok in {seconds:.1f} s", flush=True)
    return proc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a search run directory (its trials.csv, archs/)")
    ap.add_argument("--device", default="cuda", help="where to train and time (default cuda)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--subset", type=int, default=2048, help="training images per epoch (default 2048)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if _run("export", export_command(args.run, work)) is None:
            return 1
        found = next((work / "export").glob("*.yaml"))
        for name, cmd in reuse_commands(found, work, args.device, args.epochs, args.subset):
            proc = _run(name, cmd)
            if proc is None:
                return 1
            if name == "latency":
                lat = json.loads(proc.stdout)
                print(f"  latency {lat['latency_ms']:.2f} ms at {lat['resolution']} px on {lat['device']} "
                      f"({lat['method']})")
        summary = json.loads((work / "train" / "summary.json").read_text())
        print(f"  trained {summary['arch']}: accuracy {summary['accuracy']:.2f}%, deploy form "
              f"{summary['deploy_accuracy']:.2f}%, deploy_matches {summary['deploy_matches']}")
        return 0 if summary["deploy_matches"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
