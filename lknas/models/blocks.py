"""Blocks: RepLK + ConvFFN (RepLKNet), ConvNeXt V1/V2 (also SLaK, PeLK), UniRepLKNet.

Each block takes its token mixer from `make_large_kernel`, so every block type works with every
kernel type. `fuse_()` folds the block's own BN pairs in place (eval statistics) once its large
kernel has been replaced by its deploy form (see `lknas.models.reparam`).
"""
from __future__ import annotations

import torch
from torch import nn

from lknas.arch import KernelSpec
from lknas.ops.large_kernel import DEPLOY_KERNEL_MODULES, make_large_kernel
from lknas.ops.layers import GRN, SE, ConvBN, DropPath, LayerNorm, fuse_linear_bn

__all__ = ["RepLKBlock", "ConvFFN", "ConvNeXtBlock", "UniRepLKBlock"]


def _drop_path(rate: float) -> nn.Module:
    return DropPath(rate) if rate > 0 else nn.Identity()


@torch.no_grad()
def _fold_pre_bn_into_1x1(bn: nn.BatchNorm2d, conv: nn.Conv2d) -> None:
    """conv(bn(x)) -> conv'(x) for a 1x1, unpadded, ungrouped conv that has a bias (exact)."""
    t = bn.weight / (bn.running_var + bn.eps).sqrt()
    s = bn.bias - bn.running_mean * t
    w = conv.weight  # (out, in, 1, 1)
    conv.bias.add_(w[:, :, 0, 0] @ s)
    conv.weight.mul_(t.view(1, -1, 1, 1))


def _residual(x: torch.Tensor, branch: torch.Tensor, shortcut: bool) -> torch.Tensor:
    """x + branch, or the branch alone for a block without its identity shortcut."""
    return x + branch if shortcut else branch


class RepLKBlock(nn.Module):
    """RepLKNet block: x + DropPath(pw2(ReLU(LK(pw1(BN(x)))))); pw1 = 1x1 conv+BN+ReLU
    (C -> C*dw_ratio), pw2 = 1x1 conv+BN. `shortcut=False` drops the leading `x +` (RepLKNet's
    ablation)."""

    def __init__(
        self,
        dim: int,
        kernel: KernelSpec,
        k: int,
        dw_ratio: float = 1.0,
        drop_path: float = 0.0,
        pos_embed: nn.Parameter | None = None,
        shortcut: bool = True,
    ):
        super().__init__()
        self.shortcut = shortcut
        inner = int(dim * dw_ratio)
        self.pre_bn: nn.Module = nn.BatchNorm2d(dim)
        self.pw1 = ConvBN(dim, inner, 1, act=nn.ReLU)
        self.lk = make_large_kernel(kernel, inner, k, pos_embed)
        self.lk_act = nn.ReLU()
        self.pw2 = ConvBN(inner, dim, 1)
        self.drop_path = _drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _residual(x, self.drop_path(self.pw2(self.lk_act(self.lk(self.pw1(self.pre_bn(x)))))), self.shortcut)

    def fuse_(self) -> None:
        self.pw1.fuse()
        self.pw2.fuse()
        if isinstance(self.pre_bn, nn.BatchNorm2d):
            _fold_pre_bn_into_1x1(self.pre_bn, self.pw1.conv)
            self.pre_bn = nn.Identity()


