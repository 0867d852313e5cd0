"""Where a trial times its deploy model (`lknas.search.trial.deploy_latency`): a fresh process per
worker on the CPU, the trial's own process on request, on a GPU, or when the child fails."""
from __future__ import annotations

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
