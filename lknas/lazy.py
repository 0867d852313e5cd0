"""Lazy package attributes (PEP 562) and a hook that runs code once another package is imported.

`python -m lknas --help` and `validate` must not pay for torch, timm, Ray or Optuna (seconds on a
loaded machine), so the packages whose submodules import them (`lknas`, `lknas.models`,
`lknas.ops`) name their public attributes here and import the submodule on first access:

    __getattr__, __dir__ = lazy_exports(__name__, {"build_model": "lknas.models.build", ...})

`after_import("timm", register)` runs `register()` right away when timm is already imported, and
otherwise once timm's own import has finished, so `import lknas, timm` and `import timm, lknas`
both see lknas's timm models without `import lknas` importing timm.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = ["lazy_exports", "after_import"]


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`: `exports` maps a public name to the module that
    defines it; the module is imported on the first access and the value cached in the package."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__


class _RunAfter(importlib.abc.MetaPathFinder):
    """One-shot finder: finds `name` with the other finders, then runs `callback` after the
    module's own code has run (its spec and `__loader__` stay the original loader's)."""

    def __init__(self, name: str, callback: Callable[[], None]) -> None:
        self.name, self.callback = name, callback

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        if fullname != self.name:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader, callback = spec.loader, self.callback

        class _Loader(importlib.abc.Loader):
            def create_module(self, spec):
                return loader.create_module(spec)

            def exec_module(self, module: ModuleType) -> None:
                module.__loader__ = module.__spec__.loader = loader
                loader.exec_module(module)
                _run(callback)

        spec.loader = _Loader()
        return spec


def _run(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception as err:  # never break the other package's import
        warnings.warn(f"lknas: {getattr(callback, '__name__', callback)} failed: {type(err).__name__}: {err}",
                      stacklevel=2)


def after_import(name: str, callback: Callable[[], None]) -> None:
    """Run `callback` now if top-level package `name` is imported, else right after its import."""
    if name in sys.modules:
        _run(callback)
    elif not any(isinstance(f, _RunAfter) and f.name == name and f.callback is callback for f in sys.meta_path):
        sys.meta_path.insert(0, _RunAfter(name, callback))
