"""The one hypervolume (report history plot and benchmarks) against fronts computed by hand."""
from __future__ import annotations

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
