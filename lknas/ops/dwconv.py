"""The single entry point of every stride-1 'same' depthwise convolution with a large kernel.

All large-kernel branches and the deploy convolution call `dwconv2d`, which picks an exact
algorithm per (device, dtype, layout, shape, grad) from `lknas.ops.dwconv_algos` (direct
`F.conv2d`, stock channels_last `F.conv2d`, whole-map Toeplitz GEMM, row-Toeplitz GEMM, FFT) after
cropping the kernel to what the map can reach. Selection, autotuning and the choice cache live in
`lknas.ops.dwconv_select`.

Layouts: an NCHW or a channels_last input is used as it is (no copy on the way in; an input that
is neither is made NCHW-contiguous), and the output has the input's layout. Under `auto` a
channels_last input only goes to algorithms that read it without a copy.

Switches: `LKNAS_DWCONV=auto|direct|direct_cl|gemm|rows|fft|split|off` (environment; `off` = plain
`F.conv2d` with the full kernel, the code before this fast path) or `set_algorithm(...)` /
`use_algorithm(...)` (Python, wins over the environment); `set_autotune(...)` /
`LKNAS_DWCONV_AUTOTUNE=1`; `LKNAS_DWCONV_VERIFY` (default on: the rule's pick timed against stock
once per machine, `lknas.ops.dwconv_select.verify`); `LKNAS_DWCONV_MAX_WORKSPACE_MB`; `LKNAS_DWCONV_CACHE`.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from lknas.ops import dwconv_select as _select
from lknas.ops.dwconv_algos import ALGORITHMS, layout_of, run_algorithm
from lknas.ops.dwconv_select import cache_info, clear_cache

__all__ = [
    "ALGORITHMS",
    "dwconv2d",
    "DepthwiseConv2d",
    "set_algorithm",
    "get_algorithm",
    "use_algorithm",
    "set_autotune",
    "select_algorithm",
    "clear_cache",
    "cache_info",
]

_OVERRIDE: str | None = None  # set_algorithm / use_algorithm; None = follow LKNAS_DWCONV
_AUTOTUNE: bool | None = None  # set_autotune; None = follow LKNAS_DWCONV_AUTOTUNE


def set_algorithm(name: str | None) -> None:
    """Force one algorithm (one of `ALGORITHMS`), 'off' (plain F.conv2d with the full
    kernel: the fast path switched off), or 'auto' to select per shape; None goes back to the
    LKNAS_DWCONV environment variable."""
    global _OVERRIDE
    if name is not None:
        name = name.strip().lower()
        _select.forced_algorithm(name)  # validates
    _OVERRIDE = name


def get_algorithm() -> str:
    """The current setting: 'auto' or the forced algorithm."""
    return _select.forced_algorithm(_OVERRIDE) or "auto"


@contextlib.contextmanager
def use_algorithm(name: str | None) -> Iterator[None]:
    """Context manager form of `set_algorithm` (restores the previous setting)."""
    global _OVERRIDE
    previous = _OVERRIDE
    set_algorithm(name)
    try:
        yield
    finally:
        _OVERRIDE = previous


def set_autotune(enabled: bool | None) -> None:
    """Time the eligible algorithms on the first call of each shape (True), use the rule only
    (False), or follow LKNAS_DWCONV_AUTOTUNE (None, default off)."""
    global _AUTOTUNE
    _AUTOTUNE = enabled


def _crop(weight: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Centre crop of the kernel to at most (2h-1) x (2w-1): farther taps only meet padding."""
    kh, kw = weight.shape[-2:]
    ch, cw = min(kh, 2 * h - 1), min(kw, 2 * w - 1)
    if (ch, cw) == (kh, kw):
        return weight
    oh, ow = (kh - ch) // 2, (kw - cw) // 2
    return weight[..., oh:oh + ch, ow:ow + cw]


