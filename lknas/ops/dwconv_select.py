"""Choosing a depthwise-convolution algorithm per (device, dtype, layout, shape, grad): a
cost-model rule, optional measured autotuning, and the in-process / on-disk choice cache.

The input's memory layout (NCHW or channels_last) is part of every key: a channels_last input is
routed to algorithms that read it without a copy (`dwconv_algos.reads`), or to `gemm` through
copies where its estimate with them still wins (`VIA_COPY`), and the baseline an algorithm has
to beat is the best stock convolution for that input (`STOCK`): `direct` and, for an NCHW input,
`direct_cl` (stock channels_last with the conversions).

Settings (environment, read on each call so tests and scripts can change them):
- `LKNAS_DWCONV`: auto (default) | direct | direct_cl | gemm | rows | fft | split | off. Forces one algorithm everywhere
  (an algorithm over the workspace limit still runs when forced); `off` is plain `F.conv2d` with
  the full kernel (no crop), the code path before the fast algorithms, kept for comparison.
- `LKNAS_DWCONV_MAX_WORKSPACE_MB`: workspace limit, default 512.
- `LKNAS_DWCONV_AUTOTUNE`: 1 to time the eligible algorithms on first use of a shape (off by
  default: the rule is deterministic, so seeded runs pick the same algorithms everywhere).
- `LKNAS_DWCONV_CACHE`: path of a JSON file that keeps the autotuned choices across processes.
- `LKNAS_DWCONV_VERIFY`: 1 (default) to check the rule against stock on the machine it runs on:
  where the rule picks other than the one stock convolution for the input (an algorithm, or for
  an NCHW input one of the two stock forms), the pick and the stock forms are timed once, under
  the node's quiet lock, and a stock form replaces the pick only if it is faster in two rounds in a
  row. The decision is kept per machine (CPU model or GPU name, torch version) in
  `$LKNAS_DWCONV_VERIFIED_CACHE` (default `~/.cache/lknas/dwconv_verified.json`), so every process
  of a machine decides a shape the same way, as the stripe deploy forms are (`lknas.ops.stripe_form`).
  Why: the rule's estimates were fitted on one 2-core CPU; on an AVX-512 EPYC oneDNN's kernels on
  2-8 px maps ran 4-7x faster relative to the rest, and the rule's picks lost to stock on 26 of 136
  measured cases (`tests/test_ops_dwconv_rule_measured.py`). 0 keeps the rule alone (deterministic
  on every machine; the tests run so).
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import torch

from lknas.ops.dwconv_algos import (
    ALGORITHMS, PLANES_MAX_K, VIA_COPY, fft_size, layout_of, macs, reads, rows_transposed,
    workspace_bytes,
)

__all__ = [
    "Key",
    "STOCK",
    "make_key",
    "forced_algorithm",
    "workspace_limit",
    "autotune_enabled",
    "eligible",
    "estimate_ms",
    "rule",
    "choose",
    "clear_cache",
    "cache_info",
]

Key = tuple  # (device (with a CPU's threads), dtype, layout, B, C, H, W, kh, kw, grad)
STOCK = ("direct", "direct_cl")  # plain PyTorch convolutions: what `auto` must never lose to
CACHE_VERSION = 5  # 2: keys carry the layout; 3: a CPU's thread count; 4: split got faster; 5: split reads NCHW

_LOCK = threading.Lock()
_CHOICES: dict[str, str] = {}  # key string -> algorithm (rule or autotuned)
_TUNED: set[str] = set()  # keys whose choice was measured
_DISK_LOADED: dict[str, float] = {}  # cache path -> mtime when loaded
_STATS = {"rule": 0, "autotune": 0, "disk": 0, "hits": 0, "verified": 0}


def make_key(x: torch.Tensor, kh: int, kw: int, grad: bool) -> str:
    b, c, h, w = x.shape
    dev = x.device.type if x.device.index is None else f"{x.device.type}:{x.device.index}"
    if dev == "cpu":  # the fastest algorithm depends on the thread count (`ONE_THREAD`)
        dev = f"cpu:{torch.get_num_threads()}t"
    return (f"{dev}|{str(x.dtype).replace('torch.', '')}|{layout_of(x)}|{b}x{c}x{h}x{w}|{kh}x{kw}|"
            f"{'grad' if grad else 'nograd'}")


def forced_algorithm(override: str | None) -> str | None:
    """The algorithm forced by the Python switch (`override`) or else by LKNAS_DWCONV; None = auto."""
    name = override if override is not None else os.environ.get("LKNAS_DWCONV", "auto").strip().lower()
    if name in ("", "auto"):
        return None
    if name not in ALGORITHMS and name != "off":
        raise ValueError(
            f"LKNAS_DWCONV / set_algorithm: unknown algorithm {name!r}; use auto, off or one of {ALGORITHMS}"
        )
    return name


def workspace_limit() -> int:
    """Workspace limit in bytes (LKNAS_DWCONV_MAX_WORKSPACE_MB, default 512).

    Raises:
        ValueError: the variable is not a finite number >= 0.
    """
    raw = os.environ.get("LKNAS_DWCONV_MAX_WORKSPACE_MB", "512")
    try:
        mb = float(raw)
    except ValueError:
        mb = math.nan
    if not math.isfinite(mb) or mb < 0:
        raise ValueError(f"LKNAS_DWCONV_MAX_WORKSPACE_MB={raw!r}: give a size in MB, a number >= 0 (default 512)")
    return int(mb * 2**20)


def autotune_enabled(override: bool | None) -> bool:
    if override is not None:
        return override
    return os.environ.get("LKNAS_DWCONV_AUTOTUNE", "0").strip().lower() in ("1", "true", "yes", "on")


def eligible(b: int, c: int, h: int, w: int, kh: int, kw: int, esize: int, limit: int,
             layout: str = "nchw") -> list[str]:
    """Algorithms that read `layout` (without a copy, or through copies: `VIA_COPY`) and whose
    workspace fits `limit` bytes (direct always does)."""
    return [a for a in ALGORITHMS if (reads(a, layout, kh, kw) or layout in VIA_COPY.get(a, ()))
            and (a == "direct" or workspace_bytes(a, b, c, h, w, kh, kw, esize) <= limit)]


def _channels_last_ms(name: str, b: int, c: int, h: int, w: int, kh: int, kw: int, threads: int = 2) -> float:
    """Forward+backward ms of the algorithms eligible for a channels_last input (`gemm` through
    its copies), fitted (least squares on relative error) to every one of them timed: the
    peleK_space proxy shapes (benchmarks/dwconv_rule.py) and issue 15's six shapes
    (benchmarks/dwconv_passes.py), 2-core CPU at 103-119 GFLOP/s GEMM, two runs. Within +-30% on
    most shapes; stock's kernel gradient with large kernels on 32 px maps runs up to 3.5x over its
    term (the rule then keeps stock where an algorithm would have won: slower, never wrong).

    oneDNN's depthwise kernel gradient costs ~30 ns per (batch, channel, tap) whatever the map
    size (on a 2-8 px map that is 5-20x its multiply-adds' worth), so on small maps `gemm` with
    its copies (8 px, 15x15: 8.7 against stock's 36.6 ms) and on larger ones `split` (32 px,
    13x13: 61 against 75) beat it.

    `gemm`'s terms are fitted per thread count (1: the 1-thread runs at batch 64 and 32; 2: the
    2-thread run): its batched GEMMs of a few hundred elements gain nothing from a second thread,
    so its cost per plane is lower on one (`ONE_THREAD` scales the others)."""
    planes = float(b * c)
    if name == "direct":
        stripe = max(kh, kw) / min(kh, kw)  # a k x n stripe costs more per tap than a square
        return (macs("direct", b, c, h, w, kh, kw) * 0.215e-6 + planes * kh * kw * 30e-6 * (1 + 0.1 * (stripe - 1))
                + planes * 0.37e-3)
    if name == "fft":
        nh, nw = fft_size(h, w, kh, kw)
        return planes * (nh * nw * 22e-6 + 0.8e-3)
    if name == "split" and min(kh, kw) <= PLANES_MAX_K:
        # stock forward + input gradient, the kernel gradient over the planes: 0.37-0.85 (median 0.5)
        # of stock's measured time on 4-64 px maps with 7x7-13x13 kernels (29 shapes, 2 threads;
        # 0.44-0.88 on one); with 5x5 kernels 0.5-2x (oneDNN's own kernel gradient is cheap there).
        # A stripe (2:1 or longer; over the transposed planes if wide): `PLANES_OF_STRIPE`
        if kh * kw < 49:
            return math.inf
        share = PLANES_OF_STRIPE if max(kh, kw) >= 2 * min(kh, kw) else PLANES_OF_STOCK
        return share * _channels_last_ms("direct", b, c, h, w, kh, kw)
    if name == "split":  # stock forward + input gradient, the FFT kernel gradient (one transform pair fewer)
        if min(h, w) < 24:
            # measured on 16 px maps: 0.86-1.06x of stock with 13x13 kernels in three runs, and
            # beaten by gemm (with its copies) or rows wherever it beats stock clearly: left to autotune
            return math.inf
        nh, nw = fft_size(h, w, kh, kw)
        return macs("direct", b, c, h, w, kh, kw) * 0.025e-6 + planes * (nh * nw * 15.6e-6 + 0.51e-3)
    if name == "rows":
        tw, tkh = (h, kw) if rows_transposed(h, w, kh, kw) else (w, kh)  # Toeplitz side, unfolded rows
        small = max(1.0, 32.0 / tw) ** 1.5  # GEMMs with a short inner side run slowly
        return macs("rows", b, c, h, w, kh, kw) * 0.075e-6 * small + planes * h * w * tkh * 1.7e-6 + c * 0.07
    if name == "gemm":  # T built per channel, a cost per (batch, channel) plane, + the four copies (VIA_COPY)
        hw = h * w
        a, p0, p1 = (1.57e-5, 0.48e-3, 0.9e-5) if threads == 1 else (1.41e-5, 0.59e-3, 1.25e-5)
        return c * float(hw * hw) * a + planes * (p0 + p1 * min(hw, 64)) + planes * hw * 4e-6
    raise ValueError(f"{name} does not read a channels_last input")


PLANES_OF_STOCK = 0.55  # `split` with its kernel gradient over the planes, as a share of stock's time
# `split` on a k x n or n x k stripe as a share of stock's estimate (which is one for both orientations,
# while oneDNN's kernel gradient of a wide one runs 7x longer): measured 0.12-0.18 of it on 8 and 16 px
# maps with 31 x 5 and 15 x 5 stripes, both orientations, batch 64 and 32, on the AVX-512 EPYC where
# stock and GEMM ran ~2.3x faster than on the CPU the estimates were fitted on, so 0.3 on their scale
# (one thread, interleaved, 2026-12-02, with other work on the machine: benchmarks/dwconv_rule.py
# times it on an idle one)
PLANES_OF_STRIPE = 0.3
# `split` on an NCHW input (kernels up to 13 wide, 7x7 and up) as a share of stock channels_last's
# time with its copies: 0.30-0.51 (median 0.38) on 8-64 px maps with 7x7-13x13 kernels, batch 16-64
# (one thread, interleaved, 2026-12-02, with other work on the machine: benchmarks/dwconv_rule.py
# times it on an idle one)
SPLIT_NCHW_OF_STOCK_CL = 0.45

# Forward+backward time on one CPU thread over two (benchmarks/dwconv_rule.py at batch 64 with
# --threads 1 and 2: geometric means over the 24 proxy cases, per algorithm; spread 0.6-1.4x of it,
# up to 2.1x for stock's kernel gradient with 31-wide kernels). `gemm` (NCHW) measured 0.8, but
# varies 0.5-1.1 by shape: at 0.8 an 8 px 5x5 near-tie went to gemm, 0.93x of stock in a re-run.
# `gemm` on a channels_last input has its own 1-thread fit (`_channels_last_ms`); more than two
# threads use the 2-thread estimates.
ONE_THREAD = {"direct": 1.6, "direct_cl": 1.5, "gemm": 0.9, "rows": 1.15, "fft": 1.45, "split": 1.4}


def estimate_ms(name: str, b: int, c: int, h: int, w: int, kh: int, kw: int, grad: bool, cuda: bool = False,
                layout: str = "nchw", threads: int = 2) -> float:
    """Rough forward+backward time in ms on the 2-core reference CPU (fp32) with `threads` torch
    threads (1: `ONE_THREAD`, as a search trial runs; 2 or more: the 2-thread fits); only the
    ranking among the algorithms eligible for one input layout matters, and without `grad` every
    estimate is scaled alike (split then runs the stock forward alone). `cuda` is accepted for
    the key but the CPU model is used (autotune where the ranking matters on a GPU).

    A channels_last input: `_channels_last_ms`, fitted in ms to measurements on that input. An
    NCHW input: fitted by hand to measurements of every algorithm on the benchmark shapes
    (benchmarks/dwconv.py --all) and the peleK_space proxy shapes (benchmarks/dwconv_rule.py,
    results/benchmarks/dwconv_rule-cpu2t.md), scaled to the reference CPU by GEMM throughput:
    stock channels_last (`direct_cl`, with its four layout copies) ~0.14 ns a MAC for a square
    kernel (a k x 5 stripe up to 1.5x that), a small cost per (batch, channel) plane, ~1.5 ns an
    element for the conversions. So on 2-4 px maps stock stays (fft measured 1.3-1.7x slower
    there), a long stripe on a 16 px map goes to `rows` (about 2x faster) and a 5x5 reparam
    branch to stock channels_last (1.6-1.9x over NCHW). Autotune where it matters."""
    scale = 1.0 if grad else 0.4
    if name == "split" and not grad:  # inference runs the stock forward alone: never beats stock
        name = "direct"
    one = threads == 1 and not cuda
    if layout == "channels_last":
        if one and name != "gemm":
            scale *= ONE_THREAD[name]
        return _channels_last_ms(name, b, c, h, w, kh, kw, 1 if one else 2) * scale
    if one:
        scale *= ONE_THREAD[name]
    n = float(b * c * h * w)
    if name in ("direct_cl", "split"):
        # oneDNN's channels_last depthwise kernel, + converting x, y (and the gradients)
        stripe = max(kh, kw) / min(kh, kw)
        t = (macs("direct", b, c, h, w, kh, kw) * 0.14e-6 * (1 + 0.1 * (stripe - 1)) + b * c * 0.25e-3
             + n * 1.5e-6)
        if name == "split":  # NCHW stock forward + input gradient, the kernel gradient over the planes
            t = SPLIT_NCHW_OF_STOCK_CL * t if kh * kw >= 49 and reads(name, layout, kh, kw) else math.inf
    elif name == "direct":
        # PyTorch's depthwise kernel: ~3 GMAC/s fwd+bwd, plus a cost per (batch, channel) plane
        t = macs(name, b, c, h, w, kh, kw) * 0.3e-6 + b * c * 0.25e-3
    elif name == "gemm":
        # batched GEMM at ~60 GFLOP/s incl. both gradients, + building T and reducing dL/dT
        hw2 = float((h * w) ** 2)
        t = b * c * hw2 * 0.045e-6 + c * hw2 * 3e-6 + n * 5e-6
    elif name == "rows":
        tw, tkh = (h, kw) if rows_transposed(h, w, kh, kw) else (w, kh)  # Toeplitz side, unfolded rows
        small = max(1.0, 32.0 / tw) ** 1.5  # GEMMs with a short inner side run slowly
        t = macs(name, b, c, h, w, kh, kw) * 0.05e-6 * small + n * tkh * 2e-6 + c * 0.02
    elif name == "fft":
        nh, nw = fft_size(h, w, kh, kw)
        t = b * c * (nh * nw * 10e-6 + 0.3e-3)
    else:
        raise ValueError(name)
    return t * scale


# A kernel of at most this many taps (3x3) runs `direct`, F.conv2d on the input as given: the
# estimates are least reliable there (dwconv_rule.py, 4 px, 3x3, 96 channels: gemm, trusted, ran
# at 0.31-0.53x of stock's speed, and the two stock forms' estimates picked the slower of them by
# up to 18%); measured within 0.87-1.0x of the faster stock form and 1.2-1.4x of the best algorithm.
SMALL_KERNEL_TAPS = 9

# An algorithm replaces the best stock convolution only when its estimate is below this fraction
# of the stock one's: the rule is rough, and near a tie plain PyTorch is the safer choice.
MARGIN = 0.7


def rule(b: int, c: int, h: int, w: int, kh: int, kw: int, esize: int, grad: bool, cuda: bool, limit: int,
         layout: str = "nchw", threads: int = 2) -> str:
    """The cheapest eligible algorithm by `estimate_ms`, the best stock one unless clearly beaten."""
    if kh * kw <= SMALL_KERNEL_TAPS:
        return "direct"
    cands = eligible(b, c, h, w, kh, kw, esize, limit, layout)
    est = {a: estimate_ms(a, b, c, h, w, kh, kw, grad, cuda, layout, threads) for a in cands}
    best = min(est, key=est.get)
    stock = min((a for a in est if a in STOCK), key=est.get)
    return best if best in STOCK or est[best] < MARGIN * est[stock] else stock


def _time_ms(fn: Callable[[], None], device: torch.device, repeats: int = 2) -> float:
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()  # warm-up (index maps, FFT plans, allocator)
    sync()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def autotune(
    run: Callable[[str, torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    kh: int,
    kw: int,
    grad: bool,
    limit: int,
    prune: float = 4.0,
) -> tuple[str, dict[str, float]]:
    """Time each eligible algorithm (fwd, and bwd when `grad`) on random tensors of x's shape.

    Candidates whose rule estimate is over `prune` times the best estimate are not timed (so a
    slow direct convolution of a big shape is not run just to lose), except the stock ones
    (`STOCK`): they are always timed, so a tuned choice never loses to stock PyTorch by more than
    the timing noise. The tensors have x's layout."""
    b, c, h, w = x.shape
    cuda = x.device.type == "cuda"
    layout = layout_of(x)
    cands = eligible(b, c, h, w, kh, kw, x.element_size(), limit, layout)
    est = {a: estimate_ms(a, b, c, h, w, kh, kw, grad, cuda, layout) for a in cands}
    best_est = min(est.values())
    cands = [a for a in cands if a in STOCK or est[a] <= prune * best_est]
    times = _time_candidates(run, x, kh, kw, grad, cands)
    return min(times, key=times.get), times


