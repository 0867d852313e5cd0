"""Pathfinder (Linsley et al. 2018; Long Range Arena): are the two marked end points joined by one
dashed curve?

Each image (grayscale, white on black) holds `2 + distractors` dashed curves, all of the same
length (`length` steps of a smooth random walk), and two marker disks. Curve A starts at the first
marker. Curve B ends at a point e drawn exactly like A's far end (e is the end of an independent,
undrawn walk from the same start), so |marker1 - A's end| and |marker1 - e| have the same
distribution. Label 1: the second marker sits on A's far end; label 0: it sits on e, the end of B.
Both classes draw exactly the same curves; only the second marker moves. So no local statistic
(ink, curve count, marker distance) gives the label away: the net has to trace the curve, which
needs a receptive field about as large as the curve. Curves may cross (as in LRA's images, so
the net must follow a curve's continuation through a crossing, not just connected ink), but no
other curve passes within 0.07 image widths of a marker, nor of the place where the second marker
would sit in the other class.

Geometry lives in unit coordinates (the image is [0,1]^2) and is rasterized at the requested
resolution (32..256); line width and marker size scale with it, so the task is the same at every
resolution, only finer (lines are 1 px wide at 32 and 64, where the gaps between dashes are about
1 and 2 px; markers are disks of radius 1.5 px at 32). Difficulty is the path length, after LRA's Pathfinder contour lengths
6 / 9 / 14 (easy / medium / hard), each step 0.07 image widths long (a hard path is 0.98 widths).
Classes are balanced within each chunk of 128 samples.
"""
from __future__ import annotations

import math

import numpy as np

VERSION = 4
CHUNK = 128
CLASSES = ["disconnected", "connected"]
DIFFICULTY_LENGTH = {"easy": 6, "medium": 9, "hard": 14}
DIFFICULTY_DISTRACTORS = {"easy": 1, "medium": 2, "hard": 3}
STEP = 0.07  # length of one step (dash + gap), in image widths
DASH = 0.5  # drawn fraction of a step
MAX_TURN = 0.5  # radians, uniform per step
MARGIN = 0.06  # curves stay inside [MARGIN, 1 - MARGIN]
MARKER_RADIUS = 0.047  # image widths (1.5 px at 32)
CLEARANCE = 0.07  # other curves keep this far from a (possible) marker centre
MAX_LENGTH = 16  # longer walks rarely fit inside the image: generation would crawl


def _walk(rng: np.random.Generator, n: int, length: int) -> np.ndarray:
    """`n` random walks from the origin: (n, length + 1, 2)."""
    heading = rng.uniform(0.0, 2 * math.pi, (n, 1))
    turns = rng.uniform(-MAX_TURN, MAX_TURN, (n, length))
    turns[:, 0] = 0.0
    theta = heading + np.cumsum(turns, axis=1)
    steps = STEP * np.stack([np.cos(theta), np.sin(theta)], axis=-1)
    return np.concatenate([np.zeros((n, 1, 2)), np.cumsum(steps, axis=1)], axis=1)


def _curves(rng, n, length, start=None, end=None, avoid=None, tries=8, rounds=1000):
    """`n` walks inside the margins: free, or starting at `start`, or ending at `end` (n,2), and
    (given `avoid`, points (n, k, 2)) never closer than CLEARANCE to those points.
    Returns (curves (n, length+1, 2), ok (n,) bool); rows not placed after `rounds` are not ok."""
    out = np.zeros((n, length + 1, 2))
    pending = np.arange(n)
    for _ in range(rounds):
        if pending.size == 0:
            break
        p = pending.size
        rel = _walk(rng, p * tries, length).reshape(p, tries, length + 1, 2)
        if start is not None:
            pts = rel + start[pending][:, None, None, :]
        elif end is not None:
            pts = rel - rel[:, :, -1:, :] + end[pending][:, None, None, :]
        else:
            pts = rel + rng.uniform(MARGIN, 1 - MARGIN, (p, tries, 1, 2))
        ok = ((pts >= MARGIN) & (pts <= 1 - MARGIN)).all(axis=(2, 3))
        if avoid is not None:
            cand = _densify(pts.reshape(p * tries, length + 1, 2)).reshape(p, tries, -1, 1, 2)
            ok &= _closest(cand, avoid[pending][:, None, None, :, :]) >= CLEARANCE
        has = ok.any(axis=1)
        first = ok.argmax(axis=1)
        out[pending[has]] = pts[has, first[has]]
        pending = pending[~has]
    ok = np.ones(n, dtype=bool)
    ok[pending] = False
    return out, ok


