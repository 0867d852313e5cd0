"""Which deploy form a stripe kernel gets: SLaK's decomposed convs, or one merged dense kernel.

A trained stripe kernel (K x N + N x K [+ a small square branch], each conv + BN) is exact in two
deploy forms: the decomposed one that SLaK deploys (2KN MACs per pixel) and one dense K x K conv
(K^2 MACs). The decomposed form is the default; the dense merge is used only where it is measured
faster for that shape: one form per architecture, which `count`, `latency`, the search's latency
objective, `deploy` and `train`'s deploy.pt all share (`lknas.models.reparameterize`).

The measurement follows the latency protocol of the search (batch 1, forward, one CPU thread, or
the GPU the model is on), runs under `lknas.quiet.exclusive()` (no other trial's work on the node
meanwhile), and is cached per (device, dtype, channels, map, kernel) in this process and on disk
(`$LKNAS_STRIPE_FORM_CACHE`, default `~/.cache/lknas/stripe_forms.json`; delete it after a
hardware or library change), so every process of a machine decides a shape the same way. Each
form's time is the minimum of interleaved runs (outside interference only ever adds time), and
dense wins only when it is at least 1/`MARGIN` times faster in two measurements in a row, so
noise cannot flip a near tie.

`LKNAS_STRIPE_FORM=decomposed|dense|auto` (default auto) forces a form.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import torch

from lknas import quiet
from lknas.io import write_json_atomic
from lknas.ops.dwconv import dwconv2d

__all__ = ["FORMS", "MARGIN", "stripe_form", "forced_form", "measure_forms", "clear_cache"]

FORMS = ("decomposed", "dense")
MARGIN = 0.85  # dense must take at most this fraction of the decomposed form's time

_LOCK = threading.Lock()
_CHOICES: dict[str, str] = {}


def forced_form() -> str | None:
    """The form forced by LKNAS_STRIPE_FORM, or None for the measured choice."""
    value = os.environ.get("LKNAS_STRIPE_FORM", "auto").strip().lower()
    if value in ("", "auto"):
        return None
    if value not in FORMS:
        raise ValueError(f"LKNAS_STRIPE_FORM: unknown form {value!r}; use auto, decomposed or dense")
    return value


def _cache_file() -> Path:
    env = os.environ.get("LKNAS_STRIPE_FORM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lknas" / "stripe_forms.json"


def _key(device: torch.device, dtype: torch.dtype, c: int, h: int, w: int, k: int, n: int, small: int) -> str:
    dev = "cpu" if device.type == "cpu" else f"cuda:{torch.cuda.get_device_name(device)}"
    return f"{dev}|{str(dtype).replace('torch.', '')}|torch{torch.__version__}|c{c}|{h}x{w}|k{k}n{n}s{small}"


def _read_disk() -> dict[str, str]:
    try:
        data = json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}
    choices = data.get("choices", {}) if isinstance(data, dict) else {}
    return {k: v for k, v in choices.items() if v in FORMS} if isinstance(choices, dict) else {}


def measure_forms(c: int, h: int, w: int, k: int, n: int, small: int = 0,
                  device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                  repeats: int = 21) -> dict[str, float]:
    """Fastest forward time in ms of both forms at batch 1 on `device` (one CPU thread), over
    `repeats` interleaved runs each."""
    dev = torch.device(device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, c, h, w, generator=g).to(dev, dtype)
    wh = torch.randn(c, 1, k, n, generator=g).to(dev, dtype)
    ww = torch.randn(c, 1, n, k, generator=g).to(dev, dtype)
    ws = torch.randn(c, 1, small, small, generator=g).to(dev, dtype) if small else None
    wd = torch.randn(c, 1, k, k, generator=g).to(dev, dtype)
    bias = torch.zeros(c, device=dev, dtype=dtype)

    def decomposed() -> None:
        y = dwconv2d(x, wh, bias) + dwconv2d(x, ww)
        if ws is not None:
            y = y + dwconv2d(x, ws)

    def dense() -> None:
        dwconv2d(x, wd, bias)

    def once(fn) -> float:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        fn()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return time.perf_counter() - t0

    threads = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(1)
    times: dict[str, list[float]] = {"decomposed": [], "dense": []}
    try:
        with torch.inference_mode():
            for fn in (decomposed, dense, decomposed, dense):  # warm-up (algorithm choice, buffers)
                fn()
            for i in range(repeats):  # interleaved, alternating order
                order = (("decomposed", decomposed), ("dense", dense))
                for name, fn in order if i % 2 == 0 else order[::-1]:
                    times[name].append(once(fn))
    finally:
        torch.set_num_threads(threads)
    return {name: 1e3 * min(t) for name, t in times.items()}


def stripe_form(c: int, h: int, w: int, k: int, n: int, small: int = 0,
                device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> str:
    """'decomposed' or 'dense' for a stripe kernel of `c` channels on an h x w map (measured once
    per shape and machine, see the module docstring)."""
    forced = forced_form()
    if forced is not None:
        return forced
    dev = torch.device(device)
    key = _key(dev, dtype, c, h, w, k, n, small)
    with _LOCK:
        if key in _CHOICES:
            return _CHOICES[key]
        on_disk = _read_disk().get(key)
        if on_disk is not None:
            _CHOICES[key] = on_disk
            return on_disk
        with quiet.exclusive():
            on_disk = _read_disk().get(key)  # another process may have measured it meanwhile
            if on_disk is None:
                on_disk = "decomposed"
                for _ in range(2):  # dense must win twice in a row
                    t = measure_forms(c, h, w, k, n, small, dev, dtype)
                    if t["dense"] > MARGIN * t["decomposed"]:
                        break
                else:
                    on_disk = "dense"
                _save(key, on_disk)
        _CHOICES[key] = on_disk
        return on_disk


def _save(key: str, form: str) -> None:
    choices = _read_disk()
    choices[key] = form
    try:
        write_json_atomic(_cache_file(), {"version": 1, "choices": dict(sorted(choices.items()))})
    except OSError:  # a read-only home: the in-process cache still keeps the runs consistent
        pass


def clear_cache() -> None:
    """Forget the in-process choices (the disk file stays)."""
    with _LOCK:
        _CHOICES.clear()
