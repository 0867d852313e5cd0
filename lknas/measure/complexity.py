"""Params and FLOPs as the large-kernel papers count them, and as the network applies them.

FLOPs are fvcore's count (multiply-accumulates) of the *deploy* form at a square input (the one
deploy form that is also timed and deployed, see `lknas.models.reparameterize`); params are the
trainable weights of the training form (what the papers' tables quote) and of the deploy form.

`flops` counts every kernel at its declared size, as the papers do. A kernel larger than
2 x map - 1 reaches only zero padding beyond that, and `lknas.ops.dwconv2d` crops it away:
`flops_applied` counts the kernels the network actually applies (`kernels_applied`, per stage).
The two differ only when a kernel outgrows its map (e.g. a 51 x 51 kernel on a 16 x 16 map), and
the search ranks by what is applied, so choices that compute the same function cost the same.

For architectures with dynamic sparsity the non-zero params and the FLOPs of the non-zero weights
are reported too (`flops_sparse`, `flops_sparse_applied`), counted per deploy layer from its
non-zero weights. A model whose weights are already sparse (a trained one) is counted as it is; a
freshly built one is counted as the trainer would start it: a copy gets the initial masks of
`DynamicSparsity` (seed 0), so each layer has the density its `sparsity.init` assigns (uniform,
ERK, or SNIP's layer-wise densities, scored on a seeded Gaussian batch for want of data), and
merged branches count the union of their kept positions.
"""
from __future__ import annotations

import logging
import warnings
from copy import deepcopy
from typing import Any

import torch
from torch import nn

from lknas.arch import ArchConfig, SparsitySpec
from lknas.errors import LknasError
from lknas.models import build_model, reparameterize
from lknas.ops.dwconv import use_algorithm
from lknas.sparsity.targets import deploy_sparse_modules, sparse_parameters

logging.getLogger("fvcore.nn.jit_analysis").setLevel(logging.ERROR)

SNIP_PROBE = 4  # images in the SNIP batch of `initially_masked`


