"""benchmarks/proxy_step.py's ceiling: inside `free_depthwise` every depthwise convolution of
each kernel type is one multiply (no algorithm runs, the kernels still get gradients), and
outside it the model computes its real convolutions again."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _module():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("proxy_step", ROOT / "benchmarks" / "proxy_step.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


@pytest.mark.parametrize("kernel_type", ["dense", "peripheral", "stripe"])
def test_free_depthwise_replaces_every_depthwise_convolution_and_restores_them(monkeypatch, kernel_type):
    import lknas
    from lknas.ops import dwconv as dw

    step = _module()
    torch.manual_seed(0)
    model = lknas.build_model(step.largest_arch("peleK_space", kernel_type), num_classes=2).train()
    x = torch.randn(2, 3, 32, 32)
    real = model(x)
    calls = []
    select = dw.select_algorithm  # every dwconv2d call starts by choosing its algorithm
    monkeypatch.setattr(dw, "select_algorithm", lambda *a, **k: calls.append(1) or select(*a, **k))
    with step.free_depthwise():
        free = model(x)
    assert calls == []  # no depthwise convolution ran
    free.sum().backward()
    kernels = [m.weight for m in model.modules() if isinstance(m, dw.DepthwiseConv2d)]
    assert kernels and all(w.grad is not None for w in kernels)
    assert not torch.allclose(free, real)
    assert torch.allclose(model(x), real)  # restored: the real convolutions again
    assert calls


def test_each_step_runs_its_forward_under_the_trainers_autocast():
    import contextlib

    import lknas

    step = _module()
    entered = []

    @contextlib.contextmanager
    def amp():
        entered.append(torch.is_grad_enabled())
        yield

    torch.manual_seed(0)
    model = lknas.build_model(step.largest_arch("peleK_space", "dense"), num_classes=2).train()
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    fn, _ = step._candidate(model, x, y, torch.nn.CrossEntropyLoss(), "auto", "nchw", amp=amp)
    fn()
    fn()
    assert entered == [True, True]  # a fresh context per step, around the forward with gradients on
    from lknas.train.proxy import _autocast

    assert _autocast(torch.device("cpu"))[1] is None  # on a CPU the steps stay float32, as trials do


def test_a_run_stopped_at_its_second_architecture_keeps_the_first_on_disk(monkeypatch):
    """gpu_check gives the proxy step a time limit: what was measured before it ran out is written."""
    step = _module()
    written = []
    monkeypatch.setattr(step._timing, "write", lambda stem, data, md: written.append((stem, data)) or ("j", "m"))
    real = step.largest_arch
    calls = []

    def largest_then_stop(space, ktype):
        calls.append(space)
        if len(calls) == 2:
            raise KeyboardInterrupt  # stands in for the time limit's kill
        return real(space, ktype)

    monkeypatch.setattr(step, "largest_arch", largest_then_stop)
    with pytest.raises(KeyboardInterrupt):
        step.main(["--quick", "--batch", "2", "--resolution", "32", "--repeats", "1", "--no-compile", "--no-gemm",
                   "--device", "cpu"])
    assert len(written) == 1
    stem, data = written[0]
    assert stem.endswith("-quick") and [r["space"] for r in data["steps"]] == ["peleK_space"]
    assert data["precision"] == "float32"
