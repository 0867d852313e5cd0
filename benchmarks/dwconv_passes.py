"""Where the time of a depthwise convolution goes, pass by pass: forward, input gradient and kernel
gradient, for stock `F.conv2d` (NCHW and channels_last input) and for each of `dwconv2d`'s exact
algorithms, on the six shapes of issue 15. It answers whether an algorithm that mixes passes
(say stock channels_last forward and input gradient with another kernel gradient) could beat the
best stock option by the 1.5x issue 15 asks for on every shape.

Stock passes are timed one by one (`aten.convolution_backward` with one output mask each). An
algorithm's gradients are timed as forward+backward with only x (or only w) requiring a gradient,
less its forward: medians over interleaved rounds, so a derived pass carries the noise of two.
`fft`'s kernel gradient is timed on its own instead (`dwconv_algos.fft_kernel_grad`, the one
`split` uses: both transforms, the product summed over the batch, one inverse per channel):
derived, it would reuse the transform of x its forward made, which a mixed algorithm with another
forward does not have.
`bound` is, per input layout, the fastest measured forward + input gradient + kernel gradient over
every candidate in that layout; its speed-up is over the best stock forward+backward (the sum of
stock's three passes in its faster layout).

    python benchmarks/dwconv_passes.py                 # about 3 minutes on 2 cores
    python benchmarks/dwconv_passes.py --repeats 3 --batch 4 --no-write   # smoke run

Writes results/benchmarks/dwconv_passes-<device>.json and .md.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _timing  # noqa: E402
from dwconv import ISSUE15  # noqa: E402

from lknas.ops.dwconv_algos import fft_kernel_grad, run_algorithm  # noqa: E402
from lknas.ops.dwconv_select import eligible, workspace_limit  # noqa: E402

PASSES = ("fwd", "bwd_in", "bwd_w")
LAYOUTS = {"nchw": torch.contiguous_format, "cl": torch.channels_last}


def _stock(x: torch.Tensor, w: torch.Tensor, gy: torch.Tensor) -> dict[str, Callable[[], object]]:
    c, pad = x.shape[1], [w.shape[-2] // 2, w.shape[-1] // 2]

    def backward(mask: list[bool]) -> Callable[[], object]:
        return lambda: torch.ops.aten.convolution_backward(gy, x, w, None, [1, 1], pad, [1, 1], False, [0, 0], c,
                                                           mask)

    return {"fwd": lambda: F.conv2d(x, w, None, 1, pad, 1, c), "bwd_in": backward([True, False, False]),
            "bwd_w": backward([False, True, False])}


def _algorithm(name: str, x: torch.Tensor, w: torch.Tensor, gy: torch.Tensor,
               limit: int) -> dict[str, Callable[[], object]]:
    xg, wg = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()

    def forward() -> None:
        with torch.no_grad():
            run_algorithm(name, x, w, limit)

    fns = {"fwd": forward, "fb_in": lambda: run_algorithm(name, xg, w, limit).backward(gy)}
    if name == "fft":  # on its own: a derived one would reuse the transform of x the forward made
        kh, kw = w.shape[-2:]
        fns["bwd_w"] = lambda: fft_kernel_grad(x, gy, kh, kw)
    else:
        fns["fb_w"] = lambda: run_algorithm(name, x, wg, limit).backward(gy)
    return fns


def measure(b: int, c: int, h: int, k: int, repeats: int) -> dict:
    """Per layout: each candidate's per-pass median ms, and the mixed-pass bound."""
    limit = workspace_limit()
    out: dict = {"layouts": {}}
    w = torch.randn(c, 1, k, k)
    kc = min(k, 2 * h - 1)  # the algorithms take the kernel cropped to the taps that reach the map
    o = (k - kc) // 2
    wc = w[..., o:o + kc, o:o + kc].contiguous()
    for layout, fmt in LAYOUTS.items():
        x = torch.randn(b, c, h, h).contiguous(memory_format=fmt)
        gy = torch.randn(b, c, h, h).contiguous(memory_format=fmt)
        wl = w.contiguous(memory_format=fmt)
        fns = {f"stock.{p}": fn for p, fn in _stock(x, wl, gy).items()}
        algos = [a for a in eligible(b, c, h, h, kc, kc, 4, limit, "nchw" if layout == "nchw" else "channels_last")
                 if a not in ("direct", "direct_cl")]
        for a in algos:
            fns.update({f"{a}.{p}": fn for p, fn in _algorithm(a, x, wc, gy, limit).items()})
        ms = {n: statistics.median(s) for n, s in _timing.interleaved_samples(fns, torch.device("cpu"),
                                                                                repeats).items()}
        table = {"stock": {p: ms[f"stock.{p}"] for p in PASSES}}
        for a in algos:
            fwd = ms[f"{a}.fwd"]
            table[a] = {"fwd": fwd, "bwd_in": max(0.0, ms[f"{a}.fb_in"] - fwd),
                        "bwd_w": ms[f"{a}.bwd_w"] if f"{a}.bwd_w" in ms else max(0.0, ms[f"{a}.fb_w"] - fwd)}
        best = {p: min(table, key=lambda n, p=p: table[n][p]) for p in PASSES}
        out["layouts"][layout] = {"passes": table, "best_pass": best,
                                  "bound_ms": sum(table[best[p]][p] for p in PASSES),
                                  "stock_ms": sum(table["stock"].values())}
    stock = min(v["stock_ms"] for v in out["layouts"].values())
    bound = min(v["bound_ms"] for v in out["layouts"].values())
    out.update(best_stock_ms=stock, bound_ms=bound, bound_speedup=stock / bound)
    return out


