"""What keeping freed memory in the process (`lknas.ops.allocator`) does to CPU timings.

Each round starts two fresh processes, one with `LKNAS_MALLOC=keep` (lknas's default) and one
with `LKNAS_MALLOC=system` (glibc as it comes), in alternating order; each times, after a
warm-up, forward + backward of issue 15's six proxy shapes (`dwconv2d` auto in NCHW and in
channels_last, stock `F.conv2d` in channels_last) and a training step (AdamW, batch 32) of
peleK_space's largest dense and stripe nets in channels_last, with the minor page faults per call. The allocator is a
process setting, so the two are compared across processes: median of each process's median,
p90/p50 over all calls of a candidate, and system / keep per candidate.

    python benchmarks/allocator.py [--rounds 3] [--calls 12] [--threads 2]
    python benchmarks/allocator.py --rounds 1 --calls 2 --batch 2 --no-write      # smoke run

Writes results/benchmarks/allocator-cpu<threads>t.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHAPES = [(64, 64, 16, 31), (64, 128, 8, 31), (64, 32, 32, 13), (64, 96, 16, 51), (32, 48, 32, 27), (16, 24, 64, 13)]
MODES = ("keep", "system")


def child(calls: int, threads: int, batch: int | None) -> dict:
    """Runs in the timed process: {candidate: {"ms": [...], "faults": per call}}."""
    import resource
    import time

    import torch
    import torch.nn.functional as F

    from lknas.ops import dwconv as dw
    from lknas.ops.allocator import keep_freed_memory

    applied = keep_freed_memory()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cl = torch.channels_last
    fns = {}
    for b, c, hw, k in SHAPES:
        b = batch or b
        x = torch.randn(b, c, hw, hw, requires_grad=True)
        xc = x.detach().to(memory_format=cl).requires_grad_()
        w = (0.02 * torch.randn(c, 1, k, k)).requires_grad_()
        g = torch.randn(b, c, hw, hw)
        gc = g.to(memory_format=cl)
        name = f"{b}x{c}x{hw} k{k}"

        def ours(xi, gi, w=w):
            def fn():
                dw.dwconv2d(xi, w).backward(gi)
                xi.grad = w.grad = None
            return fn

        def stock(w=w, xc=xc, gc=gc, c=c, k=k):
            F.conv2d(xc, w, None, padding=k // 2, groups=c).backward(gc)
            xc.grad = w.grad = None

        fns[f"{name} ours nchw"] = ours(x, g)
        fns[f"{name} ours cl"] = ours(xc, gc)
        fns[f"{name} stock cl"] = stock
    sys.path.insert(0, str(REPO / "benchmarks"))
    from proxy_step import largest_arch

    import lknas

    xs = torch.randn(batch or 32, 3, 64, 64).contiguous(memory_format=cl)
    ys = torch.randint(0, 2, (batch or 32,))
    for kernel_type in ("dense", "stripe"):
        model = lknas.build_model(largest_arch("peleK_space", kernel_type), num_classes=2).train().to(memory_format=cl)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

        def step(model=model, opt=opt):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(xs), ys).backward()
            opt.step()

        fns[f"peleK {kernel_type} largest: training step, cl"] = step
    out = {}
    for name, fn in fns.items():
        fn()  # warm-up: selection, workspace
        ms, f0 = [], resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(calls):
            t0 = time.perf_counter()
            fn()
            ms.append((time.perf_counter() - t0) * 1e3)
        out[name] = {"ms": ms, "faults": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / calls}
    return {"applied": applied, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "candidates": out}


def _spread(ms: list[float]) -> float:
    if len(ms) < 2:
        return 1.0
    return statistics.quantiles(ms, n=10, method="inclusive")[-1] / statistics.median(ms)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=None, help="override every batch (smoke runs)")
    ap.add_argument("--write", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.calls, args.threads, args.batch)))
        return 0
    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    for r in range(args.rounds):
        for mode in MODES if r % 2 == 0 else MODES[::-1]:
            cmd = [sys.executable, __file__, "--child", "--calls", str(args.calls), "--threads", str(args.threads)]
            cmd += ["--batch", str(args.batch)] if args.batch else []
            proc = subprocess.run(cmd, env={**os.environ, "LKNAS_MALLOC": mode, "PYTHONPATH": str(REPO)},
                                  capture_output=True, text=True, check=True)
            runs[mode].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1} {mode} done", file=sys.stderr, flush=True)
    names = list(runs["keep"][0]["candidates"])
    rows = []
    for name in names:
        row = {"candidate": name}
        for mode in MODES:
            per = [run["candidates"][name] for run in runs[mode]]
            row[mode] = {"ms": statistics.median(statistics.median(p["ms"]) for p in per),
                         "p90_p50": _spread([v for p in per for v in p["ms"]]),
                         "faults": statistics.mean(p["faults"] for p in per)}
        row["system_over_keep"] = row["system"]["ms"] / row["keep"]["ms"]
        rows.append(row)
    result = {"command": "python benchmarks/allocator.py " + " ".join(sys.argv[1:]), "rounds": args.rounds,
              "calls": args.calls, "threads": args.threads, "applied": [r["applied"] for r in runs["keep"]],
              "maxrss_mb": {m: [r["maxrss_mb"] for r in runs[m]] for m in MODES}, "rows": rows}
    lines = [f"# Keeping freed memory in the process (`LKNAS_MALLOC=keep`) against glibc as it comes (`system`)\n",
             f"`{result['command']}`: {args.rounds} round(s) of two fresh processes, {args.calls} timed calls of each "
             f"candidate per process, {args.threads} thread(s); ms = median of the processes' medians, p90/p50 over "
             f"all calls, faults = minor page faults per call.\n",
             "| candidate | ms keep | ms system | system / keep | p90/p50 keep | p90/p50 system | faults keep "
             "| faults system |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        k, s = row["keep"], row["system"]
        lines.append(f"| {row['candidate']} | {k['ms']:.1f} | {s['ms']:.1f} | {row['system_over_keep']:.2f}x "
                     f"| {k['p90_p50']:.2f} | {s['p90_p50']:.2f} | {k['faults']:.0f} | {s['faults']:.0f} |")
    rss = result["maxrss_mb"]
    lines.append(f"\nPeak resident memory per process (MB): keep {', '.join(f'{v:.0f}' for v in rss['keep'])}; "
                 f"system {', '.join(f'{v:.0f}' for v in rss['system'])}.")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        from lknas.io import write_json_atomic, write_text_atomic

        out = REPO / "results" / "benchmarks"
        write_json_atomic(out / f"allocator-cpu{args.threads}t.json", result)
        write_text_atomic(out / f"allocator-cpu{args.threads}t.md", text)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
