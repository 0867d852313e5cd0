"""lknas checkpoints: plain dicts of tensors and primitives, so `torch.load(weights_only=True)`
reads them, written atomically. Two kinds: `train` (everything `lknas train --resume` needs) and
`deploy` (the reparameterized model). The architecture travels inside as YAML.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lknas.arch import ArchConfig
from lknas.errors import LknasError
from lknas.io import atomic_path

__all__ = ["FORMAT", "save_checkpoint", "load_checkpoint", "build_from_checkpoint", "CheckpointError"]

FORMAT = "lknas-checkpoint"
VERSION = 1


class CheckpointError(LknasError):
    """A checkpoint that is missing, truncated or not an lknas checkpoint."""


def save_checkpoint(path: str | os.PathLike, kind: str, arch: ArchConfig, model: nn.Module, *, num_classes: int,
                    in_chans: int, **extra: Any) -> Path:
    """Write a `kind` ('train' | 'deploy') checkpoint of `model` atomically."""
    data = {"format": FORMAT, "version": VERSION, "kind": kind, "arch_yaml": arch.to_yaml(),
            "num_classes": num_classes, "in_chans": in_chans, "model": model.state_dict(), **extra}
    if kind == "deploy":
        data["stripe_forms"] = dict(getattr(model, "stripe_forms", None) or {})
    with atomic_path(path) as tmp:
        torch.save(data, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    """Read an lknas checkpoint with `weights_only=True`; CheckpointError (naming the file and what
    was expected) if it is missing, truncated, foreign or of the wrong kind."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; give the checkpoint file in it (checkpoint-last.pt or deploy.pt)")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # the file is untrusted bytes: whatever the unpickler trips on, it is unreadable
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: cannot read it as a checkpoint (truncated, or not written by "
                              f"torch.save): {first}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        keys = ", ".join(sorted(map(str, data)))[:200] if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{path}: not an lknas checkpoint (found {keys}); lknas writes them with "
                              f"`python -m lknas train` (checkpoint-last.pt, deploy.pt) or `lknas deploy`")
    if kind is not None and data.get("kind") != kind:
        raise CheckpointError(f"{path}: a '{data.get('kind')}' checkpoint where a '{kind}' one is needed")
    _check_keys(path, data)
    return data


# what each kind must hold, with the type a reader relies on (`lknas train --resume` reads the train keys)
_KEYS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "kind": (str, "'train' or 'deploy'"), "arch_yaml": (str, "the architecture as YAML"),
    "num_classes": (int, "an integer"), "in_chans": (int, "an integer"), "model": (dict, "a state dict"),
}
_TRAIN_KEYS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "epoch": (int, "an integer"), "optimizer": (dict, "a state dict"), "scheduler": (dict, "a state dict"),
    "rng": ((torch.Tensor, dict), "generator states"), "history": (str, "JSON text"),
    "best_accuracy": ((int, float), "a number"),
}


def _check_keys(path: Path, data: dict[str, Any]) -> None:
    """CheckpointError naming every missing or mistyped key, and an architecture that does not parse."""
    expected = dict(_KEYS)
    if data.get("kind") == "train":
        expected.update(_TRAIN_KEYS)
    elif data.get("kind") != "deploy":
        raise CheckpointError(f"{path}: kind {data.get('kind')!r}; an lknas checkpoint is 'train' or 'deploy'")
    problems = [f"{key} is missing" if key not in data else f"{key} is {type(data[key]).__name__}, not {what}"
                for key, (types, what) in expected.items()
                if key not in data or not isinstance(data[key], types) or isinstance(data[key], bool)]
    rng = data.get("rng")
    if isinstance(rng, dict) and not (isinstance(rng.get("torch"), torch.Tensor) and "python" in rng):
        problems.append("rng lacks the torch or python generator state")
    if problems:
        raise CheckpointError(f"{path}: not a complete '{data.get('kind')}' checkpoint ({'; '.join(problems)}); "
                              f"it was not written by this lknas or was altered: use the checkpoint-last.pt or "
                              f"deploy.pt that `python -m lknas train` wrote")
    if data["num_classes"] < 1 or data["in_chans"] < 1:
        raise CheckpointError(f"{path}: num_classes {data['num_classes']} / in_chans {data['in_chans']} must be >= 1")
    from lknas.errors import SpaceError
    from lknas.space.loader import read_yaml
    from lknas.space.schema import parse_space

    try:
        parsed = read_yaml(data["arch_yaml"], f"{path} (arch_yaml)")
        if not isinstance(parsed, dict):
            raise CheckpointError(f"{path}: arch_yaml does not hold an architecture mapping")
        parse_space(parsed, f"{path} (arch_yaml)").fixed()
    except SpaceError as err:
        raise CheckpointError(f"{path}: its architecture is invalid: {err}") from None


def build_from_checkpoint(data: dict[str, Any]) -> tuple[ArchConfig, nn.Module]:
    """(arch, model with the checkpoint's weights): the training form for a 'train' checkpoint,
    the deploy form (eval mode) for a 'deploy' one."""
    from lknas.models import build_model, reparameterize

    arch = ArchConfig.from_yaml(data["arch_yaml"])
    model = build_model(arch, num_classes=data["num_classes"], in_chans=data["in_chans"])
    if data["kind"] == "deploy":  # the saved forms (older checkpoints: SLaK's decomposed stripes)
        model = reparameterize(model, inplace=True, stripe_forms=data.get("stripe_forms") or {})
    try:
        model.load_state_dict(data["model"])
    except (RuntimeError, TypeError, AttributeError, ValueError, KeyError) as err:
        raise CheckpointError(f"the checkpoint's weights do not fit its architecture: {str(err).splitlines()[0]}") from None
    return arch, model
