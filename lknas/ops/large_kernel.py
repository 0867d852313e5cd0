"""Large-kernel depthwise token mixers (dense, stripe, peripheral, dilated) and their deploy form.

Every training-form module has BN per branch and bias-free convs (unless noted) and a
`merged_kernel()` that returns, in eval mode, the exact single depthwise kernel (C, 1, K, K) and
bias (C,) it is equivalent to; `DeployDWConv.from_module` builds the deploy conv from it. All
non-dilated depthwise convs go through `lknas.ops.dwconv.dwconv2d`.
"""
from __future__ import annotations

import torch
from torch import nn

from lknas.arch import KernelSpec
from lknas.ops.deploy import DeployDWConv, DeployStripeConv, dilate_kernel, pad_kernel
from lknas.ops.dwconv import DepthwiseConv2d, dwconv2d
from lknas.ops.kernel_rules import DILATED_BRANCHES, resolved_kernel
from lknas.ops.layers import fold_bn
from lknas.ops.peripheral import SHARE_SCALES, peripheral_grid

__all__ = [
    "DILATED_BRANCHES",
    "DWConvBN",
    "DenseLK",
    "StripeLK",
    "PeripheralLK",
    "DilatedLK",
    "DeployDWConv",
    "DeployStripeConv",
    "PartialChannels",
    "make_large_kernel",
    "resolved_kernel",
    "n_mixed_channels",
    "LARGE_KERNEL_MODULES",
    "DEPLOY_KERNEL_MODULES",
    "pad_kernel",
    "dilate_kernel",
]


