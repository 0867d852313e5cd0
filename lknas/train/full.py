"""`python -m lknas train`: the full training recipe for a found architecture, from timm.

ConvNeXt/SLaK/PeLK's ImageNet recipe by default: AdamW (lr 4e-3 per 4096 images, scaled linearly
with the batch), cosine with warm-up, weight decay 0.05, label smoothing 0.1, RandAugment
(rand-m9-mstd0.5-inc1), mixup 0.8 / cutmix 1.0, drop path from the architecture, model EMA, AMP on
CUDA, and dynamic sparsity when the architecture asks for it. A checkpoint after every epoch
(`checkpoint-last.pt`, resumable), a metrics CSV, and at the end the reparameterized deploy
checkpoint (`deploy.pt`), whose validation accuracy is checked against the training model's.

Resume is exact: the checkpoint holds, besides model, optimizer, schedule, EMA and masks, every
random stream a step draws from (torch CPU and CUDA, Python, and the mixup/cutmix generator,
which `SeededMixup` keeps apart from numpy's global one); the data loaders' order and
augmentation come from seed + epoch. A run killed after epoch k and resumed writes the same
metrics as one that was never interrupted (on CPU; CUDA kernels may not be bitwise deterministic).
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lknas import limits as L
from lknas.arch import ArchConfig
from lknas.errors import LknasError
from lknas.io import make_run_dir, write_json_atomic, write_text_atomic
from lknas.train.checkpoint import load_checkpoint, save_checkpoint
from lknas.train.proxy import _autocast, _device, evaluate
from lknas.train.recipe import backward_and_step, fitted_warmup, make_optimizer, make_scheduler

__all__ = ["SeededMixup", "TrainRecipe", "train_full", "check_recipe"]


def default_workers() -> int:
    """Data-loader workers: one per core, at most 4 (torch warns above the core count)."""
    return max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class TrainRecipe:
    """The knobs of `lknas train`; `lr=None` means 4e-3 * batch_size / 4096 (ConvNeXt's rule)."""

    epochs: int = 300
    batch_size: int = 128
    lr: float | None = None
    weight_decay: float = 0.05
    warmup_epochs: float = 20
    optimizer: str = "adamw"
    label_smoothing: float = 0.1
    mixup: float = 0.8
    cutmix: float = 1.0
    auto_augment: str | None = "rand-m9-mstd0.5-inc1"
    drop_path: float | None = None
    model_ema: bool = True
    ema_decay: float = 0.9999
    resolution: int = 224
    workers: int = field(default_factory=default_workers)
    seed: int = 0

    @property
    def effective_warmup(self) -> float:
        """The warm-up that fits the run (`lknas.train.recipe.fitted_warmup`)."""
        return fitted_warmup(self.warmup_epochs, self.epochs)

    @property
    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else 4e-3 * self.batch_size / 4096

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_RECIPE_RANGES = {  # field: (low, low is open, high, high is open), from lknas.limits; every number finite
    "epochs": (1, False, L.MAX_EPOCHS, False), "batch_size": (1, False, L.MAX_BATCH_SIZE, False),
    "lr": (0, True, L.MAX_LR, False), "weight_decay": (0, False, L.MAX_WEIGHT_DECAY, False),
    "warmup_epochs": (0, False, L.MAX_EPOCHS, False), "label_smoothing": (0, False, 1, True),
    "mixup": (0, False, L.MAX_MIX_ALPHA, False), "cutmix": (0, False, L.MAX_MIX_ALPHA, False),
    "drop_path": (0, False, 1, True), "ema_decay": (0, False, 1, True),
    "resolution": (L.MIN_RESOLUTION, False, L.MAX_RESOLUTION, False), "workers": (0, False, L.MAX_WORKERS, False),
    "seed": (0, False, L.MAX_SEED, False),
}


def check_recipe(recipe: TrainRecipe) -> None:
    """LknasError naming every recipe value outside its range (NaN and infinities included) and an
    auto-augment policy timm does not know; `train_full` calls it before building anything."""
    problems = []
    for name, (lo, lo_open, hi, hi_open) in _RECIPE_RANGES.items():
        value = getattr(recipe, name)
        if value is None and name in ("lr", "drop_path"):
            continue
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and not (value <= lo if lo_open else value < lo)
        ok = ok and (hi is None or (value < hi if hi_open else value <= hi))
        if not ok:
            bound = f"{'>' if lo_open else '>='} {lo}" + (f" and {'<' if hi_open else '<='} {hi}" if hi is not None else "")
            problems.append(f"--{name.replace('_', '-')} must be a finite number {bound}, got {value!r}")
    if recipe.auto_augment:
        try:
            from timm.data import create_transform

            create_transform(input_size=(3, 32, 32), is_training=True, auto_augment=recipe.auto_augment)
        except Exception as err:  # timm asserts or raises on an unknown policy string
            problems.append(f"--aa {recipe.auto_augment}: timm does not know this auto-augment policy ({err or type(err).__name__}); "
                            f"e.g. rand-m9-mstd0.5-inc1, augmix-m5-w4-d2, original, or none")
    if problems:
        raise LknasError("; ".join(problems))


class SeededMixup:
    """timm's Mixup/CutMix drawing from a numpy RandomState of its own, seeded from the recipe.

    timm draws lambda, the mixup/cutmix switch and the cutmix box from numpy's global RNG, which
    nothing seeds or checkpoints: two runs with one seed mixed differently and `--resume` could
    not be exact. Each call swaps this generator in for numpy's global one and back;
    `state_dict` (plain tensors and ints, for `torch.load(weights_only=True)`) goes into the
    checkpoint, so a resumed run continues the same stream.
    """

    def __init__(self, mixup: Any, seed: int):
        self.mixup = mixup
        self.rng = np.random.RandomState(seed % 2**32)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outer = np.random.get_state()
        np.random.set_state(self.rng.get_state())
        try:
            return self.mixup(x, y)
        finally:
            self.rng.set_state(np.random.get_state())
            np.random.set_state(outer)

    def state_dict(self) -> dict[str, Any]:
        _, keys, pos, has_gauss, gauss = self.rng.get_state()
        return {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                "gauss": float(gauss)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        keys = state["keys"].numpy().astype(np.uint32)
        self.rng.set_state(("MT19937", keys, state["pos"], state["has_gauss"], state["gauss"]))


def _mixup(recipe: TrainRecipe, num_classes: int) -> SeededMixup | None:
    if recipe.mixup <= 0 and recipe.cutmix <= 0:
        return None
    from timm.data import Mixup

    return SeededMixup(Mixup(mixup_alpha=recipe.mixup, cutmix_alpha=recipe.cutmix,
                             label_smoothing=recipe.label_smoothing, num_classes=num_classes), recipe.seed)


def _rng_state() -> dict[str, Any]:
    """Every generator a training step may draw from besides the mixup one: torch's CPU and CUDA
    generators (drop path, sparsity regrowth) and Python's (augmentation outside the loaders)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Any) -> None:
    if isinstance(state, torch.Tensor):  # checkpoints before the CUDA and Python states were kept
        torch.set_rng_state(state)
        return
    torch.set_rng_state(state["torch"])
    random.setstate(_tuples(state["python"]))
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(value: Any) -> Any:
    """random.getstate() after a torch.save round trip (tuples stay tuples, but be lenient)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _loss(recipe: TrainRecipe, mixup) -> nn.Module:
    from timm.loss import SoftTargetCrossEntropy

    return SoftTargetCrossEntropy() if mixup is not None else nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)


class _Metrics:
    """metrics.csv: one row per epoch, rewritten atomically."""

    COLUMNS = ("epoch", "lr", "train_loss", "accuracy", "val_loss", "ema_accuracy", "epoch_time")

    def __init__(self, path: Path, rows: list[dict[str, Any]]):
        self.path, self.rows = path, rows

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text_atomic(self.path, buf.getvalue())


def train_full(arch: ArchConfig, data: Any, recipe: TrainRecipe, out: str | Path, *, resume: bool = False,
               device: str | torch.device | None = None, progress: bool = True) -> dict[str, Any]:
    """Train `arch` on `data` (a `lknas.data.DataBundle`) with `recipe`, writing into `out`.
    `resume=True` continues from `out/checkpoint-last.pt`. Returns the final summary (also written
    to `out/summary.json`).

    Raises:
        LknasError: the model's estimated training memory exceeds `$LKNAS_MAX_MODEL_GB`, the
            checkpoint belongs to another architecture, or the loss diverged.
    """
    from lknas.models import build_model, reparameterize

    check_recipe(recipe)
    from lknas.space.budget import check_arch_budget

    num_classes, in_chans = data.num_classes, data.in_chans
    check_arch_budget(arch, getattr(data, "resolution", recipe.resolution), recipe.batch_size,
                      num_classes=num_classes, in_chans=in_chans)  # before anything is built or written
    dev = _device(device)
    out = make_run_dir(out, results=("checkpoint-last.pt",))  # taken back if the CLI then fails
    torch.manual_seed(recipe.seed)
    model = build_model(arch, num_classes=num_classes, in_chans=in_chans,
                        drop_path_rate=recipe.drop_path).to(dev)
    per_epoch = len(data.train)
    optimizer = make_optimizer(model, recipe.optimizer, recipe.peak_lr, recipe.weight_decay)
    if recipe.effective_warmup < recipe.warmup_epochs and progress:
        print(f"warning: a warm-up of {recipe.warmup_epochs:g} epochs does not fit {recipe.epochs} epochs: using "
              f"{recipe.effective_warmup:g} (set --warmup-epochs to choose)", file=sys.stderr)
    scheduler = make_scheduler(optimizer, recipe.epochs, recipe.effective_warmup, per_epoch)
    mixup = _mixup(recipe, num_classes)
    loss_fn = _loss(recipe, mixup)
    amp, amp_dtype = _autocast(dev)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    ema = None
    if recipe.model_ema:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=recipe.ema_decay)
    sparsity = None
    if arch.sparsity is not None and arch.sparsity.density < 1.0:
        from lknas.sparsity import DynamicSparsity

        snip_batch = None
        if arch.sparsity.init == "snip":  # SLaK scores SNIP on one training batch
            x, y = next(iter(data.train))
            snip_batch = (x.to(dev), y.to(dev))
        sparsity = DynamicSparsity(model, arch.sparsity, total_steps=recipe.epochs * per_epoch, optimizer=optimizer,
                                   snip_batch=snip_batch)

    start_epoch, history, best = 0, [], 0.0
    last = out / "checkpoint-last.pt"
    if resume:
        ckpt = load_checkpoint(last, kind="train")
        if ckpt["arch_yaml"] != arch.to_yaml():
            from lknas.errors import LknasError

            raise LknasError(f"{last}: was trained with another architecture; give its --arch or another --out")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ema is not None and ckpt.get("ema") is not None:
            ema.load_state_dict(ckpt["ema"])
        if scaler is not None and ckpt.get("scaler") is not None:
            scaler.load_state_dict(ckpt["scaler"])
        if sparsity is not None and ckpt.get("sparsity") is not None:
            sparsity.load_state_dict(ckpt["sparsity"])
        if mixup is not None and ckpt.get("mixup_rng") is not None:
            mixup.load_state_dict(ckpt["mixup_rng"])
        _set_rng_state(ckpt["rng"])
        start_epoch, history, best = ckpt["epoch"], json.loads(ckpt["history"]), ckpt["best_accuracy"]
        if progress:
            print(f"resumed from {last} after epoch {start_epoch}", file=sys.stderr, flush=True)
    write_text_atomic(out / "arch.yaml", arch.to_yaml())
    metrics = _Metrics(out / "metrics.csv", list(history))

    step = start_epoch * per_epoch
    for epoch in range(start_epoch, recipe.epochs):
        t0 = time.perf_counter()
        if hasattr(data.train, "set_epoch"):  # the loaders' order and flips come from seed + epoch
            data.train.set_epoch(epoch)
        model.train()
        loss_sum, seen = 0.0, 0
        for x, y in data.train:
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            if mixup is not None and x.shape[0] % 2 == 0:
                x, target = mixup(x, y)
            else:
                target = y if mixup is None else _one_hot(y, num_classes, recipe.label_smoothing)
            with amp:
                loss = loss_fn(model(x), target)
            value = float(loss.detach())
            if not math.isfinite(value):
                from lknas.errors import LknasError

                raise LknasError(f"loss became {value} at epoch {epoch + 1}; lower --lr (now {recipe.peak_lr:g}) "
                                 f"or resume from {last} with a smaller one")
            backward_and_step(loss, optimizer, scaler, sparsity)
            if ema is not None:
                ema.update(model, step=step)
            step += 1
            scheduler.step_update(step)
            loss_sum += value * y.numel()
            seen += y.numel()
        accuracy, val_loss = evaluate(model, data.val, dev)
        ema_accuracy = evaluate(ema.module, data.val, dev)[0] if ema is not None else None
        best = max(best, accuracy)
        row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": loss_sum / max(1, seen),
               "accuracy": accuracy, "val_loss": val_loss, "ema_accuracy": ema_accuracy,
               "epoch_time": time.perf_counter() - t0}
        metrics.add(row)
        save_checkpoint(
            last, "train", arch, model, num_classes=num_classes, in_chans=in_chans, epoch=epoch + 1,
            optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
            ema=ema.state_dict() if ema is not None else None, scaler=scaler.state_dict() if scaler else None,
            sparsity=sparsity.state_dict() if sparsity is not None else None, rng=_rng_state(),
            mixup_rng=mixup.state_dict() if mixup is not None else None,
            history=json.dumps(metrics.rows), best_accuracy=best, recipe=json.dumps(recipe.to_dict()),
        )
        if progress:
            ema_text = f"  ema_acc {ema_accuracy:.2f}%" if ema_accuracy is not None else ""
            print(f"epoch {epoch + 1}/{recipe.epochs}  train_loss {row['train_loss']:.4f}  val_acc {accuracy:.2f}%"
                  f"{ema_text}  val_loss {val_loss:.4f}  {row['epoch_time']:.1f}s", file=sys.stderr, flush=True)

    accuracy, val_loss = evaluate(model, data.val, dev)
    deploy = reparameterize(model, resolution=recipe.resolution, in_chans=in_chans)  # the form count/latency use
    deploy_accuracy, _ = evaluate(deploy, data.val, dev)
    one_sample = 100.0 / max(1, getattr(data, "val_size", 0) or 1)
    summary = {
        "arch": arch.summary(), "hash": arch.hash(), "epochs": recipe.epochs, "accuracy": accuracy,
        "val_loss": val_loss, "best_accuracy": best, "deploy_accuracy": deploy_accuracy,
        "deploy_matches": abs(deploy_accuracy - accuracy) <= one_sample + 1e-9,
        "ema_accuracy": metrics.rows[-1].get("ema_accuracy") if metrics.rows else None,
        "checkpoint": str(last), "deploy_checkpoint": str(out / "deploy.pt"), "recipe": recipe.to_dict(),
        "lr": recipe.peak_lr, "warmup_epochs": recipe.effective_warmup,  # what ran, not what was asked
    }
    save_checkpoint(out / "deploy.pt", "deploy", arch, deploy.cpu(), num_classes=num_classes, in_chans=in_chans,
                    resolution=recipe.resolution,
                    metrics=json.dumps({k: summary[k] for k in ("accuracy", "deploy_accuracy", "epochs")}))
    write_json_atomic(out / "summary.json", summary)
    if not summary["deploy_matches"] and progress:
        print(f"warning: deploy accuracy {deploy_accuracy:.2f}% differs from the training model's {accuracy:.2f}%",
              file=sys.stderr)
    return summary


def _one_hot(y: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    off = smoothing / num_classes
    target = torch.full((y.shape[0], num_classes), off, device=y.device)
    return target.scatter_(1, y.view(-1, 1), 1.0 - smoothing + off)
