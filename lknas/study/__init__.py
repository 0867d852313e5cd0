"""Scaling studies (kernel, depth, width, resolution, compound) and design-space EDFs."""
from lknas.study.edf import edf, error_edfs, kernel_type_of
from lknas.study.experiment import Experiment, ExperimentError, load_experiment, parse_experiment
from lknas.study.points import Point, expand

__all__ = ["Experiment", "ExperimentError", "Point", "edf", "error_edfs", "expand", "kernel_type_of",
           "load_experiment", "parse_experiment", "run_scale"]


def __getattr__(name: str):  # the runner imports Ray: load it on first use only
    if name == "run_scale":
        from lknas.study.runner import run_scale

        return run_scale
    raise AttributeError(name)