class ConvFFN(nn.Module):
    """RepLKNet ConvFFN: x + DropPath(pw2(GELU(pw1(BN(x))))), 1x1 convs with BN."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0, drop_path: float = 0.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.pre_bn: nn.Module = nn.BatchNorm2d(dim)
        self.pw1 = ConvBN(dim, hidden, 1)
        self.act = nn.GELU()
        self.pw2 = ConvBN(hidden, dim, 1)
        self.drop_path = _drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.pw2(self.act(self.pw1(self.pre_bn(x)))))

    def fuse_(self) -> None:
        self.pw1.fuse()
        self.pw2.fuse()
        if isinstance(self.pre_bn, nn.BatchNorm2d):
            _fold_pre_bn_into_1x1(self.pre_bn, self.pw1.conv)
            self.pre_bn = nn.Identity()


class ConvNeXtBlock(nn.Module):
    """ConvNeXt V1/V2 block (also SLaK, PeLK):
    x + DropPath(gamma * fc2(GRN?(GELU(fc1(LN(LK(x))))))), LN and MLP channels-last.

    `plain=True` (ConvNeXt: dense kernel, no reparam, no sparsity) makes the mixer one DW conv
    with bias and no BN, exactly as ConvNeXt; otherwise each kernel branch is conv+BN.
    `shortcut=False` drops the leading `x +`.
    """

    def __init__(
        self,
        dim: int,
        kernel: KernelSpec,
        k: int,
        mlp_ratio: float = 4.0,
        layer_scale: float | None = 1e-6,
        grn: bool = False,
        drop_path: float = 0.0,
        pos_embed: nn.Parameter | None = None,
        plain: bool = False,
        shortcut: bool = True,
    ):
        super().__init__()
        self.shortcut = shortcut
        hidden = int(dim * mlp_ratio)
        self.lk = make_large_kernel(kernel, dim, k, pos_embed, bias=plain, norm=not plain)
        self.norm = LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.grn = GRN(hidden, channels_last=True) if grn else nn.Identity()
        self.fc2 = nn.Linear(hidden, dim)
        self.gamma = nn.Parameter(layer_scale * torch.ones(dim)) if layer_scale else None
        self.drop_path = _drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lk(x).permute(0, 2, 3, 1)
        y = self.fc2(self.grn(self.act(self.fc1(self.norm(y)))))
        if self.gamma is not None:
            y = y * self.gamma
        return _residual(x, self.drop_path(y.permute(0, 3, 1, 2)), self.shortcut)


class UniRepLKBlock(nn.Module):
    """UniRepLKNet block:
    x + DropPath(gamma * BN(fc2(GRN(GELU(fc1(SE(BN(LK(x))))))))), fc2 without bias.

    The mixer is built with `norm=False` when it is a single plain conv (dense without reparam,
    or a dilated size without branch table, e.g. 3), since the block's BN follows it, as in
    UniRepLKNet. `shortcut=False` drops the leading `x +`.
    """

    def __init__(
        self,
        dim: int,
        kernel: KernelSpec,
        k: int,
        mlp_ratio: float = 4.0,
        layer_scale: float | None = 1e-6,
        grn: bool = True,
        se: bool = True,
        drop_path: float = 0.0,
        pos_embed: nn.Parameter | None = None,
        shortcut: bool = True,
    ):
        super().__init__()
        self.shortcut = shortcut
        hidden = int(dim * mlp_ratio)
        self.lk = make_large_kernel(kernel, dim, k, pos_embed, norm=False)
        self.norm: nn.Module = nn.BatchNorm2d(dim)
        self.se = SE(dim, 4) if se else nn.Identity()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.grn = GRN(hidden, channels_last=True) if grn else nn.Identity()
        self.fc2 = nn.Linear(hidden, dim, bias=False)
        self.fc2_bn: nn.Module = nn.BatchNorm2d(dim)
        self.gamma = nn.Parameter(layer_scale * torch.ones(dim)) if layer_scale else None
        self.drop_path = _drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.se(self.norm(self.lk(x))).permute(0, 2, 3, 1)
        y = self.fc2(self.grn(self.act(self.fc1(y)))).permute(0, 3, 1, 2)
        y = self.fc2_bn(y)
        if self.gamma is not None:
            y = y * self.gamma.view(1, -1, 1, 1)
        return _residual(x, self.drop_path(y), self.shortcut)

    @torch.no_grad()
    def fuse_(self) -> None:
        if isinstance(self.fc2_bn, nn.BatchNorm2d):
            self.fc2 = fuse_linear_bn(self.fc2, self.fc2_bn)
            self.fc2_bn = nn.Identity()
        # the BN after a full-width deploy kernel folds into it; with partial channels it stays
        if isinstance(self.norm, nn.BatchNorm2d) and isinstance(self.lk, DEPLOY_KERNEL_MODULES):
            self.lk.fold_bn_(self.norm)
            self.norm = nn.Identity()


@torch.no_grad()
def zero_init_last(model: nn.Module) -> int:
    """Zero the last BatchNorm's scale of every residual branch (RepLKNet's block and ConvFFN,
    UniRepLKNet's block), so that each block starts as the identity: timm's `zero_init_last`
    for ResNets (Goyal et al., 2017). Returns how many were zeroed."""
    zeroed = 0
    for m in model.modules():
        bn = None
        if isinstance(m, (RepLKBlock, ConvFFN)) and isinstance(m.pw2.bn, nn.BatchNorm2d):
            bn = m.pw2.bn
        elif isinstance(m, UniRepLKBlock) and isinstance(m.fc2_bn, nn.BatchNorm2d):
            bn = m.fc2_bn
        if bn is not None and bn.weight is not None:
            bn.weight.zero_()
            zeroed += 1
    return zeroed