def _markdown(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [f"`python benchmarks/dwconv_passes.py --repeats {args.repeats}`" + (f" --batch {args.batch}"
                                                                                 if args.batch else ""), "",
             "Median ms per pass over interleaved rounds, forward / input gradient / kernel gradient; an "
             "algorithm's gradients are its forward+backward with one input requiring a gradient, less its "
             "forward (fft's kernel gradient: timed on its own, both transforms included). Stock convolves "
             "with the full kernel, the algorithms with the taps that reach the map. bound: per layout, the "
             "fastest measured candidate for each pass, summed; speed-up over the best stock forward+backward "
             "(both layouts).", "",
             "| B | C | map | kernel | layout | stock fwd / in / w | algorithms (fwd / in / w) | bound (passes from) "
             "| bound ms | best stock ms | bound speed-up |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for layout, v in r["layouts"].items():
            s = v["passes"]["stock"]
            algos = "; ".join(f"{a} {t['fwd']:.1f} / {t['bwd_in']:.1f} / {t['bwd_w']:.1f}"
                              for a, t in v["passes"].items() if a != "stock")
            src = " + ".join(v["best_pass"][p] for p in PASSES)
            lines.append(f"| {r['b']} | {r['c']} | {r['h']} | {r['k']}x{r['k']} | {layout} | {s['fwd']:.1f} / "
                         f"{s['bwd_in']:.1f} / {s['bwd_w']:.1f} | {algos} | {src} | {v['bound_ms']:.1f} | "
                         f"{r['best_stock_ms']:.1f} | {r['bound_speedup']:.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=0, help="override every shape's batch (smoke runs)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    rows = []
    for _, _, b, c, h, k in ISSUE15:
        b = args.batch or b
        r = {"b": b, "c": c, "h": h, "k": k, **measure(b, c, h, k, args.repeats)}
        rows.append(r)
        print(f"({b}, {c}, {h}, {k}): best stock {r['best_stock_ms']:.1f} ms, mixed-pass bound {r['bound_ms']:.1f} "
              f"ms ({r['bound_speedup']:.2f}x)", flush=True)
    text = _markdown(rows, args)
    print(text)
    if not args.no_write:
        data = {"environment": _timing.environment(), "repeats": args.repeats, "shapes": rows}
        for path in _timing.write(f"dwconv_passes-{_timing.device_name(torch.device('cpu'))}", data, text):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
