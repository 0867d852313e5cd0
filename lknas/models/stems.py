"""Stems (input -> stride 4) and the downsample layers between stages."""
from __future__ import annotations

from torch import nn

from lknas.arch import DOWNSAMPLE_REDUCTION, STEM_REDUCTION
from lknas.ops.layers import ConvBN, LayerNorm2d

__all__ = ["make_stem", "make_downsample", "STEM_REDUCTION", "DOWNSAMPLE_REDUCTION"]



def make_stem(kind: str, in_chans: int, width: int) -> nn.Module:
    """`patch`: 4x4 s4 conv (bias) + LayerNorm2d (ConvNeXt, SLaK, PeLK).
    `replk`: 3x3 s2 conv, DW 3x3, 1x1, DW 3x3 s2, each + BN + ReLU (RepLKNet).
    `unirep`: 3x3 s2 conv to C/2 + LN + GELU, 3x3 s2 conv to C + LN (UniRepLKNet)."""
    if kind == "patch":
        return nn.Sequential(nn.Conv2d(in_chans, width, 4, stride=4), LayerNorm2d(width))
    if kind == "replk":
        return nn.Sequential(
            ConvBN(in_chans, width, 3, stride=2, act=nn.ReLU),
            ConvBN(width, width, 3, groups=width, act=nn.ReLU),
            ConvBN(width, width, 1, act=nn.ReLU),
            ConvBN(width, width, 3, stride=2, groups=width, act=nn.ReLU),
        )
    if kind == "unirep":
        half = max(1, width // 2)
        return nn.Sequential(
            nn.Conv2d(in_chans, half, 3, stride=2, padding=1),
            LayerNorm2d(half),
            nn.GELU(),
            nn.Conv2d(half, width, 3, stride=2, padding=1),
            LayerNorm2d(width),
        )
    raise ValueError(f"unknown stem type {kind!r}")


def make_downsample(kind: str, in_chs: int, out_chs: int) -> nn.Module:
    """`patch`: LayerNorm2d + 2x2 s2 conv (ConvNeXt); `conv3`: 3x3 s2 conv + LayerNorm2d
    (UniRepLKNet); `replk`: 1x1 conv+BN+ReLU then DW 3x3 s2 conv+BN+ReLU (RepLKNet transition);
    `none`: identity, or a 1x1 conv (bias) when the widths differ."""
    if kind == "patch":
        return nn.Sequential(LayerNorm2d(in_chs), nn.Conv2d(in_chs, out_chs, 2, stride=2))
    if kind == "conv3":
        return nn.Sequential(nn.Conv2d(in_chs, out_chs, 3, stride=2, padding=1), LayerNorm2d(out_chs))
    if kind == "replk":
        return nn.Sequential(
            ConvBN(in_chs, out_chs, 1, act=nn.ReLU),
            ConvBN(out_chs, out_chs, 3, stride=2, groups=out_chs, act=nn.ReLU),
        )
    if kind == "none":
        return nn.Identity() if in_chs == out_chs else nn.Conv2d(in_chs, out_chs, 1)
    raise ValueError(f"unknown downsample type {kind!r}")

