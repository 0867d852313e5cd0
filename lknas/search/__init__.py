"""The search: Ray Tune trials, an Optuna sampler, results in `results/RUN/`."""
from lknas.search.store import RunStore, load_results, pareto_mask

__all__ = ["RunStore", "load_results", "pareto_mask", "run_search"]


def __getattr__(name: str):  # the runner imports Ray: load it on first use only
    if name == "run_search":
        from lknas.search.runner import run_search

        return run_search
    raise AttributeError(name)
