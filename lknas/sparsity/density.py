"""Layer-wise density allocation for dynamic sparsity: uniform, ERK and SNIP.

Each function returns the number of weights kept per layer (`{name: n_active}`), an exact integer,
so the masks built from it have exactly the intended density; `layer_densities` turns that into
fractions. As in SLaK, SNIP only decides how many weights each layer keeps (its share of the
global top-k connection sensitivities); which ones is drawn at random, unless
`sparsity.snip_mask: topk` keeps the top-k weights themselves. Whatever the init, a layer that
comes out at >= `DENSE_FROM` density is made dense and never pruned (SLaK drops its mask).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
from torch import nn

from lknas.arch import SPARSITY_INIT, SPARSITY_SNIP_MASKS, SparsitySpec
from lknas.sparsity.targets import sparse_parameters

__all__ = [
    "DENSE_FROM",
    "named_sparse_parameters",
    "uniform_counts",
    "erk_densities",
    "erk_counts",
    "snip_scores",
    "snip_masks",
    "snip_counts",
    "initial_counts",
    "check_spec",
    "layer_densities",
]

DENSE_FROM = 0.99  # SLaK: a layer initialised at this density or more is left dense, never pruned


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


def snip_counts(scores: dict[str, torch.Tensor], density: float) -> dict[str, int]:
    """Kept weights per layer under SNIP: how many of each layer's weights are among the global
    top round(density * total) scores (what SLaK takes from SNIP: the layer-wise densities)."""
    return {n: int(m.sum()) for n, m in snip_masks(scores, density).items()}


def check_spec(spec: SparsitySpec) -> None:
    """ValueError naming the `sparsity.*` key when `init` or `snip_mask` is not a known name."""
    if spec.init not in SPARSITY_INIT:
        raise ValueError(f"sparsity.init must be one of {', '.join(SPARSITY_INIT)}, got {spec.init!r}")
    if spec.snip_mask not in SPARSITY_SNIP_MASKS:
        raise ValueError(
            f"sparsity.snip_mask must be 'random' (SLaK: SNIP sets each layer's density, the mask is drawn "
            f"at random) or 'topk' (keep the most sensitive weights), got {spec.snip_mask!r}; "
            f"set sparsity.snip_mask: random"
        )


def initial_counts(
    shapes: dict[str, torch.Size],
    spec: SparsitySpec,
    scores: dict[str, torch.Tensor] | None = None,
) -> dict[str, int]:
    """Kept weights per layer at initialization under `spec`: uniform, ERK, or SNIP from `scores`
    (required for init 'snip'); a layer at >= `DENSE_FROM` density keeps all its weights.

    Raises:
        ValueError: an unknown init or snip_mask, a density outside (0, 1], or SNIP without scores.
    """
    check_spec(spec)
    if spec.init == "uniform":
        counts = uniform_counts(shapes, spec.density)
    elif spec.init == "erk":
        counts = erk_counts(shapes, spec.density)
    elif scores is None:
        raise ValueError("sparsity init 'snip' needs SNIP scores (a batch to score the weights on)")
    else:
        _check_density(spec.density)
        counts = snip_counts(scores, spec.density)
    return {n: shapes[n].numel() if c >= DENSE_FROM * shapes[n].numel() else c for n, c in counts.items()}


def layer_densities(
    model: nn.Module,
    spec: SparsitySpec,
    snip_batch: tuple[torch.Tensor, torch.Tensor] | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, float]:
    """The initial density of each masked weight of `model` under `spec`, as n_active / numel,
    as `DynamicSparsity` assigns them. SNIP scores the weights on `snip_batch`; without one, the
    ERK allocation stands in for it (as the trainer does)."""
    params = named_sparse_parameters(model, spec.targets)
    shapes = {n: p.shape for n, p in params.items()}
    scores = None
    if spec.init == "snip" and snip_batch is not None:
        scores = snip_scores(model, params, snip_batch, loss_fn)
    elif spec.init == "snip":
        spec = dataclasses.replace(spec, init="erk")
    counts = initial_counts(shapes, spec, scores)
    return {n: counts[n] / shapes[n].numel() for n in shapes}
