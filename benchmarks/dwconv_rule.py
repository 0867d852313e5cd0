"""Does `dwconv2d`'s rule (no autotune: the default) pick well on the shapes a search trains?

Times every eligible algorithm (forward + backward, interleaved rounds in one process) on the
depthwise shapes of peleK_space's proxy nets at 64 px (batch 64; maps 16, 8, 4, 2 px; the
large kernels, SLaK's k x 5 stripes, the 5x5 / 3x3 reparam branches), once per input layout, and
reports for each the rule's choice against the fastest algorithm and the fastest stock one
(`direct`, and `direct_cl` for an NCHW input). The target: the rule never slower than stock
(rule / best stock <= 1, within the noise of a few %); the geometric-mean speed-up says what it
leaves on the table against the measured best. Also prints the GEMM throughput, which is how
`estimate_ms`'s terms are scaled to the reference CPU.

    python benchmarks/dwconv_rule.py              # ~3 minutes on 2 cores
    python benchmarks/dwconv_rule.py --repeats 2 --limit 2 --no-write   # smoke run
    python benchmarks/dwconv_rule.py --threads 1 --batch 32   # a default search trial's conditions

Writes results/benchmarks/dwconv_rule-<device>[-b<batch>].json and .md (device: cpu<threads>t). Run it
on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _timing  # noqa: E402

from lknas.ops import dwconv as dw  # noqa: E402
from lknas.ops.dwconv_select import STOCK, eligible, rule, workspace_limit  # noqa: E402

# (channels, map, kh, kw): peleK_space's widest stages (32, 48, 96, 128 channels on 16, 8, 4, 2 px
# maps at 64 px) with the kernels they apply there (31, 15, 7, 3 at most; stripes k x 5; reparam 5),
# the space's other kernel choices (21 and 7 at 16 px, 11 and 7 at 8 px, 3 at 4 px), and the
# other half of each SLaK stripe pair (5 x k: oneDNN's kernel gradient runs it up to 7x slower)
SHAPES = [(32, 16, 31, 31), (32, 16, 31, 5), (16, 16, 13, 13), (32, 16, 13, 13), (32, 16, 5, 5), (48, 8, 15, 15),
          (48, 8, 15, 5), (48, 8, 5, 5),
          (96, 4, 7, 7), (96, 4, 7, 5), (96, 4, 5, 5), (128, 2, 3, 3),
          (24, 16, 21, 21), (32, 16, 7, 7), (48, 8, 11, 11), (32, 8, 7, 7), (96, 4, 3, 3),
          (32, 16, 5, 31), (48, 8, 5, 15), (96, 4, 5, 7)]


def time_shape(batch: int, c: int, h: int, kh: int, kw: int, layout: str, repeats: int) -> dict:
    x = torch.randn(batch, c, h, h)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_(True)
    w = torch.randn(c, 1, kh, kw, requires_grad=True)
    algos = eligible(batch, c, h, h, kh, kw, 4, workspace_limit(), layout)

    def step(algo: str):
        def run() -> None:
            with dw.use_algorithm(algo):
                y = dw.dwconv2d(x, w)
            y.sum().backward()
        return run

    samples = _timing.interleaved_samples({a: step(a) for a in algos}, torch.device("cpu"), repeats)
    ms = {a: statistics.median(v) for a, v in samples.items()}
    chosen = rule(batch, c, h, h, kh, kw, 4, True, False, workspace_limit(), layout, torch.get_num_threads())
    best = min(ms, key=ms.get)
    stock = min((a for a in ms if a in STOCK), key=ms.get)
    return {"shape": [batch, c, h, h, kh, kw], "layout": layout, "ms": ms, "rule": chosen, "best": best,
            "stock": stock, "rule_over_stock": ms[chosen] / ms[stock], "best_over_rule": ms[best] / ms[chosen]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=7, help="interleaved rounds")
    ap.add_argument("--limit", type=int, help="only the first N shapes (smoke runs)")
    ap.add_argument("--threads", type=int, default=2,
                    help="torch threads (a search trial trains with --cpus-per-trial threads, 1 by default)")
    ap.add_argument("--write", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    gemm = _timing.gemm_gflops(device)
    rows = []
    for c, h, kh, kw in SHAPES[:args.limit]:
        for layout in ("nchw", "channels_last"):
            r = time_shape(args.batch, c, h, kh, kw, layout, args.repeats)
            rows.append(r)
            print(f"{c:4d} ch {h:3d} px {kh}x{kw} {layout:13s} rule {r['rule']:9s} {r['ms'][r['rule']]:7.2f} ms, "
                  f"stock {r['stock']} {r['ms'][r['stock']]:7.2f}, best {r['best']} {r['ms'][r['best']]:7.2f}",
                  flush=True)
    worst = max(r["rule_over_stock"] for r in rows)
    speedup = _timing.geomean([1 / r["rule_over_stock"] for r in rows])
    left = _timing.geomean([1 / r["best_over_rule"] for r in rows])
    lines = [
        "# dwconv2d's rule on the proxy shapes of peleK_space",
        "",
        f"`python benchmarks/dwconv_rule.py {' '.join(sys.argv[1:])}`: forward + backward, batch {args.batch}, "
        f"median ms of {args.repeats} interleaved rounds; fp32 GEMM {gemm:.0f} GFLOP/s on this machine. "
        "Stock: `direct` (F.conv2d on the input as given) and, for an NCHW input, `direct_cl` (converted "
        "to channels_last and back).",
        "",
        f"- rule over the best stock option: geometric-mean speed-up {speedup:.2f}x, worst shape "
        f"{1 / worst:.2f}x (target: never below 1, within a few % of noise)",
        f"- the measured best over the rule: {left:.2f}x (what a perfect rule would add)",
        "",
        "| channels | map | kernel | input | rule | rule ms | best stock | stock ms | fastest | fastest ms | "
        "speed-up over stock | all algorithms (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        _, c, h, _, kh, kw = r["shape"]
        every = ", ".join(f"{a} {v:.1f}" for a, v in r["ms"].items())
        lines.append(f"| {c} | {h} | {kh}x{kw} | {r['layout']} | {r['rule']} | {r['ms'][r['rule']]:.2f} | "
                     f"{r['stock']} | {r['ms'][r['stock']]:.2f} | {r['best']} | {r['ms'][r['best']]:.2f} | "
                     f"{1 / r['rule_over_stock']:.2f}x | {every} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        data = {"benchmark": "dwconv_rule", "gemm_gflops": gemm, "batch": args.batch, "repeats": args.repeats,
                "environment": _timing.environment(), "geomean_rule_over_stock": speedup,
                "worst_rule_over_stock": 1 / worst, "geomean_best_over_rule": left, "rows": rows,
                "command": "python benchmarks/dwconv_rule.py " + " ".join(sys.argv[1:])}
        stem = f"dwconv_rule-{_timing.device_name(device)}" + (f"-b{args.batch}" if args.batch != 64 else "")
        for path in _timing.write(stem, data, text):
            print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
