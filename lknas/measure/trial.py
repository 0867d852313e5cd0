"""`measure_trial`: everything a search trial records about one architecture.

Order: complexity (cheap, decides feasibility), proxy training (accuracy, loss, time), then
latency of the trained deploy form and the ERF of the trained network. The result is one flat,
JSON-ready dict whose keys are the search objectives and the columns of `trials.csv`.
"""
from __future__ import annotations

import time
from typing import Any

import torch

from lknas.arch import ArchConfig
from lknas.measure.complexity import complexity
from lknas.measure.erf import compact_heatmap, effective_receptive_field, erf_resolution
from lknas.measure.latency import measure_latency
from lknas.space.configs import TrainConfig

__all__ = ["measure_trial", "measure_static"]


def measure_static(arch: ArchConfig, resolution: int, num_classes: int = 2, in_chans: int = 3) -> dict[str, Any]:
    """Params and FLOPs (deploy form, MACs) of a freshly built model: what constraints check."""
    from lknas.models import build_model

    model = build_model(arch, num_classes=num_classes, in_chans=in_chans)
    counts = complexity(model, resolution=resolution, in_chans=in_chans)
    keys = ("params", "params_deploy", "flops", "flops_applied", "params_nonzero", "flops_sparse",
            "flops_sparse_applied")
    return {k: counts[k] for k in keys if k in counts}


def measure_trial(
    arch: ArchConfig,
    train_cfg: TrainConfig,
    data: Any = None,
    *,
    report=None,
    device: str | torch.device | None = None,
    latency: bool = True,
    latency_threads: int | None = None,
    erf: bool = True,
    erf_images: int = 16,
    erf_map: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Train `arch` with `train_proxy` and measure it. Returns a flat dict: `status`, `accuracy`
    (top-1 %), `val_loss`, `train_loss`, `epochs`, `steps`, `train_time`, `params`, `flops`
    (and `params_nonzero` / `flops_sparse` for sparse archs, measured on the trained weights),
    `layout` (the memory layout it trained in) with `layout_ms_<layout>` (a training step's ms in
    each layout, when measured), `latency_ms`, `throughput`, `latency_device`, `latency_threads`,
    `latency_layout`, `erf` and `erf_20..99` (measured
    at `erf_resolution`, where the last feature map has at least 8 cells a side),
    `measure_time`, and `error` when the run did not finish normally. `erf_map=True` adds the
    trained network's ERF heatmap (`erf_map`: at most 64 x 64, a list of rows) for the report."""
    from lknas.train import train_proxy
    from lknas.train.proxy import _device, _load_data

    dev = _device(device)
    bundle = _load_data(data, train_cfg, dev)
    result = train_proxy(arch, train_cfg, bundle, report=report, device=dev, progress=progress, keep_model=True)
    out: dict[str, Any] = result.to_dict()
    out.pop("history")
    out.update({f"layout_ms_{k}": v for k, v in out.pop("layout_ms", {}).items()})  # flat columns
    start = time.perf_counter()
    model = result.model
    if model is None:  # diverged / out of memory: static counts only
        out.update(measure_static(arch, train_cfg.resolution, bundle.num_classes, bundle.in_chans))
        return out
    counts = complexity(model, resolution=train_cfg.resolution, in_chans=bundle.in_chans)
    out.update({k: counts[k] for k in ("params", "flops", "flops_applied", "params_nonzero", "flops_sparse",
                                       "flops_sparse_applied") if k in counts})
    if latency:
        lat = measure_latency(model.cpu() if dev.type == "cpu" else model, train_cfg.resolution, device=dev,
                              threads=latency_threads, in_chans=bundle.in_chans)
        out.update(latency_ms=lat["latency_ms"], throughput=lat["throughput"], latency_device=lat["device"],
                   latency_threads=lat["threads"], latency_layout=lat["layout"])
    if erf:
        size = erf_resolution(model, train_cfg.resolution)
        measured = effective_receptive_field(model, bundle.val, max_images=erf_images, device=dev, resolution=size)
        out.update(measured.metrics())
        if erf_map:
            out["erf_map"] = compact_heatmap(measured.heatmap).round(5).tolist()
        out["erf_resolution"] = size
    out["measure_time"] = time.perf_counter() - start
    return out
