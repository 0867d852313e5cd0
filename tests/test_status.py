"""Trial statuses: named once, and still the plain strings that files and frames hold."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from optuna.trial import TrialState

from lknas.search.searcher import optuna_state
from lknas.status import FAILED, PROXY_STATUSES, TrialStatus, status_of
from lknas.train import STATUSES


@pytest.mark.parametrize("status", list(TrialStatus))
def test_a_status_is_its_string_in_sets_frames_files_and_text(status):
    value = status.value
    assert status == value and value in {status} and status in {value} and {status: 1}[value] == 1
    assert f"{status}" == str(status) == value and f"{status:>12}" == f"{value:>12}"
    assert json.loads(json.dumps({"status": status})) == {"status": value}
    assert pd.Series([value, "other"]).isin([status]).tolist() == [True, False]
    assert (pd.Series([value]) == status).all()
    assert status_of(value) is status


def test_what_the_states_mean():
    assert FAILED == {"error", "diverged", "oom"}
    assert {s for s in TrialStatus if s.trained} == {"ok", "stopped"}
    assert set(STATUSES) == set(PROXY_STATUSES) == {"ok", "stopped", "diverged", "oom"}  # what the trainer ends with
    assert status_of("nonsense") is None and status_of(None) is None and status_of(float("nan")) is None


@pytest.mark.parametrize("status,state", [
    ("ok", TrialState.COMPLETE), ("infeasible", TrialState.COMPLETE), ("truncated", TrialState.PRUNED),
    ("running", TrialState.PRUNED), ("error", TrialState.FAIL), ("diverged", TrialState.FAIL),
    ("oom", TrialState.FAIL), ("stopped", TrialState.FAIL), (None, TrialState.FAIL), ("nonsense", TrialState.FAIL),
])
def test_the_optuna_state_a_search_reports(status, state):
    assert optuna_state(status) == state
