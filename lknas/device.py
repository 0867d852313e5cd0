"""`resolve_device`: the torch device a command runs on, checked before anything is built.

'auto' is CUDA when torch sees a GPU, else the CPU. Asking for CUDA where torch sees none (no
GPU, no driver, or a CPU-only torch build), or for a GPU index that does not exist, is a user
error (`LknasError`) naming the flag and the fix, not a driver traceback from deep inside torch.
"""
from __future__ import annotations

import torch

from lknas.errors import LknasError

__all__ = ["resolve_device"]


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
