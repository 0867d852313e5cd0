"""Does a space's net learn a data set at all within a budget? Trains sampled architectures on it.

Before a `lknas fidelity` measurement (an hour or more) on a new proxy task, a few runs say
whether the space's nets leave chance at all: each data set below is trained on the first
`--archs` architectures the space samples (sample seeds 0, 1, ...), one thread, the space's
recipe with the data, steps and curriculum given here. Accuracy, validation loss (ln 2 = 0.693 is
a two-class net that learned nothing) and seconds per run.

    python benchmarks/task_probe.py --data "match:glyphs=2,distance=0.1-0.25" --steps 800
    python benchmarks/task_probe.py --data A --data B --steps 3200 --curriculum C --name mine

Writes results/benchmarks/task_probe[-NAME].json and .md.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="peleK_space.yaml")
    ap.add_argument("--data", action="append", required=True, help="a data-set spec (repeatable)")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--archs", type=int, default=1, help="architectures: the space's samples 0..N-1")
    ap.add_argument("--seed", type=int, default=0, help="training seed")
    ap.add_argument("--curriculum", default="", help="curriculum data set for the first 70%% of the steps")
    ap.add_argument("--name", default="", help="suffix of the output files")
    ap.add_argument("--out", default=str(REPO / "results" / "benchmarks"))
    args = ap.parse_args()

    sys.path.insert(0, str(REPO))
    import torch

    from lknas.space import load_space
    from lknas.train.proxy import train_proxy

    torch.set_num_threads(1)  # as a search trial trains
    space = load_space(args.space)
    rows = []
    for data in args.data:
        for index in range(args.archs):
            arch = space.sample(index)
            cfg = space.train.replace(dataset=data, steps=args.steps, seed=args.seed,
                                      curriculum=args.curriculum or None,
                                      curriculum_fraction=0.7 if args.curriculum else 0.0)
            start = time.perf_counter()
            result = train_proxy(arch, cfg)
            rows.append({"data": data, "arch": index, "summary": arch.summary(), "status": result.status,
                         "accuracy": result.accuracy, "val_loss": result.val_loss,
                         "seconds": round(time.perf_counter() - start, 1)})
            print(json.dumps(rows[-1]), flush=True)
    stem = "task_probe" + (f"-{args.name}" if args.name else "")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/task_probe.py " + " ".join(sys.argv[1:])
    env = {"python": platform.python_version(), "torch": torch.__version__, "machine": platform.machine(),
           "threads": 1, "date": time.strftime("%Y-%m-%d %H:%M")}
    record = {"command": command, "space": args.space, "steps": args.steps, "curriculum": args.curriculum,
              "seed": args.seed, "rows": rows, "env": env}
    tmp = out / f"{stem}.json.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(out / f"{stem}.json")
    lines = [f"# Task probe: {args.space}, {args.steps} steps" + (f", curriculum {args.curriculum}" if args.curriculum
                                                                     else ""), "", f"`{command}` ({env['date']})", "",
             "| data | architecture | status | accuracy | val loss | seconds |", "|---|---|---|---|---|---|"]
    for r in rows:
        acc = f"{r['accuracy']:.1f}%" if r["accuracy"] is not None else "-"
        loss = f"{r['val_loss']:.3f}" if r["val_loss"] is not None else "-"
        lines.append(f"| `{r['data']}` | {r['summary']} | {r['status']} | {acc} | {loss} | {r['seconds']} |")
    tmp = out / f"{stem}.md.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(out / f"{stem}.md")
    print(f"wrote {out / stem}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
