"""Counting a model where it lives: a GPU trial counts its trained model on the GPU (the FLOP
trace's input follows the model's device; a CPU input failed every GPU trial of a search)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from lknas.arch import ArchConfig, HeadSpec, KernelSpec, SparsitySpec, StageSpec, StemSpec
from lknas.measure.complexity import complexity, count_flops
from lknas.models import build_model

CUDA = torch.cuda.is_available()


def _stage(k: int, width: int, down: str) -> StageSpec:
    return StageSpec(depth=1, width=width, kernel=KernelSpec(size=(k,), type="dense", reparam=3),
                     block="convnext", mlp_ratio=2.0, downsample=down, layer_scale=1.0)


# the kind of net whose GPU trials failed: reparameterized and sparse (the count masks, then merges)
ARCH = ArchConfig(stem=StemSpec("patch", 4), stages=(_stage(13, 8, "none"), _stage(7, 16, "patch")),
                  head=HeadSpec("ln"), sparsity=SparsitySpec(density=0.6))


def test_the_trace_input_is_made_on_the_models_device(monkeypatch):
    import fvcore.nn

    seen = []

    class Recorder:
        def __init__(self, model, x):
            seen.append(x.device)

        def __getattr__(self, name):
            return lambda *a, **k: {} if name == "by_module" else 0

    monkeypatch.setattr(fvcore.nn, "FlopCountAnalysis", Recorder)
    count_flops(nn.Conv2d(3, 4, 3).to("meta"), 8)
    count_flops(nn.Conv2d(3, 4, 3), 8)
    count_flops(nn.ReLU(), 8)  # no parameters: the CPU
    assert [d.type for d in seen] == ["meta", "cpu", "cpu"]


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_complexity_of_a_model_on_cuda_equals_the_cpu_count():
    torch.manual_seed(0)
    model = build_model(ARCH, num_classes=10)
    on_cpu = complexity(model, resolution=32)
    on_gpu = complexity(model.cuda(), resolution=32)
    assert next(model.parameters()).is_cuda  # counted in place, not moved
    assert {k: on_gpu[k] for k in ("params", "flops", "flops_applied")} == \
        {k: on_cpu[k] for k in ("params", "flops", "flops_applied")}
