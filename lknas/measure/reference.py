"""A fixed reference workload that tracks the machine's speed while a latency is timed.

On a shared or virtual machine the same network times differently from one minute to the next:
measured on the 2-core machine with nothing else running, one deploy net's median of 100 batch-1
runs ranged 4.0 to 5.7 ms over 12 rebuilds (CV 9.6%), a plain 512x512 matmul 2.8 to 3.4 ms.
Much of that drift is the whole machine slowing down for a while, so it slows any workload alike.
The latency measurement therefore times the model and this reference net in alternation and
takes the median of the paired ratios; in the same 12 rebuilds the ratio's CV was 5.5%.

A search times the reference once, before its first trial (`reference_ms`, kept in run.json so a
resumed search uses the same one), and every trial's latency is its ratio times that: the model's
latency at the speed the machine had then. Standalone timings (`lknas latency`) scale the ratio by
the reference's own median in the same call, which is the plain median up to the pairing.

The net (stem 3x3 conv to 32 channels, depthwise 7x7, pointwise 1x1 to 64, GELU, global pool,
fixed weights) mixes the kinds of operator the searched nets run. `VERSION` changes with it.
"""
from __future__ import annotations

import statistics
import time

import torch
from torch import nn

__all__ = ["VERSION", "reference_net", "paired_ms", "paired_samples", "reference_ms", "time_once"]

VERSION = 1


def reference_net(in_chans: int = 3) -> nn.Module:
    """The reference network, in eval mode, with weights fixed by a private generator."""
    gen = torch.Generator().manual_seed(20261201)
    net = nn.Sequential(nn.Conv2d(in_chans, 32, 3, padding=1), nn.GELU(),
                        nn.Conv2d(32, 32, 7, padding=3, groups=32), nn.Conv2d(32, 64, 1), nn.GELU(),
                        nn.AdaptiveAvgPool2d(1))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return net.eval()


def time_once(fn, x: torch.Tensor, device: torch.device) -> float:
    """Seconds of one `fn(x)`, synchronized on CUDA."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn(x)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


@torch.inference_mode()
def paired_samples(model: nn.Module, ref: nn.Module, x: torch.Tensor, ref_x: torch.Tensor, device: torch.device,
                   warmup: int, repeats: int) -> tuple[list[float], list[float]]:
    """Time `model(x)` and `ref(ref_x)` alternately `repeats` times (after `warmup` pairs).
    Returns the (model, reference) seconds of each pair."""
    for _ in range(warmup):
        time_once(model, x, device)
        time_once(ref, ref_x, device)
    m, r = [], []
    for _ in range(repeats):
        m.append(time_once(model, x, device))
        r.append(time_once(ref, ref_x, device))
    return m, r


def paired_ms(model: nn.Module, ref: nn.Module, x: torch.Tensor, ref_x: torch.Tensor, device: torch.device,
              warmup: int, repeats: int) -> tuple[float, float, float]:
    """`paired_samples` summarized: (median model ms, median reference ms, median of the per-pair ratios)."""
    m, r = paired_samples(model, ref, x, ref_x, device, warmup, repeats)
    return 1e3 * statistics.median(m), 1e3 * statistics.median(r), statistics.median(a / b for a, b in zip(m, r))


@torch.inference_mode()
def reference_ms(resolution: int, in_chans: int = 3, device: str | torch.device = "cpu", threads: int | None = 1,
                 warmup: int = 5, repeats: int = 50) -> float:
    """The reference net's median batch-1 time (ms) at `resolution`, under the node lock."""
    from lknas import quiet
    from lknas.device import resolve_device

    dev = resolve_device(device)
    ref = reference_net(in_chans).to(dev)
    x = torch.randn(1, in_chans, resolution, resolution, device=dev)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        with quiet.exclusive():
            for _ in range(warmup):
                time_once(ref, x, dev)
            return 1e3 * statistics.median(time_once(ref, x, dev) for _ in range(repeats))
    finally:
        torch.set_num_threads(previous)
