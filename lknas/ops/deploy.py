"""Deploy forms of the large kernels and the kernel algebra used to build them."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from lknas.ops.dwconv import DepthwiseConv2d
from lknas.ops.layers import fold_bn

if TYPE_CHECKING:
    from lknas.ops.large_kernel import StripeLK

__all__ = ["DeployDWConv", "DeployStripeConv", "pad_kernel", "dilate_kernel"]


def pad_kernel(weight: torch.Tensor, kh: int, kw: int | None = None) -> torch.Tensor:
    """Zero-pad a (C, 1, h, w) kernel (odd sides) to the centre of kh x kw."""
    kw = kh if kw is None else kw
    h, w = weight.shape[-2:]
    if h > kh or w > kw:
        raise ValueError(f"cannot pad a {h}x{w} kernel to {kh}x{kw}")
    ph, pw = (kh - h) // 2, (kw - w) // 2
    return F.pad(weight, (pw, pw, ph, ph))


def dilate_kernel(weight: torch.Tensor, dilation: int) -> torch.Tensor:
    """Spread a (C, 1, k, k) kernel by inserting dilation-1 zeros between taps: size d(k-1)+1."""
    if dilation == 1:
        return weight
    c, one, kh, kw = weight.shape
    out = weight.new_zeros(c, one, dilation * (kh - 1) + 1, dilation * (kw - 1) + 1)
    out[:, :, ::dilation, ::dilation] = weight
    return out


class DeployDWConv(DepthwiseConv2d):
    """The deploy form of any kernel module: one DW K x K conv with bias, via `dwconv2d`."""

    def __init__(self, channels: int, k: int):
        super().__init__(channels, k, bias=True)
        self.k = k

    @classmethod
    @torch.no_grad()
    def from_module(cls, module: nn.Module) -> DeployDWConv:
        weight, bias = module.merged_kernel()
        conv = cls(weight.shape[0], weight.shape[-1]).to(weight)
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
        return conv

    def merged_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.weight, self.bias

    @torch.no_grad()
    def fold_bn_(self, bn: nn.BatchNorm2d) -> None:
        """Absorb an eval-mode BN that follows this conv."""
        w, b = fold_bn(self.weight, self.bias, bn)
        self.weight.copy_(w)
        self.bias.copy_(b)


class DeployStripeConv(nn.Module):
    """Decomposed deploy form of a `StripeLK` (SLaK's inference model): DW k x n conv (with the
    small kernel folded in when it fits, and the bias) + DW n x k conv (+ the small conv when it
    does not fit), all via `dwconv2d`. Costs k*n*2 MACs per pixel instead of k*k."""

    def __init__(self, channels: int, k: int, n: int, small: int = 0):
        super().__init__()
        self.channels, self.k, self.n = channels, k, n
        self.lk_h = DepthwiseConv2d(channels, (k, n), bias=True)
        self.lk_w = DepthwiseConv2d(channels, (n, k), bias=False)
        self.small = DepthwiseConv2d(channels, small, bias=False) if small else None

    @classmethod
    @torch.no_grad()
    def from_module(cls, module: StripeLK) -> DeployStripeConv:
        wh, ww, ws, bias = module.stripe_kernels()
        conv = cls(module.channels, module.k, module.n, 0 if ws is None else ws.shape[-1]).to(wh)
        conv.lk_h.weight.copy_(wh)
        conv.lk_h.bias.copy_(bias)
        conv.lk_w.weight.copy_(ww)
        if ws is not None:
            conv.small.weight.copy_(ws)
        return conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lk_h(x) + self.lk_w(x)
        if self.small is not None:
            y = y + self.small(x)
        return y

    def merged_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        w = pad_kernel(self.lk_h.weight, self.k) + pad_kernel(self.lk_w.weight, self.k)
        if self.small is not None:
            w = w + pad_kernel(self.small.weight, self.k)
        return w, self.lk_h.bias

    @torch.no_grad()
    def fold_bn_(self, bn: nn.BatchNorm2d) -> None:
        """Absorb an eval-mode BN that follows this module."""
        wh, b = fold_bn(self.lk_h.weight, self.lk_h.bias, bn)
        self.lk_h.weight.copy_(wh)
        self.lk_h.bias.copy_(b)
        for conv in (self.lk_w, self.small):
            if conv is not None:
                conv.weight.copy_(fold_bn(conv.weight, None, bn)[0])
