import copy
import dataclasses
import math

import pytest
import torch
from torch import nn

from lknas.arch import ArchConfig, HeadSpec, KernelSpec, SparsitySpec, StageSpec, StemSpec
from lknas.measure.complexity import SNIP_PROBE, complexity
from lknas.models import build_model, reparameterize
from lknas.ops import DeployDWConv, DeployStripeConv, PeripheralLK, StripeLK
from lknas.sparsity import DynamicSparsity, layer_densities, prune_fraction, sparse_parameters

KERNELS = {
    "dense": KernelSpec(size=(7,), type="dense", reparam=3),
    "stripe": KernelSpec(size=(7,), type="stripe", stripe_n=3, reparam=3),
    "peripheral": KernelSpec(size=(7,), type="peripheral", r_c=1, m=2, reparam=3, pos_embed=True),
    "dilated": KernelSpec(size=(7,), type="dilated", reparam=None),
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one intra-op thread is faster than several on a shared, busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_arch(kernel, spec, widths=(8, 16), depths=(1, 1)):
    stages = tuple(
        StageSpec(depth=d, width=w, kernel=kernel, block="convnext", mlp_ratio=2.0,
                  downsample="none" if i == 0 else "patch", layer_scale=1e-6)
        for i, (d, w) in enumerate(zip(depths, widths))
    )
    return ArchConfig(stem=StemSpec("patch", widths[0]), stages=stages, head=HeadSpec("ln"), sparsity=spec)


def tiny_model(kind="dense", seed=0, **spec_kw):
    spec = SparsitySpec(**{"density": 0.6, "prune_rate": 0.5, "update_interval": 2, **spec_kw})
    torch.manual_seed(seed)
    return build_model(tiny_arch(KERNELS[kind], spec), num_classes=4)


def batch(seed=0, n=4, res=32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, res, res, generator=g), torch.randint(0, 4, (n,), generator=g)


def train_step(model, opt, sparsity, seed, scaler=None, res=32):
    x, y = batch(seed, res=res)
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    if scaler is None:
        loss.backward()
        opt.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    sparsity.step()


def assert_masked(sparsity, counts):
    for name, p in sparsity.params.items():
        mask = sparsity.masks[name]
        assert int(mask.sum()) == counts[name], name
        assert torch.all(p[~mask] == 0), name


# ----------------------------------------------------------------------------- allocation
@pytest.mark.parametrize("init", ["uniform", "erk"])
def test_layer_densities_on_a_model(init):
    model = tiny_model("stripe", init=init, density=0.5)
    dens = layer_densities(model, model.arch.sparsity)
    params = dict(model.named_parameters())
    assert set(dens) == {n for n, p in params.items() if any(p is q for q in sparse_parameters(model, "large_kernels"))}
    counts = {n: round(d * params[n].numel()) for n, d in dens.items()}
    if init == "uniform":
        assert all(abs(c - 0.5 * params[n].numel()) <= 0.5 for n, c in counts.items())
    else:
        total = sum(params[n].numel() for n in dens)
        assert sum(counts.values()) == round(0.5 * total)
        # ERK: the 3x3 reparam branch of a block is denser than its 7x3 stripe
        assert dens["stages.0.blocks.0.lk.small.conv.weight"] > dens["stages.0.blocks.0.lk.lk_h.conv.weight"]
        assert len({round(d, 6) for d in dens.values()}) > 1


def test_prune_fraction_cosine():
    assert prune_fraction(0.3, 0, 100) == pytest.approx(0.3)
    assert prune_fraction(0.3, 50, 100) == pytest.approx(0.15)
    assert prune_fraction(0.3, 100, 100) == pytest.approx(0.0)
    assert prune_fraction(0.3, 150, 100) == pytest.approx(0.0)


# ----------------------------------------------------------------------------- masks
@pytest.mark.parametrize("kind", list(KERNELS))
@pytest.mark.parametrize("init", ["uniform", "erk"])
def test_initial_masks_exact_for_every_kernel_type(kind, init):
    model = tiny_model(kind, init=init)
    sparsity = DynamicSparsity(model, model.arch.sparsity, total_steps=10)
    expected = layer_densities(model, model.arch.sparsity)
    assert sparsity.densities() == pytest.approx(expected)
    counts = {n: round(d * sparsity.params[n].numel()) for n, d in expected.items()}
    assert_masked(sparsity, counts)
    for name, p in sparsity.params.items():  # kept weights are the initial, non-zero ones
        assert int(torch.count_nonzero(p)) == counts[name]


@pytest.mark.parametrize("growth", ["random", "gradient"])
@pytest.mark.parametrize("kind", list(KERNELS))
def test_density_exact_through_prune_regrow_cycles(kind, growth):
    model = tiny_model(kind, growth=growth, init="erk")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.05)
    sparsity = DynamicSparsity(model, model.arch.sparsity, total_steps=40, optimizer=opt, seed=1)
    counts = dict(sparsity.n_active)
    moved = 0
    for step in range(8):
        before = {n: m.clone() for n, m in sparsity.masks.items()}
        train_step(model, opt, sparsity, step)
        assert_masked(sparsity, counts)
        for name, p in sparsity.params.items():
            grown = sparsity.masks[name] & ~before[name]
            pruned = before[name] & ~sparsity.masks[name]
            moved += int(grown.sum())
            assert int(grown.sum()) == int(pruned.sum())
            assert torch.all(p[grown] == 0)  # regrown weights start at exactly zero
            for key in ("exp_avg", "exp_avg_sq"):
                state = opt.state[p][key]
                assert torch.all(state[~sparsity.masks[name]] == 0), key  # incl. just pruned
                assert torch.all(state[grown] == 0), key
    assert moved > 0  # updates at steps 2, 4, 6, 8 did move weights
    assert sparsity.steps == 8


