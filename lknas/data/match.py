"""Match: are the two small marks far apart the same glyph? Long-range comparison at fine resolution.

Each image (grayscale, white on black) holds two glyphs, `distance` image widths apart (centre to
centre). A glyph is 5 of the 9 cells of a 3 x 3 grid, each cell a square of about 1/32 of the
image (2 px at 64, so a glyph is 6 px wide); the `glyphs` patterns are a fixed set, the same for
every seed. Label 1 (same): both marks show one pattern. Label 0 (different): the second mark shows
another pattern, drawn uniformly from the rest. Each mark alone is uniform over the patterns in both
classes, and the positions and the distance have the same distribution in both, so nothing local
gives the label away: a unit must see both marks, in enough detail to tell 5-of-9 patterns apart.
After global average pooling a linear head cannot compare two marks that no unit saw together (the
pooled features of a different pair are the mean of two same pairs'), so the task measures the
reach of the network's fine-grained features, which is what the large kernels of a space buy.

Measured (2026-12-04, `results/benchmarks/proxy_fidelity_attempts.md`): peleK_space's nets do not
learn it. They stay at chance (validation loss ln 2) after 800 steps and after 3200, even with 2
glyphs only 0.1-0.25 image widths apart, where `pointer` is learned: a same/different relation is
an XOR of two marks, which global pooling of local features cannot express and these nets do not
find in such budgets (Kim, Ricci and Serre, 2018, saw the same of CNNs on same/different tasks). It
is kept for longer budgets and other networks, and as that measurement's record.

Geometry lives in unit coordinates and is rasterized at any resolution (32..256). Options:
`distance=LO-HI` (image widths, 0.1..1.2, default 0.25-0.75), `glyphs=N` (2..16 patterns,
default 8), `train=N`, `val=N`. Classes are balanced within each chunk of 128 samples.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

VERSION = 1
CHUNK = 128
CLASSES = ["different", "same"]
CHANNELS = 1
FLIPS = "hv"  # mirroring both marks keeps whether they match (a flip maps patterns one to one)
MARGIN = 0.08  # glyph centres stay inside [MARGIN, 1 - MARGIN]
CELLS_ON = 5  # of a glyph's 3 x 3 cells
MAX_GLYPHS = 16


def patterns(count: int) -> np.ndarray:
    """The first `count` glyphs (count, 3, 3) bool of one fixed order of all 5-of-9 patterns (no
    two the same; the order does not depend on any seed)."""
    every = [c for c in itertools.combinations(range(9), CELLS_ON)]
    order = np.random.default_rng([VERSION, 7]).permutation(len(every))[:count]
    out = np.zeros((count, 9), dtype=bool)
    for i, j in enumerate(order):
        out[i, list(every[j])] = True
    return out.reshape(count, 3, 3)


def cell_size(resolution: int) -> int:
    return max(1, round(resolution / 32))


def _places(rng: np.random.Generator, n: int, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Glyph centres a, b (n,2) with |b - a| uniform in [lo, hi], both inside the margins; redrawn
    per sample until they are."""
    a = np.zeros((n, 2))
    b = np.zeros((n, 2))
    pending = np.arange(n)
    for _ in range(1000):
        if pending.size == 0:
            return a, b
        m = pending.size
        centre = rng.uniform(MARGIN, 1 - MARGIN, (m, 2))
        d = rng.uniform(lo, hi, (m, 1))
        psi = rng.uniform(0, 2 * math.pi, m)
        other = centre + d * np.stack([np.cos(psi), np.sin(psi)], axis=1)
        ok = ((other >= MARGIN) & (other <= 1 - MARGIN)).all(axis=1)
        a[pending[ok]], b[pending[ok]] = centre[ok], other[ok]
        pending = pending[~ok]
    raise RuntimeError("match: could not place the two glyphs inside the image")


def _stamp_glyphs(img: np.ndarray, centres: np.ndarray, which: np.ndarray, glyphs: np.ndarray) -> None:
    """Draw glyph `which[i]` centred at `centres[i]` (unit coordinates) into img[i] (n, R, R)."""
    n, res = img.shape[0], img.shape[1]
    c = cell_size(res)
    cy, cx = np.nonzero(np.ones((3 * c, 3 * c), dtype=bool))  # every pixel of a glyph's box
    on = glyphs[:, cy // c, cx // c]  # (G, 9c^2): which box pixels each glyph lights
    top_left = np.clip(np.rint(centres * res - 1.5 * c).astype(np.int64), 0, res - 3 * c)  # (x, y)
    ys = top_left[:, 1:2] + cy[None, :]
    xs = top_left[:, 0:1] + cx[None, :]
    lit = on[which]  # (n, 9c^2)
    rows = np.broadcast_to(np.arange(n)[:, None], ys.shape)
    img[rows[lit], ys[lit], xs[lit]] = 255


def render_chunk(rng: np.random.Generator, labels: np.ndarray, resolution: int, params: dict,
                 with_geometry: bool = False):
    """Images (n, R, R) uint8 for `labels` (and, if asked, the centres and glyph indices)."""
    n = len(labels)
    count = params["glyphs"]
    glyphs = patterns(count)
    from lknas.data.pointer import _range

    a, b = _places(rng, n, *_range(params["distance"]))
    first = rng.integers(0, count, n)
    second = np.where(labels == 1, first, (first + rng.integers(1, count, n)) % count)
    img = np.zeros((n, resolution, resolution), dtype=np.uint8)
    _stamp_glyphs(img, a, first, glyphs)
    _stamp_glyphs(img, b, second, glyphs)
    if with_geometry:
        return img, {"first": a, "second": b, "first_glyph": first, "second_glyph": second}
    return img


def resolve_options(options: dict[str, str]) -> dict:
    """Generator parameters from the name options (sizes are handled by the caller)."""
    from lknas.data.base import DataError
    from lknas.data.pointer import _range

    valid = f"distance (LO-HI image widths within 0.1..1.2), glyphs (2..{MAX_GLYPHS}), train, val"
    unknown = set(options) - {"distance", "glyphs", "train", "val"}
    if unknown:
        raise DataError(f"match: unknown option(s) {sorted(unknown)}; valid: {valid}")
    params = {"distance": "0.25-0.75", "glyphs": 8}  # keyed like the options: the spec reads back
    if "distance" in options:
        lo, hi = _range(options["distance"])
        if not (0.1 <= lo <= hi <= 1.2):
            raise DataError(f"match: distance must be LO-HI with 0.1 <= LO <= HI <= 1.2 (image widths; glyphs "
                            f"closer than 0.1 would touch), got {options['distance']!r}")
        params["distance"] = f"{lo:g}-{hi:g}"
    if "glyphs" in options:
        text = options["glyphs"]
        if not text.isdigit() or not 2 <= int(text) <= MAX_GLYPHS:
            raise DataError(f"match: glyphs must be an integer in 2..{MAX_GLYPHS}, got {text!r}")
        params["glyphs"] = int(text)
    return params


def generate(n: int, resolution: int, seed: int, split: int, params: dict) -> dict:
    """`n` samples: x (n,1,R,R) uint8, y (n,) int64. Chunk k (always drawn whole) comes from its
    own stream (seed, split, k), so a smaller n is a prefix of a larger one."""
    from lknas.data.base import balanced_chunks

    return balanced_chunks(n, seed, split, (VERSION, 4),
                           lambda rng, labels: render_chunk(rng, labels, resolution, params), CHUNK)
