"""`build_model`: an ArchConfig (or its dict, or a YAML file) -> `LKNet`."""
from __future__ import annotations

import os
from typing import Any

from lknas.arch import ArchConfig
from lknas.models.net import LKNet

__all__ = ["build_model"]


def _load_arch_file(path: str) -> ArchConfig:
    try:
        from lknas.space import load_arch
    except ImportError:
        with open(path) as f:
            return ArchConfig.from_yaml(f.read())
    return load_arch(path)


def build_model(
    arch: ArchConfig | dict[str, Any] | str | os.PathLike,
    num_classes: int = 1000,
    in_chans: int = 3,
    **kwargs: Any,
) -> LKNet:
    """Build the training-form model. `arch` is an `ArchConfig`, a dict in `ArchConfig.to_dict`
    form, or the path of an architecture YAML file (validated by `lknas.space.load_arch`).
    Extra keyword arguments go to `LKNet` (drop_rate, drop_path_rate, global_pool)."""
    if isinstance(arch, dict):
        arch = ArchConfig.from_dict(arch)
    elif isinstance(arch, (str, os.PathLike)):
        arch = _load_arch_file(os.fspath(arch))
    if not isinstance(arch, ArchConfig):
        raise TypeError(f"build_model expects an ArchConfig, a dict or a YAML path, got {type(arch).__name__}")
    return LKNet(arch, num_classes=num_classes, in_chans=in_chans, **kwargs)
