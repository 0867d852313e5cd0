"""Search pieces without Ray: Pareto mask, status -> Optuna state, store robustness, monitor."""
from __future__ import annotations

import io
import json
import random
import warnings
from types import SimpleNamespace

import pytest
from optuna.trial import TrialState

from lknas.errors import LknasError
from lknas.search.store import RunLogWarning, RunStore, load_results, pareto_mask
from lknas.space import Constraints, Objective

OBJ = (Objective("accuracy", "max"), Objective("latency", "min"))


def test_pareto_mask_keeps_only_non_dominated_points():
    points = [[80, 2.0], [70, 1.0], [60, 3.0], [80, 2.0], [85, 5.0]]
    assert pareto_mask(points, ["max", "min"]) == [True, True, False, True, True]


def test_statuses_map_to_optuna_states():
    from lknas.search.searcher import optuna_state

    assert optuna_state("ok") == optuna_state("infeasible") == TrialState.COMPLETE
    assert optuna_state("truncated") == TrialState.PRUNED
    for status in ("error", "diverged", "oom", None):
        assert optuna_state(status) == TrialState.FAIL


def test_a_torn_last_line_is_skipped_and_derived_files_are_written(tmp_path):
    store = RunStore(tmp_path)
    from tests.helpers import small_arch

    arch = small_arch()
    store.append({"trial": 0, "status": "ok", "accuracy": 70.0, "latency_ms": 1.0, "hash": arch.hash(),
                  "arch_yaml": arch.to_yaml(), "param.kernel_type": "dense"})
    with open(store.trials_jsonl, "a") as fh:
        fh.write('{"trial": 1, "status": "o')  # killed mid-write
    with pytest.warns(RunLogWarning, match="line 2 \\(torn last line\\)"):
        assert [r["trial"] for r in store.rows()] == [0]
    with pytest.warns(RunLogWarning):
        front = store.refresh(OBJ)
    assert list(front["trial"]) == [0]
    for name in ("trials.csv", "trials.parquet", "pareto.csv", f"archs/trial0000-{arch.hash()}.yaml"):
        assert (tmp_path / name).is_file()


def test_a_torn_tail_is_repaired_before_the_next_record_is_appended(tmp_path):
    """A kill mid-write at any byte: the next record is never glued onto the fragment; a fragment that
    is a whole record missing only its newline is kept."""
    line = json.dumps({"trial": 1, "status": "ok", "accuracy": 61.5, "arch_yaml": "stem: {type: patch}\n" * 20})
    cuts = sorted({1, len(line) - 1, len(line)} | set(random.Random(14).sample(range(2, len(line) - 1), 30)))
    for cut in cuts:
        store = RunStore(tmp_path / f"cut{cut}")
        store.append({"trial": 0, "status": "ok"})
        with open(store.trials_jsonl, "a") as fh:
            fh.write(line[:cut])
        with pytest.warns(RunLogWarning, match="terminated it" if cut == len(line) else "torn write .* cut it off"):
            store.append({"trial": 2, "status": "ok"})
        expected = [0, 1, 2] if cut == len(line) else [0, 2]
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing left to skip
            assert [r["trial"] for r in store.rows()] == expected, cut
        assert store.trials_jsonl.read_bytes().endswith(b"\n")


def test_lines_that_are_not_trial_records_are_skipped_with_one_warning(tmp_path):
    from lknas.search.export import select_rows

    store = RunStore(tmp_path)
    store.write_settings({"search": {"objectives": [o.to_dict() for o in OBJ]}, "space_name": "s"})
    store.append({"trial": 0, "status": "ok", "accuracy": 60.0, "latency_ms": 2.0})
    with open(store.trials_jsonl, "a") as fh:
        fh.write('null\n[1, 2]\n"text"\n{"trial": "3", "status": "ok"}\n{"trial": true, "status": "ok"}\n'
                 '{"trial": 4}\n{"trial": 5, "status": 0}\nnot json\n\n')
    store.append({"trial": 6, "status": "error", "error": "boom"})
    with pytest.warns(RunLogWarning) as caught:
        rows = store.rows()
    assert [r["trial"] for r in rows] == [0, 6]
    (warning,) = caught
    message = str(warning.message)
    assert str(store.trials_jsonl) in message and "skipped 8 line(s)" in message
    for number in range(2, 10):
        assert f"line {number} (" in message
    assert "line 2 (a JSON NoneType, not an object)" in message and "line 9 (not JSON)" in message
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunLogWarning)
        assert list(store.pareto(OBJ)["trial"]) == [0]
        assert list(select_rows(store, trial=0)["trial"]) == [0]
        assert list(load_results(tmp_path)["trial"]) == [0, 6]


