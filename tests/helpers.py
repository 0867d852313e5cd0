"""Small architectures and data shared by the tests."""
from __future__ import annotations

import torch

from lknas.arch import ArchConfig, HeadSpec, KernelSpec, SparsitySpec, StageSpec, StemSpec


def small_arch(kernel: int = 7, kernel_type: str = "dense", widths=(8, 16), depths=(1, 1), density: float | None = None,
               layer_scale: float | None = 1e-6, **kernel_kw) -> ArchConfig:
    """A two-stage ConvNeXt-style net with a 4x4 patch stem: cheap enough for a few training steps."""
    spec = KernelSpec(size=(kernel,), type=kernel_type, **kernel_kw)
    stages = tuple(
        StageSpec(depth=d, width=w, kernel=spec, block="convnext", mlp_ratio=2.0,
                  downsample="none" if i == 0 else "patch", layer_scale=layer_scale, grn=False)
        for i, (d, w) in enumerate(zip(depths, widths))
    )
    sparsity = SparsitySpec(density=density, update_interval=2) if density is not None else None
    return ArchConfig(stem=StemSpec("patch", widths[0]), stages=stages, head=HeadSpec("ln"), sparsity=sparsity)


class TensorBatches:
    """A re-iterable list of (x, y) batches over fixed tensors (a stand-in DataBundle split)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int):
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self) -> int:
        return len(self.x) // self.batch_size

    def __iter__(self):
        for i in range(len(self)):
            s = slice(i * self.batch_size, (i + 1) * self.batch_size)
            yield self.x[s], self.y[s]


class ToyData:
    """Two classes told apart by the sign of the first channel's mean: learnable in a few steps."""

    def __init__(self, n: int = 256, resolution: int = 32, batch_size: int = 32, in_chans: int = 3, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, in_chans, resolution, resolution, generator=g)
        y = (x[:, 0].mean(dim=(1, 2)) > 0).long()
        x[:, 0] += (2 * y - 1).view(-1, 1, 1).float() * 0.5
        k = n * 3 // 4
        self.train = TensorBatches(x[:k], y[:k], batch_size)
        self.val = TensorBatches(x[k:], y[k:], 64)
        self.num_classes, self.in_chans, self.name = 2, in_chans, "toy"


TINY_DATA = "pathfinder:easy,train=96,val=32"


def write_tiny_space(path, trials: int = 2, steps: int = 2, lr: float = 2e-3, weight_decay: float = 0.05) -> "Path":
    """A space file with one fixed two-stage architecture and a proxy budget of `steps` steps."""
    from pathlib import Path

    path = Path(path)
    path.write_text(
        "name: tiny\nstem: {type: patch}\nblock: convnext\nlayer_scale: 1.0e-6\nmlp_ratio: 2\nkernel_type: dense\n"
        "stages:\n  - {depth: 1, width: 8, kernel: 3}\n  - {depth: 1, width: 16, kernel: 5}\n"
        f"train: {{dataset: \"{TINY_DATA}\", resolution: 32, steps: {steps}, batch_size: 32, warmup_epochs: 0, "
        f"lr: {lr}, weight_decay: {weight_decay}}}\n"
        f"search: {{sampler: random, trials: {trials}, seed: 0}}\n")
    return path


def write_fake_run(root, n: int = 3) -> "Path":
    """A finished-looking search run (run.json, space.yaml, trials.jsonl), written without a search."""
    import json
    from pathlib import Path

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    write_tiny_space(root / "space.yaml", trials=n)
    settings = {"search": {"sampler": "random", "trials": n, "seed": 0, "scheduler": "fifo",
                           "objectives": [{"name": "accuracy", "mode": "max"}, {"name": "latency", "mode": "min"}],
                           "cpus_per_trial": 1.0, "gpus_per_trial": 0.0, "max_concurrent": None, "time_budget": None},
                "train_overrides": {}, "address": None, "ray_storage": None, "space_name": "tiny"}
    (root / "run.json").write_text(json.dumps(settings))
    with open(root / "trials.jsonl", "w") as fh:
        for i in range(n):
            arch = small_arch(kernel=3 + 2 * i)
            fh.write(json.dumps({"trial": i, "status": "ok", "hash": arch.hash(), "summary": arch.summary(),
                                 "arch_yaml": arch.to_yaml(), "accuracy": 50.0 + i, "latency_ms": 1.0 + i,
                                 "params_effective": 1000 + i, "flops_effective": 1e5 + i,
                                 "param.stages[0].kernel": 3 + 2 * i}) + "\n")
    return root
