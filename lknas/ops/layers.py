"""Small layers shared by the blocks: GRN, SE, ConvBN (fusable), norms and DropPath from timm."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import DropPath, LayerNorm, LayerNorm2d
from torch import nn

__all__ = ["GRN", "SE", "ConvBN", "LayerNorm", "LayerNorm2d", "DropPath", "fold_bn", "fuse_linear_bn"]


def fold_bn(
    weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d | nn.BatchNorm1d
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BN that follows a conv/linear (output channels first) into it.

    t = gamma / sqrt(var + eps); W' = W * t; b' = beta + (b - mean) * t.
    """
    std = (bn.running_var + bn.eps).sqrt()
    gamma = bn.weight if bn.weight is not None else torch.ones_like(std)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(std)
    t = gamma / std
    b = torch.zeros_like(std) if bias is None else bias
    w = weight * t.reshape(-1, *([1] * (weight.dim() - 1)))
    return w, beta + (b - bn.running_mean) * t


class GRN(nn.Module):
    """Global Response Normalization (ConvNeXt V2): gamma * (X * N) + beta + X with
    G_c = ||X_c||_2 over H, W and N = G / (mean_c G + eps); gamma and beta start at zero."""

    def __init__(self, dim: int, eps: float = 1e-6, channels_last: bool = True):
        super().__init__()
        self.eps = eps
        self.channels_last = channels_last
        self.weight = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            spatial, cdim, shape = (1, 2), -1, (1, 1, 1, -1)
        else:
            spatial, cdim, shape = (2, 3), 1, (1, -1, 1, 1)
        g = x.norm(p=2, dim=spatial, keepdim=True)
        n = g / (g.mean(dim=cdim, keepdim=True) + self.eps)
        return x + torch.addcmul(self.bias.view(shape), self.weight.view(shape), x * n)


class SE(nn.Module):
    """UniRepLKNet's SEBlock on NCHW maps: avgpool, 1x1 C->C/r (bias), ReLU, 1x1 back (bias), sigmoid."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.down = nn.Conv2d(channels, hidden, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.up = nn.Conv2d(hidden, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        s = self.up(self.act(self.down(s)))
        return x * torch.sigmoid(s)


class ConvBN(nn.Module):
    """conv (no bias) + BatchNorm2d + optional activation; `fuse()` folds the BN into the conv."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        act: type[nn.Module] | None = None,
    ):
        super().__init__()
        self.conv = nn.Conv2d(
            in_chs, out_chs, kernel_size, stride=stride, padding=kernel_size // 2, groups=groups, bias=False
        )
        self.bn: nn.Module = nn.BatchNorm2d(out_chs)
        self.act = act() if act is not None else nn.Identity()

    @property
    def fused(self) -> bool:
        return not isinstance(self.bn, nn.BatchNorm2d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    @torch.no_grad()
    def fuse(self) -> None:
        """Replace conv+BN by one conv with bias (eval-mode statistics), in place."""
        if self.fused:
            return
        c = self.conv
        w, b = fold_bn(c.weight, c.bias, self.bn)
        conv = nn.Conv2d(
            c.in_channels, c.out_channels, c.kernel_size, stride=c.stride, padding=c.padding,
            dilation=c.dilation, groups=c.groups, bias=True,
        ).to(w)
        conv.weight.copy_(w)
        conv.bias.copy_(b)
        self.conv = conv
        self.bn = nn.Identity()


@torch.no_grad()
def fuse_linear_bn(linear: nn.Linear, bn: nn.BatchNorm2d) -> nn.Linear:
    """A Linear with bias equal to `bn(linear(x))` (the BN acting on the Linear's output features)."""
    w, b = fold_bn(linear.weight, linear.bias, bn)
    out = nn.Linear(linear.in_features, linear.out_features, bias=True).to(w)
    out.weight.copy_(w)
    out.bias.copy_(b)
    return out