def test_prunes_smallest_magnitude_and_grows_largest_gradient():
    model = nn.Sequential(nn.Linear(4, 5, bias=False))
    w = model[0].weight
    with torch.no_grad():
        w.copy_(torch.arange(1, 21, dtype=torch.float).view(5, 4))  # all magnitudes distinct
    spec = SparsitySpec(density=0.5, prune_rate=0.2, update_interval=1, growth="gradient", init="uniform",
                        targets="all")
    sparsity = DynamicSparsity(model, spec, total_steps=1000)
    mask = sparsity.masks["0.weight"].flatten().clone()
    active_idx = mask.nonzero().flatten()
    inactive_idx = (~mask).nonzero().flatten()
    w.grad = torch.zeros_like(w)
    w.grad.view(-1)[inactive_idx[:3]] = torch.tensor([5.0, -9.0, 7.0])
    sparsity.update(0.2)  # ceil(0.2 * 10 active) = 2 moved
    new = sparsity.masks["0.weight"].flatten()
    pruned = set((mask & ~new).nonzero().flatten().tolist())
    grown = set((new & ~mask).nonzero().flatten().tolist())
    assert pruned == set(active_idx[:2].tolist())  # the values were 1..20 in order: the first two
    assert grown == set(inactive_idx[1:3].tolist())  # |grad| 9 and 7
    flat = w.detach().view(-1)
    assert torch.all(flat[sorted(pruned | grown)] == 0)
    assert int(new.sum()) == 10


def _linear_sparsity(growth="gradient", density=0.5, prune_rate=0.5, total_steps=10):
    model = nn.Sequential(nn.Linear(10, 10, bias=False))
    spec = SparsitySpec(density=density, prune_rate=prune_rate, update_interval=1, growth=growth,
                        init="uniform", targets="all")
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    return model, opt, DynamicSparsity(model, spec, total_steps=total_steps, optimizer=opt)


def test_moved_per_update_follows_the_cosine_schedule():
    model, opt, sparsity = _linear_sparsity(total_steps=10)
    w = model[0].weight
    moved = []
    for step in range(1, 11):
        before = sparsity.masks["0.weight"].clone()
        w.grad = (~before).float() * 100.0  # growth lands on previously masked positions only
        opt.step()
        sparsity.step()
        moved.append(int((sparsity.masks["0.weight"] & ~before).sum()))
        expected = math.ceil(0.5 * (1 + math.cos(math.pi * step / 10)) / 2 * 50 - 1e-9) if step < 10 else 0
        assert moved[-1] == expected, step
        assert int(sparsity.masks["0.weight"].sum()) == 50
    assert moved[0] == 25 and moved[4] == 13 and moved[8] == 1


