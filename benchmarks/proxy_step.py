"""Full proxy training steps (forward, backward, AdamW step) of the largest architectures of
`peleK_space.yaml` and `replknet_space.yaml`, with the fast depthwise path on (auto) and off
(plain `F.conv2d`), interleaved in one process. Writes results/benchmarks/proxy_step-<device>.json
and .md.

"Largest": every searched dimension at its maximum (depth, width, kernel, mlp_ratio, reparam, r_c,
m, pos_embed, partial 1.0, density 1.0), once per kernel type of the space.

    python benchmarks/proxy_step.py [--quick] [--batch 64] [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _timing  # noqa: E402

import lknas  # noqa: E402
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="peleK dense and replknet only, 3 repeats")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    repeats = args.repeats or (3 if args.quick else 5)
    configs = [CONFIGS[0], CONFIGS[3]] if args.quick else CONFIGS
    gemm = _timing.gemm_gflops(device)
    print(f"device {_timing.device_name(device)}: fp32 GEMM {gemm:.0f} GFLOP/s", flush=True)
    rows = []
    for space, ktype in configs:
        torch.manual_seed(0)
        arch = largest_arch(space, ktype)
        model = lknas.build_model(arch, num_classes=2).to(device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        x = torch.randn(args.batch, 3, args.resolution, args.resolution, device=device)
        y = torch.randint(0, 2, (args.batch,), device=device)
        loss_fn = torch.nn.CrossEntropyLoss()

        def step(algo: str):
            def fn():
                with dw.use_algorithm(algo):
                    opt.zero_grad(set_to_none=True)
                    loss_fn(model(x), y).backward()
                    opt.step()
            return fn

        samples = _timing.interleaved_samples({"off": step("off"), "fast": step("auto")}, device, repeats)
        times = {k: statistics.median(v) for k, v in samples.items()}
        with dw.use_algorithm("auto"):
            dw.clear_cache()
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            algos = sorted(set(dw.cache_info()["choices"].values()))
        r = {
            "space": space, "kernel_type": arch.stages[0].kernel.type, "arch": describe(arch),
            "params": sum(p.numel() for p in model.parameters()), "batch": args.batch,
            "resolution": args.resolution, "ms_off": times["off"], "ms_fast": times["fast"],
            "speedup": _timing.paired_speedup(samples["off"], samples["fast"]), "algorithms": algos,
            "ms_off_min": min(samples["off"]), "ms_fast_min": min(samples["fast"]),
            "speedup_of_min": min(samples["off"]) / min(samples["fast"]),
        }
        rows.append(r)
        print(f"{space:15s} {r['arch']}: off {r['ms_off']:.0f} ms, fast {r['ms_fast']:.0f} ms, "
              f"{r['speedup']:.2f}x (algorithms {algos})", flush=True)
    lines = [
        f"Training step (forward, backward, AdamW) at batch {args.batch}, {args.resolution}x{args.resolution}, "
        f"median of {repeats} interleaved rounds (speed-up: median of per-round ratios); "
        "off = plain `F.conv2d`, fast = `dwconv2d` auto.",
        "",
        "| space | largest architecture | params | ms off | ms fast | speed-up | speed-up of min | algorithms used |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['space']} | {r['arch']} | {r['params']:,} | {r['ms_off']:.0f} | {r['ms_fast']:.0f} | "
                     f"{r['speedup']:.2f}x | {r['speedup_of_min']:.2f}x | {', '.join(r['algorithms'])} |")
    name = _timing.device_name(device)
    data = {"benchmark": "proxy_step", "device": name, "quick": args.quick, "repeats": repeats,
            "gemm_gflops": gemm, "environment": _timing.environment(), "steps": rows}
    stem = f"proxy_step-{name}" + ("-quick" if args.quick else "")
    jpath, mpath = _timing.write(stem, data, "\n".join(lines) + "\n")
    print(f"wrote {jpath} and {mpath}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