def _check_odd(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value % 2 == 0:
        raise ValueError(f"{name} must be an odd int >= 1, got {value!r}")


class DWConvBN(nn.Module):
    """One depthwise branch: conv (no bias) + BN; or, with `norm=False`, a conv alone (with a bias
    if `bias=True`, as ConvNeXt's DW 7x7). Dilated branches use F.conv2d with dilation."""

    def __init__(
        self,
        channels: int,
        kernel_size: int | tuple[int, int],
        dilation: int = 1,
        bias: bool = False,
        norm: bool = True,
    ):
        super().__init__()
        self.dilation = dilation
        if dilation == 1:
            self.conv: nn.Conv2d = DepthwiseConv2d(channels, kernel_size, bias=bias)
        else:
            if not isinstance(kernel_size, int):
                raise ValueError("dilated branches must be square")
            _check_odd("kernel_size", kernel_size)
            self.conv = nn.Conv2d(
                channels, channels, kernel_size, padding=dilation * (kernel_size // 2),
                dilation=dilation, groups=channels, bias=bias,
            )
        self.bn: nn.Module = nn.BatchNorm2d(channels) if norm else nn.Identity()

    @property
    def effective_size(self) -> tuple[int, int]:
        kh, kw = self.conv.kernel_size
        return self.dilation * (kh - 1) + 1, self.dilation * (kw - 1) + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))

    def merged_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(C,1,h,w) spread kernel and (C,) bias equal to this branch in eval mode."""
        w = dilate_kernel(self.conv.weight, self.dilation)
        b = self.conv.bias
        if isinstance(self.bn, nn.BatchNorm2d):
            return fold_bn(w, b, self.bn)
        return w, (torch.zeros(w.shape[0], dtype=w.dtype, device=w.device) if b is None else b)


def _sum_kernels(k: int, parts: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    weight = sum(pad_kernel(w, k) for w, _ in parts)
    bias = sum(b for _, b in parts)
    return weight, bias


class DenseLK(nn.Module):
    """Dense depthwise k x k conv + BN, plus a parallel reparam x reparam conv + BN when
    reparam > 0 (RepLKNet, SLaK). `bias=True` with `norm` unset gives ConvNeXt's plain DW conv
    with bias and no BN (only without a reparam branch); `norm=False` gives a bare conv."""

    def __init__(self, channels: int, k: int, reparam: int = 0, bias: bool = False, norm: bool | None = None):
        super().__init__()
        _check_odd("k", k)
        if reparam:
            _check_odd("reparam", reparam)
            if reparam >= k:
                raise ValueError(f"reparam kernel ({reparam}) must be smaller than k ({k})")
            if bias or norm is False:
                raise ValueError("a dense kernel with a reparam branch uses conv+BN branches")
        norm = (not bias) if norm is None else norm
        self.channels, self.k, self.reparam = channels, k, reparam
        self.lk = DWConvBN(channels, k, bias=bias, norm=norm)
        self.small = DWConvBN(channels, reparam) if reparam else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lk(x)
        if self.small is not None:
            y = y + self.small(x)
        return y

    def merged_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [self.lk.merged_kernel()]
        if self.small is not None:
            parts.append(self.small.merged_kernel())
        return _sum_kernels(self.k, parts)


class StripeLK(nn.Module):
    """SLaK's decomposed kernel: DW k x n conv+BN + DW n x k conv+BN (+ reparam x reparam conv+BN)."""

    def __init__(self, channels: int, k: int, n: int = 5, reparam: int = 5):
        super().__init__()
        _check_odd("k", k)
        _check_odd("n", n)
        if n >= k:
            raise ValueError(f"stripe width n ({n}) must be smaller than k ({k})")
        if reparam:
            _check_odd("reparam", reparam)
            if reparam >= k:
                raise ValueError(f"reparam kernel ({reparam}) must be smaller than k ({k})")
        self.channels, self.k, self.n, self.reparam = channels, k, n, reparam
        self.lk_h = DWConvBN(channels, (k, n))  # padding (k//2, n//2)
        self.lk_w = DWConvBN(channels, (n, k))  # padding (n//2, k//2)
        self.small = DWConvBN(channels, reparam) if reparam else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lk_h(x) + self.lk_w(x)
        if self.small is not None:
            y = y + self.small(x)
        return y

    def merged_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [self.lk_h.merged_kernel(), self.lk_w.merged_kernel()]
        if self.small is not None:
            parts.append(self.small.merged_kernel())
        weight = sum(pad_kernel(w, self.k, self.k) for w, _ in parts)
        return weight, sum(b for _, b in parts)

    def stripe_kernels(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Eval-mode decomposed equivalent: (k x n kernel, n x k kernel, small kernel or None, bias).
        The small kernel is folded into the k x n stripe when it fits (reparam <= n)."""
        (wh, bh), (ww, bw) = self.lk_h.merged_kernel(), self.lk_w.merged_kernel()
        bias, small = bh + bw, None
        if self.small is not None:
            ws, bs = self.small.merged_kernel()
            bias = bias + bs
            if self.reparam <= self.n:
                wh = wh + pad_kernel(ws, self.k, self.n)
            else:
                small = ws
        return wh, ww, small, bias


class PeripheralLK(nn.Module):
    """PeLK's peripheral conv: a (C,1,k',k') parameter expanded to k x k by the sharing grid
    (`repeat_interleave` on both axes), + BN, + optional reparam branch, + optional kernel-wise
    positional embedding.

    `pos_embed` h (C, K0, K0), K0 >= k odd, is created by the caller once per stage and shared by
    all its blocks; a kernel smaller than K0 uses its centre k x k crop. It is added to the
    expanded kernel in weight space, so the applied kernel E(w) + h varies inside a shared cell:
    what PeLK's embedding is for (telling apart positions that share one weight). The literal
    formula sum_ij w(i,j) (X(x+i, y+j) + h(i,j)) only adds the per-channel constant <w, h>, which
    the following BN absorbs. h is added only on the kernel's support (the positions where E(w) is
    non-zero), so a cell pruned by dynamic sparsity stays zero and the sparse counts hold; without
    sparsity the support is the whole kernel. The deploy kernel is the same E(w) + h, BN-folded.
    """

    def __init__(
        self,
        channels: int,
        k: int,
        r_c: int,
        m: int = 2,
        reparam: int = 0,
        pos_embed: nn.Parameter | None = None,
        grid_order: str = "fine_centre",
        share_scale: str = "none",
    ):
        super().__init__()
        grid = peripheral_grid(k, r_c, m, grid_order)
        if reparam:
            _check_odd("reparam", reparam)
            if reparam >= k:
                raise ValueError(f"reparam kernel ({reparam}) must be smaller than k ({k})")
        if share_scale not in SHARE_SCALES:
            raise ValueError(f"share_scale must be one of {', '.join(SHARE_SCALES)}, got {share_scale!r}")
        self.channels, self.k, self.r_c, self.m, self.reparam = channels, k, r_c, m, reparam
        self.grid_order, self.share_scale = grid_order, share_scale
        self.register_buffer("grid", torch.tensor(grid, dtype=torch.long), persistent=False)
        self.weight = nn.Parameter(torch.empty(channels, 1, len(grid), len(grid)))
        # 1 / sqrt(taps sharing each compact weight): (k', k'), 1 in the fine centre
        g = torch.tensor(grid, dtype=torch.float32)
        cell = (g[:, None] * g[None, :]).rsqrt()
        if share_scale in ("lr", "both"):  # weight = cell * v: AdamW moves each tap by about lr * cell
            self.register_buffer("cell_scale", cell, persistent=False)
        else:
            self.cell_scale = None
        nn.init.trunc_normal_(self.weight, std=0.02)
        if share_scale in ("init", "lr"):  # init: each tap's std 0.02 / sqrt(s); lr: the kernel as "none"
            with torch.no_grad():
                self.weight.mul_(cell if share_scale == "init" else 1.0 / cell)
        self.bn = nn.BatchNorm2d(channels)
        self.small = DWConvBN(channels, reparam) if reparam else None
        if pos_embed is not None:
            c0, kh, kw = pos_embed.shape
            if c0 != channels or kh != kw or kh < k or kh % 2 == 0:
                raise ValueError(
                    f"pos_embed must have shape ({channels}, K0, K0) with odd K0 >= {k}, got {tuple(pos_embed.shape)}"
                )
        self.pos_embed = pos_embed  # registered here too; shared, so listed once by .parameters()

    @property
    def k_prime(self) -> int:
        return self.weight.shape[-1]

    def compact_weight(self) -> torch.Tensor:
        """The (C, 1, k', k') shared weights: the parameter, times `cell_scale` when share_scale
        scales the learning rate."""
        return self.weight if self.cell_scale is None else self.weight * self.cell_scale

    def expanded_weight(self) -> torch.Tensor:
        """The (C, 1, k, k) kernel; gradients flow back to the compact parameter."""
        w = self.compact_weight().repeat_interleave(self.grid, dim=2, output_size=self.k)
        return w.repeat_interleave(self.grid, dim=3, output_size=self.k)

    def applied_weight(self) -> torch.Tensor:
        """The (C, 1, k, k) kernel the conv applies: E(w), plus the positional embedding's centre
        k x k crop on E(w)'s support when there is one."""
        w = self.expanded_weight()
        if self.pos_embed is None:
            return w
        off = (self.pos_embed.shape[-1] - self.k) // 2
        h = self.pos_embed[:, None, off:off + self.k, off:off + self.k]
        return w + h * (w != 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(dwconv2d(x, self.applied_weight()))
        if self.small is not None:
            y = y + self.small(x)
        return y

    def merged_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [fold_bn(self.applied_weight(), None, self.bn)]
        if self.small is not None:
            parts.append(self.small.merged_kernel())
        return _sum_kernels(self.k, parts)


class DilatedLK(nn.Module):
    """UniRepLKNet's dilated reparam block: DW k x k conv+BN plus the dilated DW conv+BN branches
    of `DILATED_BRANCHES`. Sizes without a table entry (1, 3, >= 19) fall back to the plain
    k x k conv+BN alone."""

    def __init__(self, channels: int, k: int):
        super().__init__()
        _check_odd("k", k)
        self.channels, self.k = channels, k
        kernels, dilations = DILATED_BRANCHES.get(k, ((), ()))
        self.lk = DWConvBN(channels, k)
        self.branch_kernels, self.branch_dilations = kernels, dilations
        branches = []
        for ks, r in zip(kernels, dilations):
            assert r * (ks - 1) + 1 <= k, f"dilated branch {ks}/{r} exceeds k={k}"
            branches.append(DWConvBN(channels, ks, dilation=r))
        self.dilated = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lk(x)
        for branch in self.dilated:
            y = y + branch(x)
        return y

    def merged_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        return _sum_kernels(self.k, [self.lk.merged_kernel()] + [b.merged_kernel() for b in self.dilated])


class PartialChannels(nn.Module):
    """PeLK's partial conv: the first `n_mixed` channels go through `mixer`, the rest is identity."""

    def __init__(self, mixer: nn.Module, channels: int, n_mixed: int):
        super().__init__()
        if not 1 <= n_mixed <= channels:
            raise ValueError(f"n_mixed must be in [1, {channels}], got {n_mixed}")
        self.mixer, self.channels, self.n_mixed = mixer, channels, n_mixed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.n_mixed == self.channels:
            return self.mixer(x)
        mixed, rest = x.split((self.n_mixed, self.channels - self.n_mixed), dim=1)
        return torch.cat((self.mixer(mixed), rest), dim=1)


# training-form kernel modules (each has `merged_kernel`) and their deploy form
LARGE_KERNEL_MODULES: tuple[type[nn.Module], ...] = (DenseLK, StripeLK, PeripheralLK, DilatedLK)
DEPLOY_KERNEL_MODULES: tuple[type[nn.Module], ...] = (DeployDWConv, DeployStripeConv)


def n_mixed_channels(channels: int, partial: float) -> int:
    """Channels that go through the large kernel: max(1, round(channels * partial))."""
    if partial >= 1.0:
        return channels
    return max(1, min(channels, round(channels * partial)))


def make_large_kernel(
    kernel: KernelSpec,
    channels: int,
    k: int,
    pos_embed: nn.Parameter | None = None,
    *,
    bias: bool = False,
    norm: bool = True,
) -> nn.Module:
    """The mixer of one block from its stage's `KernelSpec` at size `k` for `channels` channels,
    wrapped in `PartialChannels` when kernel.partial < 1 (`pos_embed` then has n_mixed channels).

    Defaults: reparam None -> 0, stripe_n None -> 5, r_c None -> 2 (PeLK's 5x5 fine centre),
    m None -> 2. A reparam branch not smaller than k is dropped; a stripe kernel with n >= k and a
    dilated kernel without a branch table entry become a dense kernel. `bias`/`norm` apply only to
    a resulting single-branch dense conv (ConvNeXt: bias=True, norm=False; UniRepLKNet, whose
    block has its own BN: norm=False); multi-branch kernels always use conv+BN branches.
    """
    n_mixed = n_mixed_channels(channels, kernel.partial)
    kind, reparam = resolved_kernel(kernel, k)

    if kind == "dense":
        if reparam:
            mixer: nn.Module = DenseLK(n_mixed, k, reparam)
        else:
            mixer = DenseLK(n_mixed, k, bias=bias, norm=norm and not bias)
    elif kind == "stripe":
        mixer = StripeLK(n_mixed, k, n=kernel.stripe_n or 5, reparam=reparam)
    elif kind == "peripheral":
        r_c = 2 if kernel.r_c is None else kernel.r_c
        mixer = PeripheralLK(n_mixed, k, r_c, m=kernel.m or 2, reparam=reparam, pos_embed=pos_embed,
                             grid_order=kernel.grid or "fine_centre", share_scale=kernel.share_scale or "none")
    elif kind == "dilated":
        mixer = DilatedLK(n_mixed, k)
    else:
        raise ValueError(f"unknown kernel type {kernel.type!r}")
    if n_mixed < channels:
        return PartialChannels(mixer, channels, n_mixed)
    return mixer
