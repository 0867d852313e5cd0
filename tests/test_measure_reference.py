"""Latency scaled by a reference net timed alongside: the machine's speed drift cancels in the
paired ratio; a search times the reference once and keeps it in run.json for its resumption."""
from __future__ import annotations

import itertools

import pytest
import torch

from lknas.measure import latency as latency_mod
from lknas.measure import reference
from tests.helpers import small_arch


def _scripted(monkeypatch, model_s, ref_s):
    """time_once returns the scripted seconds: model and reference calls alternate."""
    seq = iter(itertools.chain.from_iterable(zip(model_s, ref_s)))
    monkeypatch.setattr(reference, "time_once", lambda fn, x, device: next(seq))


def test_the_paired_ratio_ignores_a_machine_that_slows_down(monkeypatch):
    # the model takes 2x the reference; for 3 of the 5 pairs the whole machine runs 1.5x slower
    slow = [1.0, 1.5, 1.5, 1.0, 1.5]
    _scripted(monkeypatch, [2e-3 * f for f in slow], [1e-3 * f for f in slow])
    raw, ref, ratio = reference.paired_ms(None, None, None, None, torch.device("cpu"), warmup=0, repeats=5)
    assert ratio == pytest.approx(2.0)  # what the model costs in reference units, whatever the speed
    assert raw == pytest.approx(3.0) and ref == pytest.approx(1.5)  # the plain medians follow the slowdown


def test_the_reference_net_is_fixed():
    a, b = reference.reference_net(), reference.reference_net()
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(a(x), b(x)) and a(x).shape == (1, 64, 1, 1)
    assert not a.training


def test_latency_is_the_ratio_times_the_given_reference_time(monkeypatch):
    monkeypatch.setattr(latency_mod, "paired_ms", lambda *a, **k: (5.0, 2.5, 2.0))
    out = latency_mod.measure_latency(small_arch(), 32, warmup=0, repeats=2, throughput_batch=None,
                                      reference_ms=3.0, max_foreign=None)
    assert out["latency_ms"] == pytest.approx(6.0) and out["raw_ms"] == 5.0
    assert out["reference_ms"] == 3.0 and out["reference_measured_ms"] == 2.5
    alone = latency_mod.measure_latency(small_arch(), 32, warmup=0, repeats=2, throughput_batch=None,
                                        max_foreign=None)
    assert alone["latency_ms"] == pytest.approx(5.0) and alone["reference_ms"] == 2.5  # scaled to its own reference


def test_throughput_is_scaled_by_the_same_machine_speed(monkeypatch):
    monkeypatch.setattr(latency_mod, "paired_ms", lambda *a, **k: (5.0, 4.0, 1.25))  # the machine: 2x slower
    monkeypatch.setattr(latency_mod, "_median_ms", lambda *a, **k: 100.0)  # 4 images in 0.1 s: 40 / s measured
    out = latency_mod.measure_latency(small_arch(), 32, warmup=0, repeats=2, throughput_batch=4,
                                      reference_ms=2.0, max_foreign=None)
    assert out["throughput"] == pytest.approx(80.0) and out["latency_ms"] == pytest.approx(2.5)


class _Store:
    def __init__(self):
        self.written = []

    def write_settings(self, settings):
        self.written.append(dict(settings))


def test_a_search_times_the_reference_once_and_a_resumed_one_keeps_it(monkeypatch):
    from lknas.search.runner import _latency_reference

    calls = []
    monkeypatch.setattr(reference, "reference_ms", lambda *a, **k: calls.append(a) or 1.25)
    store, settings = _Store(), {}
    assert _latency_reference(store, settings, 64, 3, "cpu", 1) == 1.25
    assert settings["latency_reference"] == {"version": reference.VERSION, "resolution": 64, "in_chans": 3,
                                             "threads": 1, "ms": 1.25} and len(store.written) == 1
    settings["latency_reference"]["ms"] = 1.5  # as a resumed run reads it from run.json
    assert _latency_reference(store, settings, 64, 3, "cpu", 1) == 1.5 and len(calls) == 1
    assert _latency_reference(store, settings, 64, 3, "cpu", 2) == 1.25 and len(calls) == 2  # other threads: again
    assert _latency_reference(store, settings, 64, 3, "cuda", 1) is None  # GPU latencies are not scaled
