"""Forward+backward of `lknas.ops.dwconv2d` (auto-selected algorithm) against `F.conv2d` on the
proxy shapes of the bundled search spaces and the ImageNet-224 shapes of RepLKNet-31B, SLaK-T
and PeLK-T (batch reduced). Writes results/benchmarks/dwconv-<device>.json and .md.

    python benchmarks/dwconv.py            # full suite (a few minutes on 2 CPU cores)
    python benchmarks/dwconv.py --quick    # fewer shapes and repeats
    python benchmarks/dwconv.py --all      # also time every eligible algorithm per shape

"direct" is plain `F.conv2d` with the full kernel (the code before the fast path); "fast" is
`dwconv2d` with automatic selection (kernel crop included). GFLOP/s counts the useful work of the convolution: 2 * B*C*H*W*kh*kw per pass with the kernel
cropped to the (2H-1)x(2W-1) it can reach, three passes (forward, input and kernel gradients).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _timing  # noqa: E402

from lknas.ops import dwconv as dw  # noqa: E402
from lknas.ops.dwconv_algos import macs, workspace_bytes  # noqa: E402
from lknas.ops.dwconv_select import eligible, workspace_limit  # noqa: E402

# (suite, source, batch, channels, map, kernel (k or (kh, kw)))
PROXY = [
    # peleK_space (patch stem 4x4 on 64x64: maps 16, 8, 4, 2), largest widths/kernels
    ("proxy", "peleK s1 dense", 64, 32, 16, 51),
    ("proxy", "peleK s1 dense", 64, 24, 16, 31),
    ("proxy", "peleK s1 dense", 64, 16, 16, 13),
    ("proxy", "peleK s1 dense", 64, 32, 16, 7),
    ("proxy", "peleK s1 stripe", 64, 32, 16, (51, 5)),
    ("proxy", "peleK s1 stripe", 64, 32, 16, (5, 51)),
    ("proxy", "peleK s2 dense", 64, 64, 8, 49),
    ("proxy", "peleK s2 dense", 64, 48, 8, 13),
    ("proxy", "peleK s2 stripe", 64, 64, 8, (49, 5)),
    ("proxy", "peleK s3 dense", 64, 128, 4, 47),
    ("proxy", "peleK s3 dense", 64, 96, 4, 13),
    ("proxy", "peleK s3 partial", 64, 48, 4, 27),
    ("proxy", "peleK s4 dense", 64, 192, 2, 13),
    # replknet_space (conv stem to 16x16: maps 16, 8, 4, 2)
    ("proxy", "replknet s1", 64, 32, 16, 31),
    ("proxy", "replknet s1", 64, 32, 16, 25),
    ("proxy", "replknet s2", 64, 64, 8, 29),
    ("proxy", "replknet s3", 64, 128, 4, 27),
    ("proxy", "replknet s4", 64, 256, 2, 13),
    ("proxy", "reparam branch", 64, 32, 16, 5),
    ("proxy", "reparam branch", 64, 32, 16, 3),
    # batch extremes and bigger proxy maps
    ("proxy", "batch 128", 128, 32, 16, 31),
    ("proxy", "batch 32", 32, 64, 8, 101),
    ("proxy", "map 32", 32, 64, 32, 51),
    ("proxy", "map 32", 32, 32, 32, 13),
    ("proxy", "map 64", 32, 32, 64, 31),
    ("proxy", "map 64", 4, 16, 64, 101),
]
QUICK_PROXY = {0, 4, 6, 9, 12, 13, 15, 16, 17, 19, 22, 24}

B224 = 4
IMAGENET = [
    ("imagenet224", "RepLKNet-31B s1", B224, 128, 56, 31),
    ("imagenet224", "RepLKNet-31B s2", B224, 256, 28, 29),
    ("imagenet224", "RepLKNet-31B s3", B224, 512, 14, 27),
    ("imagenet224", "RepLKNet-31B s4", B224, 1024, 7, 13),
    ("imagenet224", "SLaK-T s1", B224, 124, 56, (51, 5)),
    ("imagenet224", "SLaK-T s1", B224, 124, 56, (5, 51)),
    ("imagenet224", "SLaK-T s2", B224, 249, 28, (49, 5)),
    ("imagenet224", "SLaK-T s3", B224, 499, 14, (47, 5)),
    ("imagenet224", "SLaK-T s4", B224, 998, 7, (13, 5)),
    ("imagenet224", "PeLK-T s1 (3/8 ch)", B224, 47, 56, 51),
    ("imagenet224", "PeLK-T s2 (3/8 ch)", B224, 93, 28, 49),
    ("imagenet224", "PeLK-T s3 (3/8 ch)", B224, 187, 14, 47),
    ("imagenet224", "PeLK-T s4 (3/8 ch)", B224, 374, 7, 13),
]
QUICK_IMAGENET = {0, 2, 4, 9}


def run_shape(row, device, repeats, all_algos):
    suite, source, b, c, hw, k = row
    kh, kw = (k, k) if isinstance(k, int) else k
    x = torch.randn(b, c, hw, hw, device=device, requires_grad=True)
    w = (0.02 * torch.randn(c, 1, kh, kw, device=device)).requires_grad_()
    g = torch.randn(b, c, hw, hw, device=device)

    def step(algo: str | None):
        def fn():
            with dw.use_algorithm(algo or "auto"):
                y = dw.dwconv2d(x, w)
            y.backward(g)
            x.grad = w.grad = None
        return fn

    def plain():  # the baseline: F.conv2d with the full kernel, as before this work
        y = F.conv2d(x, w, None, padding=(kh // 2, kw // 2), groups=c)
        y.backward(g)
        x.grad = w.grad = None

    chosen = dw.select_algorithm(x, w)
    fns = {"direct": plain, "fast": step(None)}
    samples = _timing.interleaved_samples(fns, device, repeats)
    times = {k: statistics.median(v) for k, v in samples.items()}
    ch, cw = min(kh, 2 * hw - 1), min(kw, 2 * hw - 1)
    flops = 3 * 2 * b * c * hw * hw * ch * cw
    out = {
        "suite": suite, "source": source, "batch": b, "channels": c, "map": hw, "kernel": [kh, kw],
        "kernel_cropped": [ch, cw], "algorithm": chosen, "ms_direct": times["direct"], "ms_fast": times["fast"],
        "speedup": _timing.paired_speedup(samples["direct"], samples["fast"]),
        "ms_direct_min": min(samples["direct"]), "ms_fast_min": min(samples["fast"]),
        "speedup_of_min": min(samples["direct"]) / min(samples["fast"]), "gflops_fast": flops / times["fast"] / 1e6,
        "gflops_direct": flops / times["direct"] / 1e6,
        # arithmetic the chosen algorithm itself executes (GEMM forms can do fewer MACs than the
        # convolution's useful work; for fft an estimated operation count)
        "gflops_executed": 3 * 2 * macs(chosen if chosen != "off" else "direct", b, c, hw, hw, ch, cw)
        / times["fast"] / 1e6,
    }
    if all_algos:
        cands = eligible(b, c, hw, hw, ch, cw, x.element_size(), workspace_limit())
        per = _timing.interleaved_ms({a: step(a) for a in cands}, device, max(1, repeats // 2))
        out["ms_by_algorithm"] = per
        out["workspace_mb"] = {a: workspace_bytes(a, b, c, hw, hw, ch, cw, 4) / 2**20 for a in cands}
    return out


def table(rows, gemm, summary) -> str:
    lines = [
        f"GEMM reference: fp32 matmul {gemm:.0f} GFLOP/s. Times: median ms of forward+backward, "
        "direct (plain `F.conv2d`, full kernel) and fast (`dwconv2d`, auto) interleaved in one process; "
        "speed-up: median of the per-round ratios (speed-up of min: ratio of the fastest runs); useful GFLOP/s: "
        "the convolution's work (cropped kernel) per fast-path time, which can exceed the GEMM rate when an "
        "algorithm needs fewer operations; executed GFLOP/s: the chosen algorithm's own arithmetic.",
        "",
        "| suite | source | B | C | map | kernel | algorithm | ms direct | ms fast | speed-up | speed-up of min "
        "| useful GFLOP/s | of GEMM | executed GFLOP/s | of GEMM |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        kh, kw = r["kernel"]
        lines.append(
            f"| {r['suite']} | {r['source']} | {r['batch']} | {r['channels']} | {r['map']} | {kh}x{kw} | "
            f"{r['algorithm']} | {r['ms_direct']:.1f} | {r['ms_fast']:.1f} | {r['speedup']:.2f}x | {r['speedup_of_min']:.2f}x | "
            f"{r['gflops_fast']:.1f} | {100 * r['gflops_fast'] / gemm:.1f}% | {r['gflops_executed']:.1f} | "
            f"{100 * r['gflops_executed'] / gemm:.1f}% |"
        )
    lines.append("")
    for suite, s in summary.items():
        lines.append(
            f"- {suite}: geometric-mean speed-up {s['geomean_speedup']:.2f}x over {s['shapes']} shapes, "
            f"min {s['min_speedup']:.2f}x, max {s['max_speedup']:.2f}x (from the fastest runs: geomean "
            f"{s['geomean_speedup_of_min']:.2f}x, min {s['min_speedup_of_min']:.2f}x)"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer shapes and repeats")
    ap.add_argument("--all", action="store_true", help="also time every eligible algorithm")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--suite", choices=["proxy", "imagenet224", "both"], default="both")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    repeats = args.repeats or (3 if args.quick else 5)
    torch.manual_seed(0)
    shapes = []
    if args.suite in ("proxy", "both"):
        shapes += [r for i, r in enumerate(PROXY) if not args.quick or i in QUICK_PROXY]
    if args.suite in ("imagenet224", "both"):
        shapes += [r for i, r in enumerate(IMAGENET) if not args.quick or i in QUICK_IMAGENET]
    gemm = _timing.gemm_gflops(device)
    print(f"device {_timing.device_name(device)}: fp32 GEMM {gemm:.0f} GFLOP/s", flush=True)
    rows = []
    for row in shapes:
        r = run_shape(row, device, repeats, args.all)
        r["gemm_fraction"] = r["gflops_fast"] / gemm
        r["executed_gemm_fraction"] = r["gflops_executed"] / gemm
        rows.append(r)
        extra = f" {r['ms_by_algorithm']}" if args.all else ""
        print(
            f"{r['suite']:12s} {r['source']:22s} B{r['batch']:<4d} C{r['channels']:<5d} {r['map']:3d}^2 "
            f"k{r['kernel'][0]}x{r['kernel'][1]:<4d} {r['algorithm']:6s} direct {r['ms_direct']:9.1f} ms  "
            f"fast {r['ms_fast']:8.1f} ms  {r['speedup']:6.2f}x  {r['gflops_fast']:6.1f} GFLOP/s{extra}",
            flush=True,
        )
    summary = {}
    for suite in dict.fromkeys(r["suite"] for r in rows):
        sp = [r["speedup"] for r in rows if r["suite"] == suite]
        spm = [r["speedup_of_min"] for r in rows if r["suite"] == suite]
        summary[suite] = {
            "shapes": len(sp), "geomean_speedup": _timing.geomean(sp), "min_speedup": min(sp), "max_speedup": max(sp),
            "geomean_speedup_of_min": _timing.geomean(spm), "min_speedup_of_min": min(spm),
        }
        print(f"{suite}: geomean {summary[suite]['geomean_speedup']:.2f}x min {min(sp):.2f}x max {max(sp):.2f}x")
    name = _timing.device_name(device)
    data = {
        "benchmark": "dwconv", "device": name, "quick": args.quick, "repeats": repeats, "dtype": "float32",
        "gemm_gflops": gemm, "workspace_limit_mb": workspace_limit() / 2**20, "environment": _timing.environment(),
        "summary": summary, "shapes": rows,
    }
    stem = f"dwconv-{name}" + ("" if args.suite == "both" else f"-{args.suite}") + ("-quick" if args.quick else "")
    jpath, mpath = _timing.write(stem, data, table(rows, gemm, summary))
    print(f"wrote {jpath} and {mpath}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
