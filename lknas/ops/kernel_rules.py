"""Which kernel a block really gets: plain integer rules shared by the modules that build kernels
(`lknas.ops.large_kernel`, torch) and the code that prices them before anything is built
(`lknas.models.estimate`, no torch, so a space is validated without importing torch)."""
from __future__ import annotations

from lknas.arch import KernelSpec

__all__ = ["DILATED_BRANCHES", "resolved_kernel"]

# UniRepLKNet's dilated reparam branches: K -> (kernel sizes, dilations).
DILATED_BRANCHES: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {
    17: ((5, 9, 3, 3, 3), (1, 2, 4, 5, 7)),
    15: ((5, 7, 3, 3, 3), (1, 2, 3, 5, 7)),
    13: ((5, 7, 3, 3, 3), (1, 2, 3, 4, 5)),
    11: ((5, 5, 3, 3, 3), (1, 2, 3, 4, 5)),
    9: ((5, 5, 3, 3), (1, 2, 3, 4)),
    7: ((5, 3, 3), (1, 2, 3)),
    5: ((3, 3), (1, 2)),
}


def resolved_kernel(kernel: KernelSpec, k: int) -> tuple[str, int]:
    """(kernel type, reparam size) a block of size `k` really gets from its stage's `KernelSpec`:
    a reparam branch not smaller than k is dropped, a stripe with n >= k and a dilated kernel
    without a branch table entry become dense (see `make_large_kernel`)."""
    reparam = kernel.reparam or 0
    if reparam >= k:
        reparam = 0
    kind = kernel.type
    if kind == "stripe" and (kernel.stripe_n or 5) >= k:
        kind = "dense"
    if kind == "dilated" and k not in DILATED_BRANCHES:
        kind, reparam = "dense", 0
    return kind, reparam
