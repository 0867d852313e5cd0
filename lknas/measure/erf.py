"""Effective receptive field as RepLKNet measures it.

The gradient of the centre pixel of the last feature map (summed over channels) with respect to
the input (for an even-sized map, the central 2 x 2 pixels, so the point is the image's centre
rather than a cell beside it: at proxy scale the last map is often 2 x 2), absolute, summed over channels and aggregated over a batch of images, normalized to
[0, 1]. It is summarized by the area ratio of the smallest centred square that holds t = 20%, 30%,
50% and 99% of the total contribution: the larger, the wider the network looks.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lknas import quiet

__all__ = ["ErfResult", "effective_receptive_field", "erf_resolution", "area_ratios", "compact_heatmap", "log_scaled", "save_heatmap",
           "THRESHOLDS"]

THRESHOLDS = (0.2, 0.3, 0.5, 0.99)


@dataclass
class ErfResult:
    """`heatmap` (H, W) in [0, 1]; `ratios` {t: area ratio}; `images`: how many were aggregated."""

    heatmap: np.ndarray
    ratios: dict[float, float]
    images: int

    def metrics(self) -> dict[str, float]:
        """Flat metrics: `erf_20`, `erf_30`, `erf_50`, `erf_99`, and `erf` (= the t = 20% ratio,
        RepLKNet's headline number, used as the search objective)."""
        out = {f"erf_{round(t * 100)}": r for t, r in self.ratios.items()}
        out["erf"] = self.ratios[THRESHOLDS[0]]
        return out


def area_ratios(heatmap: np.ndarray, thresholds: Iterable[float] = THRESHOLDS) -> dict[float, float]:
    """For each t, (side/H) * (side/W) of the smallest centred square holding t of the total."""
    data = np.asarray(heatmap, dtype=np.float64)
    h, w = data.shape
    total = data.sum()
    cy, cx = h // 2, w // 2
    max_r = max(cy, cx, h - 1 - cy, w - 1 - cx)
    # cumulative sum of centred squares of radius 0..max_r (clipped to the map)
    sums = np.array([
        data[max(0, cy - r):cy + r + 1, max(0, cx - r):cx + r + 1].sum() for r in range(max_r + 1)
    ])
    out = {}
    for t in thresholds:
        if total <= 0:
            out[t] = 0.0
            continue
        r = int(np.argmax(sums >= t * total - 1e-12 * total))
        side_h, side_w = min(h, 2 * r + 1), min(w, 2 * r + 1)
        out[t] = (side_h / h) * (side_w / w)
    return out


def _central(n: int) -> slice:
    """The centre index of an odd size, the two central ones of an even size."""
    return slice(n // 2, n // 2 + 1) if n % 2 else slice(n // 2 - 1, n // 2 + 1)


def erf_resolution(model: nn.Module, resolution: int, min_cells: int = 8) -> int:
    """The input size at which the last feature map has at least `min_cells` cells a side (RepLKNet
    trains at 224 and measures at 1024 for the same reason): max(resolution, min_cells * stride)."""
    info = getattr(model, "feature_info", None)
    stride = info[-1]["reduction"] if info else 32
    return max(resolution, min_cells * stride)


def effective_receptive_field(
    model: nn.Module, images: torch.Tensor | Iterable[torch.Tensor], max_images: int = 64,
    device: str | torch.device = "cpu", resolution: int | None = None,
) -> ErfResult:
    """The ERF of `model` (timm API: `forward_features`) over `images` (a (N,C,H,W) tensor or an
    iterable of batches, e.g. `bundle.val` whose items are (x, y)), resized (bilinear) to
    `resolution` if given. The model is used in eval mode and left as it was."""
    if resolution is not None:
        from lknas.measure.complexity import check_input_size

        check_input_size(model, resolution, "--erf-resolution")
    dev = torch.device(device)
    was_training = model.training
    model.eval()
    batches = [images] if isinstance(images, torch.Tensor) else images
    acc: torch.Tensor | None = None
    seen = 0
    try:
        for batch in batches:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            x = x[: max_images - seen].to(dev).detach()
            if resolution is not None and x.shape[-1] != resolution:
                x = torch.nn.functional.interpolate(x, size=(resolution, resolution), mode="bilinear",
                                                    align_corners=False)
            x.requires_grad_(True)
            feats = model.forward_features(x)
            rows, cols = _central(feats.shape[-2]), _central(feats.shape[-1])
            centre = feats[:, :, rows, cols].sum()
            (grad,) = torch.autograd.grad(centre, x)
            contribution = grad.abs().sum(dim=(0, 1)).double()
            acc = contribution if acc is None else acc + contribution
            seen += x.shape[0]
            quiet.yield_point()
            if seen >= max_images:
                break
    finally:
        model.train(was_training)
    if acc is None:
        raise ValueError("no images given to measure the effective receptive field")
    heat = acc.cpu().numpy()
    heat = heat / heat.max() if heat.max() > 0 else heat
    return ErfResult(heatmap=heat, ratios=area_ratios(heat), images=seen)


def compact_heatmap(heatmap: np.ndarray, max_side: int = 64) -> np.ndarray:
    """The heatmap block-averaged by the smallest integer factor that brings both sides to at most
    `max_side` (a map of at most 64 x 64 travels with a trial's result), renormalized to [0, 1],
    float32."""
    data = np.asarray(heatmap, dtype=np.float64)
    h, w = data.shape
    f = max(1, -(-max(h, w) // max_side))
    if f > 1:
        hh, ww = -(-h // f) * f, -(-w // f) * f
        padded = np.zeros((hh, ww))
        padded[:h, :w] = data
        data = padded.reshape(hh // f, f, ww // f, f).mean(axis=(1, 3))
    top = data.max()
    return (data / top if top > 0 else data).astype(np.float32)


# a few anchors of matplotlib's 'viridis', linearly interpolated
_VIRIDIS = np.array([
    [68, 1, 84], [72, 40, 120], [62, 73, 137], [49, 104, 142], [38, 130, 142],
    [31, 158, 137], [53, 183, 121], [110, 206, 88], [181, 222, 43], [253, 231, 37],
], dtype=np.float64)


def log_scaled(heatmap: np.ndarray) -> np.ndarray:
    """log10(1 + 99 x) / 2 of a [0, 1] heatmap, as ERF plots are shown: [0, 1] again, with the
    faint tails visible."""
    return np.log10(1 + 99 * np.clip(np.asarray(heatmap, dtype=np.float64), 0, None)) / 2


def save_heatmap(heatmap: np.ndarray, path: str, scale: int = 4, log: bool = True) -> str:
    """Write the heatmap as a PNG (viridis; log10(1 + 99x) scaling by default, as ERF plots are
    usually shown), each pixel `scale` x `scale`. Returns the path."""
    from PIL import Image

    data = log_scaled(heatmap) if log else np.clip(np.asarray(heatmap, dtype=np.float64), 0, None)
    data = data / data.max() if data.max() > 0 else data
    pos = data * (len(_VIRIDIS) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(_VIRIDIS) - 2)
    frac = (pos - lo)[..., None]
    rgb = (_VIRIDIS[lo] * (1 - frac) + _VIRIDIS[lo + 1] * frac).round().astype(np.uint8)
    img = Image.fromarray(rgb, mode="RGB").resize((rgb.shape[1] * scale, rgb.shape[0] * scale), Image.NEAREST)
    from lknas.io import atomic_path

    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return str(path)
