"""dwconv2d: every algorithm equals F.conv2d (output, input/kernel/bias gradients) over random
shapes; selection (forced, rule, workspace limit, autotune), the choice cache, dtypes, layouts."""
from __future__ import annotations

import json
import time

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import lknas.ops.dwconv as dw
from lknas.ops import dwconv_algos, dwconv_select
from lknas.ops.dwconv import DepthwiseConv2d, dwconv2d

ALGOS = list(dwconv_algos.ALGORITHMS)
LAYOUTS = list(dwconv_algos.LAYOUTS)
CUDA = torch.cuda.is_available()
CL = torch.channels_last


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    for var in ("LKNAS_DWCONV", "LKNAS_DWCONV_AUTOTUNE", "LKNAS_DWCONV_CACHE", "LKNAS_DWCONV_MAX_WORKSPACE_MB"):
        monkeypatch.delenv(var, raising=False)
    dw.set_algorithm(None)
    dw.set_autotune(None)
    dw.clear_cache()
    yield
    dw.set_algorithm(None)
    dw.set_autotune(None)
    dw.clear_cache()


def _reference(x, w, b):
    kh, kw = w.shape[-2:]
    return F.conv2d(x, w, b, padding=(kh // 2, kw // 2), groups=x.shape[1])


def _close(got, ref, rel):
    scale = max(ref.abs().max().item(), 1e-6)
    err = (got.double() - ref.double()).abs().max().item()
    assert err <= rel * scale, f"max abs diff {err:.3g} > {rel:g} x scale {scale:.3g}"


def _check(algo, b, c, h, w, kh, kw, bias, dtype=torch.float32, device="cpu", rel=1e-4, seed=0, layout="nchw"):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, h, w, generator=g).to(device)
    if layout == "channels_last":
        x = x.to(memory_format=CL)
    wt = torch.randn(c, 1, kh, kw, generator=g).to(device)
    bs = torch.randn(c, generator=g).to(device) if bias else None
    gy = torch.randn(b, c, h, w, generator=g).to(device)
    # reference in fp32 from the same (rounded) values
    leaves = [t.to(dtype).requires_grad_() for t in (x, wt)] + ([bs.to(dtype).requires_grad_()] if bias else [])
    ref_leaves = [t.detach().float().requires_grad_() for t in leaves]
    # the reference runs PyTorch's native convolution, not oneDNN's: a CI run hung for 12+ minutes in
    # oneDNN's weight-gradient reduction barrier (reduce_diff_weights) on a worker whose other tests
    # change the thread count (pytorch/pytorch#91547 describes the barrier hang)
    with torch.backends.mkldnn.flags(enabled=False):
        ref = _reference(ref_leaves[0], ref_leaves[1], ref_leaves[2] if bias else None)
        ref_grads = torch.autograd.grad(ref, ref_leaves, gy.to(dtype).float())  # the same rounded gy
    with dw.use_algorithm(algo):
        y = dwconv2d(leaves[0], leaves[1], leaves[2] if bias else None)
    assert y.shape == (b, c, h, w) and y.dtype == dtype
    assert dwconv_algos.layout_of(y) == dwconv_algos.layout_of(leaves[0])  # the input's layout
    grads = torch.autograd.grad(y, leaves, gy.to(dtype))
    _close(y, ref, rel)
    for got, want in zip(grads, ref_grads):
        assert got.shape == want.shape
        _close(got, want, rel)


odd = st.integers(0, 12).map(lambda i: 2 * i + 1)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("algo", ALGOS)
@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    b=st.integers(1, 3), c=st.integers(1, 4), h=st.integers(1, 11), w=st.integers(1, 11),
    kh=odd, kw=odd, bias=st.booleans(),
)
def test_random_shapes_match_conv2d(algo, layout, b, c, h, w, kh, kw, bias):
    _check(algo, b, c, h, w, kh, kw, bias, layout=layout)


EDGE = [
    (1, 1, 5, 5, 3, 3),  # batch 1, channel 1
    (1, 3, 4, 4, 31, 31),  # kernel much larger than the map (cropped)
    (2, 2, 3, 7, 9, 1),  # k x 1 and rectangular map
    (2, 2, 9, 9, 11, 3),  # k x n stripe
    (2, 2, 9, 9, 3, 11),  # n x k stripe
    (2, 3, 16, 16, 13, 13),  # map larger than the kernel
    (1, 2, 1, 1, 5, 5),  # 1x1 map
    (2, 2, 2, 6, 13, 5),  # stripe larger than one side only
]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("shape", EDGE, ids=[str(s) for s in EDGE])
@pytest.mark.parametrize("bias", [False, True])
def test_edge_shapes_match_conv2d(algo, shape, bias, layout):
    _check(algo, *shape, bias, layout=layout)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("algo", ["gemm", "rows"])
def test_custom_backward_gradcheck(algo, layout):
    x = torch.randn(2, 2, 4, 5, dtype=torch.float64)
    x = (x.to(memory_format=CL) if layout == "channels_last" else x).requires_grad_()
    w = torch.randn(2, 1, 5, 3, dtype=torch.float64, requires_grad=True)
    with dw.use_algorithm(algo):
        assert torch.autograd.gradcheck(lambda a, b: dwconv2d(a, b), (x, w))


@pytest.mark.parametrize("algo", ["gemm", "rows", "fft"])
def test_only_needed_gradients(algo):
    x = torch.randn(2, 3, 6, 6)
    w = torch.randn(3, 1, 5, 5, requires_grad=True)
    with dw.use_algorithm(algo):
        (gw,) = torch.autograd.grad(dwconv2d(x, w).sum(), [w])
        (gx,) = torch.autograd.grad(dwconv2d(x.requires_grad_(), w.detach()).sum(), [x])
    ref_w, ref_x = torch.autograd.grad(_reference(x, w, None).sum(), [w, x])
    _close(gw, ref_w, 1e-4)
    _close(gx, ref_x, 1e-4)


