"""Steady CPU timings: let the process keep the memory it frees instead of unmapping it.

glibc's malloc serves a block above its mmap threshold (128 KiB at start, raised as blocks are
freed, at most 32 MiB) with a fresh `mmap` and unmaps it on `free`, and gives the top of its
heap back above a trim threshold. A depthwise convolution's temporaries are a few MB to tens of
MB, so a call page-faults the same memory in again: on the 2-core machine `split` on a 64 x 32 x
32 px map with a 13x13 kernel took 7,000-10,000 page faults per forward + backward and 29 / 38 ms
(NCHW / channels_last input), against none and 18 / 25 ms with the memory kept; the FFT form of
27x27 kernels gains 1.12x (`python benchmarks/allocator.py`, results/benchmarks/allocator-cpu2t.md).
Stock convolutions and a whole training step of the proxy nets stay within the run's noise.
PyTorch's CPU tuning guide gives the same advice through jemalloc or TCMalloc; this does it with
glibc's own `mallopt`, nothing to install.

`keep_freed_memory()` raises the mmap threshold to 1 GiB (blocks below it come from the heap,
and freed ones are reused) and the trim threshold with it (free memory at the heap's top is given
back only above 1 GiB). The process's peak memory is unchanged (it held that memory at the peak
anyway); memory freed after the peak stays with the process until it exits, so lknas calls it in
its own processes only: every `python -m lknas` command, the search's and studies' trials and the
latency timer's child. A script of yours calls it once at the start; `LKNAS_MALLOC=system` turns
it off everywhere. Elsewhere than Linux with glibc it does nothing.
"""
from __future__ import annotations

import ctypes
import os
import sys

from lknas.errors import LknasError

__all__ = ["keep_freed_memory", "kept", "allocator_mode", "ENV", "THRESHOLD_BYTES"]

ENV = "LKNAS_MALLOC"
MODES = ("keep", "system")
THRESHOLD_BYTES = 1 << 30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
_applied = False


def allocator_mode() -> str:
    """'keep' (the default) or 'system', from $LKNAS_MALLOC; LknasError for anything else."""
    mode = os.environ.get(ENV, "").strip().lower() or "keep"
    if mode not in MODES:
        raise LknasError(f"environment variable {ENV}={os.environ[ENV]!r}: expected 'keep' (the default: freed "
                         f"memory stays with the process, steady CPU timings) or 'system' (glibc's own behaviour)")
    return mode


def keep_freed_memory() -> bool:
    """Make glibc keep freed blocks up to `THRESHOLD_BYTES` in the process (see the module
    docstring). True if the setting is in force (now or from an earlier call); False with
    LKNAS_MALLOC=system or without glibc. Idempotent."""
    global _applied
    mode = allocator_mode()  # a bad LKNAS_MALLOC is an error even when the setting is already in force
    if _applied:
        return True
    if mode == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it (musl's mallopt does nothing)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, THRESHOLD_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, THRESHOLD_BYTES))
    return _applied


def kept() -> bool:
    """Whether `keep_freed_memory` is in force in this process."""
    return _applied
