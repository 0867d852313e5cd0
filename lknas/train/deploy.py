"""`python -m lknas deploy CHECKPOINT --out model.pt`: the deploy form of a trained model.

Writes the reparameterized model as an lknas 'deploy' checkpoint (weights_only-loadable), and on
request a `torch.export` program (`.pt2`) or ONNX, where the environment has the exporter.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from lknas.errors import LknasError
from lknas.limits import MAX_RESOLUTION, MIN_RESOLUTION
from lknas.train.checkpoint import CheckpointError, build_from_checkpoint, load_checkpoint, save_checkpoint

__all__ = ["deploy_checkpoint", "load_deploy_model", "EXPORT_FORMATS"]

EXPORT_FORMATS = ("export", "onnx")


def load_deploy_model(path: str | os.PathLike, resolution: int = 224) -> torch.nn.Module:
    """The deploy-form model (eval mode) of a 'train' or 'deploy' checkpoint; a 'train' one is
    reparameterized for inputs of `resolution` (a 'deploy' one keeps the forms it was saved with)."""
    from lknas.models import reparameterize

    data = load_checkpoint(path)
    _, model = build_from_checkpoint(data)
    if data["kind"] == "deploy":
        return model.eval()
    return reparameterize(model, inplace=True, resolution=resolution, in_chans=data["in_chans"])


def checkpoint_resolution(data: dict[str, Any]) -> int:
    """The input size a checkpoint was trained at: a deploy checkpoint's `resolution`, a train
    checkpoint's recipe; 224 for checkpoints that record neither (written before they did)."""
    value = data.get("resolution")
    if value is None and isinstance(data.get("recipe"), str):
        try:
            value = json.loads(data["recipe"]).get("resolution")
        except (ValueError, AttributeError):
            value = None
    valid = isinstance(value, int) and not isinstance(value, bool) and MIN_RESOLUTION <= value <= MAX_RESOLUTION
    return value if valid else 224


def deploy_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike, *, resolution: int | None = None,
                      export: str | None = None, measure: bool = True, threads: int | None = None) -> dict[str, Any]:
    """Write the deploy form of `checkpoint` to `out` (+ `export` format beside it) and measure it.
    `resolution` (the deploy form's stripe choices, the counts and the latency) defaults to the
    resolution the checkpoint was trained at (`checkpoint_resolution`)."""
    from lknas.measure import complexity, measure_latency
    from lknas.models import reparameterize

    data = load_checkpoint(checkpoint)
    resolution = resolution or checkpoint_resolution(data)
    try:
        arch, model = build_from_checkpoint(data)
    except CheckpointError as err:
        raise CheckpointError(f"{checkpoint}: {err}") from None
    deploy = model.eval() if data["kind"] == "deploy" else reparameterize(
        model, resolution=resolution, in_chans=data["in_chans"])  # the form `count` and `latency` use
    out = Path(out)
    save_checkpoint(out, "deploy", arch, deploy, num_classes=data["num_classes"], in_chans=data["in_chans"],
                    resolution=resolution)
    result: dict[str, Any] = {"checkpoint": str(out), "arch": arch.summary(), "resolution": resolution}
    example = torch.randn(2, data["in_chans"], resolution, resolution)
    if export == "export":
        batch = torch.export.Dim("batch", min=1, max=4096)
        program = torch.export.export(deploy, (example,), dynamic_shapes=({0: batch},))
        result["export"] = str(out.with_suffix(".pt2"))
        torch.export.save(program, result["export"])
    elif export == "onnx":
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise LknasError("--export onnx needs the onnx package (pip install onnx); the deploy checkpoint "
                             f"{out} was written") from None
        result["export"] = str(out.with_suffix(".onnx"))
        torch.onnx.export(deploy, (example,), result["export"], input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    elif export is not None:
        raise LknasError(f"--export {export!r}: choose one of {', '.join(EXPORT_FORMATS)}")
    if measure:
        counts = complexity(model if data["kind"] == "train" else deploy, resolution=resolution,
                            in_chans=data["in_chans"])
        result.update(params=counts["params_deploy"], flops=counts["flops"])
        result.update(measure_latency(deploy, resolution, deploy=False, threads=threads, in_chans=data["in_chans"]))
    return result