def test_weight_pruned_and_regrown_at_once_restarts_from_zero():
    model, opt, sparsity = _linear_sparsity()
    w = model[0].weight
    w.grad = torch.randn_like(w)
    opt.step()  # AdamW state is non-zero everywhere now
    sparsity.apply_masks()
    mask = sparsity.masks["0.weight"].clone()
    with torch.no_grad():
        w.copy_(torch.where(mask, torch.arange(1.0, 101.0).view(10, 10), torch.zeros(())))
    smallest = mask.flatten().nonzero().flatten()[:5]  # the 5 smallest active magnitudes
    w.grad = torch.zeros_like(w)
    w.grad.view(-1)[smallest] = 1.0  # the largest gradients: the pruned ones grow straight back
    sparsity.update(0.1)  # ceil(0.1 * 50) = 5
    assert torch.equal(sparsity.masks["0.weight"], mask)
    flat = w.detach().view(-1)
    assert torch.all(flat[smallest] == 0)  # restarted at zero
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.all(opt.state[w][key].view(-1)[smallest] == 0)
        kept = mask.flatten().clone()
        kept[smallest] = False
        assert torch.all(opt.state[w][key].view(-1)[kept] != 0)  # the others keep their state


def test_masks_hold_with_grad_scaler_and_skipped_steps():
    model = tiny_model("dense", growth="gradient", update_interval=3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    sparsity = DynamicSparsity(model, model.arch.sparsity, total_steps=50, optimizer=opt)
    counts = dict(sparsity.n_active)
    for step in range(2):  # the optimizer does move masked weights: the masks must undo it
        train_step(model, opt, sparsity, step, scaler=scaler)
        assert_masked(sparsity, counts)
    # step 3 (an update step) overflows: GradScaler skips the optimizer step
    masks = {n: m.clone() for n, m in sparsity.masks.items()}
    x, y = batch(5)
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    scaler.scale(loss * float("inf")).backward()
    with torch.no_grad():  # meanwhile something else (an EMA swap, a loaded checkpoint) densified the weights
        for p in sparsity.params.values():
            p.add_(0.1)
    scale = scaler.get_scale()
    scaler.step(opt)
    scaler.update()
    assert scaler.get_scale() < scale  # the step was skipped
    sparsity.step()
    assert_masked(sparsity, counts)
    # gradient growth does not grow from non-finite gradients: the update waits for the next step
    assert all(torch.equal(masks[n], sparsity.masks[n]) for n in masks)
    train_step(model, opt, sparsity, 6, scaler=scaler)
    assert_masked(sparsity, counts)
    assert any(not torch.equal(masks[n], sparsity.masks[n]) for n in masks)


def test_channels_last_weights():
    model = tiny_model("dense", growth="gradient", targets="all").to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sparsity = DynamicSparsity(model, model.arch.sparsity, total_steps=20, optimizer=opt)
    counts = dict(sparsity.n_active)
    convs = [p for p in sparsity.params.values() if p.dim() == 4 and p.shape[1] > 1]  # e.g. the stem
    assert convs and all(not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)
                         for p in convs)
    for step in range(4):
        train_step(model, opt, sparsity, step)
        assert_masked(sparsity, counts)
    assert sparsity.last_update["step"] == 4 and sum(sparsity.last_update["moved"].values()) > 0


def test_sgd_momentum_cleared_at_masked_positions():
    model = tiny_model("stripe", growth="random")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sparsity = DynamicSparsity(model, model.arch.sparsity, total_steps=20, optimizer=opt)
    for step in range(4):
        train_step(model, opt, sparsity, step)
        for name, p in sparsity.params.items():
            buf = opt.state[p]["momentum_buffer"]
            assert torch.all(buf[~sparsity.masks[name]] == 0)
            assert torch.count_nonzero(buf[sparsity.masks[name]]) > 0


