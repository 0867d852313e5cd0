"""Exact algorithms for stride-1 'same' depthwise convolution, and their workspace estimates.

Every algorithm computes `F.conv2d(x, w, None, padding=(kh//2, kw//2), groups=C)` up to floating
point rounding; the bias is added by the caller. Shapes: x (B, C, H, W), w (C, 1, kh, kw), kh and
kw odd and already cropped to at most (2H-1, 2W-1) (taps farther out only ever meet padding).

Layouts: x is NCHW-contiguous or channels_last (`layout_of`). Every algorithm returns its output
in x's layout. `ACCEPTS` says which layouts an algorithm reads without first copying x into
another layout; the selector routes a channels_last input to those, and to `VIA_COPY`'s (`gemm`)
where its estimate with the copies still wins.

- `direct`: `F.conv2d` on x as it is (on a channels_last x that is stock PyTorch's channels_last
  depthwise convolution, oneDNN on CPU).
- `direct_cl`: `F.conv2d` in channels_last for an NCHW x: converts x, convolves, converts the
  result back (what a user gets from `.to(memory_format=torch.channels_last)`, per layer).
- `gemm`: per channel the whole map as one (HW x HW) Toeplitz matrix: y_c = x_c @ T_c, one
  batched GEMM over channels. T is gathered from the kernel through an index map (cached per
  shape and device) on small maps, and from HANKEL_MIN_HW pixels up built as a Hankel matrix
  (T with its output pixels reversed: a strided copy of the padded kernel, 3-4x faster).
  Custom autograd: T is rebuilt in backward instead of saved, channels are processed in chunks so
  the workspace stays under the limit, and the kernel gradient is a scatter-add of dL/dT.
- `rows`: a row-Toeplitz form for medium maps and stripes: each output row reads kh padded input
  rows (unfolded to (C, H*B, kh*W), channel chunks under the limit) times a per-channel
  (kh*W x W) matrix of kernel-row Toeplitz blocks: one batched GEMM per chunk. The problem is
  transposed first when that gives fewer multiply-adds (k x n stripes use the n short rows).
- `fft`: zero-padded rfft2 product (in fp32 for half dtypes), built from differentiable ops.
- `split`: per pass the faster method: stock (oneDNN) forward and input gradient in x's layout
  (on an NCHW x only for kernels up to 13 wide, where NCHW stock's forward is fast too: 1-2 ms
  against 43-138 for 15-31 wide ones), and the kernel gradient, which is 2/3 or more of oneDNN's
  forward+backward (`benchmarks/dwconv_passes.py`), another way. For a kernel up to 13 wide
  (`PLANES_MAX_K`; any height) as one depthwise convolution over the B*C (batch, channel)
  planes: x's plane convolved with dL/dy's plane as its kernel gives that plane's kh x kw
  correlations, summed over the batch (`planes_kernel_grad`): oneDNN runs it at ~1/5 the time of
  its own kernel gradient, so the whole step ran 1.2-2.7x faster than stock channels_last on 4-64
  px maps with 7x7 to 13x13 kernels (2-core CPU, 1 and 2 threads). That convolution leaves
  oneDNN's fast path when its output is wider than 13 (15x15: 10x slower, measured; 31x5: fast),
  so a wide stripe (5 x 31) takes it on the transposed planes, and a kernel wider and taller than
  13 by FFT (x correlated with dL/dy, summed over the batch: one inverse transform per channel).
  A channels_last forward with a kernel 13 wide and 11-13 tall runs through NCHW copies
  (`cl_forward_via_nchw`: oneDNN's channels_last forward is 1.3-1.8x slower there, copies included).

Workspace: the large per-chunk temporaries of `gemm` and `rows` (Toeplitz blocks, unfolded rows
and their gradients) live in buffers kept per thread, device and dtype and reused from call to
call (`release_workspace` frees them). Allocating them afresh made every call page-fault hundreds
of MB on CPU (allocations that large are mmap'ed and unmapped each time), the source of calls
that took 10-100x their steady time.
"""
from __future__ import annotations

import math
import threading

import torch
import torch.nn.functional as F

__all__ = [
    "ALGORITHMS", "LAYOUTS", "ACCEPTS", "VIA_COPY", "layout_of", "run_algorithm", "workspace_bytes", "macs", "fft_size",
    "release_workspace", "workspace_info", "planes_kernel_grad", "PLANES_MAX_K", "reads",
]

