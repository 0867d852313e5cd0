"""Measurements of a model: params and FLOPs (fvcore, deploy form), latency, ERF, a whole trial."""
from lknas.measure.complexity import complexity, count_flops, count_params
from lknas.measure.erf import THRESHOLDS, ErfResult, area_ratios, effective_receptive_field, save_heatmap
from lknas.measure.latency import measure_latency

__all__ = [
    "THRESHOLDS", "ErfResult", "area_ratios", "complexity", "count_flops", "count_params",
    "effective_receptive_field", "measure_latency", "save_heatmap", "measure_trial", "measure_static",
]


def __getattr__(name: str):  # measure_trial imports the trainer: load it on first use only
    if name in ("measure_trial", "measure_static"):
        from lknas.measure import trial

        return getattr(trial, name)
    raise AttributeError(name)
