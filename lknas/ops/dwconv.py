"""The single entry point of every stride-1 'same' depthwise convolution with a large kernel.

All large-kernel branches and the deploy convolution call `dwconv2d`, so a faster algorithm can
later replace its body without touching the models.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["dwconv2d", "DepthwiseConv2d"]


def dwconv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Depthwise stride-1 convolution with 'same' zero padding.

    x: (B, C, H, W); weight: (C, 1, kh, kw) with odd kh, kw (square or rectangular);
    bias: (C,) or None. Returns (B, C, H, W).
    """
    kh, kw = weight.shape[-2:]
    return F.conv2d(x, weight, bias, padding=(kh // 2, kw // 2), groups=x.shape[1])


class DepthwiseConv2d(nn.Conv2d):
    """An `nn.Conv2d` (so weight init, sparsity masks and FLOP counters see it as one) whose
    forward is `dwconv2d`. Kernel sides must be odd; padding is 'same'."""

    def __init__(self, channels: int, kernel_size: int | tuple[int, int], bias: bool = False):
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        if kh % 2 == 0 or kw % 2 == 0 or kh < 1 or kw < 1:
            raise ValueError(f"depthwise kernel sides must be odd and >= 1, got {kh}x{kw}")
        super().__init__(
            channels, channels, (kh, kw), stride=1, padding=(kh // 2, kw // 2), groups=channels, bias=bias
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dwconv2d(x, self.weight, self.bias)
