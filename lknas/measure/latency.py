"""Latency of the deploy form: eval mode, reparameterized, warm-up, median of repeated runs.

The device, thread count, batch sizes, memory layout and method are part of the result, since a
latency means nothing without them. The layout (NCHW or channels_last) is the one measured fastest
for the deploy form (`lknas.measure.layout`) unless pinned. CPU runs use a fixed thread count (restored afterwards); CUDA runs
synchronize. The timing holds the node to itself (`lknas.quiet.exclusive`): trials on the same
machine pause their work meanwhile, so a latency is not the noise of another trial's training.
"""
from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch import nn

from lknas import quiet
from lknas.arch import ArchConfig
from lknas.errors import LknasError
from lknas.measure.layout import resolve_layout, to_layout

__all__ = ["measure_latency", "device_name"]


def device_name(device: torch.device) -> str:
    """'cpu' or 'cuda:<GPU name>', as stored with every latency."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type


def _time_once(model: nn.Module, x: torch.Tensor, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    model(x)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _median_ms(model: nn.Module, x: torch.Tensor, device: torch.device, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        _time_once(model, x, device)
    return 1e3 * statistics.median(_time_once(model, x, device) for _ in range(repeats))


def measure_latency(
    model: nn.Module | ArchConfig,
    resolution: int = 64,
    *,
    batch_size: int = 1,
    throughput_batch: int | None = 32,
    device: str | torch.device = "cpu",
    threads: int | None = None,
    warmup: int = 5,
    repeats: int = 20,
    in_chans: int = 3,
    num_classes: int = 2,
    deploy: bool = True,
    layout: str | None = None,
) -> dict[str, Any]:
    """Median forward latency (ms) at `batch_size` and throughput (images/s) at `throughput_batch`.

    `model` is a training-form lknas model or an ArchConfig (built with `num_classes`); with
    `deploy` it is reparameterized first (a copy; the original is untouched), into the one deploy
    form that `complexity` counts at the same resolution. Returns `latency_ms`, `throughput`
    (None without a throughput batch), `device`, `threads`, `batch`, `throughput_batch`,
    `resolution`, `repeats`, `method` ('quiet-lock': no lknas work ran on the node meanwhile;
    'plain' with LKNAS_QUIET=0), `waited_s` (time spent waiting for the node), `stripe_forms`
    (the deploy form of each stripe kernel timed), `layout` (nchw | channels_last: `layout`, else
    LKNAS_LAYOUT, else `auto`: the faster of both for the deploy form at `batch_size`) and
    `layout_ms` (the batch-`batch_size` forward ms per layout when measured).

    Raises:
        LknasError: a count below its minimum (batch_size, repeats, threads >= 1), CUDA asked for
            where there is none, or a resolution below the architecture's total stride.
        ValueError: an unknown layout.
    """
    from lknas.models import build_model, reparameterize

    from lknas.device import resolve_device

    for name, value, low in (("batch_size", batch_size, 1), ("repeats", repeats, 1), ("warmup", warmup, 0),
                             ("resolution", resolution, 1), ("throughput_batch", throughput_batch or 0, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise LknasError(f"latency: {name} must be an integer >= {low}, got {value!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise LknasError(f"latency: threads must be an integer >= 1 (or None for torch's setting), got {threads!r}")
    dev = resolve_device(device)
    key = None
    if isinstance(model, ArchConfig):
        key = ("latency", model.hash(), deploy)
        model = build_model(model, num_classes=num_classes, in_chans=in_chans)
    from lknas.measure.complexity import check_input_size

    check_input_size(model, resolution)
    net = reparameterize(model, resolution=resolution, in_chans=in_chans) if deploy else model
    net = net.to(dev).eval()
    previous_threads = torch.get_num_threads()
    n_threads = threads or previous_threads
    torch.set_num_threads(n_threads)
    waited = quiet.stats()["waited_s"]
    try:
        with quiet.exclusive():
            x = torch.randn(batch_size, in_chans, resolution, resolution, device=dev)
            chosen, layout_ms = resolve_layout(layout, net, x, train=False, key=key)
            to_layout(net, chosen)
            x = to_layout(x, chosen)
        with quiet.exclusive(), torch.inference_mode():
            latency = _median_ms(net, x, dev, warmup, repeats)
            throughput = None
            if throughput_batch:
                xb = to_layout(torch.randn(throughput_batch, in_chans, resolution, resolution, device=dev), chosen)
                ms = _median_ms(net, xb, dev, max(1, warmup // 2), max(3, repeats // 4))
                throughput = throughput_batch / (ms / 1e3)
    finally:
        torch.set_num_threads(previous_threads)
    return {
        "latency_ms": latency,
        "throughput": throughput,
        "device": device_name(dev),
        "threads": n_threads if dev.type == "cpu" else None,
        "batch": batch_size,
        "throughput_batch": throughput_batch,
        "resolution": resolution,
        "repeats": repeats,
        "method": quiet.METHOD if quiet.enabled() else "plain",
        "stripe_forms": dict(getattr(net, "stripe_forms", None) or {}),
        "layout": chosen,
        "layout_ms": layout_ms,
        "waited_s": quiet.stats()["waited_s"] - waited,
    }
