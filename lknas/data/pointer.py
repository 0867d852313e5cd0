"""Pointer: does the arrow point at the disk? A long-range relation at fine resolution.

Each image (grayscale, white on black) holds one small arrow and one small disk, `distance`
image widths apart. Label 1 (hits): the arrow points at the disk. Label 0 (misses): it points
at another place at the same distance from it, at least `miss` degrees away from the disk.
Both places are drawn the same way (uniform directions, rejected unless inside the margins),
so the positions of arrow and disk, the distance between them and the arrow's own direction
have the same distribution in both classes: no local statistic and no absolute position gives
the label away. Only the relation does, and it spans the distance: a network sees it once one
unit's receptive field covers the arrow and the disk, at a resolution fine enough to tell the
arrow's direction (a few pixels). A (2s - 1)-wide kernel on the 4 px cells of a stride-4 map
reaches 2(s - 1) px, so at 64 px kernels of 7, 13 and 31 reach 12, 24 and 60 px of the
16-48 px distances: how far the proxy's large kernels reach is what it measures.

Near misses are harder than wide ones (the default allows 30 to 180 degrees), so accuracy grows
smoothly with what a network resolves instead of jumping from chance to solved.

Geometry lives in unit coordinates and is rasterized at any resolution (32..256); lines are
1 px wide at 64. Options: `distance=LO-HI` (image widths, default 0.25-0.75), `miss=DEG`
(smallest miss angle, 5..90, default 30; or `LO-HI`, near misses only, HI up to 180),
`distractors=N` (0..8 extra disks no arrow points at, default 0; or `LO-HI`, each sample's count
drawn uniformly from LO..HI), `train=N`, `val=N`. Classes are balanced within each chunk of 128
samples.
"""
from __future__ import annotations

import math

import numpy as np

from lknas.data.pathfinder import _disk, _stamp

VERSION = 1
CHUNK = 128
CLASSES = ["misses", "hits"]
CHANNELS = 1
FLIPS = "hv"  # a mirrored image keeps whether the arrow hits
MARGIN = 0.08  # arrow centres and disks stay inside [MARGIN, 1 - MARGIN]
ARROW = 0.2  # arrow length, image widths (13 px at 64)
HEAD = 0.07  # arrowhead stroke length (4.5 px at 64)
HEAD_ANGLE = math.radians(150)
DISK = 0.035  # disk radius (2.2 px at 64)
CLEARANCE = 0.12  # distractor disks keep this far from the arrow, the disk and the other place


def _inside(p: np.ndarray) -> np.ndarray:
    return ((p >= MARGIN) & (p <= 1 - MARGIN)).all(axis=-1)


def _places(rng: np.random.Generator, n: int, lo: float, hi: float, miss: float,
            max_miss: float = math.pi) -> tuple[np.ndarray, ...]:
    """Arrow centres a (n,2), the disk p (n,2) and the other place q (n,2), |p-a| = |q-a| = d,
    miss <= angle(p, q) <= max_miss, all inside the margins; redrawn per sample until they are."""
    a = np.zeros((n, 2))
    p = np.zeros((n, 2))
    q = np.zeros((n, 2))
    pending = np.arange(n)
    for _ in range(1000):
        if pending.size == 0:
            return a, p, q
        m = pending.size
        centre = rng.uniform(MARGIN, 1 - MARGIN, (m, 2))
        d = rng.uniform(lo, hi, (m, 1))
        psi = rng.uniform(0, 2 * math.pi, m)
        if max_miss >= math.pi:
            turn = rng.uniform(miss, 2 * math.pi - miss, m)
        else:  # near misses only: miss..max_miss degrees to either side
            turn = rng.uniform(miss, max_miss, m) * rng.choice([-1.0, 1.0], m)
        pp = centre + d * np.stack([np.cos(psi), np.sin(psi)], axis=1)
        qq = centre + d * np.stack([np.cos(psi + turn), np.sin(psi + turn)], axis=1)
        ok = _inside(pp) & _inside(qq)
        a[pending[ok]], p[pending[ok]], q[pending[ok]] = centre[ok], pp[ok], qq[ok]
        pending = pending[~ok]
    raise RuntimeError("pointer: could not place the arrow and the disk inside the image")


def _segment(start: np.ndarray, end: np.ndarray, resolution: int) -> np.ndarray:
    """Points every ~0.4 px along segments (n,2)->(n,2): (n, m, 2)."""
    m = max(2, int(math.ceil(np.max(np.linalg.norm(end - start, axis=1)) * resolution / 0.4)) + 1)
    t = np.linspace(0.0, 1.0, m)
    return start[:, None, :] + t[None, :, None] * (end - start)[:, None, :]


def _arrow(centre: np.ndarray, target: np.ndarray, resolution: int) -> np.ndarray:
    """Points of an arrow at `centre` pointing at `target`: shaft plus two head strokes."""
    u = target - centre
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    tail, tip = centre - u * ARROW / 2, centre + u * ARROW / 2
    strokes = [_segment(tail, tip, resolution)]
    for sign in (1, -1):
        c, s = math.cos(sign * HEAD_ANGLE), math.sin(sign * HEAD_ANGLE)
        v = np.stack([c * u[:, 0] - s * u[:, 1], s * u[:, 0] + c * u[:, 1]], axis=1)
        strokes.append(_segment(tip, tip + v * HEAD, resolution))
    return np.concatenate(strokes, axis=1)


