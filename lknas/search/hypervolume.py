"""The hypervolume of a set of trials: one definition for the report's history plot and the benchmarks.

Objectives are first turned to minimization (`minimized`: maximized ones negated), then min-max
normalized to [0, 1] with bounds (`normalize`): the report takes the bounds of the run's own
feasible trials, a benchmark the bounds of every run it compares, so that all its curves share one
scale. The hypervolume is the volume dominated by the points and bounded by the reference point
`REFERENCE` (1.1 in every normalized objective), so a front's extreme points still add volume.
Two objectives are computed exactly here; more go to Optuna's exact algorithm.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["REFERENCE", "hypervolume", "hypervolume_2d", "minimized", "bounds", "normalize", "normalized_hypervolume"]

REFERENCE = 1.1  # the reference point's value in every normalized (minimized) objective


def hypervolume_2d(points: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume (to be minimized in both columns) dominated by `points` and bounded by `ref`."""
    pts = points[np.all(points < ref, axis=1)]
    if len(pts) == 0:
        return 0.0
    pts = pts[np.lexsort((pts[:, 1], pts[:, 0]))]
    volume, best_y = 0.0, ref[1]
    for x, y in pts:
        if y < best_y:
            volume += (ref[0] - x) * (best_y - y)
            best_y = y
    return float(volume)


def hypervolume(points: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume of `points` (rows; every column minimized) bounded by `ref`; points that do not
    strictly dominate `ref` add nothing."""
    points = np.asarray(points, dtype=float).reshape(-1, len(ref))
    ref = np.asarray(ref, dtype=float)
    if points.shape[1] == 2:
        return hypervolume_2d(points, ref)
    pts = points[np.all(points < ref, axis=1)]
    if len(pts) == 0:
        return 0.0
    if points.shape[1] == 1:
        return float(ref[0] - pts[:, 0].min())
    from optuna._hypervolume import compute_hypervolume  # exact for any number of objectives

    return float(compute_hypervolume(pts, ref))


def minimized(values: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """`values` (rows of objective values) with the maximized columns negated."""
    return np.asarray(values, dtype=float) * np.array([-1.0 if m == "max" else 1.0 for m in modes])


def bounds(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (min, max) of minimized values: the normalization `normalize` applies."""
    values = np.asarray(values, dtype=float)
    return values.min(axis=0), values.max(axis=0)


def normalize(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Min-max normalization to [0, 1] per column (a column with hi == lo becomes lo -> 0)."""
    return (np.asarray(values, dtype=float) - lo) / np.where(hi > lo, hi - lo, 1.0)


def normalized_hypervolume(values: np.ndarray, modes: Sequence[str], lo: np.ndarray, hi: np.ndarray) -> float:
    """The hypervolume of raw objective `values` (modes per column), normalized with the minimized
    bounds (lo, hi), reference point REFERENCE in every objective."""
    values = np.asarray(values, dtype=float).reshape(-1, len(modes))
    if len(values) == 0:
        return 0.0
    return hypervolume(normalize(minimized(values, modes), lo, hi), np.full(len(modes), REFERENCE))