ALGORITHMS = ("direct", "direct_cl", "gemm", "rows", "fft", "split")
LAYOUTS = ("nchw", "channels_last")
# layouts each algorithm reads without copying x first (`rows` copies x into its padded row
# buffer in any case, `fft` transforms any strides; on a channels_last x, `direct` is direct_cl)
ACCEPTS: dict[str, tuple[str, ...]] = {
    "direct": LAYOUTS,
    "direct_cl": ("nchw",),
    "gemm": ("nchw",),
    "rows": LAYOUTS,
    "fft": LAYOUTS,
    "split": LAYOUTS,  # the input's stock passes; on NCHW only up to PLANES_MAX_K wide (`reads`)
}
assert set(ACCEPTS) == set(ALGORITHMS)
# layouts an algorithm may also be chosen for through copies of x to NCHW and back (x, y and their
# gradients, each ~1 ns an element): on maps up to 16 px with large kernels `gemm` with its copies
# beats every algorithm that reads channels_last (benchmarks/dwconv_rule.py), so a channels_last
# model gets it there; the selector's estimate carries the copies
VIA_COPY: dict[str, tuple[str, ...]] = {"gemm": ("channels_last",)}


def reads(name: str, layout: str, kh: int, kw: int) -> bool:
    """Whether algorithm `name` reads an input in `layout` with a kh x kw kernel as is (`ACCEPTS`).
    `split` on NCHW only up to `PLANES_MAX_K` wide: NCHW stock's forward is fast only there (one
    16 px map: 31 x 5 1.3 ms, 5 x 31 43 ms, 31x31 218 ms against 8.5 in channels_last), which is
    also where its kernel gradient runs over the planes with no copies (forced beyond: still exact)."""
    if layout not in ACCEPTS[name]:
        return False
    return name != "split" or layout == "channels_last" or kw <= PLANES_MAX_K


def layout_of(x: torch.Tensor) -> str:
    """'channels_last' for a 4-D channels_last tensor that is not also NCHW-contiguous (C or H*W of
    1 make both true), else 'nchw' (a tensor that is neither is made NCHW-contiguous)."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return "channels_last"
    return "nchw"


def _in_layout_of(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """y in x's memory layout (a no-op when it already is)."""
    if layout_of(x) == "channels_last":
        return y.contiguous(memory_format=torch.channels_last)
    return y


_INDEX_CACHE: dict[tuple, torch.Tensor] = {}
_INDEX_CACHE_MAX_BYTES = 256 * 2**20  # index maps kept per (shape, device); oldest dropped beyond this


def _remember(key: tuple, idx: torch.Tensor) -> torch.Tensor:
    """Keep idx, dropping the oldest maps (not all of them) while over the byte budget, so that two
    alternating large shapes do not rebuild their maps on every call."""
    size = lambda t: t.numel() * t.element_size()  # noqa: E731
    while _INDEX_CACHE and sum(map(size, _INDEX_CACHE.values())) + size(idx) > _INDEX_CACHE_MAX_BYTES:
        del _INDEX_CACHE[next(iter(_INDEX_CACHE))]
    _INDEX_CACHE[key] = idx
    return idx


_WORKSPACE = threading.local()  # .buffers: {(slot, device, dtype): flat tensor}