def _densify(curve: np.ndarray, per_step: int = 3) -> np.ndarray:
    """Points at thirds of each step of curves (n, L+1, 2): (n, 3L+1, 2)."""
    a, b = curve[:, :-1, :], curve[:, 1:, :]
    t = np.arange(per_step) / per_step
    pts = (a[:, :, None, :] + t[None, None, :, None] * (b - a)[:, :, None, :]).reshape(len(curve), -1, 2)
    return np.concatenate([pts, curve[:, -1:, :]], axis=1)


def _closest(points: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Smallest distance between broadcast point sets (..., P, 1, 2) and (..., 1, K, 2)."""
    return np.sqrt(((points - others) ** 2).sum(-1).min(axis=(-2, -1)))


def _place(rng, n, length):
    """Curves A and B (see the module docstring): B keeps CLEARANCE from both ends of A, A from
    the far end of B; a sample whose anchored walks cannot be placed is redrawn whole."""
    a = np.zeros((n, length + 1, 2))
    b = np.zeros_like(a)
    pending = np.arange(n)
    for _ in range(1000):
        if pending.size == 0:
            return a, b
        p = pending.size
        a_new, _ = _curves(rng, p, length)
        a2, ok2 = _curves(rng, p, length, start=a_new[:, 0], rounds=4)
        ends = a_new[:, [0, -1]]
        b_new, okb = _curves(rng, p, length, end=a2[:, -1], avoid=ends, rounds=4)
        clear = _closest(_densify(a_new)[:, :, None, :], a2[:, None, None, -1, :]) >= CLEARANCE
        ok = ok2 & okb & clear
        a[pending[ok]], b[pending[ok]] = a_new[ok], b_new[ok]
        pending = pending[~ok]
    raise RuntimeError("pathfinder: could not place curves inside the image")


def _disk(radius: float) -> np.ndarray:
    r = int(math.floor(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    keep = dx**2 + dy**2 <= radius**2 + 1e-9
    return np.stack([dy[keep], dx[keep]], axis=1)


def _stamp(img: np.ndarray, pts: np.ndarray, offsets: np.ndarray) -> None:
    """Set pixels of `img` (n,H,W) to 255 around points `pts` (n,P,2) in unit (x,y) coordinates."""
    n, h, w = img.shape
    pix = np.floor(pts * h).astype(np.int64)  # (n,P,2) as (x,y)
    x = pix[:, :, None, 0] + offsets[None, None, :, 1]
    y = pix[:, :, None, 1] + offsets[None, None, :, 0]
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    flat = (np.arange(n)[:, None, None] * (h * w) + y * w + x)[inside]
    img.reshape(-1)[flat] = 255


def _dash_points(curve: np.ndarray, resolution: int) -> np.ndarray:
    """Points every ~0.4 px along the dashes of `curve` (n, L+1, 2): (n, L*m, 2)."""
    a, b = curve[:, :-1, :], curve[:, 1:, :]
    m = max(2, int(math.ceil(DASH * STEP * resolution / 0.4)) + 1)
    t = np.linspace((1 - DASH) / 2, (1 + DASH) / 2, m)
    pts = a[:, :, None, :] + t[None, None, :, None] * (b - a)[:, :, None, :]
    return pts.reshape(len(curve), -1, 2)


def render_chunk(rng, labels, resolution, length, distractors, with_markers=False):
    """Images (n, R, R) uint8 for `labels` (and, if asked, the marker centres (n, 2, 2) as unit
    (x, y) coordinates)."""
    n = len(labels)
    a, b = _place(rng, n, length)
    curves = [a, b]
    markable = np.stack([a[:, 0], a[:, -1], b[:, -1]], axis=1)  # every place a marker may sit
    for _ in range(distractors):
        c, ok = _curves(rng, n, length, avoid=markable)
        if not ok.all():
            raise RuntimeError("pathfinder: could not place curves inside the image")
        curves.append(c)
    img = np.zeros((n, resolution, resolution), dtype=np.uint8)
    line = _disk(0.35 * resolution / 32)  # 1 px wide at 32 and 64, wider above
    for c in curves:
        _stamp(img, _dash_points(c, resolution), line)
    second = np.where(labels[:, None] == 1, a[:, -1], b[:, -1])
    markers = np.stack([a[:, 0], second], axis=1)
    _stamp(img, markers, _disk(max(1.0, MARKER_RADIUS * resolution)))
    return (img, markers) if with_markers else img


def resolve_options(options: dict[str, str]) -> dict:
    """Generator parameters from the name options (sizes are handled by the caller)."""
    from lknas.data.base import DataError

    valid = (f"difficulty (easy|medium|hard), length (1..{MAX_LENGTH} steps), min_length (1..length: each image "
             f"draws its length from min_length..length), distractors (0..20), train, val")
    difficulty = options.get("difficulty", options.get("", "easy")).lower()
    if difficulty not in DIFFICULTY_LENGTH:
        raise DataError(f"pathfinder: difficulty must be one of easy, medium, hard; got {difficulty!r}")
    params = {
        "difficulty": difficulty,
        "length": DIFFICULTY_LENGTH[difficulty],
        "distractors": DIFFICULTY_DISTRACTORS[difficulty],
    }
    for key, lo, hi in (("length", 1, MAX_LENGTH), ("distractors", 0, 20)):
        if key in options:
            try:
                value = int(options[key])
            except ValueError:
                value = None
            if value is None or not lo <= value <= hi:
                raise DataError(f"pathfinder: {key} must be an integer in {lo}..{hi}, got {options[key]!r}")
            params[key] = value
    if "min_length" in options:
        try:
            low = int(options["min_length"])
        except ValueError:
            low = None
        if low is None or not 1 <= low <= params["length"]:
            raise DataError(f"pathfinder: min_length must be an integer in 1..length ({params['length']}), "
                            f"got {options['min_length']!r}")
        if low < params["length"]:
            params["min_length"] = low
    unknown = set(options) - {"", "difficulty", "length", "min_length", "distractors", "train", "val"}
    if unknown:
        raise DataError(f"pathfinder: unknown option(s) {sorted(unknown)}; valid: {valid}")
    return params


def generate(n: int, resolution: int, seed: int, split: int, params: dict) -> dict:
    """`n` samples: x (n,1,R,R) uint8, y (n,) int64. Chunk k (always rendered whole) is drawn
    from its own stream (seed, split, k), so a smaller n is a prefix of a larger one. With
    `min_length`, each image of a chunk draws its path length from min_length..length (uniform),
    so one set holds paths a small receptive field can follow and paths it cannot."""
    xs, ys = [], []
    for k in range(-(-n // CHUNK)):
        rng = np.random.default_rng([seed, split, k, VERSION, 1])
        labels = rng.permutation(np.arange(CHUNK) % 2)
        if "min_length" in params:
            lengths = rng.integers(params["min_length"], params["length"] + 1, CHUNK)
            img = np.empty((CHUNK, resolution, resolution), dtype=np.uint8)
            for length in np.unique(lengths):
                sel = lengths == length
                img[sel] = render_chunk(rng, labels[sel], resolution, int(length), params["distractors"])
            xs.append(img)
        else:
            xs.append(render_chunk(rng, labels, resolution, params["length"], params["distractors"]))
        ys.append(labels)
    return {"x": np.concatenate(xs)[:n, None], "y": np.concatenate(ys)[:n].astype(np.int64)}


CHANNELS = 1
FLIPS = "hv"  # flips keep connectivity
