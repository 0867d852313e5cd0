"""Layer-wise density allocation for dynamic sparsity: uniform, ERK and SNIP.

Each function returns the number of weights kept per layer (`{name: n_active}`), an exact integer,
so the masks built from it have exactly the intended density; `layer_densities` turns that into
fractions.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from lknas.arch import SparsitySpec
from lknas.sparsity.targets import sparse_parameters

__all__ = [
    "named_sparse_parameters",
    "uniform_counts",
    "erk_densities",
    "erk_counts",
    "snip_scores",
    "snip_masks",
    "layer_densities",
]


def named_sparse_parameters(model: nn.Module, targets: str) -> dict[str, nn.Parameter]:
    """The masked weights of `model` by parameter name (a shared tensor once, under its first name)."""
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: p for p in sparse_parameters(model, targets)}


def _check_density(density: float) -> None:
    if not 0.0 < density <= 1.0:
        raise ValueError(f"sparsity density must be in (0, 1], got {density!r}")


def uniform_counts(shapes: dict[str, torch.Size], density: float) -> dict[str, int]:
    """Every layer at `density`: round(density * numel) weights kept (at least one)."""
    _check_density(density)
    return {n: max(1, min(s.numel(), round(density * s.numel()))) for n, s in shapes.items()}


def erk_densities(shapes: dict[str, torch.Size], density: float) -> dict[str, float]:
    """Erdős–Rényi-Kernel densities as in RigL/SLaK: proportional to sum(shape) / prod(shape),
    scaled so the layers hold density * total weights; layers that would exceed 1.0 are made
    dense and the remainder is redistributed over the others."""
    _check_density(density)
    raw = {n: sum(s) / s.numel() for n, s in shapes.items()}
    dense: set[str] = set()
    while True:
        budget = density * sum(s.numel() for s in shapes.values())
        budget -= sum(shapes[n].numel() for n in dense)
        divisor = sum(raw[n] * shapes[n].numel() for n in shapes if n not in dense)
        if divisor == 0:  # everything dense
            return {n: 1.0 for n in shapes}
        eps = budget / divisor
        over = {n for n in shapes if n not in dense and eps * raw[n] > 1.0}
        if not over:
            return {n: 1.0 if n in dense else eps * raw[n] for n in shapes}
        dense |= over


def erk_counts(shapes: dict[str, torch.Size], density: float) -> dict[str, int]:
    """ERK allocation in whole weights: each layer floor or ceil of its ERK share (at least one),
    the total exactly round(density * total) (largest-remainder rounding)."""
    dens = erk_densities(shapes, density)
    exact = {n: dens[n] * shapes[n].numel() for n in shapes}
    counts = {n: max(1, min(shapes[n].numel(), math.floor(exact[n] + 1e-9))) for n in shapes}
    target = round(density * sum(s.numel() for s in shapes.values()))
    short = target - sum(counts.values())
    # hand out the missing weights to the largest fractional parts that still have room
    order = sorted(shapes, key=lambda n: exact[n] - counts[n], reverse=True)
    for n in order:
        if short <= 0:
            break
        if counts[n] < shapes[n].numel() and exact[n] - counts[n] > 0:
            counts[n] += 1
            short -= 1
    return counts


@torch.enable_grad()
def snip_scores(
    model: nn.Module,
    params: dict[str, nn.Parameter],
    batch: tuple[torch.Tensor, torch.Tensor],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """SNIP connection sensitivity |w * dL/dw| of each weight on one batch. Leaves the model's
    `.grad`s, BN running statistics and train/eval mode as they were."""
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    x, y = batch
    try:
        loss = loss_fn(model(x), y)
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    finally:
        with torch.no_grad():
            for n, b in model.named_buffers():
                if n in buffers:
                    b.copy_(buffers[n])
    return {
        n: (p.detach() * g).abs() if g is not None else torch.zeros_like(p)
        for (n, p), g in zip(params.items(), grads)
    }


def snip_masks(scores: dict[str, torch.Tensor], density: float) -> dict[str, torch.Tensor]:
    """Global top-k over all layers' SNIP scores: keep round(density * total) weights."""
    _check_density(density)
    flat = torch.cat([s.flatten().float() for s in scores.values()])
    k = max(1, round(density * flat.numel()))
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    keep[torch.topk(flat, k, sorted=False).indices] = True
    masks, start = {}, 0
    for n, s in scores.items():
        masks[n] = keep[start:start + s.numel()].view(s.shape).clone()
        start += s.numel()
    return masks


def layer_densities(model: nn.Module, spec: SparsitySpec) -> dict[str, float]:
    """The initial density of each masked weight of `model` under `spec` (uniform or ERK), as
    n_active / numel. SNIP needs a batch: for `init='snip'` the ERK allocation is returned as a
    stand-in (the total number of kept weights is the same, round(density * total))."""
    shapes = {n: p.shape for n, p in named_sparse_parameters(model, spec.targets).items()}
    counts = _initial_counts(shapes, spec)
    return {n: counts[n] / shapes[n].numel() for n in shapes}


def _initial_counts(shapes: dict[str, torch.Size], spec: SparsitySpec) -> dict[str, int]:
    """Kept weights per layer for uniform or ERK (also ERK for 'snip', which needs a batch)."""
    if spec.init == "uniform":
        return uniform_counts(shapes, spec.density)
    if spec.init not in ("erk", "snip"):
        raise ValueError(f"sparsity init must be 'uniform', 'erk' or 'snip', got {spec.init!r}")
    return erk_counts(shapes, spec.density)
