"""`lknas search` exits 1 when every trial that ran raised (it measured nothing; a GPU search whose
every trial failed on a device mismatch had exited 0), and 0 when any trial trained."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import lknas.search.runner as runner
from lknas.cli import main
from lknas.search.runner import SearchOutcome, all_trials_raised


def _frame(*statuses: str, phase: str | None = None) -> pd.DataFrame:
    rows = [{"trial": i, "status": s, "error": f"RuntimeError: boom {i}\nmore" if s == "error" else None}
            for i, s in enumerate(statuses)]
    df = pd.DataFrame(rows)
    if phase is not None:
        df["phase"] = phase
    return df


def test_only_a_search_whose_every_run_trial_raised_is_a_failure(tmp_path):
    (tmp_path / "archs").mkdir()
    (tmp_path / "archs" / "trial0001-abcdef0123.yaml").write_text("{}")
    message = all_trials_raised(_frame("infeasible", "error", "error"), tmp_path)
    assert message.startswith("all 2 trial(s) that ran failed with an exception; the first, trial 1: "
                              "RuntimeError: boom 1.")
    assert str(tmp_path / "trials.csv") in message
    assert f"lknas train-proxy {tmp_path / 'archs' / 'trial0001-abcdef0123.yaml'} --debug" in message
    for fine in (_frame("error", "ok"), _frame("error", "diverged"), _frame("error", "truncated"),
                 _frame("infeasible", "infeasible"), _frame(), _frame("error", phase="confirm")):
        assert all_trials_raised(fine, tmp_path) == ""


@pytest.mark.parametrize("statuses, code", [(("error", "infeasible", "error"), 1), (("error", "ok"), 0)])
def test_the_search_command_exits_1_when_every_trial_raised(monkeypatch, tmp_path, capsys, statuses, code):
    def fake_run_search(space, **kw):
        return SearchOutcome(Path(tmp_path), _frame(*statuses), pd.DataFrame())

    monkeypatch.setattr(runner, "run_search", fake_run_search)
    assert main(["search", "--space", "peleK_space.yaml", "--quiet"]) == code
    err = capsys.readouterr().err
    assert ("all 2 trial(s) that ran failed" in err) if code else ("failed with an exception" not in err)
