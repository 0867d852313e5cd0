"""Exact algorithms for stride-1 'same' depthwise convolution, and their workspace estimates.

Every algorithm computes `F.conv2d(x, w, None, padding=(kh//2, kw//2), groups=C)` up to floating
point rounding; the bias is added by the caller. Shapes: x (B, C, H, W), w (C, 1, kh, kw), kh and
kw odd and already cropped to at most (2H-1, 2W-1) (taps farther out only ever meet padding).

- `direct`: `F.conv2d`.
- `gemm`: per channel the whole map as one (HW x HW) Toeplitz matrix gathered from the kernel
  (index map cached per shape and device): y_c = x_c @ T_c, one batched GEMM over channels.
  Custom autograd: T is rebuilt in backward instead of saved, channels are processed in chunks so
  the workspace stays under the limit, and the kernel gradient is a scatter-add of dL/dT.
- `rows`: a row-Toeplitz form for medium maps and stripes: each output row reads kh padded input
  rows (unfolded to (C, H*B, kh*W), channel chunks under the limit) times a per-channel
  (kh*W x W) matrix of kernel-row Toeplitz blocks: one batched GEMM per chunk. The problem is
  transposed first when that gives fewer multiply-adds (k x n stripes use the n short rows).
- `fft`: zero-padded rfft2 product (in fp32 for half dtypes), built from differentiable ops.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["ALGORITHMS", "run_algorithm", "workspace_bytes", "macs", "fft_size"]

ALGORITHMS = ("direct", "gemm", "rows", "fft")

_INDEX_CACHE: dict[tuple, torch.Tensor] = {}
_INDEX_CACHE_MAX_BYTES = 256 * 2**20  # index maps kept per (shape, device); cleared beyond this


def _remember(key: tuple, idx: torch.Tensor) -> torch.Tensor:
    total = sum(t.numel() * t.element_size() for t in _INDEX_CACHE.values())
    if total + idx.numel() * idx.element_size() > _INDEX_CACHE_MAX_BYTES:
        _INDEX_CACHE.clear()
    _INDEX_CACHE[key] = idx
    return idx


def _toeplitz_index_1d(n: int, k: int) -> torch.Tensor:
    """(n_in, n_out) long: kernel tap index (0..k-1) linking input i to output o, or k if none."""
    i = torch.arange(n).view(n, 1)
    o = torch.arange(n).view(1, n)
    d = i - o + k // 2
    return torch.where((d >= 0) & (d < k), d, torch.full_like(d, k))


def _map_index(h: int, w: int, kh: int, kw: int, device: torch.device) -> torch.Tensor:
    """(HW_in * HW_out,) long index into a kernel flattened to kh*kw taps plus one zero slot."""
    key = ("map", h, w, kh, kw, device)
    idx = _INDEX_CACHE.get(key)
    if idx is None:
        dy = _toeplitz_index_1d(h, kh)  # (h_in, h_out)
        dx = _toeplitz_index_1d(w, kw)  # (w_in, w_out)
        valid = (dy < kh).view(h, 1, h, 1) & (dx < kw).view(1, w, 1, w)
        flat = dy.view(h, 1, h, 1) * kw + dx.view(1, w, 1, w)
        idx = _remember(key, torch.where(valid, flat, torch.full_like(flat, kh * kw)).reshape(-1).to(device))
    return idx


def _row_index(w: int, kw: int, device: torch.device) -> torch.Tensor:
    """(W_in * W_out,) long index into one kernel row of kw taps plus one zero slot."""
    key = ("row", w, kw, device)
    idx = _INDEX_CACHE.get(key)
    if idx is None:
        idx = _remember(key, _toeplitz_index_1d(w, kw).reshape(-1).to(device))
    return idx


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _gemm_chunk(c: int, hw: int, esize: int, limit: int) -> int:
    """Channels per chunk so that T and dL/dT of one chunk fit in `limit` bytes."""
    per_channel = 2 * hw * hw * esize
    return max(1, min(c, limit // max(per_channel, 1)))


class _GemmFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, chunk: int) -> torch.Tensor:
        b, c, h, wd = x.shape
        kh, kw = w.shape[-2:]
        hw = h * wd
        idx = _map_index(h, wd, kh, kw, x.device)
        xc = x.reshape(b, c, hw).transpose(0, 1)  # (C, B, HW)
        wx = F.pad(w.reshape(c, kh * kw), (0, 1))  # zero slot at the end
        y = x.new_empty(c, b, hw)
        for c0 in range(0, c, chunk):
            c1 = min(c, c0 + chunk)
            t = wx[c0:c1].index_select(1, idx).view(c1 - c0, hw, hw)
            torch.bmm(xc[c0:c1], t, out=y[c0:c1])
        ctx.save_for_backward(x, w)
        ctx.chunk = chunk
        return y.transpose(0, 1).reshape(b, c, h, wd)

    @staticmethod
    def backward(ctx, gy: torch.Tensor):
        x, w = ctx.saved_tensors
        chunk = ctx.chunk
        b, c, h, wd = x.shape
        kh, kw = w.shape[-2:]
        hw = h * wd
        idx = _map_index(h, wd, kh, kw, x.device)
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        gyc = gy.reshape(b, c, hw).transpose(0, 1)
        xc = x.reshape(b, c, hw).transpose(0, 1)
        wx = F.pad(w.reshape(c, kh * kw), (0, 1))
        gx = x.new_empty(c, b, hw) if need_x else None
        gw = torch.zeros(c, kh * kw + 1, dtype=_acc_dtype(w.dtype), device=w.device) if need_w else None
        for c0 in range(0, c, chunk):
            c1 = min(c, c0 + chunk)
            if need_x:
                t = wx[c0:c1].index_select(1, idx).view(c1 - c0, hw, hw)
                torch.bmm(gyc[c0:c1], t.transpose(1, 2), out=gx[c0:c1])
            if need_w:
                gt = torch.bmm(xc[c0:c1].transpose(1, 2), gyc[c0:c1]).view(c1 - c0, -1)
                gw[c0:c1].scatter_add_(1, idx.expand(c1 - c0, -1), gt.to(gw.dtype))
        gx_out = gx.transpose(0, 1).reshape(b, c, h, wd) if need_x else None
        gw_out = gw[:, :-1].reshape(w.shape).to(w.dtype) if need_w else None
        return gx_out, gw_out, None


def _rows_chunk(b: int, c: int, hp: int, h: int, w: int, kh: int, esize: int, limit: int) -> int:
    """Channels per chunk so that the unfolded rows and their gradient fit in `limit` bytes."""
    per_channel = 2 * h * b * kh * w * esize
    return max(1, min(c, limit // max(per_channel, 1)))


def _unfold_rows(xp: torch.Tensor, h: int, kh: int) -> torch.Tensor:
    """(C, Hp, B, W) -> (C, H*B, kh*W): for each output row, the kh input rows it reads."""
    c, _, b, w = xp.shape
    return xp.unfold(1, kh, 1).permute(0, 1, 2, 4, 3).reshape(c, h * b, kh * w)


class _RowsFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, limit: int) -> torch.Tensor:
        b, c, h, wd = x.shape
        kh, kw = w.shape[-2:]
        ph, hp = kh // 2, h + kh - 1
        idx = _row_index(wd, kw, x.device)
        xp = x.new_zeros(c, hp, b, wd)
        xp[:, ph:ph + h] = x.permute(1, 2, 0, 3)
        t = F.pad(w.reshape(c, kh, kw), (0, 1)).index_select(2, idx).view(c, kh * wd, wd)
        chunk = _rows_chunk(b, c, hp, h, wd, kh, x.element_size(), limit)
        y = x.new_empty(c, h * b, wd)
        for c0 in range(0, c, chunk):
            c1 = min(c, c0 + chunk)
            torch.bmm(_unfold_rows(xp[c0:c1], h, kh), t[c0:c1], out=y[c0:c1])
        ctx.save_for_backward(xp, w)
        ctx.chunk = chunk
        return y.view(c, h, b, wd).permute(2, 0, 1, 3).contiguous()

    @staticmethod
    def backward(ctx, gy: torch.Tensor):
        xp, w = ctx.saved_tensors
        c, hp, b, wd = xp.shape
        kh, kw = w.shape[-2:]
        h, ph = hp - kh + 1, kh // 2
        idx = _row_index(wd, kw, xp.device)
        gyl = gy.permute(1, 2, 0, 3).reshape(c, h * b, wd)
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        t = F.pad(w.reshape(c, kh, kw), (0, 1)).index_select(2, idx).view(c, kh * wd, wd) if need_x else None
        gxp = xp.new_zeros(c, hp, b, wd) if need_x else None
        gt = xp.new_empty(c, kh * wd, wd) if need_w else None
        for c0 in range(0, c, ctx.chunk):
            c1 = min(c, c0 + ctx.chunk)
            if need_x:
                gu = torch.bmm(gyl[c0:c1], t[c0:c1].transpose(1, 2)).view(c1 - c0, h, b, kh, wd)
                for dy in range(kh):
                    gxp[c0:c1, dy:dy + h] += gu[:, :, :, dy]
            if need_w:
                torch.bmm(_unfold_rows(xp[c0:c1], h, kh).transpose(1, 2), gyl[c0:c1], out=gt[c0:c1])
        gx = gxp[:, ph:ph + h].permute(2, 0, 1, 3).contiguous() if need_x else None
        gw = None
        if need_w:
            acc = torch.zeros(c, kh, kw + 1, dtype=_acc_dtype(w.dtype), device=w.device)
            acc.scatter_add_(2, idx.expand(c, kh, -1), gt.view(c, kh, wd * wd).to(acc.dtype))
            gw = acc[..., :kw].reshape(w.shape).to(w.dtype)
        return gx, gw, None


def rows_transposed(h: int, w: int, kh: int, kw: int) -> bool:
    """Whether `rows` runs on the transposed problem (fewer multiply-adds: kw*H < kh*W)."""
    return kw * h < kh * w


def _rows(x: torch.Tensor, w: torch.Tensor, limit: int) -> torch.Tensor:
    h, wd = x.shape[-2:]
    kh, kw = w.shape[-2:]
    if rows_transposed(h, wd, kh, kw):
        return _RowsFn.apply(x.transpose(2, 3), w.transpose(2, 3), limit).transpose(2, 3)
    return _RowsFn.apply(x, w, limit)


def _smooth(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (sizes pocketfft and cuFFT handle fast)."""
    m = n
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def fft_size(h: int, w: int, kh: int, kw: int) -> tuple[int, int]:
    """FFT sizes free of wrap-around on the 'same' output window: N >= n + k//2."""
    return _smooth(h + kh // 2), _smooth(w + kw // 2)


def _fft(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    h, wd = x.shape[-2:]
    kh, kw = w.shape[-2:]
    s = fft_size(h, wd, kh, kw)
    ct = _acc_dtype(x.dtype)
    xf = torch.fft.rfft2(x.to(ct), s=s)
    wf = torch.fft.rfft2(w[:, 0].flip(-2, -1).to(ct), s=s)
    y = torch.fft.irfft2(xf * wf, s=s)
    return y[..., kh // 2:kh // 2 + h, kw // 2:kw // 2 + wd].to(x.dtype)


def _direct(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    kh, kw = w.shape[-2:]
    return F.conv2d(x, w, None, padding=(kh // 2, kw // 2), groups=x.shape[1])


def run_algorithm(name: str, x: torch.Tensor, w: torch.Tensor, limit: int) -> torch.Tensor:
    """Run algorithm `name` (no bias). `limit`: workspace bytes (sets the gemm channel chunk)."""
    if name == "direct":
        return _direct(x, w)
    if name == "gemm":
        b, c, h, wd = x.shape
        return _GemmFn.apply(x, w, _gemm_chunk(c, h * wd, x.element_size(), limit))
    if name == "rows":
        return _rows(x, w, limit)
    if name == "fft":
        return _fft(x, w)
    raise ValueError(f"unknown dwconv algorithm {name!r}; expected one of {ALGORITHMS}")


def workspace_bytes(name: str, b: int, c: int, h: int, w: int, kh: int, kw: int, esize: int) -> int:
    """Extra memory an algorithm needs beyond input, output and kernel (forward + backward).

    For `gemm` this is one channel chunk at the smallest chunk (1 channel): T and dL/dT, plus the
    transposed copies of x and y; the chunk grows to use what the limit leaves."""
    act = b * c * h * w * esize
    if name == "direct":
        return 0
    if name == "gemm":
        return 2 * (h * w) ** 2 * esize + (h * w) ** 2 * 8 + 2 * act  # T, dL/dT, index map, copies
    if name == "rows":
        if rows_transposed(h, w, kh, kw):
            h, w, kh, kw = w, h, kw, kh
        xp = b * c * (h + kh - 1) * w * esize
        return 2 * xp + 2 * c * kh * w * w * esize + 2 * act + 2 * b * h * kh * w * esize
    if name == "fft":
        nh, nw = fft_size(h, w, kh, kw)
        spec = b * c * nh * (nw // 2 + 1) * 8
        return 3 * spec + 2 * b * c * nh * nw * 4
    raise ValueError(f"unknown dwconv algorithm {name!r}")


def macs(name: str, b: int, c: int, h: int, w: int, kh: int, kw: int) -> float:
    """Multiply-adds (or an FFT operation count) of one forward pass."""
    if name == "direct":
        return float(b * c * h * w * kh * kw)
    if name == "gemm":
        return float(b * c * (h * w) ** 2)
    if name == "rows":
        return float(b * c * h * w * min(kh * w, kw * h))
    if name == "fft":
        nh, nw = fft_size(h, w, kh, kw)
        n = nh * nw
        # two real transforms (x and the product) ~ 2 * 2.5 n log2 n, plus a complex product
        return float(b * c * (5.0 * n * math.log2(max(n, 2)) / 2 + 3 * n))
    raise ValueError(f"unknown dwconv algorithm {name!r}")
