"""Structural reparameterization: training form -> deploy form (one kernel per layer, BN folded)."""
from __future__ import annotations

import copy

import torch
from torch import nn

from lknas.ops.large_kernel import DEPLOY_KERNEL_MODULES, DeployDWConv, DeployStripeConv, StripeLK
from lknas.ops.layers import ConvBN

__all__ = ["reparameterize", "is_deployed"]


def _is_training_kernel(module: nn.Module) -> bool:
    return callable(getattr(module, "merged_kernel", None)) and not isinstance(module, DEPLOY_KERNEL_MODULES)


@torch.no_grad()
def _reparam(module: nn.Module, decompose_stripes: bool) -> None:
    for name, child in list(module.named_children()):
        if _is_training_kernel(child):
            if decompose_stripes and isinstance(child, StripeLK):
                setattr(module, name, DeployStripeConv.from_module(child))
            else:
                setattr(module, name, DeployDWConv.from_module(child))
        else:
            _reparam(child, decompose_stripes)
    # children first: blocks fold their BNs into already fused convs / deploy kernels
    if isinstance(module, ConvBN):
        module.fuse()
    fuse = getattr(module, "fuse_", None)
    if callable(fuse):
        fuse()


def reparameterize(model: nn.Module, inplace: bool = False, decompose_stripes: bool = False) -> nn.Module:
    """The deploy form of `model`, in eval mode (a deep copy unless `inplace`).

    Every large-kernel module (all its branches, their BNs and the positional embedding) becomes
    one `DeployDWConv` (a `PartialChannels` keeps its split around the merged mixer); conv+BN
    pairs (stems, transitions, 1x1 convs), RepLK/ConvFFN pre-BNs, UniRepLKNet's fc2+BN and the
    BN after its kernel, and a `bn` head's BN are folded too. Outputs equal the training form's
    in eval mode up to float rounding.

    `decompose_stripes=True` turns a stripe kernel into a `DeployStripeConv` (k x n + n x k,
    SLaK's inference form: 2kn instead of k*k MACs per pixel) instead of one dense k x k conv.
    """
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    _reparam(model, decompose_stripes)
    return model.eval()


def is_deployed(model: nn.Module) -> bool:
    """True when no training-form kernel module and no unfused ConvBN remains."""
    return not any(
        _is_training_kernel(m) or (isinstance(m, ConvBN) and not m.fused) for m in model.modules()
    )
