"""timm entrypoints for lknas architectures: `timm.create_model('lknas_NAME', ...)`.

Once lknas and timm are both imported (in either order; see `lknas.lazy.after_import`), the
reference architectures of `search_spaces/reference/` are registered
(`lknas_replknet31b`, `lknas_slak_t`, `lknas_pelk_t`, `lknas_unireplknet_t`, `lknas_convnext_t`,
`lknas_convnextv2_t`) and every architecture file in the directories of `LKNAS_ARCH_PATH`
(separated by the OS path separator); `register_archs(path)` adds more (e.g. a search's
`export` directory). Models are built by timm's `build_model_with_cfg`, so timm's
`features_only=True` / `out_indices`, `num_classes`, `drop_path_rate`, `drop_rate` and
`global_pool` work as for timm's own models. There are no pretrained weights.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from lknas.arch import ArchConfig
from lknas.errors import LknasError

__all__ = ["register_archs", "registered_archs", "model_name_for", "register_reference_archs", "create_lknas"]

_REGISTERED: dict[str, str] = {}  # timm model name -> architecture file
PREFIX = "lknas_"


def model_name_for(path: str | os.PathLike) -> str:
    """`lknas_` + the file's stem, lower case, other characters as `_` (timm names are identifiers)."""
    stem = re.sub(r"[^0-9a-zA-Z]+", "_", Path(path).stem).strip("_").lower()
    return PREFIX + (stem or "arch")


def create_lknas(name: str, arch: ArchConfig, pretrained: bool = False, **kwargs: Any):
    """Build `arch` through timm's `build_model_with_cfg` under the variant name `name`."""
    from timm.models import build_model_with_cfg

    from lknas.models.net import LKNet, make_pretrained_cfg

    if pretrained:
        raise LknasError(f"{name}: lknas has no pretrained weights; train it (python -m lknas train) and load "
                         f"the checkpoint with timm.create_model('{name}', checkpoint_path=...)")
    kwargs.pop("pretrained_cfg_overlay", None)
    cfg = kwargs.pop("pretrained_cfg", None) or make_pretrained_cfg(
        arch, name, num_classes=kwargs.get("num_classes", 1000), in_chans=kwargs.get("in_chans", 3))
    return build_model_with_cfg(
        LKNet, name, pretrained=False, arch=arch, pretrained_cfg=cfg,
        feature_cfg=dict(out_indices=tuple(range(len(arch.stages))), flatten_sequential=True), **kwargs,
    )


def _entrypoint(name: str, path: str):
    def entrypoint(pretrained: bool = False, **kwargs: Any):
        from lknas.space import load_arch

        return create_lknas(name, load_arch(path), pretrained, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f"lknas architecture from {path}"
    return entrypoint


def register_archs(path: str | os.PathLike) -> list[str]:
    """Register an architecture YAML, or every `*.yaml` in a directory, as timm models. Returns the
    model names. A file is validated when its model is created, not here (registration stays cheap)."""
    from timm.models import register_model

    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.glob("*.y*ml") if p.is_file())
    elif path.is_file():
        files = [path]
    else:
        raise LknasError(f"register_archs: {path} is neither an architecture YAML nor a directory of them")
    names = []
    for file in files:
        name = model_name_for(file)
        resolved = str(file.resolve())
        if _REGISTERED.get(name) != resolved:
            register_model(_entrypoint(name, resolved))
            _REGISTERED[name] = resolved
        names.append(name)
    return names


def registered_archs() -> dict[str, str]:
    """{timm model name: architecture file} of everything lknas registered."""
    return dict(_REGISTERED)


def register_reference_archs() -> None:
    """The bundled reference architectures and the directories of `LKNAS_ARCH_PATH`."""
    from lknas.space.loader import bundled_dir

    reference = bundled_dir() / "reference"
    if reference.is_dir():
        register_archs(reference)
    for entry in filter(None, os.environ.get("LKNAS_ARCH_PATH", "").split(os.pathsep)):
        if Path(entry).exists():
            register_archs(entry)
