"""Textured shapes: classify the shape, not the texture (RepLKNet's shape-bias argument).

Each RGB image shows one shape (8 classes: circle, ring, square, frame, triangle, cross, star,
crescent) at a random position, size (radius 0.2..0.4 image widths) and rotation, anti-aliased.
The shape is filled with one random texture and the background with another, each drawn
independently of the class from: stripes (sine or square wave), checkerboards, and smooth value
noise, at random frequencies (1.5..8 cycles per image), orientations, phases and colour pairs. The
two textures' mean colours differ by at least 0.25 (mean absolute difference over RGB, in [0,1]),
so the outline is always visible. Ring vs circle and frame vs square differ only by the hole, so
the net needs the whole shape, not an edge or a corner.

Geometry is in unit image coordinates, so any resolution (32..256) shows the same images at a
different pixel count. Classes are balanced exactly within each chunk of 480 samples.
`shapes:classes=N` keeps the first N classes (2..8).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

VERSION = 1
CHUNK = 480
CLASSES = ["circle", "ring", "square", "frame", "triangle", "cross", "star", "crescent"]
CHANNELS = 3
FLIPS = "hv"  # every class is mirror symmetric as a class
MIN_CONTRAST = 0.25


def _sdf(cls: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance (approximate outside) in shape units: the shape fits in the unit disk."""
    rho = np.hypot(u, v)
    box = np.maximum(np.abs(u), np.abs(v))
    name = CLASSES[cls]
    if name == "circle":
        return rho - 0.85
    if name == "ring":
        return np.maximum(rho - 0.92, 0.52 - rho)
    if name == "square":
        return box - 0.68
    if name == "frame":
        return np.maximum(box - 0.7, 0.36 - box)
    if name == "triangle":
        d = -np.inf
        for k in range(3):
            a = math.pi / 2 + 2 * math.pi * k / 3
            d = np.maximum(d, u * math.cos(a) + v * math.sin(a))
        return d - 0.48
    if name == "cross":
        return np.minimum(
            np.maximum(np.abs(u) - 0.92, np.abs(v) - 0.27),
            np.maximum(np.abs(u) - 0.27, np.abs(v) - 0.92),
        )
    if name == "star":
        sector = 2 * math.pi / 5
        a = np.mod(np.arctan2(v, u), sector)
        a = np.minimum(a, sector - a)
        outer = np.array([0.97, 0.0])
        inner = 0.42 * np.array([math.cos(sector / 2), math.sin(sector / 2)])
        e = inner - outer
        n = np.array([e[1], -e[0]]) / np.hypot(*e)
        return (rho * np.cos(a) - outer[0]) * n[0] + (rho * np.sin(a) - outer[1]) * n[1]
    if name == "crescent":
        return np.maximum(rho - 0.88, 0.72 - np.hypot(u - 0.42, v))
    raise ValueError(name)


def _textures(rng: np.random.Generator, n: int, res: int) -> np.ndarray:
    """`n` random RGB textures in [0,1]: (n, 3, res, res) float32, plus their mean colours."""
    g = (np.arange(res, dtype=np.float32) + 0.5) / res
    y, x = np.meshgrid(g, g, indexing="ij")
    kind = rng.integers(0, 3, n)
    freq = rng.uniform(1.5, 8.0, n).astype(np.float32)
    angle = rng.uniform(0, math.pi, n).astype(np.float32)
    phase = rng.uniform(0, 2 * math.pi, (n, 2)).astype(np.float32)
    square = rng.random(n) < 0.5
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    f = 2 * math.pi * freq[:, None, None]
    s = np.sin(f * (x * cos + y * sin) + phase[:, 0, None, None])
    t = np.sin(f * (-x * sin + y * cos) + phase[:, 1, None, None])
    stripes = np.where(square[:, None, None], np.sign(s), s)
    checker = np.sign(s * t)
    val = np.where((kind == 0)[:, None, None], stripes, checker) * 0.5 + 0.5
    noise_idx = np.flatnonzero(kind == 2)
    if noise_idx.size:
        cells = rng.integers(3, 13, noise_idx.size)  # grid cells across the image ~ frequency
        for c in np.unique(cells):
            sel = noise_idx[cells == c]
            grid = torch.from_numpy(rng.random((sel.size, 1, c + 1, c + 1), dtype=np.float32))
            up = F.interpolate(grid, size=(res, res), mode="bicubic", align_corners=True)
            up = up[:, 0].numpy()
            lo, hi = up.min(axis=(1, 2), keepdims=True), up.max(axis=(1, 2), keepdims=True)
            val[sel] = (up - lo) / np.maximum(hi - lo, 1e-6)
    colors = rng.random((n, 2, 3), dtype=np.float32)
    return val.astype(np.float32), colors


