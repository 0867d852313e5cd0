"""lknas: architecture search and scaling studies for large-kernel ConvNets.

The data flows one way: space -> ArchConfig -> model -> measurements -> search -> results -> reports.
"""
from lknas.arch import ArchConfig
from lknas.errors import LknasError, SpaceError
from lknas.models import build_model, reparameterize
from lknas.models.registry import register_archs, register_reference_archs
from lknas.space import SearchSpace, load_arch, load_space

register_reference_archs()  # timm.create_model('lknas_pelk_t', ...) and LKNAS_ARCH_PATH

__version__ = "0.1.0"

__all__ = [
    "ArchConfig",
    "LknasError",
    "SearchSpace",
    "SpaceError",
    "build_model",
    "load_arch",
    "load_space",
    "register_archs",
    "reparameterize",
]
