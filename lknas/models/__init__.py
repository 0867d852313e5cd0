"""Models: blocks, the generic `LKNet`, `build_model` and reparameterization."""
from lknas.models.build import build_model
from lknas.models.net import LKHead, LKNet, LKStage
from lknas.models.reparam import is_deployed, reparameterize

__all__ = ["build_model", "LKNet", "LKStage", "LKHead", "reparameterize", "is_deployed"]