def _colorize(val: np.ndarray, colors: np.ndarray) -> np.ndarray:
    c0, c1 = colors[:, 0, :, None, None], colors[:, 1, :, None, None]
    return c0 + (c1 - c0) * val[:, None]


def render_chunk(rng: np.random.Generator, labels: np.ndarray, res: int) -> np.ndarray:
    n = len(labels)
    radius = rng.uniform(0.2, 0.4, n)
    center = rng.uniform(radius[:, None], 1 - radius[:, None], (n, 2))
    rot = rng.uniform(0, 2 * math.pi, n)
    fg_val, fg_col = _textures(rng, n, res)
    bg_val, bg_col = _textures(rng, n, res)
    # keep the shape visible: redraw foreground colours until the mean colours differ enough
    for _ in range(100):
        diff = np.abs(fg_col.mean(axis=1) - bg_col.mean(axis=1)).mean(axis=1)
        bad = diff < MIN_CONTRAST
        if not bad.any():
            break
        fg_col[bad] = rng.random((int(bad.sum()), 2, 3), dtype=np.float32)
    g = (np.arange(res) + 0.5) / res
    yy, xx = np.meshgrid(g, g, indexing="ij")
    dx = xx[None] - center[:, 0, None, None]
    dy = yy[None] - center[:, 1, None, None]
    c, s = np.cos(rot)[:, None, None], np.sin(rot)[:, None, None]
    r = radius[:, None, None]
    u, v = (c * dx + s * dy) / r, (-s * dx + c * dy) / r
    mask = np.empty((n, res, res), dtype=np.float32)
    for k in np.unique(labels):
        sel = labels == k
        d_px = _sdf(int(k), u[sel], v[sel]) * r[sel] * res
        mask[sel] = np.clip(0.5 - d_px, 0.0, 1.0)
    m = mask[:, None]
    img = _colorize(fg_val, fg_col) * m + _colorize(bg_val, bg_col) * (1 - m)
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)


def resolve_options(options: dict[str, str]) -> dict:
    from lknas.data.base import DataError

    unknown = set(options) - {"classes", "train", "val"}
    if unknown:
        raise DataError(f"shapes: unknown option(s) {sorted(unknown)}; valid: classes (2..8), train, val")
    classes = len(CLASSES)
    if "classes" in options:
        try:
            classes = int(options["classes"])
        except ValueError:
            classes = -1
        if not 2 <= classes <= len(CLASSES):
            raise DataError(f"shapes: classes must be an integer in 2..{len(CLASSES)}, got {options['classes']!r}")
    return {"classes": classes}


def class_names(params: dict) -> list[str]:
    return CLASSES[: params["classes"]]


def generate(n: int, resolution: int, seed: int, split: int, params: dict) -> dict:
    """`n` samples: x (n,3,R,R) uint8, y (n,) int64; chunk k comes from stream (seed, split, k)."""
    xs, ys = [], []
    k_classes = params["classes"]
    for k in range(-(-n // CHUNK)):
        m = min(CHUNK, n - k * CHUNK)
        rng = np.random.default_rng([seed, split, k, VERSION, 2])
        labels = rng.permutation(np.arange(CHUNK) % k_classes)[:m]
        xs.append(render_chunk(rng, labels, resolution))
        ys.append(labels)
    return {"x": np.concatenate(xs), "y": np.concatenate(ys).astype(np.int64)}
