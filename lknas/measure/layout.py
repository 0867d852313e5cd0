"""Which memory layout runs a model fastest, NCHW or channels_last, measured on the model itself.

Stock PyTorch and `dwconv2d` both run at different speeds in the two layouts, and which one wins
depends on the whole network (a channels_last input skips the GEMM form of `dwconv2d`, NCHW input
gives stock convolutions the slower kernels), so the proxy trainer and the latency measurement
time a few steps in each layout and use the faster one. The timing runs on a deep copy of the
model under a forked RNG, so the model, its optimizer state and the random stream of the run are
untouched. The choice is remembered per (architecture, device, threads, input shape, mode) for
the process, so repeated runs of one architecture use one layout.

`LKNAS_LAYOUT=nchw|channels_last` (or the `layout` argument) pins a layout; `auto` (default)
measures.
"""
from __future__ import annotations

import copy
import os
import statistics
import time
from typing import Any, Callable

import torch
from torch import nn

from lknas.ops.dwconv_algos import LAYOUTS

__all__ = ["LAYOUTS", "MEMORY_FORMATS", "layout_setting", "resolve_layout", "fastest_layout", "to_layout", "clear_layout_cache"]

MEMORY_FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
assert set(MEMORY_FORMATS) == set(LAYOUTS)

_CHOSEN: dict[tuple, tuple[str, dict[str, float]]] = {}


def layout_setting(layout: str | None) -> str:
    """`layout`, else LKNAS_LAYOUT, else 'auto'; checked."""
    name = (layout if layout is not None else os.environ.get("LKNAS_LAYOUT", "auto")).strip().lower()
    if name not in ("auto", *LAYOUTS):
        raise ValueError(f"layout / LKNAS_LAYOUT: unknown layout {name!r}; use auto, {' or '.join(LAYOUTS)}")
    return name


def to_layout(obj: Any, layout: str) -> Any:
    """A model (converted in place) or a 4-D tensor (converted copy, if needed) in `layout`."""
    if isinstance(obj, torch.Tensor) and obj.dim() != 4:
        return obj
    return obj.to(memory_format=MEMORY_FORMATS[layout])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fastest_layout(model: nn.Module, example: torch.Tensor, *, train: bool, repeats: int = 3,
                   loss_fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[str, dict[str, float]]:
    """(the faster layout, median ms per layout) of `model` on `example`: forward, plus backward of
    `loss_fn(output)` (default: the mean) when `train`; one warm-up each, then `repeats` rounds
    alternating the order. Runs on a deep copy under a forked RNG; the model is not changed."""
    loss_fn = loss_fn or (lambda out: out.float().mean())
    device = example.device
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        probe = copy.deepcopy(model).train(train)
        samples: dict[str, list[float]] = {k: [] for k in LAYOUTS}

        def step(layout: str) -> float:
            to_layout(probe, layout)
            x = to_layout(example, layout)
            _sync(device)
            t0 = time.perf_counter()
            if train:
                loss_fn(probe(x)).backward()
                probe.zero_grad(set_to_none=True)
            else:
                with torch.inference_mode():
                    probe(x)
            _sync(device)
            return (time.perf_counter() - t0) * 1e3

        for layout in LAYOUTS:  # warm-up: selection, index maps, workspace, oneDNN primitives
            step(layout)
        for i in range(repeats):
            for layout in LAYOUTS if i % 2 == 0 else LAYOUTS[::-1]:
                samples[layout].append(step(layout))
        del probe
    ms = {k: statistics.median(v) for k, v in samples.items()}
    return min(ms, key=ms.get), ms


def resolve_layout(layout: str | None, model: nn.Module, example: torch.Tensor, *, train: bool,
                   key: Any = None) -> tuple[str, dict[str, float]]:
    """The layout to use: pinned (`layout` or LKNAS_LAYOUT), else measured with `fastest_layout`
    and remembered under `key` (with the device, thread count, input shape and mode) for the
    process. Returns (layout, ms per layout; empty when pinned).

    Raises:
        ValueError: an unknown layout name.
    """
    name = layout_setting(layout)
    if name != "auto":
        return name, {}
    full = (key, str(example.device), torch.get_num_threads(), tuple(example.shape), example.dtype, train)
    if key is None or full not in _CHOSEN:
        chosen = fastest_layout(model, example, train=train)
        if key is None:
            return chosen
        _CHOSEN[full] = chosen
    return _CHOSEN[full]


def clear_layout_cache() -> None:
    """Forget the layouts measured in this process."""
    _CHOSEN.clear()
