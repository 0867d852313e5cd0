"""lknas: architecture search and scaling studies for large-kernel ConvNets.

The data flows one way: space -> ArchConfig -> model -> measurements -> search -> results -> reports.

`import lknas` is cheap: the public names below are imported on first use (`lknas.lazy`), so
`python -m lknas --help` does not import torch, timm, Ray or Optuna. The reference architectures
and those of `LKNAS_ARCH_PATH` become timm models (`timm.create_model('lknas_pelk_t')`) as soon as
both lknas and timm are imported, in either order.
"""
from lknas.lazy import after_import, lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "ArchConfig": "lknas.arch",
    **dict.fromkeys(("LknasError", "SpaceError"), "lknas.errors"),
    **dict.fromkeys(("build_model", "reparameterize"), "lknas.models"),
    **dict.fromkeys(("register_archs", "register_reference_archs"), "lknas.models.registry"),
    **dict.fromkeys(("SearchSpace", "load_arch", "load_space"), "lknas.space"),
}
__all__ = sorted(set(_EXPORTS) - {"register_reference_archs"})
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


def _register_timm_models() -> None:
    from lknas.models.registry import register_reference_archs

    register_reference_archs()


after_import("timm", _register_timm_models)