def test_crop_keeps_result_and_zero_grad_outside():
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    w = torch.randn(3, 1, 21, 21, requires_grad=True)
    for algo in ALGOS:
        with dw.use_algorithm(algo):
            y = dwconv2d(x, w)
        _close(y, _reference(x, w, None), 1e-4)
        (gw,) = torch.autograd.grad(y.sum(), [w])
        outer = gw.clone()
        outer[..., 7:14, 7:14] = 0  # 2H-1 = 7 taps reach the map
        assert torch.count_nonzero(outer) == 0
        assert torch.count_nonzero(gw[..., 7:14, 7:14]) > 0
        _close(gw, torch.autograd.grad(_reference(x, w, None).sum(), [w])[0], 1e-4)


# ---------------------------------------------------------------- selection and switches

def _spy(monkeypatch):
    calls = []
    real = dw.run_algorithm

    def spy(name, *args):
        calls.append(name)
        return real(name, *args)

    monkeypatch.setattr(dw, "run_algorithm", spy)
    return calls


def test_env_var_forces_algorithm(monkeypatch):
    calls = _spy(monkeypatch)
    x, w = torch.randn(2, 3, 8, 8), torch.randn(3, 1, 7, 7)
    for algo in ("gemm", "rows", "fft"):
        monkeypatch.setenv("LKNAS_DWCONV", algo)
        assert dw.select_algorithm(x, w) == algo
        dwconv2d(x, w)
        assert calls[-1] == algo
    monkeypatch.setenv("LKNAS_DWCONV", "direct")
    n = len(calls)
    _close(dwconv2d(x, w), _reference(x, w, None), 1e-5)
    assert len(calls) == n  # direct is F.conv2d, no algorithm call
    monkeypatch.setenv("LKNAS_DWCONV", "bogus")
    with pytest.raises(ValueError, match="bogus"):
        dwconv2d(x, w)


@pytest.mark.parametrize("algo", ["gemm", "auto"])
def test_under_autocast_it_computes_in_the_autocast_dtype_through_its_algorithms(monkeypatch, algo):
    """A proxy trial on a GPU trains under bfloat16 autocast: a bf16 activation and a float32 weight
    must reach the fast algorithms (in bf16, as autocast's F.conv2d), not fall back to F.conv2d."""
    calls = _spy(monkeypatch)
    x = torch.randn(2, 8, 16, 16, requires_grad=True)
    w = torch.randn(8, 1, 15, 15, requires_grad=True)
    with dw.use_algorithm(algo), torch.autocast("cpu", dtype=torch.bfloat16):
        h = x * 1.0  # an activation as the block hands it over (float32 here; a bf16 one works alike)
        y = dwconv2d(h.bfloat16(), w)
        with dw.use_algorithm("off"):
            ref = dwconv2d(h, w)  # off: plain F.conv2d, autocast casts it
    assert y.dtype == ref.dtype == torch.bfloat16
    _close(y.float(), ref.float(), 2e-2)
    assert calls == ["gemm"] or (algo == "auto" and any("bfloat16" in k for k in dw.cache_info()["choices"]))
    y.float().square().sum().backward()
    assert w.grad is not None and w.grad.dtype == torch.float32 and x.grad.dtype == torch.float32


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("amp", [torch.bfloat16, torch.float16])
def test_cuda_autocast_runs_the_algorithms_in_the_autocast_dtype(monkeypatch, amp):
    """What a GPU trial does: a block's forward under autocast, float32 weights, gradients back."""
    calls = _spy(monkeypatch)
    x = torch.randn(4, 32, 16, 16, device="cuda", requires_grad=True)
    w = torch.randn(32, 1, 31, 31, device="cuda", requires_grad=True)
    with torch.autocast("cuda", dtype=amp):
        y = dwconv2d(x, w)
        with dw.use_algorithm("off"):
            ref = dwconv2d(x, w)
    assert y.dtype == ref.dtype == amp
    _close(y.float(), ref.float(), 2e-2)
    assert calls or any(str(amp).replace("torch.", "") in k for k in dw.cache_info()["choices"])
    y.float().square().sum().backward()
    assert w.grad.dtype == torch.float32 and torch.isfinite(w.grad).all()


def test_python_switch_wins_over_env_and_restores(monkeypatch):
    monkeypatch.setenv("LKNAS_DWCONV", "fft")
    x, w = torch.randn(2, 3, 8, 8), torch.randn(3, 1, 7, 7)
    assert dw.get_algorithm() == "fft"
    with dw.use_algorithm("gemm"):
        assert dw.select_algorithm(x, w) == "gemm"
        with dw.use_algorithm("direct"):
            assert dw.get_algorithm() == "direct"
        assert dw.get_algorithm() == "gemm"
    assert dw.get_algorithm() == "fft"
    dw.set_algorithm("rows")
    assert dw.select_algorithm(x, w) == "rows"
    dw.set_algorithm(None)
    assert dw.select_algorithm(x, w) == "fft"
    with pytest.raises(ValueError):
        dw.set_algorithm("winograd")


def test_rule_picks_fast_path_for_large_kernels_and_direct_for_small():
    rule = dwconv_select.rule
    lim = 512 * 2**20
    assert rule(64, 32, 16, 16, 31, 31, 4, True, False, lim) not in dwconv_select.STOCK
    assert rule(64, 64, 8, 8, 15, 15, 4, True, False, lim) == "gemm"
    assert rule(32, 64, 64, 64, 31, 31, 4, True, False, lim) == "fft"
    assert rule(64, 32, 16, 16, 3, 3, 4, True, False, lim) == "direct"
    # 3x3 stays F.conv2d on the input as given, in either layout, at either thread count: on a 4 px
    # map with 96 channels the estimates sent it to gemm, measured 0.31-0.53x of stock's speed
    for layout, threads in (("nchw", 2), ("channels_last", 2), ("nchw", 1), ("channels_last", 1)):
        assert rule(64, 96, 4, 4, 3, 3, 4, True, False, lim, layout, threads) == "direct"


