"""PeLK's reversed grid (coarse centre) and the 1/sqrt(s) scaling of shared weights: what the
network computes, how the space file spells them, and that default configs are unchanged."""
import pytest
import torch

from lknas.arch import ArchConfig, KernelSpec
from lknas.ops import PeripheralLK
from lknas.ops.peripheral import peripheral_grid, reversed_grid
from lknas.space.loader import load_arch


def test_reversed_grid_of_pelk_ablation():
    # PeLK's k=33 ablation grid, half [8,4,2,1,1,1]; reversed the centre segment is 8 + 8 - 1 wide
    fine = peripheral_grid(33, 2)
    assert fine == [8, 4, 2, 1, 1, 1, 1, 1, 2, 4, 8]
    assert peripheral_grid(33, 2, order="coarse_centre") == reversed_grid(fine) == [1, 1, 1, 2, 4, 15, 4, 2, 1, 1, 1]


@pytest.mark.parametrize("k,r_c,m", [(5, 0, 2), (13, 1, 2), (17, 1, 2), (31, 2, 2), (51, 3, 2), (27, 1, 3), (9, 4, 2)])
def test_reversed_grid_keeps_size_and_parameters(k, r_c, m):
    fine, coarse = peripheral_grid(k, r_c, m), peripheral_grid(k, r_c, m, "coarse_centre")
    assert sum(coarse) == k and len(coarse) == len(fine)
    assert coarse == coarse[::-1]
    assert coarse[len(coarse) // 2] == max(coarse)  # the centre is the coarsest cell


def test_unknown_grid_order():
    with pytest.raises(ValueError, match="coarse_centre"):
        peripheral_grid(13, 1, order="reversed")


def test_coarse_centre_kernel_is_constant_over_its_centre_cell():
    lk = PeripheralLK(4, 13, 1, grid_order="coarse_centre")  # grid [1, 1, 2, 5, 2, 1, 1]
    w = lk.expanded_weight()
    centre = w[:, :, 4:9, 4:9]
    assert torch.equal(centre, centre[:, :, :1, :1].expand_as(centre))
    fine = PeripheralLK(4, 13, 1).expanded_weight()
    assert not torch.equal(fine[:, :, 6, 6], fine[:, :, 6, 5])  # PeLK's centre taps are their own


def _cell(grid):
    g = torch.tensor(grid, dtype=torch.float32)
    return g[:, None] * g[None, :]


def test_share_scale_init_divides_each_shared_weight_by_sqrt_of_its_taps():
    torch.manual_seed(0)
    plain = PeripheralLK(4, 17, 1)
    torch.manual_seed(0)
    scaled = PeripheralLK(4, 17, 1, share_scale="init")
    s = _cell(peripheral_grid(17, 1))
    torch.testing.assert_close(scaled.compact_weight(), plain.compact_weight() / s.sqrt())


def test_share_scale_none_is_pelk_init():
    torch.manual_seed(3)
    lk = PeripheralLK(4, 17, 1)
    torch.manual_seed(3)
    w = torch.empty(4, 1, 9, 9)
    torch.nn.init.trunc_normal_(w, std=0.02)
    assert torch.equal(lk.weight, w) and lk.cell_scale is None


@pytest.mark.parametrize("share_scale,expect_scaled_step", [("none", False), ("lr", True), ("init", False), ("both", True)])
def test_share_scale_lr_makes_adamw_move_each_tap_by_lr_over_sqrt_s(share_scale, expect_scaled_step):
    torch.manual_seed(0)
    lk = PeripheralLK(3, 17, 1, share_scale=share_scale)
    if share_scale == "lr":  # the same kernel as "none" at init: only the step differs
        torch.manual_seed(0)
        torch.testing.assert_close(lk.compact_weight(), PeripheralLK(3, 17, 1).compact_weight())
    before = lk.compact_weight().detach().clone()
    opt = torch.optim.AdamW([lk.weight], lr=1e-2, weight_decay=0.0, eps=1e-12)
    x = torch.randn(2, 3, 20, 20)
    lk(x).square().mean().backward()
    opt.step()
    step = (lk.compact_weight().detach() - before).abs()[0, 0]  # Adam's first step: lr per parameter
    s = _cell(peripheral_grid(17, 1))
    expected = 1e-2 / s.sqrt() if expect_scaled_step else torch.full_like(s, 1e-2)
    torch.testing.assert_close(step, expected, rtol=1e-3, atol=1e-7)


def test_unknown_share_scale():
    with pytest.raises(ValueError, match="share_scale"):
        PeripheralLK(3, 13, 1, share_scale="area")


def _arch(**stage_keys):
    stage = {"depth": 1, "width": 8, "kernel": 13, "kernel_type": "peripheral", "r_c": 1, "block": "replk",
             "mlp_ratio": 2, "downsample": "none", **stage_keys}
    return load_arch({"stem": {"type": "replk", "width": 8}, "stages": [stage], "head": {"norm": "bn"}})


def test_space_keys_reach_the_kernel_and_round_trip():
    arch = _arch(grid="coarse_centre", share_scale="lr")
    assert (arch.stages[0].kernel.grid, arch.stages[0].kernel.share_scale) == ("coarse_centre", "lr")
    assert ArchConfig.from_dict(arch.to_dict()) == arch
    from lknas.models import build_model

    lk = next(m for m in build_model(arch).modules() if isinstance(m, PeripheralLK))
    assert (lk.grid_order, lk.share_scale) == ("coarse_centre", "lr")
    assert lk.grid.tolist() == [1, 1, 2, 5, 2, 1, 1]


def test_defaults_leave_saved_configs_unchanged():
    arch = _arch(grid="fine_centre", share_scale="none")
    assert arch == _arch()
    assert arch.stages[0].kernel == KernelSpec(size=(13,), type="peripheral", reparam=0, r_c=1, m=2, pos_embed=False)
    stage = arch.to_dict()["stages"][0]
    assert "grid" not in stage and "share_scale" not in stage  # so config hashes of older runs stay


def test_experiment_variants_may_set_them():
    from lknas.study.experiment import TYPE_ONLY, VARIANT_KEYS

    assert {"grid", "share_scale"} <= set(VARIANT_KEYS)
    assert TYPE_ONLY["grid"] == TYPE_ONLY["share_scale"] == "peripheral"