def _time_candidates(run: Callable[[str, torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, kh: int,
                     kw: int, grad: bool, cands: list[str]) -> dict[str, float]:
    """ms of each candidate (forward, and backward when `grad`) on random tensors of x's shape
    and layout: min of 2 runs after a warm-up."""
    b, c, h, w = x.shape
    times: dict[str, float] = {}
    fmt = torch.channels_last if layout_of(x) == "channels_last" else torch.contiguous_format
    with torch.enable_grad() if grad else torch.no_grad():
        xt = torch.randn(b, c, h, w, dtype=x.dtype, device=x.device).to(memory_format=fmt).requires_grad_(grad)
        wt = torch.randn(c, 1, kh, kw, dtype=x.dtype, device=x.device, requires_grad=grad)
        for a in cands:
            def step(a: str = a) -> None:
                y = run(a, xt, wt)
                if grad:
                    y.backward(torch.ones_like(y))
                    xt.grad = wt.grad = None
            times[a] = _time_ms(step, x.device)
    return times


def verify_enabled() -> bool:
    """LKNAS_DWCONV_VERIFY: on unless 0/false/off/no."""
    return os.environ.get("LKNAS_DWCONV_VERIFY", "1").strip().lower() not in ("0", "false", "off", "no")


def _verified_file() -> Path:
    env = os.environ.get("LKNAS_DWCONV_VERIFIED_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lknas" / "dwconv_verified.json"


def _machine(device: torch.device) -> str:
    """What the verified choices hold for: the GPU's name, or the CPU's model and vector width."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}|torch{torch.__version__}"
    from lknas.device import cpu_model

    return f"cpu:{cpu_model() or 'unknown'}|torch{torch.__version__}"


def _read_verified() -> dict[str, str]:
    try:
        data = json.loads(_verified_file().read_text())
    except (OSError, ValueError):
        return {}
    choices = data.get("choices", {}) if isinstance(data, dict) and data.get("version") == CACHE_VERSION else {}
    return {k: v for k, v in choices.items() if v in ALGORITHMS} if isinstance(choices, dict) else {}


def _save_verified(key: str, algo: str) -> None:
    from lknas.io import write_json_atomic

    choices = _read_verified()
    choices[key] = algo
    try:
        write_json_atomic(_verified_file(), {"version": CACHE_VERSION, "choices": dict(sorted(choices.items()))})
    except OSError:  # a read-only home: the in-process cache still keeps this process consistent
        pass


def verify(
    run: Callable[[str, torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    kh: int,
    kw: int,
    grad: bool,
    pick: str,
    limit: int,
) -> tuple[str, list[dict[str, float]]]:
    """The rule's `pick`, unless a stock form eligible for x's layout is faster in two timing
    rounds in a row (each the min of 2 runs after a warm-up, on random tensors of x's shape and
    layout, under the node's quiet lock). Returns the choice and each round's times."""
    from lknas import quiet

    b, c, h, w = x.shape
    stock = [a for a in STOCK if a in eligible(b, c, h, w, kh, kw, x.element_size(), limit, layout_of(x))]
    cands = [pick] + [a for a in stock if a != pick]
    rounds: list[dict[str, float]] = []
    if len(cands) == 1:  # the pick is the only stock form eligible here: nothing to time it against
        return pick, rounds
    with quiet.exclusive():
        for _ in range(2):
            times = _time_candidates(run, x, kh, kw, grad, cands)
            rounds.append(times)
            if min(times, key=times.get) == pick:
                return pick, rounds
    others = [a for a in cands if a != pick]  # slower than one of these twice: the faster of them overall
    return min(others, key=lambda a: rounds[0][a] + rounds[1][a]), rounds


def _load_disk(path: str) -> None:
    p = Path(path)
    try:
        mtime = p.stat().st_mtime
    except OSError:
        return
    if _DISK_LOADED.get(path) == mtime:
        return
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return
    if data.get("version") != CACHE_VERSION:  # keys of another format never match: ignore them
        data = {}
    for k, v in data.get("choices", {}).items():
        if v in ALGORITHMS and k not in _TUNED:
            _CHOICES[k] = v
            _TUNED.add(k)
            _STATS["disk"] += 1
    _DISK_LOADED[path] = mtime


def _save_disk(path: str, key: str, algo: str) -> None:
    """Merge one choice into the JSON file at `path`, written atomically (temp file + rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        data = {}
    choices = data.get("choices", {}) if data.get("version") == CACHE_VERSION else {}
    choices[key] = algo
    data = {"version": CACHE_VERSION, "choices": choices}
    fd, tmp = tempfile.mkstemp(prefix=p.name + ".", suffix=".tmp", dir=str(p.parent))
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _DISK_LOADED[path] = p.stat().st_mtime


def choose(
    run: Callable[[str, torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    kh: int,
    kw: int,
    grad: bool,
    tune: bool,
) -> str:
    """The algorithm for this call: cached choice, else autotuned (when `tune`) or the rule."""
    limit = workspace_limit()
    key = f"{make_key(x, kh, kw, grad)}|ws{limit >> 20}M"
    cache_path = os.environ.get("LKNAS_DWCONV_CACHE") or None
    with _LOCK:
        if cache_path:
            _load_disk(cache_path)
        algo = _CHOICES.get(key)
        if algo is not None and (key in _TUNED or not tune):
            _STATS["hits"] += 1
            return algo
    b, c, h, w = x.shape
    if tune:
        algo, _ = autotune(run, x, kh, kw, grad, limit)
        with _LOCK:
            _CHOICES[key] = algo
            _TUNED.add(key)
            _STATS["autotune"] += 1
            if cache_path:
                _save_disk(cache_path, key, algo)
        return algo
    algo = rule(b, c, h, w, kh, kw, x.element_size(), grad, x.device.type == "cuda", limit, layout_of(x),
                torch.get_num_threads())
    if verify_enabled() and (algo not in STOCK or layout_of(x) == "nchw"):  # not the one stock form: check it
        machine_key = f"{_machine(x.device)}|{key}"
        with _LOCK:
            known = _read_verified().get(machine_key)
        if known is None:
            from lknas import quiet

            with quiet.exclusive():  # one process of the node decides; the others read its decision
                known = _read_verified().get(machine_key)
                if known is None:
                    known, _ = verify(run, x, kh, kw, grad, algo, limit)
                    with _LOCK:
                        _save_verified(machine_key, known)
        with _LOCK:
            _CHOICES[key] = known
            _STATS["verified"] += 1
        return known
    with _LOCK:
        _CHOICES[key] = algo
        _STATS["rule"] += 1
    return algo


def clear_cache() -> None:
    """Forget every cached choice (and which disk files were read)."""
    with _LOCK:
        _CHOICES.clear()
        _TUNED.clear()
        _DISK_LOADED.clear()
        for k in _STATS:
            _STATS[k] = 0


def cache_info() -> dict:
    """A copy of the cached choices and counters: {'choices', 'tuned', 'rule', 'autotune', 'disk', 'hits',
    'verified'}."""
    with _LOCK:
        return {"choices": dict(_CHOICES), "tuned": sorted(_TUNED), **_STATS}
