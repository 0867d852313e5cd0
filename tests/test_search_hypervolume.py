"""The one hypervolume (report history plot and benchmarks) against fronts computed by hand."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lknas.report.search_figures import hypervolume_history
from lknas.search.hypervolume import REFERENCE, bounds, hypervolume, minimized, normalize, normalized_hypervolume
from lknas.space import Objective

REF2 = np.array([1.0, 1.0])


@pytest.mark.parametrize("points, ref, expected", [
    ([[0.2, 0.3]], [1.1, 1.1], 0.9 * 0.8),  # one box
    ([[0.0, 0.5], [0.5, 0.0]], REF2, 0.5 + 0.5 - 0.25),  # two boxes, their overlap counted once
    ([[0.0, 0.5], [0.5, 0.0], [0.6, 0.6]], REF2, 0.75),  # a dominated point adds nothing
    ([[0.0, 0.5], [0.5, 0.0], [1.0, 0.2], [1.5, -1.0]], REF2, 0.75),  # on or beyond the reference: nothing
    ([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]], [2.0, 2.0], 2.0 + 1.0 + 0.25),  # staircase of three
    ([[0.3, 0.3], [0.3, 0.3]], REF2, 0.49),  # a duplicate is counted once
    ([], REF2, 0.0),
])
def test_two_objective_fronts(points, ref, expected):
    assert hypervolume(np.array(points, dtype=float), np.array(ref, dtype=float)) == pytest.approx(expected)


def test_three_objectives_and_one():
    assert hypervolume(np.array([[0.0, 0.0, 0.5], [0.5, 0.5, 0.0]]), np.ones(3)) == pytest.approx(0.5 + 0.25 - 0.125)
    assert hypervolume(np.array([[0.4], [0.7]]), np.ones(1)) == pytest.approx(0.6)


def test_maximized_objectives_are_negated_and_normalized_to_the_given_bounds():
    acc_lat = np.array([[90.0, 3.0], [50.0, 1.0], [70.0, 2.5]])  # accuracy (max), latency (min)
    values = minimized(acc_lat, ["max", "min"])
    lo, hi = bounds(values)
    assert lo.tolist() == [-90.0, 1.0] and hi.tolist() == [-50.0, 3.0]
    assert normalize(values, lo, hi).tolist() == [[0.0, 1.0], [1.0, 0.0], [0.5, 0.75]]
    # by hand, reference 1.1: 1.1 * 0.1 + 0.6 * 0.25 + 0.1 * 0.75
    assert normalized_hypervolume(acc_lat, ["max", "min"], lo, hi) == pytest.approx(0.335)
    assert REFERENCE == 1.1


def test_the_report_history_is_this_hypervolume():
    df = pd.DataFrame({"trial": [0, 1, 2, 3], "status": ["ok", "ok", "truncated", "ok"],
                       "accuracy": [90.0, 50.0, 99.0, 70.0], "latency_ms": [3.0, 1.0, 0.5, 2.5]})
    hist = hypervolume_history(df, (Objective("accuracy", "max"), Objective("latency", "min")))
    assert hist["trial"].tolist() == [0, 1, 2, 3]
    # the truncated trial is not on the front; bounds are those of the three ok trials
    assert hist["hypervolume"].tolist() == pytest.approx([1.1 * 0.1, 1.1 * 0.1 + 0.1 * 1.0, 0.21, 0.335])


def test_the_efficiency_benchmark_uses_it_with_bounds_shared_by_every_run():
    import importlib.util

    from lknas.search.hypervolume import REFERENCE as ref

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "search_efficiency.py"
    spec = importlib.util.spec_from_file_location("search_efficiency", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    row = lambda status, t, acc, lat: {"status": status, "t": t, "accuracy": acc, "latency_ms": lat}  # noqa: E731
    runs = [{"method": "random", "seed": 0, "trials": [row("ok", 1.0, 90.0, 3.0), row("truncated", 2.0, 99.0, 0.1),
                                                         row("ok", 3.0, 50.0, 1.0)]},
            {"method": "random", "seed": 1, "trials": [row("ok", 2.0, 70.0, 2.5)]}]
    objectives = (Objective("accuracy", "max"), Objective("latency", "min"))
    grid = np.array([0.0, 1.5, 3.0])
    norm = bench.curves(runs, objectives, grid)
    assert norm["lo"] == [-90.0, 1.0] and norm["hi"] == [-50.0, 3.0]  # ok trials of both runs; truncated left out
    assert runs[0]["hv_time"] == pytest.approx([0.0, 0.11, 0.21]) and ref == 1.1
    assert runs[0]["hv_trials"] == pytest.approx([0.11, 0.11, 0.21])  # the truncated trial counts as a trial
    assert runs[1]["hv_time"] == pytest.approx([0.0, 0.0, 0.6 * 0.35])
    summary = bench.summarize(runs, ["random"], grid, budget=3.0)["random"]
    assert summary["final_hv_mean"] == pytest.approx(0.21) and summary["fraction_of_budget"] == 1.0
    assert summary["trials"]["mean"] == pytest.approx([0.16])  # over the trials every seed reached
    assert summary["time"]["lo"][2] == pytest.approx(0.21)  # both seeds end at 0.21: no spread