def count_params(model: nn.Module) -> int:
    """Trainable parameters, each shared tensor once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def check_input_size(model: nn.Module, resolution: int, flag: str = "--resolution") -> None:
    """LknasError unless a `resolution` x `resolution` input leaves the last stage at least one cell:
    an lknas net needs an input of at least its total stride (32 for four stages after a 4x stem)."""
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise LknasError(f"{flag} must be a positive integer, got {resolution!r}")
    info = getattr(model, "feature_info", None)
    stride = info[-1]["reduction"] if info else 1
    if resolution < stride:
        raise LknasError(f"{flag} {resolution} is smaller than the architecture's total stride {stride} "
                         f"(stem and downsampling), which would leave no pixel for the last stage; "
                         f"use {flag} {stride} or more")


def count_flops(model: nn.Module, resolution: int, in_chans: int = 3) -> tuple[int, dict[str, int]]:
    """fvcore MACs of one forward pass at batch 1, total and per leaf module name."""
    with warnings.catch_warnings():  # fvcore's import scripts a loss with the deprecated torch.jit.script
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import FlopCountAnalysis

    first = next(model.parameters(), None)  # a trained model counts where it is (a GPU trial's stays there)
    x = torch.zeros(1, in_chans, resolution, resolution, device=first.device if first is not None else None)
    analysis = FlopCountAnalysis(model.eval(), x)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    return int(analysis.total()), {k: int(v) for k, v in analysis.by_module().items()}


def _nonzero_fraction(weight: torch.Tensor) -> float:
    return float(torch.count_nonzero(weight)) / weight.numel()


def complexity(
    model: nn.Module | ArchConfig | str | dict,
    resolution: int = 224,
    in_chans: int = 3,
) -> dict[str, Any]:
    """Count params and FLOPs of `model` (an nn.Module built by lknas, or anything `build_model`
    accepts) at `resolution` x `resolution`.

    Returns a dict with `params`, `params_deploy`, `flops`, `flops_applied`, `resolution`
    (`kernels_applied` and `kernels` per stage for lknas models, `stripe_forms` where the model
    has stripe kernels), and for sparse architectures
    also `params_nonzero`, `flops_sparse`, `flops_sparse_applied`, `density`,
    `sparsity_targets` and `sparsity_init`.
    """
    if not isinstance(model, nn.Module):
        model = build_model(model, in_chans=in_chans)
    check_input_size(model, resolution)
    arch: ArchConfig | None = getattr(model, "arch", None)
    spec = arch.sparsity if arch is not None else None
    counted, sparse_now = model, False  # the model whose deploy form is counted; are its weights masked
    if spec is not None:
        masked = sparse_parameters(model, spec.targets)
        total = sum(p.numel() for p in masked)
        nonzero = sum(int(torch.count_nonzero(p)) for p in masked)
        # one decision for the whole model: layer densities differ under ERK/SNIP (some dense)
        sparse_now = total > 0 and _is_masked(nonzero / total, spec.density)
        if total > 0 and not sparse_now and spec.density < 1.0:  # the trainers mask nothing at 1.0
            counted, sparse_now = initially_masked(model, spec, resolution, in_chans), True
    was_training = model.training
    deploy = reparameterize(counted, resolution=resolution, in_chans=in_chans)  # the one deploy form
    model.train(was_training)

    applied, by_applied = count_flops(deploy, resolution, in_chans)  # dwconv2d crops under tracing
    cropped = arch is None or arch.applied_kernel_sizes(resolution) != arch.kernel_sizes
    if cropped:
        with use_algorithm("off"):  # plain F.conv2d with the whole kernel, as the papers count
            flops, by_module = count_flops(deploy, resolution, in_chans)
    else:
        flops, by_module = applied, by_applied
    result: dict[str, Any] = {
        "params": count_params(model),
        "params_deploy": count_params(deploy),
        "flops": flops,
        "flops_applied": applied,
        "resolution": resolution,
    }
    if deploy.stripe_forms:
        result["stripe_forms"] = dict(deploy.stripe_forms)
    if arch is not None:
        result["kernels"] = list(arch.kernel_sizes)
        result["kernels_applied"] = list(arch.applied_kernel_sizes(resolution))
    if spec is not None:
        result.update(density=spec.density, sparsity_targets=spec.targets, sparsity_init=spec.init)
        kept = sum(int(torch.count_nonzero(p)) for p in sparse_parameters(counted, spec.targets))
        result["params_nonzero"] = result["params"] - total + kept
        flops_sparse, applied_sparse = float(flops), float(applied)
        for name, module in deploy_sparse_modules(deploy, spec.targets):
            # a deploy-form model has nothing to mask: its kernels are counted at the target density
            density = _nonzero_fraction(module.weight) if sparse_now else spec.density
            flops_sparse -= by_module.get(name, 0) * (1.0 - density)
            applied_sparse -= by_applied.get(name, 0) * (1.0 - density)
        result["flops_sparse"] = int(round(flops_sparse))
        result["flops_sparse_applied"] = int(round(applied_sparse))
    return result


def initially_masked(model: nn.Module, spec: SparsitySpec, resolution: int, in_chans: int = 3,
                     seed: int = 0) -> nn.Module:
    """A copy of `model` with the initial masks `DynamicSparsity` gives it under `spec` (seeded).
    SNIP scores the copy in training mode on `SNIP_PROBE` Gaussian images at `resolution` with
    random labels (seeded too): the counts do not depend on the data set."""
    from lknas.sparsity import DynamicSparsity

    copy = deepcopy(model).train()
    batch = None
    if spec.init == "snip":
        g = torch.Generator().manual_seed(seed)
        classes = max(1, int(getattr(model, "num_classes", 0) or 1))
        dev = next(copy.parameters()).device
        batch = (torch.randn(SNIP_PROBE, in_chans, resolution, resolution, generator=g).to(dev),
                 torch.randint(0, classes, (SNIP_PROBE,), generator=g).to(dev))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # drop path during the SNIP pass
        DynamicSparsity(copy, spec, total_steps=1, snip_batch=batch, seed=seed)
    return copy


def _is_masked(fraction: float, density: float) -> bool:
    """True when a weight is visibly sparse (a trained, masked model), not an occasional zero."""
    return fraction < 1.0 - (1.0 - density) / 2
