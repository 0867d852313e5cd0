"""Which weights a `SparsitySpec` masks: `large_kernels` (every branch of every large-kernel
module) or `all` (every conv and linear weight, as SLaK's code does, plus the compact weight of
peripheral kernels, which is a bare parameter rather than a conv's)."""
from __future__ import annotations

from collections.abc import Iterator

from torch import nn

from lknas.ops.large_kernel import DEPLOY_KERNEL_MODULES, LARGE_KERNEL_MODULES, PeripheralLK

_WEIGHTED = (nn.Conv2d, nn.Linear)
_WEIGHTED_TRAINING = _WEIGHTED + (PeripheralLK,)  # PeripheralLK.weight is no conv's weight


def _check(targets: str) -> None:
    if targets not in ("large_kernels", "all"):
        raise ValueError(f"sparsity targets must be 'large_kernels' or 'all', got {targets!r}")


def sparse_parameters(model: nn.Module, targets: str) -> list[nn.Parameter]:
    """The weight tensors a sparsity mask covers in the training form, each once."""
    _check(targets)
    seen: dict[int, nn.Parameter] = {}
    for module in _modules(model, targets, LARGE_KERNEL_MODULES):
        for p in module.parameters():
            if p.dim() >= 2 and p.requires_grad and _is_kernel(p, module):
                seen.setdefault(id(p), p)
    return list(seen.values())


def deploy_sparse_modules(deploy: nn.Module, targets: str) -> Iterator[tuple[str, nn.Module]]:
    """(name, module) of the deploy form's convs/linears whose weights derive from masked ones."""
    _check(targets)
    for name, module in deploy.named_modules():
        if isinstance(module, _WEIGHTED) and (
            targets == "all" or _inside(deploy, name, DEPLOY_KERNEL_MODULES)
        ):
            yield name, module


def _modules(model: nn.Module, targets: str, kinds: tuple[type, ...]) -> Iterator[nn.Module]:
    for module in model.modules():
        if targets == "all" and isinstance(module, _WEIGHTED_TRAINING):
            yield module
        elif targets == "large_kernels" and isinstance(module, kinds):
            yield from (m for m in module.modules())


def _is_kernel(param: nn.Parameter, module: nn.Module) -> bool:
    """Conv/linear weights and compact peripheral weights; never positional embeddings."""
    return any(param is getattr(module, attr, None) for attr in ("weight", "weight_compact"))


def _inside(root: nn.Module, name: str, kinds: tuple[type, ...]) -> bool:
    parts = name.split(".")
    for i in range(len(parts) + 1):
        prefix = ".".join(parts[:i])
        sub = root.get_submodule(prefix) if prefix else root
        if isinstance(sub, kinds):
            return True
    return False