@pytest.mark.parametrize("order", ["checkpoint_first", "sparsity_first"])
def test_state_dict_round_trip_resumes_identically(order):
    def fresh(seed):
        model = tiny_model("dense", seed=seed, growth="random")
        return model, torch.optim.AdamW(model.parameters(), lr=1e-2)

    model, opt = fresh(3)
    sparsity = DynamicSparsity(model, model.arch.sparsity, total_steps=20, optimizer=opt, seed=7)
    for s in range(4):
        train_step(model, opt, sparsity, s)
    checkpoint = {"model": model.state_dict(), "opt": opt.state_dict(), "sparsity": sparsity.state_dict()}
    checkpoint = {k: copy.deepcopy(v) for k, v in checkpoint.items()}

    model2, opt2 = fresh(4)
    if order == "checkpoint_first":  # the initial random masks of `resumed` must not eat these weights
        model2.load_state_dict(checkpoint["model"])
        train_step(model2, opt2, DynamicSparsity(model2, model2.arch.sparsity, 20, optimizer=opt2), 0)
        model2.load_state_dict(checkpoint["model"])
        opt2.load_state_dict(checkpoint["opt"])
    resumed = DynamicSparsity(model2, model2.arch.sparsity, total_steps=20, optimizer=opt2, seed=99)
    assert any(not torch.equal(resumed.masks[n], sparsity.masks[n]) for n in sparsity.masks)
    if order == "sparsity_first":
        model2.load_state_dict(checkpoint["model"])
        opt2.load_state_dict(checkpoint["opt"])
    resumed.load_state_dict(checkpoint["sparsity"])
    assert resumed.steps == 4
    assert all(torch.equal(resumed.masks[n], sparsity.masks[n]) for n in sparsity.masks)
    for (n, p), q in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(p, q), n
    for p, q in zip(model.parameters(), model2.parameters()):
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(opt.state[p][key], opt2.state[q][key])
    for s in range(4, 8):  # both continue the same way (random growth uses the restored generator)
        train_step(model, opt, sparsity, s)
        train_step(model2, opt2, resumed, s)
    assert all(torch.equal(resumed.masks[n], sparsity.masks[n]) for n in sparsity.masks)
    for p, q in zip(model.parameters(), model2.parameters()):
        torch.testing.assert_close(p, q)
    with pytest.raises(ValueError, match="does not match"):
        resumed.load_state_dict({**checkpoint["sparsity"], "masks": {"nope": torch.ones(1, dtype=torch.bool)}})


@pytest.mark.parametrize("targets", ["large_kernels", "all"])
def test_peripheral_masks_the_compact_weight(targets):
    model = tiny_model("peripheral", targets=targets, init="uniform")
    sparsity = DynamicSparsity(model, model.arch.sparsity, total_steps=10)
    lk = model.stages[0].blocks[0].lk
    assert isinstance(lk, PeripheralLK)
    name = "stages.0.blocks.0.lk.weight"
    assert sparsity.params[name] is lk.weight and lk.weight.shape[-1] < lk.k  # compact k' x k'
    assert not any("pos_embed" in n for n in sparsity.masks)
    # the expanded k x k kernel is zero exactly on the blocks of the masked compact weights
    expanded_mask = sparsity.masks[name].repeat_interleave(lk.grid, 2).repeat_interleave(lk.grid, 3)
    expanded = lk.expanded_weight()
    assert expanded.shape[-1] == lk.k
    assert torch.all(expanded[~expanded_mask] == 0) and torch.all(expanded[expanded_mask] != 0)


def test_shared_parameter_masked_once():
    conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
    model = nn.Sequential(conv, nn.ReLU(), conv)
    spec = SparsitySpec(density=0.5, init="uniform", targets="all", update_interval=1, prune_rate=0.5)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sparsity = DynamicSparsity(model, spec, total_steps=10, optimizer=opt)
    assert list(sparsity.masks) == ["0.weight"]
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(2, 4, 6, 6)).square().mean().backward()
        opt.step()
        sparsity.step()
        assert int(torch.count_nonzero(conv.weight)) <= 72 and int(sparsity.masks["0.weight"].sum()) == 72


def test_density_one_masks_nothing_and_bad_arguments_raise():
    model, opt, sparsity = _linear_sparsity(density=1.0)
    assert sparsity.densities() == {"0.weight": 1.0}
    w = model[0].weight
    w.grad = torch.randn_like(w)
    before = w.detach().clone()
    opt.step()
    sparsity.step()  # an update step, but a dense layer has nothing to move
    assert torch.count_nonzero(w) == 100 and not torch.equal(w, before)
    with pytest.raises(ValueError, match="total_steps"):
        DynamicSparsity(model, sparsity.spec, total_steps=0)
    with pytest.raises(ValueError, match="density"):
        DynamicSparsity(model, SparsitySpec(density=0.0, targets="all"), total_steps=10)
    with pytest.raises(ValueError, match="no SparsitySpec"):
        DynamicSparsity(model, None, total_steps=10)


# ----------------------------------------------------------------------------- SNIP
def _reference_snip_scores(model, x, y):
    """|w * dL/dw| computed here, independently of lknas.sparsity, leaving the BN buffers as they were."""
    bn_before = {n: b.clone() for n, b in model.named_buffers()}
    ref = {n: p for n, p in model.named_parameters()}
    params = {n: ref[n] for n in layer_densities(model, SparsitySpec(init="uniform", targets=model.arch.sparsity.targets))}
    loss = nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, list(params.values()))
    scores = {n: (p.detach() * g).abs() for (n, p), g in zip(params.items(), grads)}
    for n, b in model.named_buffers():  # undo this reference forward's BN update
        b.copy_(bn_before[n])
    return scores, bn_before


