"""Structural reparameterization: training form -> deploy form (one kernel per layer, BN folded).

Every architecture has one deploy form, the one that is counted, timed, deployed and exported.
Stripe kernels are the only kernels with a choice (see `lknas.ops.stripe_form`): SLaK's
decomposed k x n + n x k convs, or one dense k x k conv where that is measured faster at the map
size the stripe sees. The choice per module is kept on the deploy model as `stripe_forms`
({module name: form}) and saved in deploy checkpoints, so a reloaded model has the same form.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from lknas.ops.large_kernel import DEPLOY_KERNEL_MODULES, DeployDWConv, DeployStripeConv, StripeLK
from lknas.ops.layers import ConvBN
from lknas.ops.stripe_form import FORMS, stripe_form

__all__ = ["reparameterize", "is_deployed", "stripe_forms_at"]


def _is_training_kernel(module: nn.Module) -> bool:
    return callable(getattr(module, "merged_kernel", None)) and not isinstance(module, DEPLOY_KERNEL_MODULES)


@torch.no_grad()
def _reparam(module: nn.Module, forms: dict[str, str], prefix: str = "") -> None:
    for name, child in list(module.named_children()):
        path = f"{prefix}{name}"
        if _is_training_kernel(child):
            if isinstance(child, StripeLK) and forms.get(path, "decomposed") == "decomposed":
                setattr(module, name, DeployStripeConv.from_module(child))
            else:
                setattr(module, name, DeployDWConv.from_module(child))
        else:
            _reparam(child, forms, f"{path}.")
    # children first: blocks fold their BNs into already fused convs / deploy kernels
    if isinstance(module, ConvBN):
        module.fuse()
    fuse = getattr(module, "fuse_", None)
    if callable(fuse):
        fuse()


@torch.no_grad()
def stripe_forms_at(model: nn.Module, resolution: int | None, in_chans: int | None = None) -> dict[str, str]:
    """{module name: 'decomposed' | 'dense'} for every stripe kernel of `model` at a square input
    of `resolution` on the model's device; every stripe 'decomposed' (SLaK's form) without a
    resolution. The map each stripe sees comes from one batch-1 forward pass with hooks."""
    stripes = {name: m for name, m in model.named_modules() if isinstance(m, StripeLK)}
    if not stripes:
        return {}
    if resolution is None:
        return {name: "decomposed" for name in stripes}
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            shapes.setdefault(name, tuple(args[0].shape))
        return hook

    hooks = [m.register_forward_pre_hook(record(name)) for name, m in stripes.items()]
    param = next(model.parameters())
    chans = in_chans or _in_chans(model)
    was_training = model.training
    try:
        model.eval()
        model(torch.zeros(1, chans, resolution, resolution, device=param.device, dtype=param.dtype))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    forms = {}
    for name, m in stripes.items():
        if name not in shapes:  # never reached by the forward pass
            forms[name] = "decomposed"
            continue
        _, c, h, w = shapes[name]
        small = m.reparam if m.small is not None and m.reparam > m.n else 0  # folded into k x n otherwise
        forms[name] = stripe_form(c, h, w, m.k, m.n, small, param.device, param.dtype)
    return forms


def _in_chans(model: nn.Module) -> int:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    raise ValueError("cannot tell the model's input channels; pass in_chans")


def reparameterize(model: nn.Module, inplace: bool = False, *, resolution: int | None = None,
                   in_chans: int | None = None, stripe_forms: dict[str, str] | None = None) -> nn.Module:
    """The deploy form of `model`, in eval mode (a deep copy unless `inplace`).

    Every large-kernel module (all its branches, their BNs and the positional embedding) becomes
    one `DeployDWConv` (a `PartialChannels` keeps its split around the merged mixer); conv+BN
    pairs (stems, transitions, 1x1 convs), RepLK/ConvFFN pre-BNs, UniRepLKNet's fc2+BN and the
    BN after its kernel, and a `bn` head's BN are folded too. Outputs equal the training form's
    in eval mode up to float rounding.

    A stripe kernel becomes SLaK's decomposed `DeployStripeConv` (2kn MACs per pixel) unless the
    dense k x k merge is measured faster for the map it sees at `resolution` (see
    `lknas.ops.stripe_form`); `stripe_forms` ({module name: form}, as a deploy model's
    `stripe_forms` attribute or a deploy checkpoint holds them) fixes the forms instead. The
    deploy model carries the forms used as `stripe_forms`.
    """
    if stripe_forms is not None:
        bad = {k: v for k, v in stripe_forms.items() if v not in FORMS}
        if bad:
            raise ValueError(f"stripe_forms: unknown form(s) {bad}; use {' or '.join(FORMS)}")
        forms = dict(stripe_forms)
    else:
        forms = stripe_forms_at(model, resolution, in_chans)
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    _reparam(model, forms)
    known = dict(getattr(model, "stripe_forms", None) or {})  # an already deployed model keeps its forms
    model.stripe_forms = {**known, **forms}
    return model.eval()


def is_deployed(model: nn.Module) -> bool:
    """True when no training-form kernel module and no unfused ConvBN remains."""
    return not any(
        _is_training_kernel(m) or (isinstance(m, ConvBN) and not m.fused) for m in model.modules()
    )
