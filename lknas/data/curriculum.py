"""The curriculum's data: an easier form of the task that a proxy trains on first (`train.curriculum`).

Here in the data layer, not in the trainer, so the search driver checks a curriculum before any
trial starts without importing the models (timm, torchvision: 1.5-3 s of the driver's start).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lknas.data.base import DataError

if TYPE_CHECKING:
    from lknas.space.configs import TrainConfig

__all__ = ["curriculum_data", "check_curriculum"]


def curriculum_data(cfg: TrainConfig, bundle: Any, dev: str, steps: int) -> Any:
    """The easier data set `cfg.curriculum`, drawn like the main set (same resolution, batch size,
    data and order seeds; a synthetic set at exactly `steps` batches); DataError unless it has the
    main set's classes and channels."""
    from lknas.data import SYNTHETIC, build_data, parse_spec

    synthetic = parse_spec(cfg.curriculum).kind in SYNTHETIC
    easy = build_data(cfg.curriculum, resolution=getattr(bundle, "resolution", cfg.resolution),
                      batch_size=cfg.batch_size, seed=cfg.data_set_seed, order_seed=cfg.seed, device=str(dev),
                      train_size=steps * cfg.batch_size if synthetic else None,
                      val_size=cfg.batch_size if synthetic else None)
    for what in ("num_classes", "in_chans"):
        if getattr(easy, what) != getattr(bundle, what):
            raise DataError(f"train.curriculum {cfg.curriculum!r} has {what} {getattr(easy, what)} but the data set "
                            f"has {getattr(bundle, what)}; use an easier form of the same task")
    return easy


def check_curriculum(cfg: TrainConfig, bundle: Any) -> None:
    """Raise DataError now, before any trial starts, if `cfg.curriculum` cannot serve `bundle`."""
    if cfg.curriculum:
        curriculum_data(cfg, bundle, "cpu", 1)