def _static_map(x: torch.Tensor) -> tuple[int, int] | None:
    """(H, W) when the map size is fixed: eager, jit.trace (which fvcore uses: the traced graph
    then holds the cropped kernel the network applies) or a static H x W under torch.export;
    None for a symbolic size, where cropping would add a shape guard."""
    if x.dim() != 4:
        return None
    h, w = x.shape[-2:]
    if torch.jit.is_tracing():  # the size is a constant of the trace, as the map size of a fixed input
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            return int(h), int(w)
    return (h, w) if type(h) is int and type(w) is int else None


def _supported(x: torch.Tensor, weight: torch.Tensor) -> bool:
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
        # fvcore and jit.trace must see the aten convolution; torch.export / torch.compile must not
        # specialize on the shape (a dynamic batch) through the per-shape algorithm choice
        return False
    if x.dim() != 4 or weight.dim() != 4:
        return False
    kh, kw = weight.shape[-2:]
    return (
        weight.shape[0] == x.shape[1]
        and weight.shape[1] == 1
        and kh % 2 == 1
        and kw % 2 == 1
        and x.numel() > 0
        and x.dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16)
        and weight.dtype == x.dtype
        and weight.device == x.device
    )


def _run(name: str, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return run_algorithm(name, x, w, _select.workspace_limit())


def select_algorithm(x: torch.Tensor, weight: torch.Tensor, grad: bool | None = None) -> str:
    """The algorithm `dwconv2d(x, weight)` would use now (the kernel already cropped to the map).
    `grad` defaults to whether this call would record a backward graph."""
    forced = _select.forced_algorithm(_OVERRIDE)
    if forced is not None:
        return forced
    if not _supported(x, weight):
        return "direct"
    if grad is None:
        grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    w = _crop(weight, x.shape[-2], x.shape[-1])
    kh, kw = w.shape[-2:]
    if kh * kw == 1:
        return "direct"
    return _select.choose(_run, x, kh, kw, grad, _select.autotune_enabled(_AUTOTUNE))


def _autocast_dtype(x: torch.Tensor) -> torch.dtype | None:
    """The dtype autocast would run `F.conv2d` on `x` in here (convolutions are on its lower-precision
    list on CUDA and the CPU), or None outside autocast, for float64 inputs and while tracing."""
    dev = x.device.type
    if dev not in ("cuda", "cpu") or not torch.is_autocast_enabled(dev):
        return None
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
        return None
    if not x.is_floating_point() or x.dtype == torch.float64:
        return None
    return torch.get_autocast_dtype(dev)


def _cast(t: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    return t if t is None or t.dtype == dtype else t.to(dtype)


def dwconv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Depthwise stride-1 convolution with 'same' zero padding.

    x: (B, C, H, W), NCHW or channels_last; weight: (C, 1, kh, kw) with odd kh, kw (square or
    rectangular); bias: (C,) or None. Returns (B, C, H, W) in x's layout, equal to
    `F.conv2d(x, weight, bias, padding=(kh // 2, kw // 2), groups=C)` up to rounding. Under
    autocast it computes in autocast's dtype, as `F.conv2d` does, so that the fast algorithms run
    (a bfloat16 activation with a float32 weight would otherwise fall back to `F.conv2d`).
    """
    amp = _autocast_dtype(x)
    if amp is not None and _select.forced_algorithm(_OVERRIDE) != "off":
        with torch.autocast(x.device.type, enabled=False):  # the algorithms keep their own accumulation dtypes
            return dwconv2d(_cast(x, amp), _cast(weight, amp), _cast(bias, amp))
    algo = select_algorithm(x, weight)
    if algo == "off" or not _supported(x, weight):
        size = _static_map(x) if algo != "off" else None
        if size is not None:  # traced (fvcore counts the kernel actually applied) or exported
            weight = _crop(weight, *size)
        kh, kw = weight.shape[-2:]
        return F.conv2d(x, weight, bias, padding=(kh // 2, kw // 2), groups=x.shape[1])
    w = _crop(weight, x.shape[-2], x.shape[-1])
    if algo == "direct":
        kh, kw = w.shape[-2:]
        return F.conv2d(x, w, bias, padding=(kh // 2, kw // 2), groups=x.shape[1])
    if layout_of(x) == "nchw":
        x = x.contiguous()  # a no-op unless x is in neither layout
    y = _run(algo, x, w)
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    return y


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
