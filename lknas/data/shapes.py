"""Textured shapes: classify the shape, not the texture (RepLKNet's shape-bias argument).

Each RGB image shows one shape (8 classes: circle, ring, square, frame, triangle, cross, star,
crescent) at a random position, size (radius 0.2..0.4 image widths) and rotation, anti-aliased.
The shape is filled with one random texture and the background with another, each drawn
independently of the class from: stripes (sine or square wave), checkerboards, and smooth value
noise, at random frequencies (1.5..8 cycles per image), orientations and phases, between a random
colour and a second one 0.15..0.4 away per channel. The two textures' mean colours differ by at
least 0.3 (mean absolute difference over RGB, in [0,1]), so the outline is always the strongest
edge and the shape stays visible. Ring vs circle and frame vs square differ only by the hole, so
the net needs the whole shape, not an edge or a corner.

Geometry is in unit image coordinates, so any resolution (32..256) shows the same images at a
different pixel count. Classes are balanced within each chunk of 128 samples.
`shapes:classes=N` keeps the first N classes (2..8).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

VERSION = 5
CHUNK = 128
CLASSES = ["circle", "ring", "square", "frame", "triangle", "cross", "star", "crescent"]
CHANNELS = 3
FLIPS = "hv"  # every class is mirror symmetric as a class
MIN_CONTRAST = 0.35


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


def _texture_params(rng: np.random.Generator, n: int) -> dict:
    """Random texture parameters for `n` images (all draws happen here, none in the pixel pass)."""
    return {
        "kind": rng.integers(0, 3, n),
        "freq": rng.uniform(1.5, 8.0, n).astype(np.float32),
        "angle": rng.uniform(0, math.pi, n).astype(np.float32),
        "phase": rng.uniform(0, 2 * math.pi, (n, 2)).astype(np.float32),
        "square": rng.random(n) < 0.5,
        "cells": rng.integers(3, 13, n),  # value-noise grid cells across the image ~ frequency
        "grid": rng.random((n, 13, 13), dtype=np.float32),
        "colors": _colors(rng, n),
    }


def _bicubic_matrix(n: int, res: int) -> np.ndarray:
    """(res, n) matrix of torch's bicubic (align_corners) upsampling from n to res samples."""
    eye = torch.eye(n, dtype=torch.float32).view(n, 1, n, 1)
    up = F.interpolate(eye, size=(res, 1), mode="bicubic", align_corners=True)
    return up.view(n, res).T.contiguous().numpy()


def _texture_values(t: dict, m: int, res: int) -> np.ndarray:
    """Texture values in [0,1] of the first `m` images: (m, res, res) float32."""
    g = (np.arange(res, dtype=np.float32) + 0.5) / res
    y, x = np.meshgrid(g, g, indexing="ij")
    kind = t["kind"][:m]
    cos, sin = np.cos(t["angle"][:m])[:, None, None], np.sin(t["angle"][:m])[:, None, None]
    f = 2 * math.pi * t["freq"][:m, None, None]
    phase = t["phase"][:m]
    s = np.sin(f * (x * cos + y * sin) + phase[:, 0, None, None])
    c = np.sin(f * (-x * sin + y * cos) + phase[:, 1, None, None])
    stripes = np.where(t["square"][:m, None, None], np.sign(s), s)
    val = np.where((kind == 0)[:, None, None], stripes, np.sign(s * c)) * 0.5 + 0.5
    noise_idx = np.flatnonzero(kind == 2)
    cells = t["cells"][:m][noise_idx]
    for k in np.unique(cells):
        sel = noise_idx[cells == k]
        a = _bicubic_matrix(int(k) + 1, res)  # separable: up = A @ grid @ A^T
        up = a @ t["grid"][sel, : k + 1, : k + 1] @ a.T
        lo, hi = up.min(axis=(1, 2), keepdims=True), up.max(axis=(1, 2), keepdims=True)
        val[sel] = (up - lo) / np.maximum(hi - lo, 1e-6)
    return val.astype(np.float32)


def _colors(rng: np.random.Generator, n: int) -> np.ndarray:
    """Colour pairs (n, 2, 3): a random base colour and a second one at most 0.4 away per channel."""
    base = rng.random((n, 3), dtype=np.float32)
    amp = rng.uniform(0.1, 0.3, (n, 1)).astype(np.float32)
    other = np.clip(base + amp * rng.choice([-1.0, 1.0], (n, 3)).astype(np.float32), 0, 1)
    return np.stack([base, other], axis=1)


def _colorize(val: np.ndarray, colors: np.ndarray) -> np.ndarray:
    c0, c1 = colors[:, 0, :, None, None], colors[:, 1, :, None, None]
    return c0 + (c1 - c0) * val[:, None]


def render_chunk(rng: np.random.Generator, labels: np.ndarray, res: int, keep: int | None = None) -> np.ndarray:
    """Images for `labels`; all random draws are made for the whole chunk, the pixels only for the
    first `keep` (so a partial chunk is a prefix of the whole one, at a fraction of the cost)."""
    n = len(labels)
    radius = rng.uniform(0.2, 0.4, n)
    center = rng.uniform(radius[:, None], 1 - radius[:, None], (n, 2))
    rot = rng.uniform(0, 2 * math.pi, n)
    fg, bg = _texture_params(rng, n), _texture_params(rng, n)
    fg_col, bg_col = fg["colors"], bg["colors"]
    # keep the shape visible: redraw foreground colours until the mean colours differ enough
    for _ in range(100):
        diff = np.abs(fg_col.mean(axis=1) - bg_col.mean(axis=1)).mean(axis=1)
        bad = diff < MIN_CONTRAST
        if not bad.any():
            break
        fg_col[bad] = _colors(rng, int(bad.sum()))
    n = keep if keep is not None else n
    labels, radius, center, rot = labels[:n], radius[:n], center[:n], rot[:n]
    fg_val, bg_val = _texture_values(fg, n, res), _texture_values(bg, n, res)
    fg_col, bg_col = fg_col[:n], bg_col[:n]
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
    """`n` samples: x (n,3,R,R) uint8, y (n,) int64. Chunk k (its draws always made whole) comes from
    stream (seed, split, k), so a smaller n is a prefix of a larger one; labels cycle through the
    classes across chunks, so every prefix ending on a chunk boundary is balanced within one."""
    xs, ys = [], []
    k_classes = params["classes"]
    for k in range(-(-n // CHUNK)):
        rng = np.random.default_rng([seed, split, k, VERSION, 2])
        labels = rng.permutation((k * CHUNK + np.arange(CHUNK)) % k_classes)
        keep = min(CHUNK, n - k * CHUNK)
        xs.append(render_chunk(rng, labels, resolution, keep))
        ys.append(labels[:keep])
    return {"x": np.concatenate(xs)[:n], "y": np.concatenate(ys)[:n].astype(np.int64)}