def test_snip_topk_keeps_the_most_sensitive_weights():
    model = tiny_model("dense", init="snip", density=0.4, snip_mask="topk")
    model.train()
    x, y = batch(11, n=8)
    scores, bn_before = _reference_snip_scores(model, x, y)
    sparsity = DynamicSparsity(model, model.arch.sparsity, total_steps=10, snip_batch=(x, y))
    assert all(p.grad is None for p in model.parameters())  # SNIP leaves .grad alone
    assert all(torch.equal(b, bn_before[n]) for n, b in model.named_buffers())
    flat = torch.cat([s.flatten() for s in scores.values()])
    k = round(0.4 * flat.numel())
    assert sum(sparsity.n_active.values()) == k
    threshold = torch.topk(flat, k).values[-1]
    for n, s in scores.items():
        mask = sparsity.masks[n]
        assert torch.all(s[mask] >= threshold) and torch.all(s[~mask] <= threshold)
    # global top-k: the densities differ between layers
    assert len({round(d, 4) for d in sparsity.densities().values()}) > 1


def test_snip_default_is_slak_random_mask_at_the_snip_densities():
    """SLaK: SNIP decides how many weights each layer keeps, the mask itself is random; a layer
    that SNIP leaves at >= 0.99 density is dense and never pruned."""
    model = tiny_model("dense", init="snip", density=0.6, targets="all", update_interval=1, prune_rate=0.5)
    assert model.arch.sparsity.snip_mask == "random"
    model.train()
    x, y = batch(11, n=8)
    scores, _ = _reference_snip_scores(model, x, y)
    flat = torch.cat([s.flatten() for s in scores.values()])
    threshold = torch.topk(flat, round(0.6 * flat.numel())).values[-1]
    above = {n: int((s >= threshold).sum()) for n, s in scores.items()}
    expected = layer_densities(model, model.arch.sparsity, snip_batch=(x, y))
    sparsity = DynamicSparsity(model, model.arch.sparsity, total_steps=10, snip_batch=(x, y), seed=3)
    assert sparsity.densities() == pytest.approx(expected)
    dense = {n for n, s in scores.items() if above[n] >= 0.99 * s.numel()}
    assert {"stem.0.weight", "head.fc.weight"} <= dense  # as in SLaK-T: stem, downsampling, head
    in_top_k = []
    for n, s in scores.items():
        mask = sparsity.masks[n]
        if n in dense:
            assert bool(mask.all())
            continue
        assert int(mask.sum()) == above[n]  # the SNIP density ...
        in_top_k.append(float((s[mask] >= threshold).float().mean()))
    assert sum(in_top_k) / len(in_top_k) < 0.9  # ... but not the top-k weights: a random draw
    assert len({round(d, 4) for d in sparsity.densities().values()}) > 2
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = {n: sparsity.masks[n].clone() for n in dense}
    for step in range(3):
        train_step(model, opt, sparsity, step)
    assert all(torch.equal(sparsity.masks[n], before[n]) for n in dense)  # never pruned
    assert all(bool((sparsity.params[n] != 0).all()) for n in dense)


def test_snip_mask_is_validated_by_name():
    model = tiny_model("dense", init="snip")
    bad = dataclasses.replace(model.arch.sparsity, snip_mask="top_k")
    with pytest.raises(ValueError, match=r"sparsity\.snip_mask .*'top_k'.*snip_mask: random"):
        DynamicSparsity(model, bad, total_steps=10, snip_batch=batch())


def test_snip_without_batch_falls_back_to_erk():
    model = tiny_model("dense", init="snip")
    with pytest.warns(UserWarning, match="ERK"):
        sparsity = DynamicSparsity(model, model.arch.sparsity, total_steps=10)
    erk = layer_densities(model, dataclasses.replace(model.arch.sparsity, init="erk"))
    assert sparsity.densities() == pytest.approx(erk)
    assert layer_densities(model, model.arch.sparsity) == erk  # the counting stand-in for SNIP


