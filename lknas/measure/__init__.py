"""Measurements of a model: params and FLOPs (fvcore, deploy form)."""
from lknas.measure.complexity import complexity, count_flops, count_params

__all__ = ["complexity", "count_flops", "count_params"]
