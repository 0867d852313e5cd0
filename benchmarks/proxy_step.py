"""Full proxy training steps (forward, backward, AdamW step) of the largest architectures of
`peleK_space.yaml` and `replknet_space.yaml`: stock PyTorch (`dwconv2d` off: plain `F.conv2d`)
in NCHW, in channels_last and under `torch.compile` (inductor), against the fast depthwise path
(auto) in NCHW and in channels_last, interleaved in one process, beside a channels_last step whose
depthwise convolutions cost one multiply (`free_dw_cl`): stock / that step is the ceiling of any
depthwise speed-up on the step (Amdahl: the 1x1 convolutions, norms, activations and the
optimizer stay). Writes
results/benchmarks/proxy_step-<device>[-quick].json and .md.

"Largest": every searched dimension at its maximum (depth, width, kernel, mlp_ratio, reparam, r_c,
m, pos_embed, partial 1.0, density 1.0), once per kernel type of the space.

    python benchmarks/proxy_step.py [--quick] [--batch 64] [--repeats 9] [--no-compile]
    python benchmarks/proxy_step.py --quick --limit 1 --batch 2 --resolution 32 --repeats 2 --no-compile \
        --no-gemm --no-write                          # smoke run

Every step runs under the proxy trainer's autocast (`lknas.train.proxy._autocast`: bf16 on a
CUDA GPU that has it, else fp16; none on a CPU), so the GPU rows time what a GPU trial runs;
`--no-amp` times float32 steps instead.

Each candidate has its own copy of the model (same initial weights) and optimizer. The compiled
model's compile time (first two steps) is kept out of the rounds and reported; a failure is
recorded as "did not compile". The speed-up is the median over rounds of (fastest stock candidate)
/ (fastest fast candidate); p90/p50 of each candidate's steps says how steady it is.
The process runs as lknas's own do, with freed memory kept (`lknas.ops.allocator`; every candidate
alike; `LKNAS_MALLOC=system` for glibc as it comes); the JSON's `environment.malloc` says which.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _timing  # noqa: E402

import lknas  # noqa: E402
from lknas.measure.layout import MEMORY_FORMATS  # noqa: E402
from lknas.ops import dwconv as dw  # noqa: E402
from lknas.space.resolve import resolve  # noqa: E402
from lknas.space.space import _normalize  # noqa: E402


def largest_arch(space_name: str, kernel_type: str | None = None) -> lknas.ArchConfig:
    space = lknas.load_space(space_name)

    def pick(name: str, dom):
        if name == "kernel_type" and kernel_type is not None:
            return kernel_type
        return dom.max()

    return resolve(space.template, pick, _normalize)


CONFIGS = [
    ("peleK_space", "dense"),
    ("peleK_space", "peripheral"),
    ("peleK_space", "stripe"),
    ("replknet_space", None),
]


def describe(arch: lknas.ArchConfig) -> str:
    st = arch.stages
    return (
        f"{st[0].kernel.type} depths {[s.depth for s in st]} widths {[s.width for s in st]} "
        f"kernels {[s.kernel.max_size for s in st]} reparam {st[0].kernel.reparam} "
        f"partial {st[0].kernel.partial}"
    )


STOCK = ("off_nchw", "off_cl", "off_compiled")
FAST = ("fast_nchw", "fast_cl")
FREE = "free_dw_cl"  # every dwconv2d call one multiply, channels_last: the bound of any depthwise speed-up


def _free_dwconv(x, weight, bias=None):
    """Stands in for `dwconv2d` at the cost of one elementwise pass (the graph stays connected,
    so the kernels still get a gradient and the optimizer the same parameters)."""
    y = x * weight.sum()
    return y if bias is None else y + bias.view(1, -1, 1, 1)


@contextlib.contextmanager
def free_depthwise():
    """Every module that calls `dwconv2d` (DepthwiseConv2d, the peripheral and stripe forms) gets
    `_free_dwconv` while the block runs."""
    from lknas.ops import large_kernel, stripe_form

    mods = (dw, large_kernel, stripe_form)
    saved = [m.dwconv2d for m in mods]
    for m in mods:
        m.dwconv2d = _free_dwconv
    try:
        yield
    finally:
        for m, f in zip(mods, saved):
            m.dwconv2d = f


def _candidate(model0, x0, y, loss_fn, algo, layout, compiled=False, amp=contextlib.nullcontext):
    """A training-step closure on its own copy of the model and optimizer, its forward and loss
    under `amp()` (a fresh autocast context each step); (step, compile s) or (None, error) when
    compiling fails."""
    import copy
    import time

    model = copy.deepcopy(model0).to(memory_format=MEMORY_FORMATS[layout])
    x = x0.contiguous(memory_format=MEMORY_FORMATS[layout])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    net = torch.compile(model) if compiled else model

    def fn():
        with free_depthwise() if algo == "free" else dw.use_algorithm(algo):
            opt.zero_grad(set_to_none=True)
            with amp():
                loss = loss_fn(net(x), y)
            loss.backward()
            opt.step()

    if not compiled:
        return fn, None
    try:
        t0 = time.perf_counter()
        fn()
        fn()
        return fn, time.perf_counter() - t0
    except Exception as err:  # noqa: BLE001 - a failure to compile is a result
        return None, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:200]


def report(rows: list[dict], args, repeats: int, precision: str, gemm, device, amp_dtype, write: bool) -> str:
    """The table of `rows`; with `write`, the JSON and .md too (called after each architecture, so a
    run stopped by a time limit keeps what it measured)."""
    lines = [
        f"Training step (forward, backward, AdamW) at batch {args.batch}, {args.resolution}x{args.resolution}, "
        f"{precision} (as the proxy trainer runs on this device), "
        f"median ms of {repeats} interleaved rounds. off = stock PyTorch (`dwconv2d` off: plain `F.conv2d`) in NCHW, "
        "channels_last (cl) and torch.compile (compiled; n/c: did not compile); fast = `dwconv2d` auto in NCHW / "
        "channels_last. Speed-up: median over rounds of the fastest stock / the fastest fast step. p90/p50: the "
        "worst candidate's spread (target <= 1.3 on a quiet machine). free_dw_cl: the channels_last step with "
        "every `dwconv2d` call replaced by one multiply; ceiling = fastest stock / free_dw_cl, the most any "
        "depthwise algorithm could give the step.",
        "",
        "| space | largest architecture | params | " + " | ".join(f"ms {k}" for k in STOCK + FAST)
        + f" | ms {FREE} | best stock | speed-up | ceiling | speed-up of min | worst p90/p50 | compile s "
        "| algorithms (nchw; cl) |",
        "|---|---|---|" + "---|" * len(STOCK + FAST) + "---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        worst = max(r["spread"].items(), key=lambda kv: kv[1]["p90_p50"])
        comp = f"{r['compile_s']:.0f}" if r["compile_s"] is not None else "n/c"
        lines.append(f"| {r['space']} | {r['arch']} | {r['params']:,} | "
                     + " | ".join(f"{r['ms'][k]:.0f}" if k in r["ms"] else "n/c" for k in STOCK + FAST)
                     + f" | {r['ms'][FREE]:.0f} | {r['best_stock']} | {r['speedup']:.2f}x | {r['ceiling']:.2f}x | "
                     f"{r['speedup_of_min']:.2f}x | "
                     f"{worst[1]['p90_p50']:.2f} ({worst[0]}) | {comp} | {', '.join(r['algorithms']['nchw'])}; "
                     f"{', '.join(r['algorithms']['channels_last'])} |")
    name = _timing.device_name(device)
    data = {"benchmark": "proxy_step", "device": name, "quick": args.quick, "repeats": repeats,
            "precision": precision, "gemm_gflops": gemm, "environment": _timing.environment(), "steps": rows}
    if write:
        stem = (f"proxy_step-{name}" + ("-quick" if args.quick else "")
                + (f"-{str(amp_dtype).replace('torch.', '')}" if amp_dtype is not None else ""))
        jpath, mpath = _timing.write(stem, data, "\n".join(lines) + "\n")
        print(f"wrote {jpath} and {mpath}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="peleK dense and replknet only, 3 repeats")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 3 quick, 9 full)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--limit", type=int, default=None, help="only the first N architectures (smoke runs)")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                    help="time torch.compile of the stock model (compiling takes minutes on a CPU)")
    ap.add_argument("--gemm", action=argparse.BooleanOptionalAction, default=True,
                    help="measure the matmul reference in a separate interpreter")
    ap.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True,
                    help="the proxy trainer's autocast (bf16 / fp16 on CUDA; a no-op on the CPU)")
    ap.add_argument("--write", action=argparse.BooleanOptionalAction, default=True,
                    help="write results/benchmarks/*.json and .md")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    from lknas.train.proxy import _autocast

    amp_dtype = _autocast(device)[1] if args.amp else None
    amp = (lambda: _autocast(device)[0]) if amp_dtype is not None else contextlib.nullcontext
    precision = str(amp_dtype).replace("torch.", "") + " autocast" if amp_dtype is not None else "float32"
    _timing.keep_freed_memory()
    repeats = args.repeats or (3 if args.quick else 9)
    configs = [CONFIGS[0], CONFIGS[3]] if args.quick else CONFIGS
    configs = configs[:args.limit] if args.limit else configs
    gemm = _timing.gemm_gflops(device) if args.gemm else None
    print(f"device {_timing.device_name(device)}: fp32 GEMM " + (f"{gemm:.0f} GFLOP/s" if gemm else "not measured"),
          flush=True)
    rows = []
    for space, ktype in configs:
        torch.manual_seed(0)
        arch = largest_arch(space, ktype)
        model = lknas.build_model(arch, num_classes=2).to(device).train()
        x = torch.randn(args.batch, 3, args.resolution, args.resolution, device=device)
        y = torch.randint(0, 2, (args.batch,), device=device)
        loss_fn = torch.nn.CrossEntropyLoss()
        fns = {
            "off_nchw": _candidate(model, x, y, loss_fn, "off", "nchw", amp=amp)[0],
            "off_cl": _candidate(model, x, y, loss_fn, "off", "channels_last", amp=amp)[0],
        }
        compile_s: float | str = "not tried (--no-compile)"
        if args.compile:
            fn, compile_s = _candidate(model, x, y, loss_fn, "off", "nchw", compiled=True, amp=amp)
            if fn is not None:
                fns["off_compiled"] = fn
        fns.update(fast_nchw=_candidate(model, x, y, loss_fn, "auto", "nchw", amp=amp)[0],
                   fast_cl=_candidate(model, x, y, loss_fn, "auto", "channels_last", amp=amp)[0])
        fns[FREE] = _candidate(model, x, y, loss_fn, "free", "channels_last", amp=amp)[0]
        first: dict[str, float] = {}
        faults: dict[str, float] = {}
        samples = _timing.interleaved_samples(fns, device, repeats, first, faults)
        times = {k: statistics.median(v) for k, v in samples.items()}
        stock = {k: v for k, v in samples.items() if k in STOCK}
        free = {FREE: samples.pop(FREE)}
        algos = {}
        for layout in ("nchw", "channels_last"):
            with dw.use_algorithm("auto"):
                dw.clear_cache()
                m = model.to(memory_format=MEMORY_FORMATS[layout])
                m.zero_grad(set_to_none=True)
                with amp():
                    loss = loss_fn(m(x.contiguous(memory_format=MEMORY_FORMATS[layout])), y)
                loss.backward()
                algos[layout] = sorted(set(dw.cache_info()["choices"].values()))
        r = {
            "space": space, "kernel_type": arch.stages[0].kernel.type, "arch": describe(arch),
            "params": sum(p.numel() for p in model.parameters()), "batch": args.batch,
            "resolution": args.resolution, "precision": precision, "ms": times, "first_step_ms": first,
            "page_faults_per_step": faults,
            "spread": {k: _timing.spread(v) for k, v in samples.items()},
            "compile_s": compile_s if "off_compiled" in fns else None,
            "compiled": "ok" if "off_compiled" in fns else f"did not compile: {compile_s}",
            "best_stock": min(stock, key=lambda k: times[k]), "best_fast": min(FAST, key=lambda k: times[k]),
            "speedup": _timing.paired_best_speedup(stock, {k: samples[k] for k in FAST}),
            "speedup_of_min": min(min(v) for v in stock.values()) / min(min(samples[k]) for k in FAST),
            "ceiling": _timing.paired_best_speedup(stock, free),
            "algorithms": algos,
        }
        rows.append(r)
        ms = "  ".join(f"{k} {times[k]:.0f}" if k in times else f"{k} n/c" for k in STOCK + FAST)
        print(f"{space:15s} {r['arch']}: ms {ms}  {FREE} {times[FREE]:.0f}; {r['speedup']:.2f}x over "
              f"{r['best_stock']} (ceiling {r['ceiling']:.2f}x); p90/p50 "
              + " ".join(f"{k} {v['p90_p50']:.2f}" for k, v in r["spread"].items())
              + f"; compile {r['compile_s'] if r['compile_s'] is not None else r['compiled']}; algorithms {algos}",
              flush=True)
        if args.write:
            report(rows, args, repeats, precision, gemm, device, amp_dtype, write=True)
    if not args.write:
        print(report(rows, args, repeats, precision, gemm, device, amp_dtype, write=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
