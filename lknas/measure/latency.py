"""Latency of the deploy form: eval mode, reparameterized, warm-up, median of repeated runs.

The device, thread count, batch sizes, memory layout and method are part of the result, since a
latency means nothing without them. Unless pinned, the deploy form is timed in both memory layouts
(NCHW and channels_last) and the faster counts. CPU runs use a fixed thread count (restored
afterwards); CUDA runs synchronize. The timing holds the node to itself (`lknas.quiet.exclusive`): trials on the same
machine pause their work meanwhile, so a latency is not the noise of another trial's training.
"""
from __future__ import annotations

import gc
import statistics
import time
from typing import Any

import torch
from torch import nn

from lknas import quiet
from lknas.arch import ArchConfig
from lknas.errors import LknasError
from lknas.measure.interference import CpuWatch
from lknas.measure.layout import LAYOUTS, layout_setting, to_layout
from lknas.measure.reference import paired_ms, reference_net
from lknas.measure.reference import time_once as _time_once

__all__ = ["measure_latency", "device_name", "MAX_FOREIGN_LOAD", "MAX_WAIT_S"]

MAX_FOREIGN_LOAD = 0.3  # cores other processes may keep busy during a timing before it is repeated
MIN_ON_CPU = 0.9  # the share of a 1-thread timing its thread must spend on a CPU, else it is repeated
MAX_WAIT_S = 20.0  # how long a timing is repeated while the node is loaded; then the least loaded one counts
RETRY_PAUSE_S = 0.25


def device_name(device: torch.device) -> str:
    """'cpu' or 'cuda:<GPU name>', as stored with every latency."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type


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
    max_foreign: float | None = MAX_FOREIGN_LOAD,
    max_wait_s: float = MAX_WAIT_S,
    reference_ms: float | None = None,
) -> dict[str, Any]:
    """Median forward latency (ms) at `batch_size` and throughput (images/s) at `throughput_batch`.

    `model` is a training-form lknas model or an ArchConfig (built with `num_classes`); with
    `deploy` it is reparameterized first (a copy; the original is untouched), into the one deploy
    form that `complexity` counts at the same resolution. Returns `latency_ms`, `throughput`
    (None without a throughput batch), `device`, `threads`, `batch`, `throughput_batch`,
    `resolution`, `repeats`, `method` ('quiet-lock': no lknas work ran on the node meanwhile;
    'plain' with LKNAS_QUIET=0), `waited_s` (time spent waiting for the node), `stripe_forms`
    (the deploy form of each stripe kernel timed), `layout` (nchw | channels_last: `layout`, else
    LKNAS_LAYOUT, else `auto`: both are timed and the faster counts) and `layout_ms` (the
    latency per layout, when both were timed), `foreign_load` (the
    cores other processes kept busy during the timing that counts; None off Linux) and `attempts`.

    The lock pauses lknas trials only; a Ray worker starting up or the driver's bookkeeping can
    still load the node. A timing during which other processes kept more than `max_foreign` cores
    busy (`lknas.measure.interference`) is repeated, for up to `max_wait_s`; then the least loaded
    attempt counts. `max_foreign=None` never repeats.

    The batch-1 runs alternate with a fixed reference net (`lknas.measure.reference`), and
    `latency_ms` is the median model/reference ratio times `reference_ms` (a search's: the
    reference timed before its first trial) or, without it, times the reference's median in this
    call; `raw_ms` is the model's plain median, `reference_measured_ms` the reference's, and
    `throughput` is scaled by the same machine-speed factor.

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
    if isinstance(model, ArchConfig):
        model = build_model(model, num_classes=num_classes, in_chans=in_chans)
    from lknas.measure.complexity import check_input_size

    check_input_size(model, resolution)
    net = reparameterize(model, resolution=resolution, in_chans=in_chans) if deploy else model
    net = net.to(dev).eval()
    previous_threads = torch.get_num_threads()
    n_threads = threads or previous_threads
    torch.set_num_threads(n_threads)
    if not quiet.enabled():  # LKNAS_QUIET=0: plain timing, neither the lock nor the repeats
        max_foreign = None
    waited = quiet.stats()["waited_s"]
    attempts: list[dict[str, Any]] = []
    deadline = time.monotonic() + max_wait_s
    try:
        x = torch.randn(batch_size, in_chans, resolution, resolution, device=dev)
        ref = reference_net(in_chans).to(dev)
        ref_x = torch.randn(1, in_chans, resolution, resolution, device=dev)
        while True:
            attempts.append(_attempt(net, x, dev, layout, warmup, repeats, throughput_batch, ref, ref_x,
                                     reference_ms, max_foreign))
            if max_foreign is None or _clean(attempts[-1], max_foreign) or time.monotonic() >= deadline:
                break
            time.sleep(RETRY_PAUSE_S)  # outside the node lock: the trials go on while the other load passes
    finally:
        torch.set_num_threads(previous_threads)
    best = min(attempts, key=lambda a: (not _clean(a, max_foreign), a["foreign"] or 0.0, -(a["on_cpu"] or 1.0)))
    latency, throughput, chosen, layout_ms = best["latency_ms"], best["throughput"], best["layout"], best["layout_ms"]
    measured_ref = best["reference_ms"]
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
        "raw_ms": best["raw_ms"],
        "reference_measured_ms": measured_ref,
        "reference_ms": reference_ms if reference_ms else measured_ref,
        "foreign_load": best["foreign"],
        "on_cpu": best["on_cpu"],
        "attempts": len(attempts),
    }


