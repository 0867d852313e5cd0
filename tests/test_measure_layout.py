"""The memory layout a model runs in: measured without touching the model or the random stream,
pinned by argument or LKNAS_LAYOUT, remembered per architecture, used and recorded by the proxy
trainer and the latency measurement."""
from __future__ import annotations

import pytest
import torch

from lknas.measure import layout as lay
from lknas.measure.latency import measure_latency
from lknas.models import build_model
from lknas.space import TrainConfig
from lknas.train import train_proxy
from tests.helpers import ToyData, small_arch

CL = torch.channels_last
CFG = TrainConfig(epochs=1, batch_size=32, resolution=32, lr=3e-3, warmup_epochs=0)


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    monkeypatch.delenv("LKNAS_LAYOUT", raising=False)
    lay.clear_layout_cache()
    yield
    lay.clear_layout_cache()


def _pretend_fastest(monkeypatch, layout):
    calls = []

    def fake(model, example, *, train, **k):
        calls.append(train)
        return layout, {name: (1.0 if name == layout else 2.0) for name in lay.LAYOUTS}

    monkeypatch.setattr(lay, "fastest_layout", fake)
    return calls


def test_fastest_layout_times_both_and_leaves_model_and_rng_alone():
    model = build_model(small_arch(), num_classes=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(4, 3, 32, 32)
    torch.manual_seed(3)
    state = torch.get_rng_state()
    chosen, ms = lay.fastest_layout(model, x, train=True, repeats=1)
    assert chosen in lay.LAYOUTS and set(ms) == set(lay.LAYOUTS) and min(ms.values()) > 0
    assert torch.equal(torch.get_rng_state(), state)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.is_contiguous() for p in model.parameters()) and all(p.grad is None for p in model.parameters())


def test_pinned_layouts_and_bad_names(monkeypatch):
    _pretend_fastest(monkeypatch, "channels_last")
    model, x = torch.nn.Identity(), torch.randn(1, 3, 4, 4)
    assert lay.resolve_layout("nchw", model, x, train=False) == ("nchw", {})
    monkeypatch.setenv("LKNAS_LAYOUT", "channels_last")
    assert lay.resolve_layout(None, model, x, train=False) == ("channels_last", {})
    assert lay.resolve_layout("auto", model, x, train=False)[1]  # the argument wins: measured
    with pytest.raises(ValueError, match="chw"):
        lay.resolve_layout("chw", model, x, train=False)


def test_auto_is_measured_once_per_key(monkeypatch):
    calls = _pretend_fastest(monkeypatch, "channels_last")
    model, x = torch.nn.Identity(), torch.randn(2, 3, 4, 4)
    for _ in range(3):
        assert lay.resolve_layout(None, model, x, train=True, key="a")[0] == "channels_last"
    lay.resolve_layout(None, model, x, train=False, key="a")  # another mode: measured again
    lay.resolve_layout(None, model, torch.randn(5, 3, 4, 4), train=True, key="a")  # another shape
    assert len(calls) == 3


@pytest.mark.parametrize("layout", lay.LAYOUTS)
def test_train_proxy_trains_in_the_fastest_layout_and_records_it(monkeypatch, layout):
    _pretend_fastest(monkeypatch, layout)
    seen = []
    real_build = build_model

    def build(*a, **k):
        model = real_build(*a, **k)
        model.register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous(memory_format=CL)
                                                                    and not args[0].is_contiguous()))
        return model

    monkeypatch.setattr("lknas.train.proxy.build_model", build)
    result = train_proxy(small_arch(), CFG, ToyData())
    assert result.status == "ok" and result.layout == layout and result.layout_ms[layout] == 1.0
    assert seen and all(s == (layout == "channels_last") for s in seen)  # training and evaluation
    assert result.to_dict()["layout"] == layout


def test_train_proxy_pinned_layout_is_not_measured(monkeypatch):
    monkeypatch.setattr(lay, "fastest_layout", lambda *a, **k: pytest.fail("measured"))
    result = train_proxy(small_arch(), CFG.replace(steps=1), ToyData(), layout="channels_last")
    assert result.layout == "channels_last" and result.layout_ms == {}