def test_the_choice_follows_the_cpu_thread_count():
    """gemm's small batched GEMMs gain nothing from a second thread while oneDNN's passes do
    (`ONE_THREAD`), so the estimates rank differently by thread count (8 px, 11x11, 48 channels,
    channels_last: gemm on one thread, split on two): the rule asks with the thread count, and a
    choice made at one count is not reused at another."""
    rule, lim, cl = dwconv_select.rule, 512 * 2**20, "channels_last"
    assert rule(32, 48, 8, 8, 11, 11, 4, True, False, lim, cl, 1) == "gemm"
    assert rule(32, 48, 8, 8, 11, 11, 4, True, False, lim, cl, 2) == "split"
    x = torch.randn(32, 48, 8, 8).to(memory_format=CL).requires_grad_()
    w = torch.randn(48, 1, 11, 11, requires_grad=True)
    before = torch.get_num_threads()
    dwconv_select.clear_cache()
    try:
        torch.set_num_threads(1)
        assert dw.select_algorithm(x, w) == "gemm"
        torch.set_num_threads(2)
        assert dw.select_algorithm(x, w) == "split"
        assert {k.split("|")[0] for k in dwconv_select.cache_info()["choices"]} == {"cpu:1t", "cpu:2t"}
    finally:
        torch.set_num_threads(before)
        dwconv_select.clear_cache()


def test_rule_splits_passes_on_mid_maps_only_when_training():
    rule, lim, cl = dwconv_select.rule, 512 * 2**20, "channels_last"
    for layout in ("nchw", cl):
        assert rule(64, 32, 32, 32, 13, 13, 4, True, False, lim, layout) == "split"  # 32 px, 13x13 (issue 15)
        assert rule(16, 24, 64, 64, 13, 13, 4, True, False, lim, layout) == "split"
        assert rule(64, 32, 32, 32, 13, 13, 4, False, False, lim, layout) != "split"  # inference: no gradient
    # for a kernel wider than 13 NCHW stock's forward is slow: split reads channels_last only
    for kh, kw in ((13, 13), (15, 5), (31, 13)):
        assert "split" in dwconv_select.eligible(64, 32, 32, 32, kh, kw, 4, lim, "nchw")
    for kh, kw in ((15, 15), (5, 15), (5, 31)):
        assert "split" not in dwconv_select.eligible(64, 32, 32, 32, kh, kw, 4, lim, "nchw")
        assert "split" in dwconv_select.eligible(64, 32, 32, 32, kh, kw, 4, lim, cl)
    assert rule(64, 32, 32, 32, 15, 15, 4, True, False, lim, cl) == "split"
    # SLaK's stripe pair on the proxy's 16 px map: both halves in channels_last, the tall one in NCHW
    for threads in (1, 2):
        for kh, kw in ((31, 5), (5, 31)):
            assert rule(64, 32, 16, 16, kh, kw, 4, True, False, lim, cl, threads) == "split"
        assert rule(64, 32, 16, 16, 31, 5, 4, True, False, lim, "nchw", threads) == "split"


def test_fft_kernel_grad_equals_the_convolution_backward():
    g = torch.Generator().manual_seed(0)
    for b, c, h, w, kh, kw in ((3, 4, 9, 7, 5, 3), (2, 3, 4, 4, 7, 7), (1, 2, 1, 6, 1, 11)):
        x, gy = torch.randn(b, c, h, w, generator=g), torch.randn(b, c, h, w, generator=g)
        wt = torch.randn(c, 1, kh, kw, generator=g)
        want = torch.ops.aten.convolution_backward(gy, x, wt, None, [1, 1], [kh // 2, kw // 2], [1, 1], False, [0, 0],
                                                   c, [False, True, False])[1]
        _close(dwconv_algos.fft_kernel_grad(x, gy, kh, kw), want, 1e-4)


def test_planes_kernel_grad_equals_the_convolution_backward():
    """Squares, stripes, one row, a channels_last input and float64: the taps every plane sees."""
    g = torch.Generator().manual_seed(0)
    for b, c, h, w, kh, kw, layout in ((3, 4, 9, 7, 5, 3, None), (2, 3, 16, 16, 13, 13, CL), (4, 2, 12, 12, 13, 5, CL),
                                       (2, 5, 8, 8, 3, 13, None), (1, 2, 1, 6, 1, 11, None)):
        x, gy = torch.randn(b, c, h, w, generator=g), torch.randn(b, c, h, w, generator=g)
        if layout is not None:
            x, gy = x.contiguous(memory_format=layout), gy.contiguous(memory_format=layout)
        wt = torch.randn(c, 1, kh, kw, generator=g)
        want = torch.ops.aten.convolution_backward(gy, x, wt, None, [1, 1], [kh // 2, kw // 2], [1, 1], False, [0, 0],
                                                   c, [False, True, False])[1]
        _close(dwconv_algos.planes_kernel_grad(x, gy, kh, kw), want, 1e-4)
    x, gy = torch.randn(2, 3, 10, 10, dtype=torch.float64), torch.randn(2, 3, 10, 10, dtype=torch.float64)
    got = dwconv_algos.planes_kernel_grad(x, gy, 7, 7)
    want = torch.ops.aten.convolution_backward(gy, x, torch.zeros(3, 1, 7, 7, dtype=torch.float64), None, [1, 1],
                                               [3, 3], [1, 1], False, [0, 0], 3, [False, True, False])[1]
    assert got.dtype == torch.float64 and torch.allclose(got, want, atol=1e-10)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kh,kw,route", [(13, 13, "planes"), (15, 15, "fft"), (31, 5, "planes"), (15, 13, "planes"),
                                         (5, 31, "transposed planes"), (13, 15, "transposed planes")])
