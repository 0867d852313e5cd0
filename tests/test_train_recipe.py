"""The learning-rate schedule shared by the proxy trainer and the full recipe."""
import pytest
import torch

from lknas.train.recipe import fitted_warmup, make_scheduler


def _lrs(epochs, warmup_epochs, per_epoch, lr=3e-3):
    optimizer = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), lr=lr)
    scheduler = make_scheduler(optimizer, epochs, warmup_epochs, per_epoch)
    out = []
    for step in range(epochs * per_epoch):
        scheduler.step_update(step)
        out.append(optimizer.param_groups[0]["lr"])
    return out


def test_fractional_warmup_is_whole_updates_of_a_one_epoch_run():
    lrs = _lrs(1, 0.05, 800)  # 5% of 800 updates = 40 updates of linear warm-up
    assert lrs[0] == pytest.approx(1e-6)
    assert lrs[20] == pytest.approx(1e-6 + (3e-3 - 1e-6) * 20 / 40)
    assert all(a < b for a, b in zip(lrs[:39], lrs[1:40]))  # up for 40 updates, then cosine down
    assert all(a >= b for a, b in zip(lrs[40:], lrs[41:]))
    assert lrs[-1] < 1e-5


def test_no_warmup_starts_at_the_peak():
    lrs = _lrs(1, 0, 100)
    assert lrs[0] == pytest.approx(3e-3)


def test_whole_epoch_warmup_unchanged():
    lrs = _lrs(4, 1, 10)
    assert lrs[0] == pytest.approx(1e-6)
    assert lrs[5] == pytest.approx(1e-6 + (3e-3 - 1e-6) * 5 / 10)
    assert all(a < b for a, b in zip(lrs[:9], lrs[1:10]))  # linear up for 10 updates, then cosine down
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


@pytest.mark.parametrize("warmup, steps, per_epoch, expected", [
    (0.05, 800, 800, 0.05),  # a fraction of a one-epoch proxy run is kept
    (0.9, 800, 800, 0.5),  # ... up to half of it
    (1.0, 800, 800, 0.0),  # whole epochs are dropped in a one-epoch run, as before
    (20, 4000, 800, 4),  # and end an epoch before a longer run does
    (2, 4000, 800, 2),
])
def test_the_warmup_fits_the_run(warmup, steps, per_epoch, expected):
    assert fitted_warmup(warmup, steps / per_epoch) == pytest.approx(expected)


def _updates(optimizer_for, steps=5):
    torch.manual_seed(0)
    # no bias before the norm: its gradient is rounding noise, which Adam's normalisation blows up
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, bias=False), torch.nn.BatchNorm2d(8), torch.nn.Flatten(),
                                torch.nn.LazyLinear(2))
    model(torch.randn(2, 3, 8, 8))
    optimizer = optimizer_for(model)
    for step in range(steps):
        torch.manual_seed(step)
        loss = model(torch.randn(4, 3, 8, 8)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return optimizer, [p.detach().clone() for p in model.parameters()]


def test_adamw_runs_fused_with_the_same_updates_as_the_loop_form():
    from timm.optim import create_optimizer_v2

    from lknas.train.recipe import make_optimizer
    fused, got = _updates(lambda m: make_optimizer(m, "adamw", 1e-2, 0.05))
    loop, want = _updates(lambda m: create_optimizer_v2(m, opt="adamw", lr=1e-2, weight_decay=0.05, foreach=False))
    assert fused.defaults["fused"] is True and not loop.defaults["fused"]
    assert [g["weight_decay"] for g in fused.param_groups] == [0.0, 0.05]  # timm's split (norms, biases) kept
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


def test_optimizers_without_a_fused_kernel_are_built_as_before():
    from lknas.train.recipe import make_optimizer
    sgd, _ = _updates(lambda m: make_optimizer(m, "sgd", 1e-2, 0.05), steps=1)
    assert isinstance(sgd, torch.optim.SGD) and not sgd.defaults.get("fused")
