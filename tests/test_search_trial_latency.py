"""Where a trial times its deploy model (`lknas.search.trial.deploy_latency`): a fresh process per
worker on the CPU, the trial's own process on request, on a GPU, or when the child fails."""
from __future__ import annotations

import os

import pytest

from lknas.errors import LknasError
from lknas.search import trial as trial_mod
from lknas.search.trial import LATENCY_PROCESS_ENV, TrialContext, deploy_latency, latency_process
from tests.helpers import small_arch

CTX = TrialContext(space_file="")


@pytest.fixture(autouse=True)
def fresh_timers(monkeypatch):
    """Each test starts without timing processes and ends its own."""
    monkeypatch.setattr(trial_mod, "_TIMERS", {})
    monkeypatch.delenv(LATENCY_PROCESS_ENV, raising=False)
    yield
    for timer in trial_mod._TIMERS.values():
        timer.close()


def test_cpu_trials_time_in_one_child_per_worker_and_setting():
    first = deploy_latency(small_arch(kernel=7), 32, CTX)
    timer = next(iter(trial_mod._TIMERS.values()))
    second = deploy_latency(small_arch(kernel=13), 32, CTX)
    assert first["process"] == second["process"] == "child"
    assert list(trial_mod._TIMERS.values()) == [timer]  # the second trial reused the worker's child
    for lat in (first, second):  # the columns a trial records, throughput included
        assert lat["latency_ms"] > 0 and lat["raw_ms"] > 0 and lat["throughput"] > 0
        assert lat["device"] == "cpu" and lat["threads"] == 1 and lat["layout"] in ("nchw", "channels_last")
    deploy_latency(small_arch(kernel=7), 48, CTX)  # another resolution: another setting, another child
    assert len(trial_mod._TIMERS) == 2


def test_trial_process_on_request_and_no_child_started(monkeypatch):
    monkeypatch.setenv(LATENCY_PROCESS_ENV, "trial")
    lat = deploy_latency(small_arch(), 32, CTX)
    assert lat["process"] == "trial" and lat["latency_ms"] > 0 and lat["throughput"] > 0
    assert trial_mod._TIMERS == {}


def test_a_gpu_trial_times_in_its_own_process(monkeypatch):
    monkeypatch.setenv(LATENCY_PROCESS_ENV, "child")
    assert latency_process(TrialContext(space_file="", device="cuda")) == "trial"
    assert latency_process(CTX) == "child"


def test_an_unknown_choice_names_the_variable_and_the_fix(monkeypatch):
    monkeypatch.setenv(LATENCY_PROCESS_ENV, "elsewhere")
    with pytest.raises(LknasError, match=rf"{LATENCY_PROCESS_ENV}='elsewhere': use 'child'.*or 'trial'"):
        latency_process(CTX)


def test_a_failing_child_is_dropped_and_the_trial_times_itself(monkeypatch, capsys):
    import lknas.measure.isolated as isolated

    calls = []

    class Broken:
        def __init__(self, setting):
            calls.append(setting)

        def __call__(self, arch_yaml, layout=None):
            raise LknasError("the latency timing process failed: killed")

    monkeypatch.setattr(isolated, "ChildTimer", Broken)
    lat = deploy_latency(small_arch(), 32, CTX)
    assert lat["process"] == "trial" and lat["latency_ms"] > 0
    assert "the latency timing process failed: killed" in capsys.readouterr().err
    assert trial_mod._TIMERS == {}  # the next trial starts a new child
    deploy_latency(small_arch(), 32, CTX)
    assert len(calls) == 2 and calls[0]["throughput_batch"] == trial_mod.THROUGHPUT_BATCH


def test_a_trial_times_in_the_nodes_service_when_the_search_started_one(tmp_path):
    import shutil
    import tempfile

    from lknas.measure.isolated import ChildTimer

    short = tempfile.mkdtemp(prefix="lknas-t-")
    path = f"{short}/timer.sock"
    service = ChildTimer(None, socket_path=path)
    try:
        ctx = TrialContext(space_file="", latency_service=path)
        lat = deploy_latency(small_arch(), 32, ctx)
        assert lat["process"] == "service" and lat["latency_ms"] > 0 and lat["throughput"] > 0
        assert trial_mod._TIMERS == {}  # no timing process of the worker's own
    finally:
        service.close()
        shutil.rmtree(short, ignore_errors=True)


def test_a_service_that_does_not_answer_falls_back_to_the_workers_own_child(tmp_path, capsys):
    stale = tmp_path / "timer.sock"
    stale.write_text("")  # a path left behind, nobody listening
    lat = deploy_latency(small_arch(), 32, TrialContext(space_file="", latency_service=str(stale)))
    assert lat["process"] == "child" and lat["latency_ms"] > 0
    assert "did not answer" in capsys.readouterr().err
    # another node's service (its path absent here): the worker's child, without a warning
    lat = deploy_latency(small_arch(), 32, TrialContext(space_file="", latency_service=str(tmp_path / "absent")))
    assert lat["process"] == "child" and capsys.readouterr().err == ""


def test_the_search_starts_a_service_only_for_cpu_trials_left_to_run(monkeypatch):
    from lknas.search.runner import _timing_service
    from lknas.space.configs import SearchConfig

    class Store:  # as many finished search trials as `done`
        def __init__(self, done):
            self.done = done

        def rows(self):
            return [{"trial": i, "status": "ok"} for i in range(self.done)]

    monkeypatch.setenv(LATENCY_PROCESS_ENV, "trial")
    assert _timing_service(Store(0), SearchConfig(trials=2)) is None  # the trials time in their own process
    monkeypatch.delenv(LATENCY_PROCESS_ENV)
    assert _timing_service(Store(2), SearchConfig(trials=2)) is None  # nothing left to run
    monkeypatch.setenv("LKNAS_TRIAL_DEVICE", "cuda")
    assert _timing_service(Store(0), SearchConfig(trials=2, gpus_per_trial=1)) is None  # GPU trials
    monkeypatch.delenv("LKNAS_TRIAL_DEVICE")
    service = _timing_service(Store(1), SearchConfig(trials=2))
    try:
        assert service is not None and f"timer-{os.getpid()}-" in service.socket_path
    finally:
        service.close()