def _attempt(net: nn.Module, x: torch.Tensor, dev: torch.device, layout: str | None, warmup: int, repeats: int,
             throughput_batch: int | None, ref: nn.Module, ref_x: torch.Tensor,
             nominal_ms: float | None, max_foreign: float | None = None) -> dict[str, Any]:
    """One timing with the node's lknas work paused and the garbage collector off, watched for
    other processes' load and for the timing thread leaving its CPU (`CpuWatch`, whose window is
    padded only when its reading could be on either side of `max_foreign`)."""
    setting = layout_setting(layout)
    gc_was_on = gc.isenabled()
    gc.disable()  # a collection inside a timed call is the process's noise, not the model's (as timeit does)
    try:
        with quiet.exclusive(), CpuWatch(single_thread=dev.type == "cpu" and torch.get_num_threads() == 1,
                                         threshold=max_foreign) as watch:
            out = _paired_attempt(net, x, dev, setting, warmup, repeats, throughput_batch, ref, ref_x, nominal_ms)
    finally:
        if gc_was_on:
            gc.enable()
    return {**out, "foreign": watch.sample.foreign, "on_cpu": watch.sample.on_cpu}


def _clean(attempt: dict[str, Any], max_foreign: float | None) -> bool:
    """No other process loaded the node, and the timing thread stayed on its CPU."""
    if max_foreign is None:
        return True
    foreign, on_cpu = attempt["foreign"], attempt["on_cpu"]
    return (foreign is None or foreign <= max_foreign) and (on_cpu is None or on_cpu >= MIN_ON_CPU)


def _paired_attempt(net: nn.Module, x: torch.Tensor, dev: torch.device, setting: str, warmup: int, repeats: int,
                    throughput_batch: int | None, ref: nn.Module, ref_x: torch.Tensor,
                    nominal_ms: float | None) -> dict[str, Any]:
    """The paired timing in the pinned layout, or in both (`auto`), keeping the faster."""
    timed = {}
    for name in LAYOUTS if setting == "auto" else (setting,):
        to_layout(net, name)
        timed[name] = paired_ms(net, ref, to_layout(x, name), ref_x, dev, warmup, repeats)
    chosen = min(timed, key=lambda name: timed[name][2])
    to_layout(net, chosen)
    raw, ref_ms, ratio = timed[chosen]
    speed = ref_ms / nominal_ms if nominal_ms else 1.0  # > 1: the machine is slower than the reference's time
    throughput = None
    if throughput_batch:
        with torch.inference_mode():
            xb = to_layout(torch.randn(throughput_batch, *x.shape[1:], device=dev), chosen)
            ms = _median_ms(net, xb, dev, max(1, warmup // 2), max(3, repeats // 4))
        throughput = throughput_batch / (ms / 1e3) * speed
    layout_ms = {name: t[2] * (nominal_ms or t[1]) for name, t in timed.items()} if len(timed) > 1 else {}
    return {"latency_ms": ratio * (nominal_ms or ref_ms), "raw_ms": raw, "reference_ms": ref_ms,
            "throughput": throughput, "layout": chosen, "layout_ms": layout_ms}
