"""Forward+backward of `lknas.ops.dwconv2d` (auto-selected algorithm, NCHW and channels_last
input) against the best stock PyTorch option: `F.conv2d` in NCHW, `F.conv2d` in channels_last
and `torch.compile` (inductor) of the same op, on the six proxy shapes of issue 15, the proxy
shapes of the bundled search spaces and the ImageNet-224 shapes of RepLKNet-31B, SLaK-T and PeLK-T
(batch reduced). Writes results/benchmarks/dwconv-<device>[-suite][-quick].json and .md.

    python benchmarks/dwconv.py                       # every suite (long: see benchmarks/README.md)
    python benchmarks/dwconv.py --suite issue15       # the six shapes of issue 15
    python benchmarks/dwconv.py --quick               # fewer shapes and repeats
    python benchmarks/dwconv.py --all                 # also time every eligible algorithm per shape
    python benchmarks/dwconv.py --suite issue15 --batch 2 --repeats 3 --no-compile --no-gemm --no-write
                                                      # smoke run (well under a minute)

Candidates, all timed in the same rounds (order alternating): `nchw` and `cl` are stock
`F.conv2d` with the full kernel on an NCHW / channels_last input (what a PyTorch user writes;
`--crop-stock` gives them the cropped kernel too), `compiled` is `torch.compile` of that NCHW op
(its compile time is kept out of the rounds and reported; a failure is recorded as "did not
compile"), `ours` / `ours_cl` are `dwconv2d` given an NCHW / channels_last input. The speed-up is
the median over rounds of (fastest stock candidate in the round) / (fastest of ours in the round).
p90/p50 of each candidate's repeated calls says how steady it is (target <= 1.3 on a quiet
machine). GFLOP/s counts the useful work of the convolution: 2 * B*C*H*W*kh*kw per pass with the
kernel cropped to the (2H-1)x(2W-1) it can reach, three passes (forward, input and kernel gradients).
The process runs as lknas's own do, with freed memory kept (`lknas.ops.allocator`; stock and
ours alike; `LKNAS_MALLOC=system` for glibc as it comes); the JSON's `environment.malloc` says which.
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
ISSUE15 = [  # (N, C, H, K) of issue 15: where a stock channels_last user was closest
    ("issue15", "issue 15", 64, 64, 16, 31),
    ("issue15", "issue 15", 64, 128, 8, 31),
    ("issue15", "issue 15", 64, 32, 32, 13),
    ("issue15", "issue 15", 64, 96, 16, 51),
    ("issue15", "issue 15", 32, 48, 32, 27),
    ("issue15", "issue 15", 16, 24, 64, 13),
]

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


STOCK = ("nchw", "cl", "compiled")
OURS = ("ours", "ours_cl")


def _compiled_conv(x, w, g, pad, groups):
    """torch.compile of the NCHW stock op, fwd+bwd; (step, compile seconds) or (None, error)."""
    import time

    def op(x, w):
        return F.conv2d(x, w, None, padding=pad, groups=groups)

    try:
        fn = torch.compile(op, dynamic=False)
        t0 = time.perf_counter()
        for _ in range(2):  # the first call compiles forward and backward; the second checks reuse
            fn(x, w).backward(g)
            x.grad = w.grad = None
        return (lambda: (fn(x, w).backward(g), setattr(x, "grad", None), setattr(w, "grad", None))), \
            time.perf_counter() - t0
    except Exception as err:  # noqa: BLE001 - any failure to compile is a result, not a crash
        return None, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:200]


def run_shape(row, device, repeats, all_algos, compile_stock, crop_stock, batch=None, dtype=torch.float32):
    suite, source, b, c, hw, k = row
    b = batch or b
    kh, kw = (k, k) if isinstance(k, int) else k
    ch, cw = min(kh, 2 * hw - 1), min(kw, 2 * hw - 1)
    cl = torch.channels_last
    x = torch.randn(b, c, hw, hw, device=device, dtype=dtype, requires_grad=True)
    xc = x.detach().to(memory_format=cl).requires_grad_()
    w = (0.02 * torch.randn(c, 1, kh, kw, device=device, dtype=dtype)).requires_grad_()
    g = torch.randn(b, c, hw, hw, device=device, dtype=dtype)
    gc = g.to(memory_format=cl)
    ws = dw._crop(w.detach(), hw, hw).contiguous().requires_grad_() if crop_stock else w
    sh, sw = ws.shape[-2:]

    def ours(xi, gi, algo=None):
        def fn():
            with dw.use_algorithm(algo or "auto"):
                y = dw.dwconv2d(xi, w)
            y.backward(gi)
            xi.grad = w.grad = None
        return fn

    def stock(xi, gi):
        def fn():
            F.conv2d(xi, ws, None, padding=(sh // 2, sw // 2), groups=c).backward(gi)
            xi.grad = ws.grad = None
        return fn

    fns = {"nchw": stock(x, g), "cl": stock(xc, gc)}
    compiled, compile_s = (None, "not tried (--no-compile)")
    if compile_stock:
        compiled, compile_s = _compiled_conv(x, ws, g, (sh // 2, sw // 2), c)
        if compiled is not None:
            fns["compiled"] = compiled
    fns.update(ours=ours(x, g), ours_cl=ours(xc, gc))
    chosen = {"ours": dw.select_algorithm(x, w), "ours_cl": dw.select_algorithm(xc, w)}
    first: dict[str, float] = {}
    faults: dict[str, float] = {}
    samples = _timing.interleaved_samples(fns, device, repeats, first, faults)
    times = {k: statistics.median(v) for k, v in samples.items()}
    stock_s = {k: v for k, v in samples.items() if k in STOCK}
    best_stock = min(stock_s, key=lambda k: times[k])
    best_ours = min(OURS, key=lambda k: times[k])
    flops = 3 * 2 * b * c * hw * hw * ch * cw
    out = {
        "suite": suite, "source": source, "batch": b, "channels": c, "map": hw, "kernel": [kh, kw],
        "kernel_cropped": [ch, cw], "stock_kernel": [sh, sw], "algorithm": chosen,
        "ms": times, "first_call_ms": first, "page_faults_per_call": faults, "spread": {k: _timing.spread(v) for k, v in samples.items()},
        "compile_s": compile_s if compiled is not None else None,
        "compiled": "ok" if compiled is not None else f"did not compile: {compile_s}",
        "best_stock": best_stock, "best_ours": best_ours,
        "speedup": _timing.paired_best_speedup(stock_s, {k: samples[k] for k in OURS}),
        "speedup_nchw_input": _timing.paired_best_speedup(stock_s, {"ours": samples["ours"]}),
        "speedup_cl_input": _timing.paired_best_speedup(stock_s, {"ours_cl": samples["ours_cl"]}),
        "speedup_of_min": min(min(v) for v in stock_s.values()) / min(min(samples[k]) for k in OURS),
        "gflops_fast": flops / times[best_ours] / 1e6,
        # arithmetic the chosen algorithm itself executes (GEMM forms can do fewer MACs than the
        # convolution's useful work; for fft an estimated operation count)
        "gflops_executed": 3 * 2 * macs(chosen[best_ours], b, c, hw, hw, ch, cw) / times[best_ours] / 1e6,
    }
    if all_algos:
        out["ms_by_algorithm"], out["workspace_mb"] = {}, {}
        for layout, (xi, gi) in {"nchw": (x, g), "channels_last": (xc, gc)}.items():
            cands = eligible(b, c, hw, hw, ch, cw, x.element_size(), workspace_limit(), layout)
            out["ms_by_algorithm"][layout] = _timing.interleaved_ms(
                {a: ours(xi, gi, a) for a in cands}, device, max(1, repeats // 2))
            out["workspace_mb"][layout] = {a: workspace_bytes(a, b, c, hw, hw, ch, cw, x.element_size()) / 2**20 for a in cands}
    return out


COLUMNS = STOCK + OURS


def _ms(r, k):
    return f"{r['ms'][k]:.1f}" if k in r["ms"] else "n/c"


def table(rows, gemm, summary) -> str:
    gemm_txt = f"fp32 matmul {gemm:.0f} GFLOP/s" if gemm else "not measured (--no-gemm)"
    lines = [
        f"GEMM reference: {gemm_txt}. Times: median ms of forward+backward over interleaved rounds in one "
        "process. Stock: `F.conv2d` (full kernel) on an NCHW input (nchw), a channels_last input (cl), and "
        "`torch.compile` of the NCHW op (compiled; n/c: did not compile, compile time in the JSON). Ours: "
        "`dwconv2d` (auto) on an NCHW / channels_last input. Speed-up: median over rounds of the fastest stock "
        "time / the fastest of ours (of min: ratio of the fastest single runs). p90/p50: the worst candidate's "
        "spread of repeated calls (target <= 1.3 on a quiet machine).",
        "",
        "| suite | source | B | C | map | kernel | algorithm (nchw / cl) | " + " | ".join(f"ms {k}" for k in COLUMNS)
        + " | best stock | speed-up | speed-up of min | worst p90/p50 | useful GFLOP/s | of GEMM | executed GFLOP/s |",
        "|---|---|---|---|---|---|---|" + "---|" * len(COLUMNS) + "---|---|---|---|---|---|---|",
    ]
    for r in rows:
        kh, kw = r["kernel"]
        worst = max(r["spread"].items(), key=lambda kv: kv[1]["p90_p50"])
        lines.append(
            f"| {r['suite']} | {r['source']} | {r['batch']} | {r['channels']} | {r['map']} | {kh}x{kw} | "
            f"{r['algorithm']['ours']} / {r['algorithm']['ours_cl']} | "
            + " | ".join(_ms(r, k) for k in COLUMNS)
            + f" | {r['best_stock']} | {r['speedup']:.2f}x | {r['speedup_of_min']:.2f}x | "
            f"{worst[1]['p90_p50']:.2f} ({worst[0]}) | {r['gflops_fast']:.1f} | "
            + (f"{100 * r['gflops_fast'] / gemm:.1f}%" if gemm else "-")
            + f" | {r['gflops_executed']:.1f} |"
        )
    lines.append("")
    for suite, s in summary.items():
        lines.append(
            f"- {suite}: geometric-mean speed-up over the best stock option {s['geomean_speedup']:.2f}x over "
            f"{s['shapes']} shapes, min {s['min_speedup']:.2f}x, max {s['max_speedup']:.2f}x (from the fastest runs: "
            f"geomean {s['geomean_speedup_of_min']:.2f}x, min {s['min_speedup_of_min']:.2f}x); worst p90/p50 "
            f"{s['worst_p90_p50']:.2f}"
        )
    return "\n".join(lines) + "\n"


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

SUITES = {"issue15": (ISSUE15, set(range(len(ISSUE15)))), "proxy": (PROXY, QUICK_PROXY),
          "imagenet224": (IMAGENET, QUICK_IMAGENET)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer shapes and repeats")
    ap.add_argument("--all", action="store_true", help="also time every eligible algorithm, per input layout")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 3 quick, 9 full)")
    ap.add_argument("--suite", choices=[*SUITES, "all"], default="all")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="float32",
                    help="input, kernel and gradient dtype (bfloat16 / float16: GPU; the GEMM reference stays fp32)")
    ap.add_argument("--batch", type=int, default=None, help="override every shape's batch (smoke runs)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N shapes (smoke runs)")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                    help="time torch.compile of the stock op (compiling takes seconds to minutes per shape)")
    ap.add_argument("--crop-stock", action="store_true", help="give the stock candidates the cropped kernel too")
    ap.add_argument("--gemm", action=argparse.BooleanOptionalAction, default=True,
                    help="measure the matmul reference in a separate interpreter")
    ap.add_argument("--write", action=argparse.BooleanOptionalAction, default=True,
                    help="write results/benchmarks/*.json and .md")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    _timing.keep_freed_memory()
    repeats = args.repeats or (3 if args.quick else 9)
    torch.manual_seed(0)
    shapes = []
    for name, (rows_, quick) in SUITES.items():
        if args.suite in (name, "all"):
            shapes += [r for i, r in enumerate(rows_) if not args.quick or i in quick]
    shapes = shapes[:args.limit] if args.limit else shapes
    gemm = _timing.gemm_gflops(device) if args.gemm else None
    print(f"device {_timing.device_name(device)}: fp32 GEMM "
          + (f"{gemm:.0f} GFLOP/s" if gemm else "not measured"), flush=True)
    rows = []
    for row in shapes:
        r = run_shape(row, device, repeats, args.all, args.compile, args.crop_stock, args.batch, DTYPES[args.dtype])
        if gemm:
            r["gemm_fraction"] = r["gflops_fast"] / gemm
            r["executed_gemm_fraction"] = r["gflops_executed"] / gemm
        rows.append(r)
        extra = f" {r['ms_by_algorithm']}" if args.all else ""
        ms = "  ".join(f"{k} {r['ms'][k]:.1f}" if k in r["ms"] else f"{k} n/c" for k in COLUMNS)
        sp = "  ".join(f"{k} {v['p90_p50']:.2f}" for k, v in r["spread"].items())
        sp += "  page faults/call: " + " ".join(f"{k} {v:.0f}" for k, v in r["page_faults_per_call"].items())
        print(
            f"{r['suite']:12s} {r['source']:22s} B{r['batch']:<4d} C{r['channels']:<5d} {r['map']:3d}^2 "
            f"k{r['kernel'][0]}x{r['kernel'][1]:<4d} {r['algorithm']['ours']}/{r['algorithm']['ours_cl']}  ms: {ms}  "
            f"best stock {r['best_stock']}  {r['speedup']:6.2f}x  p90/p50: {sp}  "
            f"compile: {r['compile_s'] if r['compile_s'] is not None else r['compiled']}{extra}",
            flush=True,
        )
    summary = {}
    for suite in dict.fromkeys(r["suite"] for r in rows):
        sp = [r["speedup"] for r in rows if r["suite"] == suite]
        spm = [r["speedup_of_min"] for r in rows if r["suite"] == suite]
        worst = max(v["p90_p50"] for r in rows if r["suite"] == suite for v in r["spread"].values())
        summary[suite] = {
            "shapes": len(sp), "geomean_speedup": _timing.geomean(sp), "min_speedup": min(sp), "max_speedup": max(sp),
            "geomean_speedup_of_min": _timing.geomean(spm), "min_speedup_of_min": min(spm), "worst_p90_p50": worst,
        }
        print(f"{suite}: geomean {summary[suite]['geomean_speedup']:.2f}x min {min(sp):.2f}x max {max(sp):.2f}x "
              f"over the best stock option; worst p90/p50 {worst:.2f}")
    name = _timing.device_name(device)
    data = {
        "benchmark": "dwconv", "device": name, "quick": args.quick, "repeats": repeats, "dtype": args.dtype,
        "batch_override": args.batch, "crop_stock": args.crop_stock, "gemm_gflops": gemm,
        "workspace_limit_mb": workspace_limit() / 2**20, "environment": _timing.environment(),
        "summary": summary, "shapes": rows,
    }
    if args.write:
        stem = (f"dwconv-{name}" + ("" if args.suite == "all" else f"-{args.suite}")
                + ("" if args.dtype == "float32" else f"-{args.dtype}") + ("-quick" if args.quick else ""))
        jpath, mpath = _timing.write(stem, data, table(rows, gemm, summary))
        print(f"wrote {jpath} and {mpath}")
    else:
        print(table(rows, gemm, summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
