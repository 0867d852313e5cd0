"""The retime phase: the architectures near the latency front timed again, interleaved, on the idle node."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from lknas.search.retime import (
    RETIME_FILE, apply_retimed, read_retimed, retime_candidates, run_retime,
)
from lknas.search.store import RunStore
from lknas.search.trial import TrialContext
from lknas.space.configs import Objective, parse_search
from tests.helpers import small_arch

OBJ = (Objective("accuracy", "max"), Objective("latency", "min"))


def _row(trial, acc, lat, **extra):
    return {"trial": trial, "status": "ok", "hash": f"h{trial}", "accuracy": acc, "latency_ms": lat,
            "arch_yaml": small_arch(kernel=3 + 2 * trial).to_yaml(), **extra}


def test_candidates_are_the_front_then_those_a_timing_error_could_put_on_it():
    df = pd.DataFrame([
        _row(0, 90.0, 5.0),  # front
        _row(1, 80.0, 3.0),  # front
        _row(2, 85.0, 5.5),  # dominated by 0, but only 10% slower: a candidate (needs 1.10x)
        _row(3, 70.0, 3.3),  # dominated by 1, 10% slower: a candidate
        _row(4, 60.0, 9.0),  # 3x slower than 1 at lower accuracy: never on the front
        _row(5, 88.0, 5.9),  # 18% slower than 0: a candidate, the farthest
        _row(6, 99.0, 1.0, phase="confirm", confirms=0),  # a re-training: never a candidate, never dominates
        _row(7, 50.0, 2.0, status="infeasible"),
    ])
    got = retime_candidates(df, OBJ)
    assert got[:2] == ["h0", "h1"] and set(got) == {"h0", "h1", "h2", "h3", "h5"} and got[-1] == "h5"
    assert retime_candidates(df, OBJ, margin=0.05) == ["h0", "h1"]
    assert retime_candidates(df, OBJ, limit=3) == ["h0", "h1", got[2]]
    assert retime_candidates(df, (Objective("accuracy", "max"), Objective("flops", "min"))) == []


def test_candidates_count_an_architecture_once():
    df = pd.DataFrame([_row(0, 90.0, 5.0), {**_row(1, 91.0, 5.2), "hash": "h0"}])
    assert retime_candidates(df, OBJ) == ["h0"]


def test_the_frame_carries_the_mean_of_the_re_timings(tmp_path):
    store = RunStore(tmp_path / "run")
    for row in (_row(0, 90.0, 5.0), _row(1, 85.0, 4.0), {**_row(2, 91.0, 5.9, phase="confirm", confirms=0),
                                                          "hash": "h0"}):
        store.append(row)
    assert "latency_search_ms" not in store.frame().columns  # nothing re-timed: the frame as logged
    (store.root / RETIME_FILE).write_text(json.dumps({"version": 1, "timings": {
        "h0": [{"latency_ms": 3.0}, {"latency_ms": 3.2}, {"latency_ms": 3.4}]}}))
    df = store.frame().set_index("trial")
    assert df.loc[0, "latency_ms"] == pytest.approx(3.2) and df.loc[0, "latency_std_ms"] == pytest.approx(0.2)
    assert df.loc[0, "latency_search_ms"] == 5.0 and df.loc[0, "latency_timings"] == 3
    assert df.loc[2, "latency_ms"] == pytest.approx(3.2)  # every row of the architecture
    assert df.loc[1, "latency_ms"] == 4.0 and df.loc[1, "latency_timings"] == 0
    # the front follows: re-timed at 3.2 ms, trial 0 (90%) now dominates trial 1 (85%, 4.0 ms)
    assert list(store.pareto(OBJ)["trial"]) == [0]


@pytest.mark.parametrize("content", ["{not json", "[]", '{"timings": []}', '{"timings": {"h0": {"a": 1}}}',
                                     '{"timings": {"h0": [{"latency_ms": "3"}, {"latency_ms": true}, 5, '
                                     '{"latency_ms": -1}, {"latency_ms": NaN}]}}'])
def test_a_malformed_retime_file_is_ignored(tmp_path, content):
    (tmp_path / RETIME_FILE).write_text(content)
    assert read_retimed(tmp_path) == {}
    df = pd.DataFrame([_row(0, 90.0, 5.0)])
    assert apply_retimed(df, read_retimed(tmp_path)) is df


def _ctx():
    return TrialContext(space_file="unused.yaml", num_classes=2, in_chans=3, latency_threads=1,
                        latency_reference_ms=1.5)


def test_run_retime_interleaves_rounds_and_resumes_what_is_missing(tmp_path):
    from lknas.arch import ArchConfig

    timed, layouts = [], []

    def fake_latency(arch_yaml, layout):
        timed.append(ArchConfig.from_yaml(arch_yaml).hash())
        layouts.append(layout)
        return {"latency_ms": 2.0 + len(timed), "raw_ms": 2.0, "layout": layout or "nchw", "foreign_load": 0.0,
                "attempts": 1}

    store = RunStore(tmp_path / "run")
    rows = [_row(0, 90.0, 5.0, latency_layout="channels_last"), _row(1, 80.0, 3.0), _row(2, 70.0, 9.0)]
    for row in rows:
        store.append(row)
    hashes = {f"h{i}": small_arch(kernel=3 + 2 * i).hash() for i in range(3)}
    lines = []

    class Stream:
        def write(self, text):
            lines.append(text)

        def flush(self):
            pass

    assert run_retime(store, _ctx(), OBJ, 2, 32, stream=Stream(), timer=fake_latency) == 4
    assert timed == [hashes["h0"], hashes["h1"]] * 2  # one round after the other; h2 is far off the front
    assert layouts == ["channels_last", None] * 2  # the layout the trial chose; none recorded: the timer's rule
    assert read_retimed(store.root) == {"h0": [3.0, 5.0], "h1": [4.0, 6.0]}
    assert any("2 architecture(s) within 20%" in line for line in lines)
    # killed after one timing of the second round: a resumed search times only what is missing
    data = json.loads((store.root / RETIME_FILE).read_text())
    data["timings"]["h1"].pop()
    (store.root / RETIME_FILE).write_text(json.dumps(data))
    timed.clear()
    assert run_retime(store, _ctx(), OBJ, 2, 32, stream=Stream(), timer=fake_latency) == 1 and timed == [hashes["h1"]]
    assert run_retime(store, _ctx(), OBJ, 2, 32, stream=Stream(), timer=fake_latency) == 0  # all done
    # more rounds asked at a resume: added; another reference time: not comparable, timed again
    assert run_retime(store, _ctx(), OBJ, 3, 32, stream=Stream(), timer=fake_latency) == 2
    other = TrialContext(space_file="unused.yaml", latency_threads=1, latency_reference_ms=2.0)
    assert run_retime(store, other, OBJ, 1, 32, stream=Stream(), timer=fake_latency) == 2
    assert [len(v) for v in read_retimed(store.root).values()] == [1, 1]
    assert run_retime(store, _ctx(), OBJ, 0, 32, stream=Stream(), timer=fake_latency) == 0  # --retime 0: off


def test_each_architecture_is_re_timed_in_the_layout_its_trials_recorded():
    from lknas.search.retime import _trial_layouts

    raw = pd.DataFrame([_row(0, 90.0, 5.0, latency_layout="nchw"), _row(0, 90.0, 5.0, latency_layout="channels_last"),
                        _row(0, 90.0, 5.0, latency_layout="channels_last"), _row(1, 80.0, 3.0, latency_layout=None),
                        _row(2, 70.0, 3.0, latency_layout="bogus")])
    assert _trial_layouts(raw) == {"h0": "channels_last"}  # the most frequent; unknown values: none pinned
    assert _trial_layouts(raw.drop(columns="latency_layout")) == {}


def test_a_retime_file_timed_in_both_layouts_is_timed_again(tmp_path):
    from lknas.search.retime import _record_setting

    store = RunStore(tmp_path / "run")
    for row in (_row(0, 90.0, 5.0), _row(1, 80.0, 3.0)):
        store.append(row)
    both = {k: v for k, v in _record_setting(_ctx(), 32).items() if k != "layout"}  # as written before
    old = {"version": 1, "setting": both, "timings": {h: [{"latency_ms": 1.0}] for h in ("h0", "h1")}}
    (store.root / RETIME_FILE).write_text(json.dumps(old))  # written before timings followed the trial's layout

    def fake(arch_yaml, layout):
        return {"latency_ms": 4.0, "raw_ms": 4.0, "layout": "nchw", "foreign_load": 0.0, "attempts": 1}

    assert run_retime(store, _ctx(), OBJ, 1, 32, stream=None, timer=fake) == 2
    assert read_retimed(store.root) == {"h0": [4.0], "h1": [4.0]}


def test_retime_rounds_are_checked_in_the_space_file():
    issues = []
    assert parse_search({"retime": 5}, issues).retime == 5 and not issues
    parse_search({"retime": -1}, issues)
    assert issues and issues[0][0] == "search.retime"
    assert parse_search({}, []).retime == 3


def test_the_child_timer_times_in_a_fresh_process_with_the_given_settings():
    import os

    from lknas.errors import LknasError
    from lknas.measure.isolated import ChildTimer

    timer = ChildTimer({"resolution": 32, "threads": 1, "repeats": 5, "reference_ms": None, "num_classes": 2,
                        "in_chans": 3, "device": "cpu"})
    try:
        small, large = (timer(small_arch(kernel=3, widths=w).to_yaml()) for w in ((8, 16), (64, 128)))
        assert small["latency_ms"] > 0 and small["layout"] in ("nchw", "channels_last") and small["attempts"] >= 1
        assert large["latency_ms"] > 0 and set(large) == set(small)  # one answer per request, same fields
        assert timer._proc.pid != os.getpid() and timer._proc.args[-1] == "lknas.measure.isolated"
        for layout in ("nchw", "channels_last"):  # a pinned layout is the one timed
            assert timer(small_arch(kernel=3, widths=(8, 16)).to_yaml(), layout)["layout"] == layout
    finally:
        timer.close()
    assert timer._proc.returncode == 0  # its input closed: it ended
    broken = ChildTimer({"resolution": 32})  # settings it cannot use: a clear error, not a hang
    with pytest.raises(LknasError, match="timing process failed"):
        broken(small_arch().to_yaml())


def test_a_child_timer_closed_without_waiting_returns_at_once_and_is_reaped():
    """The search closes its retime timer with wait=False: its exit (torch's teardown) overlaps the
    search's next steps, and a thread reaps it, so no zombie is left behind."""
    import time

    from lknas.measure.isolated import ChildTimer

    timer = ChildTimer({"resolution": 32, "threads": 1, "repeats": 2, "reference_ms": None, "num_classes": 2,
                        "in_chans": 3, "device": "cpu"})
    assert timer(small_arch(kernel=3, widths=(8, 16)).to_yaml())["latency_ms"] > 0  # torch imported: a slow exit
    start = time.perf_counter()
    timer.close(wait=False)
    assert time.perf_counter() - start < 0.2
    deadline = time.monotonic() + 30
    while timer._proc.returncode is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert timer._proc.returncode == 0