@pytest.mark.parametrize("layout", lay.LAYOUTS)
def test_latency_times_both_layouts_and_keeps_the_faster(monkeypatch, layout):
    """Each layout gets the full paired timing (not a short probe), and the faster one counts."""
    import lknas.measure.latency as latency_mod

    timed, batch_timed = [], []

    def paired(model, ref, x, ref_x, device, warmup, repeats):
        cl = x.is_contiguous(memory_format=CL) and not x.is_contiguous()
        timed.append("channels_last" if cl else "nchw")
        ratio = 1.0 if timed[-1] == layout else 1.5
        return 2.0 * ratio, 2.0, ratio

    real = latency_mod._time_once

    def spy(model, x, device):
        batch_timed.append(x.is_contiguous(memory_format=CL) and not x.is_contiguous())
        return real(model, x, device)

    monkeypatch.setattr(latency_mod, "paired_ms", paired)
    monkeypatch.setattr(latency_mod, "_time_once", spy)
    monkeypatch.setattr(lay, "fastest_layout", lambda *a, **k: pytest.fail("a short probe decided"))
    out = measure_latency(small_arch(), 32, warmup=0, repeats=2, throughput_batch=4, max_foreign=None)
    assert sorted(timed) == sorted(lay.LAYOUTS) and out["layout"] == layout
    assert out["layout_ms"] == {k: (2.0 if k == layout else 3.0) for k in lay.LAYOUTS}
    assert batch_timed and all(t == (layout == "channels_last") for t in batch_timed)  # the throughput batch too
    pinned = measure_latency(small_arch(), 32, warmup=0, repeats=2, throughput_batch=None, max_foreign=None,
                             layout="nchw")
    assert pinned["layout"] == "nchw" and pinned["layout_ms"] == {} and timed[-1] == "nchw"


def test_a_trial_record_carries_both_layouts(monkeypatch):
    from lknas.measure.trial import measure_trial

    _pretend_fastest(monkeypatch, "channels_last")

    def paired(model, ref, x, ref_x, device, warmup, repeats):
        ratio = 1.0 if x.is_contiguous(memory_format=CL) and not x.is_contiguous() else 2.0
        return ratio, 1.0, ratio

    monkeypatch.setattr("lknas.measure.latency.paired_ms", paired)
    out = measure_trial(small_arch(), CFG.replace(steps=1), ToyData(), erf=False)
    assert out["layout"] == "channels_last" and out["latency_layout"] == "channels_last"
    assert out["layout_ms_channels_last"] == 1.0 and out["layout_ms_nchw"] == 2.0  # flat columns
    assert "layout_ms" not in out


def test_the_train_settings_layout_pins_it_and_the_space_parses_it(monkeypatch):
    from lknas.space.configs import parse_train

    monkeypatch.setattr(lay, "fastest_layout", lambda *a, **k: pytest.fail("measured"))
    result = train_proxy(small_arch(), CFG.replace(steps=1, layout="channels_last"), ToyData())
    assert result.layout == "channels_last" and result.layout_ms == {}
    issues: list = []
    assert parse_train({"layout": "nchw"}, issues).layout == "nchw" and not issues
    parse_train({"layout": "nhwc"}, issues)
    assert issues and issues[0][0] == "train.layout"


def test_a_search_trial_records_the_layout_it_trained_in_with_its_train_settings(monkeypatch):
    """So that the exported archs/*.yaml file repeats the run in the same layout (the two layouts
    round differently, so the accuracy would not repeat exactly otherwise)."""
    import lknas.search.trial as trial_mod

    reported = []
    monkeypatch.setattr(trial_mod, "report", reported.append)
    monkeypatch.setattr("lknas.measure.trial.measure_trial",
                        lambda *a, **k: {"status": "ok", "accuracy": 50.0, "epochs": 1, "layout": "channels_last"})
    monkeypatch.setattr("lknas.data.build_data", lambda *a, **k: ToyData())
    base = {"trial": 0, "train": CFG.to_dict()}
    trial_mod._train_and_report(small_arch(), CFG, trial_mod.TrialContext(space_file="unused.yaml"), base)
    assert reported[-1]["train"]["layout"] == "channels_last" and base["train"]["layout"] == "auto"