def test_a_trials_erf_map_goes_to_its_own_file_not_to_the_table(tmp_path):
    import numpy as np

    store = RunStore(tmp_path)
    heat = [[0.0, 0.5, 0.0], [0.5, 1.0, 0.5], [0.0, 0.5, 0.0]]
    row = {"trial": 3, "status": "ok", "accuracy": 60.0, "latency_ms": 2.0, "erf_map": heat}
    store.append(row)
    store.append({"trial": 4, "status": "ok", "accuracy": 50.0, "latency_ms": 1.0})
    assert "erf_map" in row  # the caller's dict is left alone
    assert np.array_equal(store.erf_map(3), np.asarray(heat, dtype=np.float32))
    assert store.erf_file(3) == tmp_path / "erf" / "trial-0003.npy"
    assert store.erf_map(4) is None
    assert "erf_map" not in store.trials_jsonl.read_text()
    assert "erf_map" not in store.frame().columns


def test_failed_and_infeasible_trials_stay_off_the_front(tmp_path):
    store = RunStore(tmp_path)
    store.append({"trial": 0, "status": "ok", "accuracy": 60.0, "latency_ms": 2.0})
    store.append({"trial": 1, "status": "infeasible", "accuracy": 99.0, "latency_ms": 0.1})
    store.append({"trial": 2, "status": "truncated", "accuracy": 99.0, "latency_ms": 0.1})
    store.append({"trial": 3, "status": "error", "error": "boom"})
    assert list(store.pareto(OBJ)["trial"]) == [0]


def test_monitor_marks_a_scheduler_stopped_trial_truncated(tmp_path):
    from lknas.search.monitor import SearchMonitor

    store = RunStore(tmp_path)
    stream = io.StringIO()
    monitor = SearchMonitor(store, OBJ, total=2, done_before=0, stream=stream)
    trial = SimpleNamespace(trial_id="t1", config={}, last_result={
        "trial": 5, "status": "running", "accuracy": 55.0, "epoch": 1, "training_iteration": 1, "pid": 1})
    monitor.on_trial_start(0, [], trial)
    monitor.on_trial_complete(0, [], trial)
    (row,) = store.rows()
    assert row["status"] == "truncated" and row["trial"] == 5
    assert "pid" not in row and "training_iteration" not in row
    assert "truncated 1" in monitor.status_line() and "1/2 done" in monitor.status_line()


def test_monitor_calls_on_tail_once_when_a_slot_stays_free_until_the_end(tmp_path):
    """4 trials, 2 at a time: the tail begins when a trial ends with the last one already running."""
    from lknas.search.monitor import SearchMonitor

    calls = []
    monitor = SearchMonitor(RunStore(tmp_path), OBJ, total=4, done_before=0, stream=io.StringIO(),
                            on_tail=lambda: calls.append(len(monitor.running)))
    trials = [SimpleNamespace(trial_id=f"t{i}", config={}, last_result={"trial": i, "status": "error", "error": "x"})
              for i in range(4)]
    def start(i):
        monitor.on_trial_start(0, [], trials[i])

    def end(i):
        monitor.on_trial_complete(0, [], trials[i])

    start(0), start(1)
    end(0)  # trials 2 and 3 not started yet: its slot takes the next one
    assert calls == []
    start(2), end(1), start(3)
    assert calls == []
    end(2)  # 3 done or running, 1 to go: the freed slot stays free
    assert calls == [1]
    end(3)
    assert calls == [1] and monitor.done == 4
    assert monitor.__getstate__()["on_tail"] is None  # Ray pickles the callback without it

    def broken():
        raise RuntimeError("a head start only")

    other = SearchMonitor(RunStore(tmp_path / "b"), OBJ, total=2, done_before=0, stream=io.StringIO(), on_tail=broken)
    for i in (0, 1):
        other.on_trial_start(0, [], trials[i])
    other.on_trial_complete(0, [], trials[0])  # the error is swallowed, the trial still counted
    assert other.done == 1 and other.on_tail is None


def test_constraint_values_are_relative_and_signed():
    from lknas.search.trial import constraint_values

    limits = Constraints(max_params=1000, min_flops=500)
    values = constraint_values(limits, {"params_effective": 1500, "flops_effective": 1000})
    assert values == {"max_params": 0.5, "min_flops": -1.0}


def test_objectives_flag():
    from lknas.search.runner import parse_objectives_flag

    assert parse_objectives_flag("accuracy,latency") == OBJ
    assert parse_objectives_flag("flops:max") == (Objective("flops", "max"),)
    with pytest.raises(LknasError, match="unknown objective 'speed'"):
        parse_objectives_flag("accuracy,speed")


def test_a_grid_over_the_limit_is_refused_before_the_run_directory_or_ray(tmp_path):
    from lknas.errors import SpaceError
    from lknas.search.runner import run_search

    with pytest.raises(SpaceError, match="1,658,880 combinations"):
        run_search("peleK_space.yaml", sampler="grid", out=tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


def test_the_grid_sampler_counts_before_optuna_lists_the_grid():
    from lknas.search.samplers import make_sampler

    grid = {f"d{i}": list(range(10)) for i in range(6)}  # 10^6 combinations, 60 values
    with pytest.raises(LknasError, match="1,000,000 combinations"):
        make_sampler("grid", 0, 1, 10, grid)
    assert make_sampler("grid", 0, 1, 10, {"d0": [1, 2], "d1": [3, 4]})
