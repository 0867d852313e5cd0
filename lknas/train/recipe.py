"""Optimizer, LR schedule and loss of a training run, from timm's factories.

Kept apart from the loops so the proxy trainer and the full trainer share one recipe.
"""
from __future__ import annotations

import math

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from torch import nn

__all__ = ["make_optimizer", "make_scheduler", "make_loss", "backward_and_step"]


# torch's Adam and AdamW (timm's 'adam' / 'adamw') have a fused kernel on CPU and CUDA: one pass
# over all parameters instead of ~10 small ops each; same update up to float rounding
# (benchmarks/trial_step.py: the for-loop update took ~12 ms of a ~165 ms trial step on peleK_space nets, fused ~3)
FUSED = ("adam", "adamw")


def _fusable(model: nn.Module, name: str) -> bool:
    params = [p for p in model.parameters() if p.requires_grad]
    return (name.lower() in FUSED and bool(params)
            and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params))


def make_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """timm's `create_optimizer_v2`: no weight decay on biases, norms and `no_weight_decay()` params;
    Adam and AdamW fused where torch has the kernel (`FUSED`)."""
    if _fusable(model, name):
        try:
            return create_optimizer_v2(model, opt=name, lr=lr, weight_decay=weight_decay, fused=True)
        except (RuntimeError, TypeError, ValueError):  # a torch without the fused kernel for this device
            pass
    return create_optimizer_v2(model, opt=name, lr=lr, weight_decay=weight_decay)


def fitted_warmup(warmup_epochs: float, run_epochs: float) -> float:
    """The warm-up a run of `run_epochs` (a fraction for a step budget) gets: it ends an epoch
    before the run does; a one-epoch run drops a warm-up of whole epochs (the default) and keeps a
    fraction of its one epoch, up to half of it (0.05 of an 800-step proxy run is 40 steps).
    The proxy trainer and the full recipe share this rule."""
    epochs = math.ceil(run_epochs)
    if epochs > 1:
        return min(warmup_epochs, epochs - 1)
    return min(warmup_epochs, 0.5 * run_epochs) if warmup_epochs < 1 else 0.0


def make_scheduler(optimizer: torch.optim.Optimizer, epochs: int, warmup_epochs: float, updates_per_epoch: int):
    """Cosine decay with linear warm-up, stepped per update (`scheduler.step_update(n)`).

    `warmup_epochs` may be a fraction (0.05 of a one-epoch proxy run is 5% of its updates); it is
    rounded to whole updates."""
    updates = max(1, updates_per_epoch)
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched="cosine",
        num_epochs=epochs,
        warmup_epochs=round(warmup_epochs * updates) / updates,
        warmup_lr=1e-6,
        min_lr=1e-6,
        step_on_epochs=False,
        updates_per_epoch=updates,
    )
    return scheduler


def make_loss(label_smoothing: float) -> nn.Module:
    return nn.CrossEntropyLoss(label_smoothing=label_smoothing)


def backward_and_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler=None, sparsity=None) -> None:
    """One update: backward (scaled when a GradScaler is given), the optimizer step (which the
    scaler may skip on overflow), then the sparsity masks again, skipped step or not (SLaK's code
    forgets them under AMP)."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    if sparsity is not None:
        sparsity.step()
