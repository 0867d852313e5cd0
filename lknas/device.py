"""`resolve_device`: the torch device a command runs on, checked before anything is built.

'auto' is CUDA when torch sees a GPU, else the CPU. Asking for CUDA where torch sees none (no
GPU, no driver, or a CPU-only torch build), or for a GPU index that does not exist, is a user
error (`LknasError`) naming the flag and the fix, not a driver traceback from deep inside torch.

`trial_device`: the device Ray trials train on. A trial that asks for GPUs (`--gpus-per-trial`)
trains on 'cuda', which in a Ray worker is the GPU Ray gave it (Ray sets CUDA_VISIBLE_DEVICES);
`LKNAS_TRIAL_DEVICE=cpu` keeps the GPU request for scheduling and trains on the CPU (GPUs declared
as logical resources, `ray start --num-gpus 1`, on machines without one: the tests do this).

`cpu_model`: the CPU's model name and widest vector extension, which the benchmarks record and the
dwconv choices verified per machine are kept under.
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch

from lknas.errors import LknasError

__all__ = ["resolve_device", "trial_device", "cpu_model", "TRIAL_DEVICE_ENV"]

TRIAL_DEVICE_ENV = "LKNAS_TRIAL_DEVICE"


def resolve_device(device: str | torch.device | None, flag: str = "--device") -> torch.device:
    """The torch.device for `device` ('auto' / None, 'cpu', 'cuda', 'cuda:N' or a torch.device).

    Raises:
        LknasError: an unknown device name, or CUDA asked for where torch cannot use it.
    """
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise LknasError(f"{flag} {device}: unknown device; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only torch build" if torch.version.cuda is None else "no CUDA device is visible"
            raise LknasError(f"{flag} {device}: CUDA is not available here ({build}); use {flag} cpu, or "
                             f"{flag} auto to take a GPU when there is one")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise LknasError(f"{flag} {device}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    elif dev.type != "cpu":
        raise LknasError(f"{flag} {device}: lknas runs on cpu or cuda; use cpu, cuda, cuda:N or auto")
    return dev


def trial_device(gpus_per_trial: float) -> str:
    """'cuda' when a trial asks for GPUs, else 'cpu'; $LKNAS_TRIAL_DEVICE (cpu or cuda) overrides it.
    Checked on the driver; the workers' GPUs are Ray's to give.

    Raises:
        LknasError: LKNAS_TRIAL_DEVICE is neither cpu nor cuda, or cuda without --gpus-per-trial.
    """
    import os

    chosen = os.environ.get(TRIAL_DEVICE_ENV, "").strip().lower()
    if not chosen:
        return "cuda" if gpus_per_trial > 0 else "cpu"
    if chosen not in ("cpu", "cuda"):
        raise LknasError(f"{TRIAL_DEVICE_ENV}={chosen}: trials train on cpu or cuda (the GPU Ray gives each); "
                         f"set it to cpu or cuda, or unset it")
    if chosen == "cuda" and gpus_per_trial <= 0:
        raise LknasError(f"{TRIAL_DEVICE_ENV}=cuda with --gpus-per-trial 0: Ray gives such trials no GPU; pass "
                         f"--gpus-per-trial (e.g. 0.5 or 1), or unset {TRIAL_DEVICE_ENV}")
    return chosen


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """'MODEL avx512f' / 'MODEL avx2' / 'MODEL' from /proc/cpuinfo ('' where there is none): kernel
    timings differ by CPU (on 2026-12-02 the test machine measured 125 GFLOP/s fp32 GEMM one
    morning and 194, an AVX-512 EPYC, that afternoon)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    lines = text.splitlines()
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    vector = "avx512f" if "avx512f" in flags else "avx2" if "avx2" in flags else ""
    return " ".join(v for v in (model, vector) if v)
