"""Reading pickled data files without running code from them.

`pickle.load` calls whatever a file names: a crafted CIFAR batch can run `os.system` the moment it
is opened. `load_plain` unpickles with `find_class` restricted to what plain data needs (numpy
arrays, numpy scalars and dtypes, and the built-in containers); any other name, such as
`os.system`, `builtins.eval` or `subprocess.Popen`, is refused with `UnsafePickleError` before
it is looked up, so nothing the file names is ever imported or called.

Allowed (module, name) pairs: numpy's array reconstructors for pickle protocols 2 to 5 under
numpy 1.x (`numpy.core`) and 2.x (`numpy._core`) names, `numpy.ndarray`, `numpy.dtype`, numpy's
scalar constructor, `_codecs.encode` for latin-1 only (how Python 2 pickles such as the
original CIFAR batches store bytes), and `builtins` containers and numbers (set, frozenset,
bytearray, complex, ...).
"""
from __future__ import annotations

import _compat_pickle
import codecs
import io
import pickle
from pathlib import Path
from typing import Any

from lknas.data.base import DataError

__all__ = ["ALLOWED", "UnsafePickleError", "RestrictedUnpickler", "load_plain"]

_NUMPY = ("numpy.core.multiarray", "numpy._core.multiarray")
_NUMERIC = ("numpy.core.numeric", "numpy._core.numeric")
ALLOWED: frozenset[tuple[str, str]] = frozenset(
    [(m, "_reconstruct") for m in _NUMPY] + [(m, "scalar") for m in _NUMPY]
    + [(m, "_frombuffer") for m in _NUMERIC]
    + [("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")]
    + [("builtins", name) for name in ("set", "frozenset", "bytearray", "bytes", "list", "dict", "tuple",
                                       "int", "float", "complex", "bool", "str", "slice", "range")]
)


class UnsafePickleError(DataError):
    """A pickle names something other than plain data (it could run code): refused, nothing run."""


def _latin1_encode(obj: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """`_codecs.encode` as Python 2 pickles use it (bytes stored as latin-1 text), and nothing else."""
    if encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} (only latin1 is plain data)")
    return codecs.encode(obj, "latin1", errors)


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler whose `find_class` resolves only the names in `ALLOWED`."""

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (__builtin__.set in protocol 0-2 pickles) as pickle itself maps them
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) not in ALLOWED:
            raise UnsafePickleError(f"it names {module}.{name}, which is not plain data and could run code")
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        return super().find_class(module, name)


def load_plain(path: str | Path, what: str, **kwargs: Any) -> Any:
    """Unpickle the file at `path` through `RestrictedUnpickler` (kwargs: `encoding`, ...).

    Raises:
        UnsafePickleError: the file names a class or function outside `ALLOWED`; the message
            names the file (`what` says what it was meant to be, e.g. 'cifar10').
        pickle.UnpicklingError, EOFError, ValueError, ...: a corrupt file, as `pickle.load` would.
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        return RestrictedUnpickler(io.BytesIO(data), **kwargs).load()
    except UnsafePickleError as err:
        raise UnsafePickleError(f"{what}: refused to read {path}: {err}; only numpy arrays, numbers, strings, "
                                "lists and dicts are read from data files (nothing in it was run)") from None
