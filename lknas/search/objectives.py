"""Search objectives: the space's names (accuracy, latency, params, flops, erf) and the result
columns they read.

`params` and `flops` are the effective counts: non-zero params and FLOPs of the non-zero weights
for sparse architectures (as SLaK and PeLK report them), the plain counts otherwise; FLOPs of the
kernels as the network applies them (`flops_applied`: cropped to what the map can reach), so two
choices that compute the same function cost the same. Constraints use the same counts.
"""
from __future__ import annotations

import math
from typing import Any

from lknas.space.configs import Objective

__all__ = ["METRIC_OF", "metric_of", "effective_counts", "objective_values"]

# objective name -> result column
METRIC_OF = {
    "accuracy": "accuracy",
    "latency": "latency_ms",
    "params": "params_effective",
    "flops": "flops_effective",
    "erf": "erf",
}


def metric_of(objective: Objective | str) -> str:
    name = objective if isinstance(objective, str) else objective.name
    return METRIC_OF[name]


def effective_counts(counts: dict[str, Any]) -> dict[str, Any]:
    """Add `params_effective` / `flops_effective` (non-zero counts where there are any)."""
    out = dict(counts)
    if "params" in out:
        out["params_effective"] = out.get("params_nonzero", out["params"])
    if "flops" in out:
        applied = out.get("flops_applied", out["flops"])
        out["flops_effective"] = out.get("flops_sparse_applied", out.get("flops_sparse", applied))
    return out


def objective_values(row: dict[str, Any], objectives: tuple[Objective, ...]) -> list[float] | None:
    """The objective values of a result row, or None if any is missing or not finite."""
    values = []
    for obj in objectives:
        v = row.get(metric_of(obj))
        if v is None or not isinstance(v, (int, float)) or not math.isfinite(v):
            return None
        values.append(float(v))
    return values
