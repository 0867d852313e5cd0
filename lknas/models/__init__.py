"""Models: blocks, the generic `LKNet`, `build_model` and reparameterization.

The names below are imported on first use (`lknas.lazy`), so `lknas.models.estimate` (no torch)
can price an architecture without importing torch.
"""
from lknas.lazy import lazy_exports

_EXPORTS = {
    "build_model": "lknas.models.build",
    **dict.fromkeys(("LKNet", "LKStage", "LKHead"), "lknas.models.net"),
    **dict.fromkeys(("reparameterize", "is_deployed"), "lknas.models.reparam"),
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
