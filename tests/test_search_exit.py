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
    message = all_trials_raised(_frame("infeasible", "error", "error"), tmp_path)
    assert message.startswith("all 2 trial(s) that ran failed with an exception; the first, trial 1: "
                              "RuntimeError: boom 1.")
    assert str(tmp_path / "trials.csv") in message
    assert f"`lknas export {tmp_path} --trial 1`" in message and "`lknas train-proxy FILE --debug`" in message
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


@pytest.mark.parametrize("var, value", [("LKNAS_DWCONV", "bogus"), ("LKNAS_DWCONV_MAX_WORKSPACE_MB", "lots"),
                                        ("LKNAS_DWCONV_MAX_WORKSPACE_MB", "-1"), ("LKNAS_LAYOUT", "nhwc"),
                                        ("LKNAS_STRIPE_FORM", "merged")])
def test_a_bad_setting_every_trial_reads_is_refused_before_the_search_starts(monkeypatch, tmp_path, capsys, var, value):
    monkeypatch.setenv(var, value)
    out = tmp_path / "run"
    assert main(["search", "--space", "peleK_space.yaml", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: environment: ") and var in err and repr(value) in err and err.count("\n") == 1
    assert not out.exists()  # nothing written, no Ray started


def test_good_settings_pass_the_check(monkeypatch):
    from lknas.search.env_check import check_environment

    for var, value in (("LKNAS_DWCONV", "off"), ("LKNAS_DWCONV_MAX_WORKSPACE_MB", "0"), ("LKNAS_LAYOUT", "nchw"),
                       ("LKNAS_STRIPE_FORM", "dense")):
        monkeypatch.setenv(var, value)
    check_environment()


def test_a_scale_study_whose_every_run_raised_exits_1_without_the_search_hint(monkeypatch, tmp_path, capsys):
    import lknas.study.runner as study
    from lknas.study.runner import ScaleOutcome

    monkeypatch.setattr(study, "run_scale", lambda *a, **k: ScaleOutcome(Path(tmp_path), _frame("error", "error")))
    assert main(["scale", "--experiment", "experiments/kernel_types.yaml", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "all 2 trial(s) that ran failed" in err and "train-proxy" not in err


@pytest.mark.parametrize("argv", [["scale", "--experiment", "experiments/kernel_types.yaml", "--quiet"],
                                  ["fidelity", "--space", "peleK_space.yaml", "--quiet"]])
def test_scale_and_fidelity_refuse_a_bad_setting_before_they_start(monkeypatch, tmp_path, capsys, argv):
    monkeypatch.setenv("LKNAS_LAYOUT", "nhwc")
    out = tmp_path / "run"
    assert main([*argv, "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("error: environment: layout / LKNAS_LAYOUT") and not out.exists()
