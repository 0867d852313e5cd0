import math

import pytest
import torch

from lknas.space import TrainConfig
from lknas.train import evaluate, train_proxy
from tests.helpers import ToyData, small_arch

CFG = TrainConfig(epochs=3, batch_size=32, resolution=32, lr=3e-3, warmup_epochs=0)


def test_learns_the_toy_task_and_reports_each_epoch():
    reports = []
    result = train_proxy(small_arch(), CFG, ToyData(), report=reports.append)
    assert result.status == "ok"
    assert [r["epoch"] for r in reports] == [1, 2, 3]
    assert result.steps == 3 * 6 and result.epochs == 3
    assert result.accuracy > 75, result.history
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_seeded_runs_are_identical_on_cpu():
    a = train_proxy(small_arch(), CFG, ToyData())
    b = train_proxy(small_arch(), CFG, ToyData())
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    assert a.accuracy == b.accuracy
    c = train_proxy(small_arch(), CFG.replace(seed=1), ToyData())
    assert [h["train_loss"] for h in c.history] != [h["train_loss"] for h in a.history]


def test_step_budget_and_time_limit():
    result = train_proxy(small_arch(), CFG.replace(steps=4), ToyData())
    assert result.steps == 4 and result.epochs == 1 and not result.time_limited
    limited = train_proxy(small_arch(), CFG.replace(epochs=50, time_limit=1e-6), ToyData())
    assert limited.time_limited and limited.steps == 1 and limited.status == "ok"


def test_report_callback_can_stop_the_run():
    result = train_proxy(small_arch(), CFG, ToyData(), report=lambda m: m["epoch"] >= 2)
    assert result.status == "stopped" and result.epochs == 2


def test_divergence_is_a_status_not_an_exception():
    result = train_proxy(small_arch(), CFG.replace(lr=1e9), ToyData())
    assert result.status == "diverged"
    assert "lower train.lr" in result.error


def test_out_of_memory_is_a_status(monkeypatch):
    import lknas.train.proxy as proxy

    def boom(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 99 GB")

    monkeypatch.setattr(proxy, "_train_loop", boom)
    result = train_proxy(small_arch(), CFG, ToyData())
    assert result.status == "oom" and "out of memory" in result.error


def test_other_errors_propagate(monkeypatch):
    import lknas.train.proxy as proxy

    monkeypatch.setattr(proxy, "_train_loop", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("bug")))
    with pytest.raises(RuntimeError, match="bug"):
        train_proxy(small_arch(), CFG, ToyData())


def test_searched_train_values_must_be_sampled_first():
    from lknas.space import FloatRange

    with pytest.raises(ValueError, match="sample them first"):
        train_proxy(small_arch(), CFG.replace(lr=FloatRange(1e-4, 1e-2, log=True)), ToyData())


def test_evaluate_counts_accuracy_and_loss():
    data = ToyData()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(2))
    model(torch.zeros(1, 3, 32, 32))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([1.0, 0.0]))  # always class 0
    acc, loss = evaluate(model, data.val)
    labels = torch.cat([y for _, y in data.val])
    assert acc == pytest.approx(100.0 * float((labels == 0).float().mean()))
    p0 = math.e / (math.e + 1)
    expected = float(torch.where(labels == 0, -math.log(p0), -math.log(1 - p0)).mean())
    assert loss == pytest.approx(expected, rel=1e-5)


def test_a_sparse_architecture_keeps_its_density_through_training():
    from lknas.measure import complexity
    from lknas.sparsity import sparse_parameters

    arch = small_arch(kernel=7, reparam=3, density=0.5)
    result = train_proxy(arch, CFG.replace(epochs=2), ToyData(), keep_model=True)
    assert result.status == "ok"
    masked = sparse_parameters(result.model, "large_kernels")
    total = sum(p.numel() for p in masked)
    nonzero = sum(int((p != 0).sum()) for p in masked)
    assert abs(nonzero - round(0.5 * total)) <= len(masked)  # within one weight per layer
    counts = complexity(result.model, resolution=32)
    assert counts["params_nonzero"] == counts["params"] - total + nonzero


def test_ema_decay_evaluates_the_average_of_the_weights():
    cfg = CFG.replace(layout="nchw")  # one layout: runs repeat bit for bit
    plain = train_proxy(small_arch(), cfg, ToyData(), keep_model=True)
    averaged = train_proxy(small_arch(), cfg.replace(ema_decay=0.9), ToyData(), keep_model=True)
    # the same training (the average does not feed back), another network evaluated
    assert [h["train_loss"] for h in averaged.history] == [h["train_loss"] for h in plain.history]
    assert averaged.accuracy > 75 and averaged.accuracy == evaluate(averaged.model, ToyData().val)[0]
    # timm's EMA with its first update a copy: after two steps 0.9 x the first step's weights + 0.1 x the second's
    one, two = (train_proxy(small_arch(), cfg.replace(steps=n), ToyData(), keep_model=True).model for n in (1, 2))
    ema = train_proxy(small_arch(), cfg.replace(steps=2, ema_decay=0.9), ToyData(), keep_model=True).model
    for (name, p), p1, p2 in zip(ema.named_parameters(), one.parameters(), two.parameters()):
        torch.testing.assert_close(p, 0.9 * p1 + 0.1 * p2, msg=name)
    assert any(not torch.equal(p, p2) for p, p2 in zip(ema.parameters(), two.parameters()))


def test_ema_of_a_sparse_network_keeps_its_masks():
    from lknas.sparsity import sparse_parameters

    arch = small_arch(kernel=7, reparam=3, density=0.5)
    result = train_proxy(arch, CFG.replace(epochs=2, ema_decay=0.99), ToyData(), keep_model=True)
    assert result.status == "ok"
    masked = sparse_parameters(result.model, "large_kernels")
    total = sum(p.numel() for p in masked)
    nonzero = sum(int((p != 0).sum()) for p in masked)
    assert abs(nonzero - round(0.5 * total)) <= len(masked)


@pytest.mark.parametrize("value, ok", [(0.99, True), (1.5, False), (0, False)])
def test_ema_decay_is_checked_like_the_other_train_settings(tmp_path, value, ok):
    from lknas.errors import LknasError
    from lknas.space import load_space
    from tests.test_search import write_space

    path = write_space(tmp_path / "s.yaml")
    path.write_text(path.read_text().replace("warmup_epochs: 0}", f"warmup_epochs: 0, ema_decay: {value}}}"))
    if ok:
        assert load_space(path).train.ema_decay == value
    else:
        with pytest.raises(LknasError, match="ema_decay"):
            load_space(path)


def test_zero_init_last_is_a_train_setting_that_the_proxy_applies(monkeypatch):
    import lknas.models.blocks as blocks

    calls = []
    real = blocks.zero_init_last
    monkeypatch.setattr(blocks, "zero_init_last", lambda model: calls.append(real(model)))
    train_proxy(small_arch(), CFG.replace(epochs=1), ToyData())
    assert calls == []
    train_proxy(small_arch(), CFG.replace(epochs=1, zero_init_last=True), ToyData())
    assert calls == [0]  # applied to the model before training (this ConvNeXt net has no BN to zero)