def _buffer(slot: str, shape: tuple[int, ...], like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A reusable uninitialized tensor of `shape` (contents are garbage; callers write it fully with
    `out=` or `copy_`). One per (thread, slot, device, dtype, inference mode), grown as needed:
    a buffer made under `torch.inference_mode()` is an inference tensor, which may not be written
    outside it (a latency timed before training would otherwise break the training after it).
    `dtype` overrides like's (complex spectra of a real tensor)."""
    dtype = dtype or like.dtype
    buffers = getattr(_WORKSPACE, "buffers", None)
    if buffers is None:
        buffers = _WORKSPACE.buffers = {}
    key = (slot, like.device, dtype, torch.is_inference_mode_enabled())
    n = math.prod(shape)
    buf = buffers.get(key)
    if buf is None or buf.numel() < n:
        buffers.pop(key, None)  # free the old one before allocating the larger
        buf = buffers[key] = torch.empty(n, dtype=dtype, device=like.device)
    return buf[:n].view(shape)


def release_workspace() -> None:
    """Free this thread's reusable workspace buffers (they are rebuilt on the next call)."""
    getattr(_WORKSPACE, "buffers", {}).clear()


def workspace_info() -> dict[str, int]:
    """Bytes held in this thread's reusable buffers, by slot."""
    out: dict[str, int] = {}
    for (slot, *_), buf in getattr(_WORKSPACE, "buffers", {}).items():
        out[slot] = out.get(slot, 0) + buf.numel() * buf.element_size()
    return out


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


def _from_cbp(y: torch.Tensor, h: int, w: int, layout: str) -> torch.Tensor:
    """A (C, B, H*W) result as a (B, C, H, W) tensor in `layout`, with one copy either way (a
    channels_last result converted from NCHW would take two)."""
    c, b, _ = y.shape
    if layout != "channels_last":
        return y.transpose(0, 1).reshape(b, c, h, w)
    out = torch.empty((b, c, h, w), dtype=y.dtype, device=y.device, memory_format=torch.channels_last)
    return out.copy_(y.view(c, b, h, w).transpose(0, 1))


# From this many map pixels up, `gemm` builds its matrix as a Hankel view copy (`_hankel_source`)
# instead of gathering it through the index map: 0.6 against 2.2 ms for 96 channels of a 16 px
# map (51x51), 0.4 against 1.4 for 64 (31x31); on an 8 px map both take 0.2 ms, and the Hankel
# form's two flips of y and dL/dy would cost more than it saves (2 threads, fp32).
HANKEL_MIN_HW = 144


def _hankel_source(w: torch.Tensor, h: int, wd: int) -> torch.Tensor:
    """(C, 2h-1, 2wd-1): the kernel centred in a zero plane that holds every offset an h x wd map
    can see (taps beyond it cropped). Its (h, wd, h, wd) windows Q[i + o'] are the Toeplitz
    matrix T[i, o] = w[i - o + centre] with the output pixels o' = flipped o."""
    c, _, kh, kw = w.shape
    q = w.new_zeros(c, 2 * h - 1, 2 * wd - 1)
    rows, cols = [], []
    for n, k in ((h, kh), (wd, kw)):
        lo, src = max(0, n - 1 - k // 2), max(0, k // 2 - (n - 1))
        size = min(2 * n - 1 - lo, k - src)
        rows.append(slice(lo, lo + size))
        cols.append(slice(src, src + size))
    q[:, rows[0], rows[1]] = w.reshape(c, kh, kw)[:, cols[0], cols[1]]
    return q


def _hankel_fill(out: torch.Tensor, q: torch.Tensor, h: int, wd: int) -> torch.Tensor:
    """Write the (C, HW, HW) Hankel matrices V[i, o'] = q[i + o'] into `out`; returns its matrix view."""
    c = q.shape[0]
    out.view(c, h, wd, h, wd).copy_(q.unfold(1, h, 1).unfold(2, wd, 1))
    return out.view(c, h * wd, h * wd)


def _flip_map(t: torch.Tensor, h: int, wd: int) -> torch.Tensor:
    """(C, B, HW) with the pixels of each map in reverse order (a copy)."""
    c, b, _ = t.shape
    return t.view(c, b, h, wd).flip(2, 3).view(c, b, h * wd)


def _matrix_builder(w: torch.Tensor, h: int, wd: int, hankel: bool):
    """fill(t, c0, c1): channels c0..c1's (HW x HW) matrices written into the buffer `t`, returned
    as a (c1 - c0, HW, HW) view: the Hankel V (`hankel`) or the gathered Toeplitz T."""
    c, _, kh, kw = w.shape
    if hankel:
        q = _hankel_source(w, h, wd)
        return lambda t, c0, c1: _hankel_fill(t, q[c0:c1], h, wd)
    idx = _map_index(h, wd, kh, kw, w.device)
    wx = F.pad(w.reshape(c, kh * kw), (0, 1))  # zero slot at the end

    def fill(t: torch.Tensor, c0: int, c1: int) -> torch.Tensor:
        torch.index_select(wx[c0:c1], 1, idx, out=t)
        return t.view(c1 - c0, h * wd, h * wd)

    return fill


def _hankel_index(h: int, w: int, kh: int, kw: int, device: torch.device) -> torch.Tensor:
    """`_map_index` with the output pixels in reverse order: the kernel tap of each V[i, o']."""
    key = ("hankel", h, w, kh, kw, device)
    idx = _INDEX_CACHE.get(key)
    if idx is None:
        idx = _remember(key, _map_index(h, w, kh, kw, device).view(h, w, h, w).flip(2, 3).reshape(-1))
    return idx


class _GemmFn(torch.autograd.Function):
    """y_c = x_c @ T_c per channel. T is Toeplitz; for maps of HANKEL_MIN_HW pixels or more it is
    built as the Hankel V = T with its columns reversed (a strided copy of the padded kernel,
    3-4x faster than the index gather), and the output pixels are reversed once after the GEMM
    (and dL/dy's before the backward GEMMs)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, chunk: int, layout: str = "nchw") -> torch.Tensor:
        b, c, h, wd = x.shape
        kh, kw = w.shape[-2:]
        hw = h * wd
        hankel = hw >= HANKEL_MIN_HW
        xc = x.reshape(b, c, hw).transpose(0, 1)  # (C, B, HW)
        fill = _matrix_builder(w, h, wd, hankel)
        y = x.new_empty(c, b, hw)
        for c0 in range(0, c, chunk):
            c1 = min(c, c0 + chunk)
            torch.bmm(xc[c0:c1], fill(_buffer("a", (c1 - c0, hw * hw), x), c0, c1), out=y[c0:c1])
        ctx.save_for_backward(x, w)
        ctx.chunk, ctx.layout = chunk, layout
        return _from_cbp(_flip_map(y, h, wd) if hankel else y, h, wd, layout)

    @staticmethod
    def backward(ctx, gy: torch.Tensor):
        x, w = ctx.saved_tensors
        chunk = ctx.chunk
        b, c, h, wd = x.shape
        kh, kw = w.shape[-2:]
        hw = h * wd
        hankel = hw >= HANKEL_MIN_HW
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        # dL/dy arrives channels_last when the caller's y was (VIA_COPY): its (C, B, HW) view would
        # have a pixel stride of C, which bmm cannot hand to BLAS and copies matrix by matrix
        # (2.4x the whole pass on 64x128x8x8, 31x31); one NCHW copy first
        gyc = gy.contiguous().reshape(b, c, hw).transpose(0, 1)
        if hankel:  # V's columns are the output pixels reversed: so are dL/dy's
            gyc = _flip_map(gyc, h, wd)
        idx = (_hankel_index if hankel else _map_index)(h, wd, kh, kw, x.device)  # dL/dw's scatter
        fill = _matrix_builder(w, h, wd, hankel) if need_x else None
        xc = x.reshape(b, c, hw).transpose(0, 1)
        gx = x.new_empty(c, b, hw) if need_x else None
        gw = torch.zeros(c, kh * kw + 1, dtype=_acc_dtype(w.dtype), device=w.device) if need_w else None
        for c0 in range(0, c, chunk):
            c1 = min(c, c0 + chunk)
            if need_x:
                mat = fill(_buffer("a", (c1 - c0, hw * hw), x), c0, c1)
                torch.bmm(gyc[c0:c1], mat.transpose(1, 2), out=gx[c0:c1])
            if need_w:
                gt = _buffer("b", (c1 - c0, hw, hw), x)
                torch.bmm(xc[c0:c1].transpose(1, 2), gyc[c0:c1], out=gt)
                gw[c0:c1].scatter_add_(1, idx.expand(c1 - c0, -1), gt.view(c1 - c0, -1).to(gw.dtype))
        gx_out = _from_cbp(gx, h, wd, ctx.layout) if need_x else None
        gw_out = gw[:, :-1].reshape(w.shape).to(w.dtype) if need_w else None
        return gx_out, gw_out, None, None


def _rows_chunk(b: int, c: int, hp: int, h: int, w: int, kh: int, esize: int, limit: int) -> int:
    """Channels per chunk so that the unfolded rows and their gradient fit in `limit` bytes."""
    per_channel = 2 * h * b * kh * w * esize
    return max(1, min(c, limit // max(per_channel, 1)))


def _unfold_rows(xp: torch.Tensor, h: int, kh: int) -> torch.Tensor:
    """(C, Hp, B, W) -> (C, H*B, kh*W): for each output row, the kh input rows it reads (written
    into the reusable buffer 'u': valid until the next call)."""
    c, _, b, w = xp.shape
    out = _buffer("u", (c, h, b, kh, w), xp)
    out.copy_(xp.unfold(1, kh, 1).permute(0, 1, 2, 4, 3))
    return out.view(c, h * b, kh * w)


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
        ctx.chunk, ctx.x_stride = chunk, x.stride()
        # the output takes x's strides (NCHW, channels_last or their H/W transposes): x's layout
        return torch.empty_like(x).copy_(y.view(c, h, b, wd).permute(2, 0, 1, 3))

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
                gu = _buffer("g", (c1 - c0, h * b, kh * wd), xp)
                torch.bmm(gyl[c0:c1], t[c0:c1].transpose(1, 2), out=gu)
                gu = gu.view(c1 - c0, h, b, kh, wd)
                for dy in range(kh):
                    gxp[c0:c1, dy:dy + h] += gu[:, :, :, dy]
            if need_w:
                torch.bmm(_unfold_rows(xp[c0:c1], h, kh).transpose(1, 2), gyl[c0:c1], out=gt[c0:c1])
        gx = None
        if need_x:  # in x's layout, like the output
            gx = torch.empty_strided((b, c, h, wd), ctx.x_stride, dtype=xp.dtype, device=xp.device)
            gx.copy_(gxp[:, ph:ph + h].permute(2, 0, 1, 3))
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
    return _in_layout_of(y[..., kh // 2:kh // 2 + h, kw // 2:kw // 2 + wd].to(x.dtype), x)


def fft_kernel_grad(x: torch.Tensor, gy: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """dL/dw (C, 1, kh, kw) of the 'same' depthwise convolution from x and dL/dy alone: their
    cross-correlation summed over the batch, by FFT (fp32 for half dtypes; sizes free of
    wrap-around for shifts up to k//2)."""
    s = fft_size(x.shape[-2], x.shape[-1], kh, kw)
    ct = _acc_dtype(x.dtype)
    spec = (*x.shape[:2], s[0], s[1] // 2 + 1)
    cdt = torch.complex128 if ct == torch.float64 else torch.complex64
    fx, fg = _buffer("fx", spec, x, cdt), _buffer("fg", spec, x, cdt)  # reused: no fresh pages per call
    torch.fft.rfft2(x.to(ct), s=s, out=fx)
    torch.fft.rfft2(gy.to(ct), s=s, out=fg)
    r = torch.fft.irfft2(fx.mul_(fg.conj()).sum(0), s=s)  # r[i, j] = sum x[n + (i, j)] gy[n], modulo s
    return torch.roll(r, shifts=(kh // 2, kw // 2), dims=(-2, -1))[..., :kh, :kw].unsqueeze(1)


# The widest kernel whose gradient `planes_kernel_grad` computes: oneDNN's depthwise convolution
# stays on its fast path up to a 13-wide output, whatever its height (one 32 px map, batch 64, 32
# channels: 9 ms at 13x13, 121 ms at 15x15; 16 px maps: 4.8 ms at 31 x 5, 44 ms at 5 x 31, 3.8 at
# 31 x 11; 8-64 px maps alike), so `split` transposes the planes of a wide stripe and uses the FFT
# for a kernel wider and taller than this.
PLANES_MAX_K = 13


def planes_kernel_grad(x: torch.Tensor, gy: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """dL/dw (C, 1, kh, kw) of the 'same' depthwise convolution as one depthwise convolution over
    the B*C planes: plane (b, c) of x, zero-padded by (kh//2, kw//2), convolved with plane (b, c)
    of dL/dy as its kernel gives sum_{h,w} x[b, c, h+i, w+j] dL/dy[b, c, h, w] for each tap
    (i, j); summed over the batch (in the accumulation dtype). x and dL/dy are read as NCHW
    (a copy of a channels_last tensor)."""
    b, c, h, w = x.shape
    planes = F.conv2d(x.contiguous().view(1, b * c, h, w), gy.contiguous().view(b * c, 1, h, w),
                      padding=(kh // 2, kw // 2), groups=b * c)
    return planes.view(b, c, kh, kw).sum(0, dtype=_acc_dtype(x.dtype)).unsqueeze(1)


def split_kernel_grad(x: torch.Tensor, gy: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """`split`'s kernel gradient: over the planes for a kernel up to `PLANES_MAX_K` wide, over the
    transposed planes for one that is only that short, by FFT otherwise."""
    if kw <= PLANES_MAX_K:
        return planes_kernel_grad(x, gy, kh, kw)
    if kh <= PLANES_MAX_K:  # a wide stripe: its transpose is a tall one (copies of x and dL/dy)
        return planes_kernel_grad(x.transpose(-1, -2), gy.transpose(-1, -2), kw, kh).transpose(-1, -2)
    return fft_kernel_grad(x, gy, kh, kw)


def cl_forward_via_nchw(kh: int, kw: int) -> bool:
    """Whether `split` runs a channels_last input's forward through NCHW copies: oneDNN's
    channels_last depthwise forward leaves its fast path for a kernel 13 wide and 11 to 13 tall,
    where NCHW's stays on it (forward only, 2 threads: 64 x 32 channels at 32 px, 13x13 14.2 ms
    against 11.3 with both copies, 11x13 12.2 against 10.4; 16 px 1.4-1.6x; 8 px 1.8x; but 11x11
    6.1 against 10.7 and 5x13 5.9 against 8.7, so only this window)."""
    return kw == PLANES_MAX_K and 11 <= kh <= PLANES_MAX_K


class _SplitFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        if layout_of(x) == "channels_last" and cl_forward_via_nchw(*w.shape[-2:]):
            return _direct(x.contiguous(), w).contiguous(memory_format=torch.channels_last)
        return _direct(x, w)

    @staticmethod
    def backward(ctx, gy: torch.Tensor):
        x, w = ctx.saved_tensors
        kh, kw = w.shape[-2:]
        gx = gw = None
        if ctx.needs_input_grad[0]:
            gx = torch.ops.aten.convolution_backward(gy, x, w, None, [1, 1], [kh // 2, kw // 2], [1, 1], False,
                                                     [0, 0], x.shape[1], [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            gw = split_kernel_grad(x, gy, kh, kw).to(w.dtype).reshape(w.shape)
        return gx, gw


def _direct(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    kh, kw = w.shape[-2:]
    return F.conv2d(x, w, None, padding=(kh // 2, kw // 2), groups=x.shape[1])


def _direct_cl(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Stock channels_last convolution for any x; the result is converted back to x's layout."""
    cl = torch.channels_last
    y = _direct(x.contiguous(memory_format=cl), w.contiguous(memory_format=cl))
    return y if layout_of(x) == "channels_last" else y.contiguous()


def run_algorithm(name: str, x: torch.Tensor, w: torch.Tensor, limit: int) -> torch.Tensor:
    """Run algorithm `name` (no bias) on an NCHW-contiguous or channels_last x; the output is in
    x's layout. An algorithm that does not accept x's layout (`ACCEPTS`) copies x to NCHW first.
    `limit`: workspace bytes (sets the channel chunks)."""
    if name == "direct":
        return _direct(x, w)
    if name == "direct_cl":
        return _direct_cl(x, w)
    if name == "gemm":
        b, c, h, wd = x.shape  # a channels_last x: copied to NCHW, y and dL/dx written in channels_last
        return _GemmFn.apply(x.contiguous(), w, _gemm_chunk(c, h * wd, x.element_size(), limit), layout_of(x))
    if name == "rows":
        return _rows(x, w, limit)
    if name == "fft":
        return _fft(x, w)
    if name == "split":
        return _SplitFn.apply(x, w)
    raise ValueError(f"unknown dwconv algorithm {name!r}; expected one of {ALGORITHMS}")


def workspace_bytes(name: str, b: int, c: int, h: int, w: int, kh: int, kw: int, esize: int) -> int:
    """Extra memory an algorithm needs beyond input, output and kernel (forward + backward).

    For `gemm` this is one channel chunk at the smallest chunk (1 channel): T and dL/dT, plus the
    transposed copies of x and y; the chunk grows to use what the limit leaves."""
    act = b * c * h * w * esize
    if name == "direct":
        return 0
    if name == "direct_cl":
        return 2 * act  # x and y in channels_last (and their gradients, one pair at a time)
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
    if name == "split":
        if min(kh, kw) <= PLANES_MAX_K:  # NCHW copies of x and dL/dy, the per-plane taps
            return 2 * act + b * c * kh * kw * esize
        nh, nw = fft_size(h, w, kh, kw)  # the two spectra of the kernel gradient and their product
        return 3 * b * c * nh * (nw // 2 + 1) * 8
    raise ValueError(f"unknown dwconv algorithm {name!r}")


def macs(name: str, b: int, c: int, h: int, w: int, kh: int, kw: int) -> float:
    """Multiply-adds (or an FFT operation count) of one forward pass."""
    if name in ("direct", "direct_cl", "split"):  # split's forward is the stock convolution
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