def _distractors(rng: np.random.Generator, avoid: np.ndarray, k: int) -> np.ndarray:
    """k disk centres per sample (n,k,2) keeping CLEARANCE from the points `avoid` (n,j,2)."""
    n = avoid.shape[0]
    out = np.zeros((n, k, 2))
    for j in range(k):
        pending = np.arange(n)
        for _ in range(1000):
            if pending.size == 0:
                break
            cand = rng.uniform(MARGIN, 1 - MARGIN, (pending.size, 2))
            others = np.concatenate([avoid[pending], out[pending, :j]], axis=1)
            ok = np.sqrt(((others - cand[:, None, :]) ** 2).sum(-1)).min(axis=1) >= CLEARANCE
            out[pending[ok], j] = cand[ok]
            pending = pending[~ok]
        else:
            raise RuntimeError("pointer: could not place the distractor disks")
    return out


def render_chunk(rng: np.random.Generator, labels: np.ndarray, resolution: int, params: dict,
                 with_geometry: bool = False):
    """Images (n, R, R) uint8 for `labels` (and, if asked, the geometry: arrow centres, the place
    each arrow points at, the disk, the other place and the distractor disks (n, k, 2), at -1 where
    a sample shows fewer, as unit (x, y) coordinates)."""
    n = len(labels)
    lo, hi = params["min_distance"], params["max_distance"]
    a, p, q = _places(rng, n, lo, hi, math.radians(params["miss"]), math.radians(params.get("max_miss", 180.0)))
    aim = np.where(labels[:, None] == 1, p, q)
    img = np.zeros((n, resolution, resolution), dtype=np.uint8)
    _stamp(img, _arrow(a, aim, resolution), _disk(0.35 * resolution / 32))
    disks, extra = p[:, None, :], np.zeros((n, 0, 2))
    if params["distractors"]:
        extra = _distractors(rng, np.stack([a, p, q], axis=1), params["distractors"])
        if "min_distractors" in params:  # a range: each sample keeps its first `count` disks
            count = rng.integers(params["min_distractors"], params["distractors"] + 1, n)
            extra[np.arange(params["distractors"])[None, :] >= count[:, None]] = -1.0  # off the image
        disks = np.concatenate([disks, extra], axis=1)
    _stamp(img, disks, _disk(max(1.0, DISK * resolution)))
    if with_geometry:
        return img, {"arrow": a, "aim": aim, "disk": p, "other": q, "distractors": extra}
    return img


def _range(text: str) -> tuple[float, float]:
    """'LO-HI' as two floats; (nan, nan), which fails every bounds check, if it is not one."""
    try:
        lo, hi = (float(v) for v in text.split("-"))
    except ValueError:
        return float("nan"), float("nan")
    return lo, hi


def resolve_options(options: dict[str, str]) -> dict:
    """Generator parameters from the name options (sizes are handled by the caller)."""
    from lknas.data.base import DataError

    valid = ("distance (LO-HI image widths within 0.05..1.2), miss (5..90 degrees, or LO-HI up to 180), "
             "distractors (0..8, or LO-HI), train, val")
    unknown = set(options) - {"distance", "miss", "distractors", "train", "val"}
    if unknown:
        raise DataError(f"pointer: unknown option(s) {sorted(unknown)}; valid: {valid}")
    params = {"min_distance": 0.25, "max_distance": 0.75, "miss": 30.0, "distractors": 0}
    if "distance" in options:
        lo, hi = _range(options["distance"])
        if not (0.05 <= lo <= hi <= 1.2):
            raise DataError(f"pointer: distance must be LO-HI with 0.05 <= LO <= HI <= 1.2 (image widths), "
                            f"got {options['distance']!r}")
        params["min_distance"], params["max_distance"] = lo, hi
    if "-" in options.get("miss", ""):
        low, high = _range(options["miss"])
        if not (5 <= low <= 90 and low < high <= 180):
            raise DataError(f"pointer: miss must be DEG in 5..90 or LO-HI degrees with 5 <= LO <= 90 and "
                            f"LO < HI <= 180, got {options['miss']!r}")
        params["miss"] = low
        if high < 180:  # only a band changes the data (and the cache key)
            params["max_miss"] = high
        options = {k: v for k, v in options.items() if k != "miss"}
    if "-" in options.get("distractors", ""):
        low, high = _range(options["distractors"])
        if not (0 <= low < high <= 8 and low == int(low) and high == int(high)):
            raise DataError(f"pointer: distractors must be N in 0..8 or LO-HI with 0 <= LO < HI <= 8, "
                            f"got {options['distractors']!r}")
        params["min_distractors"], params["distractors"] = int(low), int(high)  # a range changes the cache key
        options = {k: v for k, v in options.items() if k != "distractors"}
    for key, lo, hi, cast in (("miss", 5, 90, float), ("distractors", 0, 8, int)):
        if key in options:
            try:
                value = cast(options[key])
            except ValueError:
                value = None
            if value is None or not lo <= value <= hi:
                raise DataError(f"pointer: {key} must be in {lo}..{hi}, got {options[key]!r}")
            params[key] = value
    return params


def generate(n: int, resolution: int, seed: int, split: int, params: dict) -> dict:
    """`n` samples: x (n,1,R,R) uint8, y (n,) int64. Chunk k (always drawn whole) comes from its
    own stream (seed, split, k), so a smaller n is a prefix of a larger one."""
    from lknas.data.base import balanced_chunks

    return balanced_chunks(n, seed, split, (VERSION, 3),
                           lambda rng, labels: render_chunk(rng, labels, resolution, params), CHUNK)
