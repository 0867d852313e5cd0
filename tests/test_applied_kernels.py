"""Counts report the kernel the network applies: a kernel larger than 2 x map - 1 only meets
padding beyond that, and dwconv2d crops it, so such choices cost (and compute) the same."""
from __future__ import annotations

import warnings

import pytest
import torch

from lknas.arch import ArchConfig, HeadSpec, KernelSpec, StageSpec, StemSpec, applied_kernel, stage_map_sizes
from lknas.cli import main
from lknas.measure import complexity
from lknas.models import build_model
from lknas.search.objectives import effective_counts


def net(k1: int, k2: int, density: float | None = None) -> ArchConfig:
    from lknas.arch import SparsitySpec

    def stage(k, width, down):
        return StageSpec(depth=1, width=width, kernel=KernelSpec(size=(k,), type="dense", reparam=3),
                         block="convnext", mlp_ratio=2.0, downsample=down, layer_scale=1.0)
    return ArchConfig(stem=StemSpec("patch", 8), stages=(stage(k1, 8, "none"), stage(k2, 16, "patch")),
                      head=HeadSpec("ln"), sparsity=SparsitySpec(density=density) if density else None)


def test_map_sizes_and_applied_kernels():
    assert stage_map_sizes(64, "patch", ["none", "patch", "patch", "patch"]) == (16, 8, 4, 2)
    assert stage_map_sizes(224, "replk", ["none", "replk", "replk", "replk"]) == (56, 28, 14, 7)
    assert applied_kernel(51, 16) == 31 and applied_kernel(13, 16) == 13 and applied_kernel(3, 2) == 3
    assert net(31, 49).applied_kernel_sizes(64) == (31, 15)  # maps 16 and 8


def test_equivalent_kernels_count_the_same_applied_flops():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 64)
    a, b = build_model(net(31, 15), num_classes=2).eval(), build_model(net(51, 49), num_classes=2).eval()
    ca, cb = complexity(a, 64), complexity(b, 64)
    assert ca["flops_applied"] == cb["flops_applied"] == ca["flops"]  # (31, 15) is not cropped at 64 px
    assert cb["flops"] > cb["flops_applied"]  # the papers' count keeps the declared 51 and 49
    assert cb["kernels_applied"] == [31, 15] and cb["kernels"] == [51, 49]
    # and they do compute the same function when the weights agree on the applied part
    state = {k: v for k, v in b.state_dict().items()}
    for key, value in a.state_dict().items():
        if value.shape != state[key].shape:  # centre-crop the big kernels to the small ones
            h, w = value.shape[-2:]
            H, W = state[key].shape[-2:]
            state[key] = state[key][..., (H - h) // 2:(H - h) // 2 + h, (W - w) // 2:(W - w) // 2 + w]
    a.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), atol=1e-5, rtol=0)


def test_search_objective_uses_the_applied_count():
    counts = effective_counts(complexity(build_model(net(51, 49, density=0.5), num_classes=2), 64))
    assert counts["flops_effective"] == counts["flops_sparse_applied"] < counts["flops_sparse"]
    dense = effective_counts(complexity(build_model(net(51, 49), num_classes=2), 64))
    assert dense["flops_effective"] == dense["flops_applied"] < dense["flops"]


def test_count_cli_says_which_kernels_are_applied(tmp_path, capsys):
    path = tmp_path / "arch.yaml"
    path.write_text(net(51, 49).to_yaml())
    with warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)  # counting is quiet
        assert main(["count", str(path), "--resolution", "64", "--num-classes", "2"]) == 0
    out = capsys.readouterr().out
    assert "kernels 31-15 of 51-49" in out and "FLOPs applied" in out
    assert main(["count", str(path), "--resolution", "224", "--num-classes", "2"]) == 0
    assert "applied" not in capsys.readouterr().out  # nothing cropped at 224 px


@pytest.mark.parametrize("k,side,expected", [(3, 1, 1), (5, 3, 5), (7, 3, 5), (1, 1, 1)])
def test_applied_kernel_edges(k, side, expected):
    assert applied_kernel(k, side) == expected


def test_count_and_latency_of_an_exported_result_say_how_to_repeat_the_search_numbers(tmp_path, capsys):
    """An exported search result records the proxy resolution it was measured at (train.resolution); count
    and latency keep the papers' 224 px unless told, and say on stderr how to repeat the search's numbers."""
    import yaml

    data = yaml.safe_load(net(7, 5).to_yaml())
    data["train"] = {"resolution": 64, "dataset": "shapes"}
    path = tmp_path / "found.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["count", str(path), "--num-classes", "2", "--json"]) == 0
    cap = capsys.readouterr()
    assert '"resolution": 224' in cap.out and "--resolution 64" in cap.err
    assert main(["count", str(path), "--num-classes", "2", "--resolution", "64", "--json"]) == 0
    cap = capsys.readouterr()
    assert '"resolution": 64' in cap.out and cap.err == ""
    assert main(["latency", str(path), "--resolution", "64", "--repeats", "2", "--throughput-batch", "0"]) == 0
    cap = capsys.readouterr()
    assert "@ 64x64" in cap.out and cap.err == ""
    assert main(["latency", str(path), "--repeats", "2", "--throughput-batch", "0"]) == 0
    cap = capsys.readouterr()
    assert "@ 224x224" in cap.out and "--resolution 64" in cap.err