# ----------------------------------------------------------------------------- deploy + counting
@pytest.mark.parametrize("kind", list(KERNELS))
def test_complexity_reports_the_masked_nonzeros(kind):
    model = tiny_model(kind, init="uniform", growth="gradient", update_interval=2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sparsity = DynamicSparsity(model, model.arch.sparsity, total_steps=20, optimizer=opt)
    for step in range(3):  # an update at step 2, then an optimizer step moves the regrown weights
        train_step(model, opt, sparsity, step)
    masked_numel = sum(p.numel() for p in sparsity.params.values())
    assert sparsity.last_update["step"] == 2 and sum(sparsity.last_update["moved"].values()) > 0
    for name, p in sparsity.params.items():  # every kept weight is non-zero (all taps reach the maps)
        assert int(torch.count_nonzero(p)) == sparsity.n_active[name], name
    result = complexity(model, resolution=32)
    assert result["params_nonzero"] == result["params"] - masked_numel + sum(sparsity.n_active.values())
    assert result["flops_sparse"] < result["flops"]


def test_complexity_counts_erk_layer_densities():
    model = tiny_model("dense", init="erk")
    sparsity = DynamicSparsity(model, model.arch.sparsity, total_steps=10)
    assert max(sparsity.densities().values()) == 1.0  # ERK made the 3x3 branches dense
    masked_numel = sum(p.numel() for p in sparsity.params.values())
    result = complexity(model, resolution=32)
    assert result["params_nonzero"] == result["params"] - masked_numel + sum(sparsity.n_active.values())


@pytest.mark.parametrize("init", ["uniform", "erk", "snip"])
def test_complexity_counts_the_densities_the_initializer_assigns(init):
    """A freshly built model is counted as `DynamicSparsity` starts it (seed 0; SNIP on a seeded
    Gaussian batch): each layer at the density its init assigns, not one density for all."""
    model = tiny_model("stripe", init=init, targets="all")
    fresh = complexity(model, resolution=32)
    started = copy.deepcopy(model).train()
    g = torch.Generator().manual_seed(0)
    probe = (torch.randn(SNIP_PROBE, 3, 32, 32, generator=g), torch.randint(0, 4, (SNIP_PROBE,), generator=g))
    sparsity = DynamicSparsity(started, started.arch.sparsity, total_steps=10, seed=0,
                               snip_batch=probe if init == "snip" else None)
    as_started = complexity(started, resolution=32)  # counted from its (masked) weights
    masked_numel = sum(p.numel() for p in sparsity.params.values())
    assert fresh["params_nonzero"] == fresh["params"] - masked_numel + sum(sparsity.n_active.values())
    assert fresh["params_nonzero"] == as_started["params_nonzero"]
    assert fresh["flops_sparse"] == as_started["flops_sparse"] < fresh["flops"]
    if init != "uniform":
        assert len({round(d, 3) for d in sparsity.densities().values()}) > 2
        uniform = complexity(tiny_model("stripe", init="uniform", targets="all"), resolution=32)
        assert fresh["flops_sparse"] != uniform["flops_sparse"]


def test_deploy_form_keeps_the_zeros():
    # stripe, decomposed: the n x k stripe keeps its mask's zeros; the k x n stripe (with the
    # 3x3 branch folded into its centre) keeps them outside the centre
    model = tiny_model("stripe", init="uniform")
    sparsity = DynamicSparsity(model, model.arch.sparsity, total_steps=10)
    deploy = reparameterize(model, stripe_forms={"stages.0.blocks.0.lk": "decomposed"})
    train_lk, dep = model.stages[0].blocks[0].lk, deploy.stages[0].blocks[0].lk
    assert isinstance(train_lk, StripeLK) and isinstance(dep, DeployStripeConv)
    mask_w = sparsity.masks["stages.0.blocks.0.lk.lk_w.conv.weight"]
    assert torch.equal(dep.lk_w.weight != 0, mask_w)
    mask_h = sparsity.masks["stages.0.blocks.0.lk.lk_h.conv.weight"].clone()
    mask_h[:, :, 2:5, :] = True  # the 3x3 branch lands on rows 2..4 of the 7x3 stripe
    assert torch.all(dep.lk_h.weight[~mask_h] == 0)
    # dense: the merged 7x7 kernel is zero where the large kernel is masked, outside the 3x3 centre
    model = tiny_model("dense", init="uniform")
    sparsity = DynamicSparsity(model, model.arch.sparsity, total_steps=10)
    dep = reparameterize(model).stages[0].blocks[0].lk
    assert isinstance(dep, DeployDWConv)
    mask = sparsity.masks["stages.0.blocks.0.lk.lk.conv.weight"].clone()
    mask[:, :, 2:5, 2:5] = True
    assert torch.all(dep.weight[~mask] == 0)
    assert int((dep.weight == 0).sum()) >= int((~mask).sum())
    assert math.isclose(int((~mask).sum()) / mask.numel(), 0.4, abs_tol=0.1)
