"""The training step a search trial runs (batch and resolution of the space's train section, one
thread, as Ray gives a 1-CPU trial) on the architectures `lknas fidelity` samples from a space,
under variants of the trainer's step, interleaved in one process, both layouts each:

- `loop`: AdamW in torch's for-loop form (the trainer's optimizer before fused AdamW);
- `fused`: the trainer's optimizer now (`lknas.train.recipe.make_optimizer`: fused AdamW).

Per architecture the faster layout of each variant counts (a trial measures both and keeps the
faster); the speed-up is the median over rounds of loop / fused. The optimizer's update alone is
timed too (gradients in place, `--opt-repeats` interleaved rounds): step-to-step noise on this
machine is larger than the optimizer's share, so the update's own time says what changed. Writes
results/benchmarks/trial_step.json and .md.

    python benchmarks/trial_step.py [--space peleK_space.yaml] [--archs 6] [--repeats 9]
    python benchmarks/trial_step.py --archs 1 --repeats 2 --batch 4 --no-write   # smoke run
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _timing  # noqa: E402

import lknas  # noqa: E402
from lknas.measure.layout import MEMORY_FORMATS  # noqa: E402
from lknas.study.fidelity import sample_archs  # noqa: E402
from lknas.train.recipe import make_loss, make_optimizer  # noqa: E402


def loop_optimizer(model, name, lr, weight_decay):
    from timm.optim import create_optimizer_v2
    return create_optimizer_v2(model, opt=name, lr=lr, weight_decay=weight_decay, foreach=False)


VARIANTS = {"loop": loop_optimizer, "fused": make_optimizer}


def _update_fn(model0, x0, y, cfg, make_opt):
    """The optimizer's update alone, on gradients of one backward (channels_last)."""
    model = copy.deepcopy(model0).to(memory_format=torch.channels_last).train()
    opt = make_opt(model, cfg.optimizer, float(cfg.lr), float(cfg.weight_decay))
    make_loss(cfg.label_smoothing)(model(x0.contiguous(memory_format=torch.channels_last)), y).backward()
    return opt.step


def _step_fn(model0, x0, y, cfg, make_opt, layout):
    model = copy.deepcopy(model0).to(memory_format=MEMORY_FORMATS[layout]).train()
    x = x0.contiguous(memory_format=MEMORY_FORMATS[layout])
    opt = make_opt(model, cfg.optimizer, float(cfg.lr), float(cfg.weight_decay))
    loss_fn = make_loss(cfg.label_smoothing)

    def fn():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
    return fn


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="peleK_space.yaml")
    ap.add_argument("--archs", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--batch", type=int, default=None, help="default: the space's train.batch_size")
    ap.add_argument("--opt-repeats", type=int, default=41)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    space = lknas.load_space(args.space)
    cfg = space.train
    batch = args.batch or cfg.batch_size
    res = cfg.resolution
    archs = sample_archs(space, args.archs, seed=0)
    rows = []
    for i, arch in enumerate(archs):
        torch.manual_seed(0)
        model0 = lknas.build_model(arch, num_classes=2)
        x0 = torch.randn(batch, 3, res, res)
        y = torch.randint(0, 2, (batch,))
        fns = {f"{v} {lay}": _step_fn(model0, x0, y, cfg, make, lay)
               for v, make in VARIANTS.items() for lay in MEMORY_FORMATS}
        samples = _timing.interleaved_samples(fns, torch.device("cpu"), args.repeats)
        updates = _timing.interleaved_samples({v: _update_fn(model0, x0, y, cfg, make) for v, make in VARIANTS.items()},
                                              torch.device("cpu"), args.opt_repeats)
        best = {v: [min(pair) for pair in zip(*(samples[f"{v} {lay}"] for lay in MEMORY_FORMATS))]
                for v in VARIANTS}
        row = {"arch": f"a{i:02d}", "describe": arch.summary(),
               "ms": {k: statistics.median(v) for k, v in samples.items()},
               "best_ms": {v: statistics.median(t) for v, t in best.items()},
               "speedup": _timing.paired_speedup(best["loop"], best["fused"]),
               "update_ms": {v: statistics.median(t) for v, t in updates.items()},
               "params": sum(p.numel() for p in model0.parameters()),
               "tensors": sum(1 for _ in model0.parameters())}
        rows.append(row)
        print(f"{row['arch']}: " + ", ".join(f"{k} {v:.1f}" for k, v in row["ms"].items())
              + f"; loop / fused {row['speedup']:.3f}; update alone "
              + ", ".join(f"{k} {v:.2f}" for k, v in row["update_ms"].items()), flush=True)
    gm = _timing.geomean([r["speedup"] for r in rows])
    saved = statistics.median(r["update_ms"]["loop"] - r["update_ms"]["fused"] for r in rows)
    share = statistics.median((r["update_ms"]["loop"] - r["update_ms"]["fused"]) / r["best_ms"]["loop"] for r in rows)
    data = {"benchmark": "trial_step", "space": args.space, "batch": batch, "resolution": res,
            "threads": args.threads, "repeats": args.repeats, "environment": _timing.environment(),
            "rows": rows, "geomean_speedup": gm,
            "median_update_saved_ms": saved, "median_update_saved_share": share}
    cols = [f"{v} {lay}" for v in VARIANTS for lay in MEMORY_FORMATS]
    table = (f"`python benchmarks/trial_step.py --space {args.space} --archs {args.archs} --repeats {args.repeats}`\n\n"
             f"Training step (forward, backward, optimizer) at batch {batch}, {res} px, {args.threads} thread(s), "
             "median ms over interleaved rounds. Speed-up: median over rounds of loop / fused, each in its faster "
             "layout. Update alone: the optimizer's step on fixed gradients, median of "
             f"{args.opt_repeats} interleaved rounds.\n\n| arch | params (tensors) | "
             + " | ".join(f"ms {c}" for c in cols) + " | loop / fused | update ms loop / fused |\n|---|---|"
             + "---|" * (len(cols) + 2) + "\n")
    for r in rows:
        table += (f"| {r['arch']}: {r['describe']} | {r['params']:,} ({r['tensors']}) | "
                  + " | ".join(f"{r['ms'][c]:.1f}" for c in cols)
                  + f" | {r['speedup']:.3f} | {r['update_ms']['loop']:.2f} / {r['update_ms']['fused']:.2f} |\n")
    table += (f"\nGeometric mean of loop / fused over {len(rows)} architectures: {gm:.3f}. The update alone: "
              f"median {saved:.2f} ms saved a step, {100 * share:.1f}% of the loop form's step.\n")
    if not args.no_write:
        for p in _timing.write("trial_step", data, table):
            print(f"wrote {p}")
    else:
        print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