def test_split_takes_its_kernel_gradient_over_the_planes_up_to_13_wide_and_by_fft_beyond(kh, kw, route, layout,
                                                                                      monkeypatch):
    """oneDNN's planes convolution is fast while its output is at most 13 wide: a wide stripe takes
    the transposed planes (its taps come back in the kernel's orientation), a kernel wider and
    taller than 13 the FFT; the gradients equal stock's either way."""
    used = []
    for name in ("planes_kernel_grad", "fft_kernel_grad"):
        real = getattr(dwconv_algos, name)
        monkeypatch.setattr(dwconv_algos, name,
                            lambda *a, _r=real, _n=name: (used.append((_n, a[2], a[3])), _r(*a))[1])
    x = torch.randn(2, 3, 16, 16)
    x = (x.contiguous(memory_format=CL) if layout == "channels_last" else x).requires_grad_()
    w = torch.randn(3, 1, kh, kw, requires_grad=True)
    with dw.use_algorithm("split"):
        dw.dwconv2d(x, w).square().sum().backward()
    gx, gw = x.grad.clone(), w.grad.clone()
    x.grad = w.grad = None
    F.conv2d(x, w, padding=(kh // 2, kw // 2), groups=3).square().sum().backward()
    _close(gw, w.grad, 1e-4)
    _close(gx, x.grad, 1e-4)
    want = {"planes": ("planes_kernel_grad", kh, kw), "transposed planes": ("planes_kernel_grad", kw, kh),
            "fft": ("fft_kernel_grad", kh, kw)}[route]
    assert used == [want]


def test_workspace_limit_excludes_algorithms(monkeypatch):
    x = torch.randn(64, 64, 8, 8, requires_grad=True)
    w = torch.randn(64, 1, 15, 15, requires_grad=True)
    assert dw.select_algorithm(x, w) == "gemm"
    need = dwconv_algos.workspace_bytes("gemm", 64, 64, 8, 8, 15, 15, 4)
    monkeypatch.setenv("LKNAS_DWCONV_MAX_WORKSPACE_MB", str((need - 1) / 2**20))
    assert "gemm" not in dwconv_select.eligible(64, 64, 8, 8, 15, 15, 4, need - 1)
    assert dw.select_algorithm(x, w) != "gemm"
    monkeypatch.setenv("LKNAS_DWCONV_MAX_WORKSPACE_MB", "0")
    assert dw.select_algorithm(x, w) == "direct"
    assert dwconv_select.eligible(64, 64, 8, 8, 15, 15, 4, 0) == ["direct"]


def test_gemm_chunks_channels_under_a_small_limit(monkeypatch):
    calls = []
    real = torch.bmm

    def counting_bmm(*a, **k):
        calls.append(1)
        return real(*a, **k)

    # one channel's T + dL/dT at 6x6 is 2 * 36^2 * 4 bytes; allow 2 channels per chunk
    monkeypatch.setenv("LKNAS_DWCONV_MAX_WORKSPACE_MB", str(2.5 * 2 * 36**2 * 4 / 2**20))
    monkeypatch.setattr(torch, "bmm", counting_bmm)
    _check("gemm", 2, 5, 6, 6, 5, 5, True)
    assert len(calls) == 3 * 3  # 3 chunks (2, 2, 1 channels) x (forward, dx, dw)


@pytest.mark.parametrize("shape", [
    (2, 3, 12, 12, 5, 5),  # the smallest map built as a Hankel matrix (HANKEL_MIN_HW pixels)
    (2, 3, 16, 16, 51, 51),  # a kernel beyond what the map can see: cropped
    (2, 4, 16, 13, 7, 31),  # rectangular map and kernel
    (3, 2, 13, 17, 9, 3),
])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_gemm_hankel_form_is_exact_and_gathers_nothing(monkeypatch, shape, layout):
    """From HANKEL_MIN_HW map pixels, gemm's Toeplitz matrix is a strided copy of the padded kernel
    with the output pixels reversed (16-20% faster a step on 12-16 px maps): exact against the
    reference in both layouts, with a bias and in channel chunks, and no index gather."""
    gathers = []
    real = torch.index_select
    monkeypatch.setattr(torch, "index_select", lambda *a, **k: (gathers.append(1), real(*a, **k))[1])
    b, c, h, w, kh, kw = shape
    assert h * w >= dwconv_algos.HANKEL_MIN_HW
    _check("gemm", b, c, h, w, kh, kw, True, layout=layout)
    monkeypatch.setenv("LKNAS_DWCONV_MAX_WORKSPACE_MB", str(2.5 * 2 * (h * w) ** 2 * 4 / 2**20))  # 2 a chunk
    _check("gemm", b, c, h, w, kh, kw, False, layout=layout, seed=1)
    assert not gathers


def test_gemm_below_the_hankel_size_gathers_through_the_index_map(monkeypatch):
    gathers = []
    real = torch.index_select
    monkeypatch.setattr(torch, "index_select", lambda *a, **k: (gathers.append(1), real(*a, **k))[1])
    _check("gemm", 2, 3, 8, 8, 15, 15, True)
    assert len(gathers) == 2  # forward and dL/dx


def test_gemm_on_channels_last_copies_each_tensor_once():
    """gemm reached through copies (VIA_COPY): y and dL/dx come back channels_last, and dL/dy is
    copied to NCHW once, not handed to bmm with a pixel stride of C (which copies it matrix by
    matrix: 2.4x the whole pass on 64x128x8x8 with 31x31, measured)."""
    from torch.profiler import profile

    x = torch.randn(4, 16, 6, 6).to(memory_format=CL).requires_grad_()
    w = torch.randn(16, 1, 11, 11, requires_grad=True)
    with dw.use_algorithm("gemm"):
        y = dwconv2d(x, w)
        g = torch.randn_like(y)
        with profile() as prof:
            y.backward(g)
    assert dwconv_algos.layout_of(y) == "channels_last" and dwconv_algos.layout_of(x.grad) == "channels_last"
    copies = sum(e.count for e in prof.key_averages() if e.key == "aten::copy_")
    assert copies <= 4, f"{copies} copies in gemm's backward (per-matrix copies inside bmm?)"
    ref_y = _reference(x, w, None)
    rx, rw = torch.autograd.grad(ref_y, [x, w], g)
    _close(y, ref_y, 1e-4)
    _close(x.grad, rx, 1e-4)
    _close(w.grad, rw, 1e-4)


def test_rule_choice_cached_in_process():
    x, w = torch.randn(2, 3, 8, 8), torch.randn(3, 1, 7, 7)
    dwconv2d(x, w)
    dwconv2d(x, w)
    info = dw.cache_info()
    assert info["rule"] == 1 and info["hits"] == 1 and len(info["choices"]) == 1
    dwconv2d(torch.randn(2, 3, 9, 8), w)
    assert dw.cache_info()["rule"] == 2


def test_grad_mode_is_part_of_the_key():
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    w = torch.randn(3, 1, 7, 7, requires_grad=True)
    dwconv2d(x, w)
    with torch.no_grad():
        dwconv2d(x, w)
    keys = list(dw.cache_info()["choices"])
    assert len(keys) == 2 and any("|grad|" in k for k in keys) and any("|nograd|" in k for k in keys)


def test_autotune_times_and_caches_on_disk(monkeypatch, tmp_path):
    path = tmp_path / "sub" / "dwconv.json"
    monkeypatch.setenv("LKNAS_DWCONV_CACHE", str(path))
    dw.set_autotune(True)
    seen = []
    real = dwconv_select.autotune

    def spy(run, x, kh, kw, grad, limit, **kw_):
        algo, times = real(run, x, kh, kw, grad, limit, **kw_)
        seen.append((grad, times))
        return algo, times

    monkeypatch.setattr(dwconv_select, "autotune", spy)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    w = torch.randn(3, 1, 7, 7, requires_grad=True)
    y = dwconv2d(x, w)
    _close(y, _reference(x, w, None), 1e-4)
    with torch.no_grad():
        dwconv2d(x, w)
    assert [g for g, _ in seen] == [True, False]
    assert all(len(t) >= 2 and min(t.values()) > 0 for _, t in seen)
    dwconv2d(x, w)
    assert len(seen) == 2  # cached: not timed again
    data = json.loads(path.read_text())
    assert len(data["choices"]) == 2
    assert set(data["choices"].values()) <= set(ALGOS)
    assert [p.name for p in path.parent.iterdir()] == ["dwconv.json"]  # no temp files left
    # a new process (simulated): choices come from disk, nothing is timed
    dw.clear_cache()
    monkeypatch.setattr(dwconv_select, "autotune", lambda *a, **k: pytest.fail("timed again"))
    key = next(k for k in data["choices"] if "|grad|" in k)
    assert dw.select_algorithm(x, w) == data["choices"][key]
    assert dw.cache_info()["disk"] == 2


def test_autotune_off_by_default(monkeypatch):
    monkeypatch.setattr(dwconv_select, "autotune", lambda *a, **k: pytest.fail("autotuned"))
    dwconv2d(torch.randn(2, 3, 8, 8), torch.randn(3, 1, 7, 7))


def test_corrupt_disk_cache_is_ignored(monkeypatch, tmp_path):
    path = tmp_path / "c.json"
    path.write_text("{not json")
    monkeypatch.setenv("LKNAS_DWCONV_CACHE", str(path))
    x, w = torch.randn(2, 3, 8, 8), torch.randn(3, 1, 7, 7)
    _close(dwconv2d(x, w), _reference(x, w, None), 1e-4)


# ---------------------------------------------------------------- dtypes, layouts, modules

@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_cpu(algo, dtype):
    _check(algo, 2, 3, 8, 8, 7, 5, True, dtype=dtype, rel=3e-2)


# shapes where the rule picks different algorithms (direct, rows, fft, ...) for one input layout
ROUTED = [(2, 4, 7, 9, 5, 7), (8, 16, 16, 16, 31, 31), (4, 8, 32, 32, 13, 13), (4, 8, 8, 8, 3, 3), (4, 8, 16, 16, 31, 5)]


def _algo_inputs(monkeypatch):
    """Spy on what reaches the algorithms: (name, x) for run_algorithm and ('conv', x) for F.conv2d."""
    seen = []
    real_run, real_conv = dw.run_algorithm, dw.F.conv2d

    def run(name, x, *a):
        seen.append((name, x))
        return real_run(name, x, *a)

    def conv(x, *a, **k):
        seen.append(("conv", x))
        return real_conv(x, *a, **k)

    monkeypatch.setattr(dw, "run_algorithm", run)
    monkeypatch.setattr(dw.F, "conv2d", conv)
    return seen


def _assert_channels_last_and_exact(y, x, w):
    """y = dwconv2d(x, w) kept x's channels_last layout and matches F.conv2d with both gradients."""
    assert dwconv_algos.layout_of(y) == "channels_last"
    _close(y, _reference(x, w, None), 1e-4)
    gx, gw = torch.autograd.grad(y.square().sum(), [x, w])
    rx, rw = torch.autograd.grad(_reference(x, w, None).square().sum(), [x, w])
    _close(gx, rx, 1e-4)
    _close(gw, rw, 1e-4)


@pytest.mark.parametrize("tune", [False, True])
@pytest.mark.parametrize("shape", ROUTED, ids=[str(s) for s in ROUTED])
def test_channels_last_input_is_used_without_a_copy(monkeypatch, shape, tune):
    b, c, h, w, kh, kw = shape
    x = torch.randn(b, c, h, w).to(memory_format=CL).requires_grad_()
    wt = torch.randn(c, 1, kh, kw, requires_grad=True)
    dw.set_autotune(tune)
    algo = dw.select_algorithm(x, wt)
    if tune and "channels_last" in dwconv_algos.VIA_COPY.get(algo, ()):
        dw.clear_cache()  # autotune timed gemm with its copies fastest: check the copy-free choice of the rule
        dw.set_autotune(False)
        algo = dw.select_algorithm(x, wt)
    assert "channels_last" in dwconv_algos.ACCEPTS[algo]
    seen = _algo_inputs(monkeypatch)
    real_contiguous = torch.Tensor.contiguous

    # the one measured exception: split's forward goes through NCHW copies where oneDNN's
    # channels_last forward is slow (13 wide, 11-13 tall; test_split_forward_window below)
    copy_allowed = algo == "split" and dwconv_algos.cl_forward_via_nchw(kh, kw)

    def contiguous(t, *a, **k):
        out = real_contiguous(t, *a, **k)
        if t.data_ptr() == x.data_ptr() and out.data_ptr() != t.data_ptr() and not copy_allowed:
            pytest.fail("the input was copied with .contiguous()")
        return out

    monkeypatch.setattr(torch.Tensor, "contiguous", contiguous)
    y = dwconv2d(x, wt)
    monkeypatch.undo()
    assert seen and seen[0][1].data_ptr() == x.data_ptr()  # the algorithm reads x itself
    _assert_channels_last_and_exact(y, x, wt)


def test_layout_is_part_of_the_key_and_routes_the_choice():
    x = torch.randn(64, 32, 16, 16, requires_grad=True)
    w = torch.randn(32, 1, 5, 5, requires_grad=True)
    assert dw.select_algorithm(x, w) == "direct_cl"  # NCHW: stock channels_last with its copies
    xc = x.detach().to(memory_format=CL).requires_grad_()
    assert dw.select_algorithm(xc, w) == "direct"  # channels_last: the same kernel without copies
    keys = list(dw.cache_info()["choices"])
    assert len(keys) == 2 and any("|nchw|" in k for k in keys) and any("|channels_last|" in k for k in keys)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_split_is_chosen_for_either_layout_up_to_13x13_and_is_exact(layout):
    """13x13 on a 16 px map: the stock forward and input gradient in x's layout, the kernel gradient
    over the planes; the output keeps x's layout and both gradients are the stock ones."""
    x = torch.randn(64, 32, 16, 16)
    x = (x.contiguous(memory_format=CL) if layout == "channels_last" else x).requires_grad_()
    w = torch.randn(32, 1, 13, 13, requires_grad=True)
    assert dw.select_algorithm(x, w) == "split"
    y = dwconv2d(x, w)
    y.square().sum().backward()
    assert dwconv_algos.layout_of(y) == layout
    gx, gw = x.grad.clone(), w.grad.clone()
    x.grad = w.grad = None
    F.conv2d(x, w, padding=6, groups=32).square().sum().backward()
    _close(gw, w.grad, 1e-4)
    _close(gx, x.grad, 1e-4)


def test_split_forward_window_bounds():
    via = dwconv_algos.cl_forward_via_nchw
    assert via(13, 13) and via(11, 13) and not via(11, 11) and not via(5, 13) and not via(13, 5)
    assert not via(15, 13) and not via(31, 31)


@pytest.mark.parametrize("kh, kw, expect", [(13, 13, "nchw"), (11, 11, "channels_last")])
def test_split_forward_window(monkeypatch, kh, kw, expect):
    """split runs a channels_last forward through NCHW only in the window where that was measured
    faster (13 wide, 11-13 tall), and the result keeps the input's layout and is exact."""
    x = torch.randn(4, 8, 16, 16).contiguous(memory_format=CL).requires_grad_()
    w = torch.randn(8, 1, kh, kw, requires_grad=True)
    seen = _algo_inputs(monkeypatch)
    with dw.use_algorithm("split"):
        y = dwconv2d(x, w)
    monkeypatch.undo()
    convs = [t for name, t in seen if name == "conv"]
    assert seen[0][0] == "split" and dwconv_algos.layout_of(convs[0]) == expect
    _assert_channels_last_and_exact(y, x, w)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_rule_never_prefers_an_estimate_worse_than_stock(layout):
    """The rule's choice is never estimated slower than the best stock convolution for the input."""
    lim = 512 * 2**20
    for b, c, h, k in [(64, 64, 16, 31), (64, 128, 8, 31), (64, 32, 32, 13), (64, 96, 16, 51), (32, 48, 32, 27),
                       (16, 24, 64, 13), (64, 32, 16, 3), (4, 128, 56, 31)]:
        k = min(k, 2 * h - 1)
        choice = dwconv_select.rule(b, c, h, h, k, k, 4, True, False, lim, layout)
        est = {a: dwconv_select.estimate_ms(a, b, c, h, h, k, k, True, False, layout)
               for a in dwconv_select.eligible(b, c, h, h, k, k, 4, lim, layout)}
        assert choice in est
        assert est[choice] <= min(est[a] for a in dwconv_select.STOCK if a in est)


def test_a_channels_last_input_goes_to_gemm_through_copies_where_that_wins():
    """On a small map with a large kernel the whole-map GEMM with the copies to NCHW and back beats
    every copy-free algorithm (dwconv_rule.py: 8 px, 15x15, 48 channels: 5.3 ms + copies against
    split's 11.0): a channels_last model gets it, in its layout, with exact gradients; with a
    small kernel the copies are not worth it."""
    lim = 512 * 2**20
    assert "gemm" in dwconv_select.eligible(64, 48, 8, 8, 15, 15, 4, lim, "channels_last")
    assert dwconv_select.rule(64, 48, 8, 8, 15, 15, 4, True, False, lim, "channels_last") == "gemm"
    assert dwconv_select.rule(64, 48, 8, 8, 5, 5, 4, True, False, lim, "channels_last") == "direct"
    x = torch.randn(64, 48, 8, 8).to(memory_format=CL).requires_grad_()
    w = torch.randn(48, 1, 15, 15, requires_grad=True)
    assert dw.select_algorithm(x, w) == "gemm"
    y = dwconv2d(x, w)
    _assert_channels_last_and_exact(y, x, w)


def test_stock_channels_last_is_selectable_for_nchw_input(monkeypatch):
    """direct_cl converts an NCHW input, runs stock channels_last and converts back; autotune and
    the rule may pick it. Autotune always times both stock candidates, and on this tiny shape their
    race is the machine's (a CI run timed plain NCHW faster), so NCHW is made slow here."""
    monkeypatch.setattr(dwconv_select, "estimate_ms",
                        lambda a, *args, **k: 1.0 if a == "direct_cl" else 100.0)
    run = dw._run

    def slow_nchw(name, *args):
        if name == "direct":
            time.sleep(0.2)  # far beyond any scheduling hiccup of a loaded 2-core machine
        return run(name, *args)

    monkeypatch.setattr(dw, "_run", slow_nchw)
    dw.set_autotune(True)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    w = torch.randn(3, 1, 7, 7, requires_grad=True)
    assert dw.select_algorithm(x, w) == "direct_cl"
    dw.set_autotune(False)
    dw.clear_cache()
    assert dw.select_algorithm(x, w) == "direct_cl"
    y = dwconv2d(x, w)
    assert y.is_contiguous()
    _close(y, _reference(x, w, None), 1e-4)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_autotune_always_times_the_stock_convolutions(monkeypatch, layout):
    """However bad their estimate, stock candidates are timed: a tuned choice cannot lose to them."""
    monkeypatch.setattr(dwconv_select, "estimate_ms",
                        lambda a, *args, **k: 1e6 if a in dwconv_select.STOCK else 1.0)
    x = torch.randn(2, 3, 8, 8)
    x = x.to(memory_format=CL) if layout == "channels_last" else x
    _, times = dwconv_select.autotune(dw._run, x, 7, 7, True, 512 * 2**20)
    want = {a for a in dwconv_select.STOCK if layout in dwconv_algos.ACCEPTS[a]}
    assert want and want <= set(times)


@pytest.mark.parametrize("algo", ["gemm", "rows"])
def test_workspace_buffers_are_reused_across_calls(algo):
    """The big per-chunk temporaries are allocated once per shape, not on every call (on CPU a
    fresh allocation of that size is page-faulted again each time: the stalls of issue 15)."""
    dwconv_algos.release_workspace()
    x = torch.randn(4, 8, 12, 12, requires_grad=True)
    w = torch.randn(8, 1, 9, 9, requires_grad=True)

    def call():
        with dw.use_algorithm(algo):
            dwconv2d(x, w).sum().backward()
        return {k: b.data_ptr() for k, b in dwconv_algos._WORKSPACE.buffers.items()}

    first = call()
    assert first and dwconv_algos.workspace_info()
    assert call() == first  # same buffers, nothing reallocated
    dwconv_algos.release_workspace()
    assert dwconv_algos.workspace_info() == {}


@pytest.mark.parametrize("algo", ["gemm", "rows"])
def test_a_call_under_inference_mode_does_not_break_training_after_it(algo):
    """A trial times its deploy form under torch.inference_mode() before it trains: a workspace
    buffer made there is an inference tensor, which training may not write (found in a search:
    RuntimeError 'Inplace update to inference tensor outside InferenceMode')."""
    dwconv_algos.release_workspace()
    x = torch.randn(4, 8, 12, 12)
    w = torch.randn(8, 1, 9, 9, requires_grad=True)
    with dw.use_algorithm(algo):
        with torch.inference_mode():
            expected = dwconv2d(x, w.detach())
        out = dwconv2d(x, w)
        out.sum().backward()
    torch.testing.assert_close(out.detach(), expected)
    assert w.grad is not None
    dwconv_algos.release_workspace()


def test_index_cache_drops_the_oldest_not_all(monkeypatch):
    monkeypatch.setattr(dwconv_algos, "_INDEX_CACHE", {})
    one = dwconv_algos._map_index(6, 6, 5, 5, torch.device("cpu"))
    budget = 2.5 * one.numel() * one.element_size()
    monkeypatch.setattr(dwconv_algos, "_INDEX_CACHE_MAX_BYTES", budget)
    for k in (7, 9):
        dwconv_algos._map_index(6, 6, k, k, torch.device("cpu"))
    keys = [key[3] for key in dwconv_algos._INDEX_CACHE]
    assert keys == [7, 9]  # the oldest (5) went, the two newest stay


def test_module_uses_fast_path_and_trace_sees_a_convolution(monkeypatch):
    calls = _spy(monkeypatch)
    conv = DepthwiseConv2d(4, 9, bias=True)
    x = torch.randn(2, 4, 8, 8)
    with dw.use_algorithm("gemm"):
        y = conv(x)
        assert calls == ["gemm"]
        traced = torch.jit.trace(conv, x)
    _close(y, _reference(x, conv.weight, conv.bias), 1e-4)
    assert "aten::_convolution" in str(traced.inlined_graph)  # fvcore counts it


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_cuda_matches_conv2d(algo, dtype):
    rel = 1e-4 if dtype == torch.float32 else 3e-2
    if dtype == torch.float32:
        torch.backends.cuda.matmul.allow_tf32 = False
    for shape in [(2, 3, 16, 16, 31, 31), (2, 3, 9, 13, 11, 3), (1, 1, 4, 4, 13, 13)]:
        _check(algo, *shape, True, dtype=dtype, device="cuda", rel=rel)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_cuda_selection_key():
    x = torch.randn(2, 3, 8, 8, device="cuda")
    w = torch.randn(3, 1, 7, 7, device="cuda")
    dwconv2d(x, w)
    assert next(iter(dw.cache_info()["choices"])).startswith("cuda")


def test_off_is_plain_conv2d_with_the_full_kernel(monkeypatch):
    seen = []
    real = F.conv2d

    def spy(x, w, *a, **k):
        seen.append(tuple(w.shape[-2:]))
        return real(x, w, *a, **k)

    monkeypatch.setattr(dw.F, "conv2d", spy)
    calls = _spy(monkeypatch)
    x, w = torch.randn(2, 3, 4, 4), torch.randn(3, 1, 15, 15)
    with dw.use_algorithm("off"):
        dwconv2d(x, w)
    with dw.use_algorithm("direct"):
        dwconv2d(x, w)
    assert seen == [(15, 15), (7, 7)] and calls == []
    monkeypatch.setenv("LKNAS_DWCONV", "off")
    assert dw.get_algorithm() == "off"


def test_torch_export_keeps_a_dynamic_batch():
    """torch.export must not see the per-shape algorithm choice (it would pin the batch size)."""
    conv = DepthwiseConv2d(4, 31).eval()
    x = torch.randn(2, 4, 8, 8)
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(conv, (x,), dynamic_shapes=({0: batch},))
    x5 = torch.randn(5, 4, 8, 8)
    ref = F.conv2d(x5, conv.weight, padding=15, groups=4)
    assert torch.allclose(program.module()(x5), ref, atol=1e-5)


def test_verify_keeps_a_pick_that_beats_stock_and_replaces_one_that_does_not(tmp_path, monkeypatch):
    """The rule's pick against the stock forms, timed on this machine: a pick stock beats twice in
    a row is replaced (and the decision kept on disk for every process of the machine)."""
    monkeypatch.setenv("LKNAS_DWCONV_VERIFY", "1")
    monkeypatch.setenv("LKNAS_DWCONV_VERIFIED_CACHE", str(tmp_path / "verified.json"))
    dwconv_select.clear_cache()
    real = dw._run
    slow = {"gemm"}

    def run(name, x, w):  # `gemm` made slower than any stock form by a sleep
        if name in slow:  # 0.4 s: stock's ~50 ms here reached 0.1 s in a loaded CI run (flaky at 0.1)
            time.sleep(0.4)
        return real(name, x, w)

    monkeypatch.setattr(dw, "_run", run)
    x = torch.randn(64, 64, 8, 8, requires_grad=True)
    w = torch.randn(64, 1, 15, 15, requires_grad=True)
    assert dwconv_select.rule(64, 64, 8, 8, 15, 15, 4, True, False, 512 * 2**20) == "gemm"
    choice = dw.select_algorithm(x, w)
    assert choice in dwconv_select.STOCK
    saved = json.loads((tmp_path / "verified.json").read_text())["choices"]
    assert list(saved.values()) == [choice] and "|nchw|64x64x8x8|15x15|grad|" in next(iter(saved))
    # a new process of the same machine reads the decision instead of timing again
    dwconv_select.clear_cache()
    monkeypatch.setattr(dwconv_select, "verify", lambda *a, **k: pytest.fail("timed again"))
    assert dw.select_algorithm(x, w) == choice and dwconv_select.cache_info()["verified"] == 1
    # a pick that wins is kept
    monkeypatch.undo()
    monkeypatch.setenv("LKNAS_DWCONV_VERIFY", "1")
    monkeypatch.setenv("LKNAS_DWCONV_VERIFIED_CACHE", str(tmp_path / "verified2.json"))
    slow.clear()
    slow.update({"direct", "direct_cl"})
    monkeypatch.setattr(dw, "_run", run)
    dwconv_select.clear_cache()
    assert dw.select_algorithm(x, w) == "gemm"
    dwconv_select.clear_cache()


def test_verify_is_off_in_the_tests_and_leaves_the_one_stock_form_untimed(monkeypatch, tmp_path):
    assert not dwconv_select.verify_enabled()  # conftest: the rule alone, deterministic
    monkeypatch.setenv("LKNAS_DWCONV_VERIFY", "1")
    monkeypatch.setenv("LKNAS_DWCONV_VERIFIED_CACHE", str(tmp_path / "verified.json"))
    monkeypatch.setattr(dwconv_select, "verify", lambda *a, **k: pytest.fail("stock alone needs no check"))
    dwconv_select.clear_cache()
    x = torch.randn(8, 16, 16, 16).contiguous(memory_format=CL).requires_grad_()
    w = torch.randn(16, 1, 3, 3, requires_grad=True)
    assert dw.select_algorithm(x, w) == "direct"  # channels_last 3x3: stock's one form, not timed
    # an NCHW pick with no other stock form in the workspace limit: verified without a timing
    monkeypatch.undo()
    monkeypatch.setenv("LKNAS_DWCONV_VERIFY", "1")
    monkeypatch.setenv("LKNAS_DWCONV_VERIFIED_CACHE", str(tmp_path / "verified.json"))
    monkeypatch.setenv("LKNAS_DWCONV_MAX_WORKSPACE_MB", "0")
    monkeypatch.setattr(dwconv_select, "_time_candidates", lambda *a, **k: pytest.fail("nothing to compare with"))
    dwconv_select.clear_cache()
    assert dw.select_algorithm(torch.randn(8, 16, 16, 16, requires_grad=True), w) == "direct"
    assert dwconv_select.cache_info()["verified"] == 1
    dwconv_select.clear_cache()
