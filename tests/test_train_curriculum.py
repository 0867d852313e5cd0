"""The proxy trainer's curriculum: the first `curriculum_fraction` of the steps on an easier set."""
from __future__ import annotations

import pytest
import torch

from lknas.data import DataError, build_data
from lknas.space import TrainConfig, load_space
from lknas.errors import SpaceError
from lknas.train import train_proxy
from lknas.train.proxy import curriculum_steps
from tests.helpers import small_arch

MAIN, EASY = "pointer:miss=20,distance=0.5-0.8", "pointer:miss=20,distance=0.1-0.2"
CFG = TrainConfig(steps=10, batch_size=16, resolution=32, lr=1e-3, warmup_epochs=0, seed=3, data_seed=5,
                  curriculum=EASY, curriculum_fraction=0.3)


def test_curriculum_steps_are_a_fraction_of_the_budget():
    assert curriculum_steps(CFG, 10) == 3
    assert curriculum_steps(CFG, 3200) == 960  # a 4x budget keeps the share, not the count
    assert curriculum_steps(CFG.replace(curriculum_fraction=0.01), 10) == 1  # never rounds to nothing
    assert curriculum_steps(CFG.replace(curriculum=None), 10) == 0


def _seen_batches(cfg: TrainConfig, bundle, monkeypatch) -> list[torch.Tensor]:
    """The training batches the model was given, in order."""
    import lknas.train.proxy as proxy

    seen: list[torch.Tensor] = []
    real_build = proxy.build_model

    def build(*args, **kwargs):
        model = real_build(*args, **kwargs)
        model.register_forward_pre_hook(lambda m, inp: seen.append(inp[0].clone()) if m.training else None)
        return model

    with monkeypatch.context() as patch:  # undone on return: a second call must not wrap this one's hook
        patch.setattr(proxy, "build_model", build)
        patch.setenv("LKNAS_LAYOUT", "nchw")  # the layout probe runs a copy of the model (and its hook) on noise
        result = train_proxy(small_arch(), cfg, bundle)
    assert result.status == "ok", result.error
    return seen


def test_the_first_steps_train_on_the_easier_set_then_the_main_one(monkeypatch):
    bundle = build_data(MAIN, resolution=32, batch_size=16, seed=5, order_seed=3, train_size=160, val_size=32)
    seen = _seen_batches(CFG, bundle, monkeypatch)
    assert len(seen) == 10
    easy = build_data(EASY, resolution=32, batch_size=16, seed=5, order_seed=3, train_size=3 * 16, val_size=16)
    bundle.train.set_epoch(0)
    expected = [x for x, _ in easy.train] + [x for x, _ in bundle.train][:7]
    assert len(expected) == 10
    for got, want in zip(seen, expected):
        assert torch.equal(got, want)
    bundle.train.set_epoch(0)
    plain = _seen_batches(CFG.replace(curriculum=None), bundle, monkeypatch)
    bundle.train.set_epoch(0)
    assert len(plain) == 10
    assert all(torch.equal(g, w) for g, w in zip(plain, [x for x, _ in bundle.train]))  # no curriculum: main set only
    assert not torch.equal(plain[0], seen[0])


def test_a_ramp_blends_the_full_task_into_the_easier_set_then_continues_it(monkeypatch):
    bundle = build_data(MAIN, resolution=32, batch_size=16, seed=5, order_seed=3, train_size=160, val_size=32)
    seen = _seen_batches(CFG.replace(curriculum_fraction=0.4, curriculum_ramp=True), bundle, monkeypatch)
    easy = build_data(EASY, resolution=32, batch_size=16, seed=5, order_seed=3, train_size=4 * 16, val_size=16)
    bundle.train.set_epoch(0)
    main = [x for x, _ in bundle.train]
    assert len(seen) == 10
    for t, (got, e) in enumerate(zip(seen, [x for x, _ in easy.train])):  # batch t: 4t of its 16 from the full task
        assert torch.equal(got, torch.cat([main[t][:4 * t], e[4 * t:]]))
    assert all(torch.equal(g, w) for g, w in zip(seen[4:], main[4:10]))  # then the full task where the ramp left it


def test_a_ramp_longer_than_the_training_split_runs_its_every_step(monkeypatch):
    bundle = build_data(MAIN, resolution=32, batch_size=16, seed=5, order_seed=3, train_size=32, val_size=32)
    seen = _seen_batches(CFG.replace(curriculum_fraction=0.5, curriculum_ramp=True), bundle, monkeypatch)
    easy = build_data(EASY, resolution=32, batch_size=16, seed=5, order_seed=3, train_size=5 * 16, val_size=16)
    assert len(seen) == 10
    for t, (got, e) in enumerate(zip(seen, [x for x, _ in easy.train])):  # 5 blended steps over a 2-batch split
        assert torch.equal(got[round(16 * t / 5):], e[round(16 * t / 5):])


def test_a_curriculum_of_another_task_is_refused_by_name():
    bundle = build_data(MAIN, resolution=32, batch_size=16, seed=5, train_size=160, val_size=32)
    with pytest.raises(DataError, match="train.curriculum 'shapes'.*num_classes"):
        train_proxy(small_arch(), CFG.replace(curriculum="shapes"), bundle)


def _space(tmp_path, train_extra: str):
    path = tmp_path / "space.yaml"
    path.write_text("name: s\nstem: {type: replk}\nblock: replk\nstages:\n  - {depth: 1, width: 8, kernel: 7}\n"
                    f"train:\n  dataset: pointer\n{train_extra}")
    return path


def test_the_space_file_sets_it_and_round_trips(tmp_path):
    space = load_space(_space(tmp_path, "  curriculum: 'pointer:distance=0.1-0.25'\n  curriculum_fraction: 0.3\n"))
    assert space.train.curriculum == "pointer:distance=0.1-0.25" and space.train.curriculum_fraction == 0.3
    assert not space.train.curriculum_ramp
    assert load_space(_space(tmp_path, "  curriculum: pointer\n  curriculum_ramp: true\n")).train.curriculum_ramp
    assert TrainConfig(**space.train.to_dict()) == space.train


@pytest.mark.parametrize("value", [0, 1, 1.5, -0.2, "half"])
def test_a_fraction_outside_zero_one_is_refused_by_name(tmp_path, value):
    with pytest.raises(SpaceError) as err:
        load_space(_space(tmp_path, f"  curriculum: pointer\n  curriculum_fraction: {value}\n"))
    assert "train.curriculum_fraction" in str(err.value)


def _lrs(cfg: TrainConfig, bundle, monkeypatch) -> list[float]:
    """The learning rate of each training step, in order."""
    import lknas.train.proxy as proxy

    lrs: list[float] = []
    real_step = proxy.backward_and_step

    def step(loss, optimizer, *args, **kwargs):
        lrs.append(optimizer.param_groups[0]["lr"])
        return real_step(loss, optimizer, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(proxy, "backward_and_step", step)
        patch.setenv("LKNAS_LAYOUT", "nchw")
        assert train_proxy(small_arch(), cfg, bundle).status == "ok"
    return lrs


def test_a_restart_schedule_starts_the_full_task_at_the_peak_rate(monkeypatch):
    bundle = build_data(MAIN, resolution=32, batch_size=16, seed=5, order_seed=3, train_size=160, val_size=32)
    cfg = CFG.replace(steps=20, curriculum_fraction=0.5)
    one = _lrs(cfg, bundle, monkeypatch)
    two = _lrs(cfg.replace(schedule="restart"), bundle, monkeypatch)
    assert len(one) == len(two) == 20
    assert one[0] == two[0] == pytest.approx(1e-3)  # both start at the peak
    assert all(a >= b for a, b in zip(one, one[1:]))  # one cosine: never rises
    assert two[10] == pytest.approx(1e-3) and two[9] < 0.1e-3  # the curriculum's cosine ends, the second starts
    assert all(a >= b for a, b in zip(two[10:], two[11:])) and two[-1] < two[10]
    assert one[10] < 0.6e-3  # without the restart the full task starts half-way down


def test_the_schedule_key(tmp_path):
    assert load_space(_space(tmp_path, "  schedule: restart\n")).train.schedule == "restart"
    cosine = load_space(_space(tmp_path, "  schedule: cosine\n")).train
    assert cosine.schedule is None and "schedule" not in {k for k, v in cosine.to_dict().items() if v is not None}
    with pytest.raises(SpaceError, match="train.schedule.*cosine, restart"):
        load_space(_space(tmp_path, "  schedule: step\n"))
    # the stored form (None) parses back, as run settings and trials files re-read it
    assert load_space(_space(tmp_path, "  schedule: null\n")).train.schedule is None
    from lknas.space.configs import parse_train
    issues: list = []
    assert parse_train(cosine.to_dict(), issues).schedule is None and not issues


def test_order_seed_pins_the_batch_order_across_training_seeds(monkeypatch):
    pinned = CFG.replace(curriculum=None, order_seed=7)  # train_proxy builds MAIN itself
    a = _seen_batches(pinned, MAIN, monkeypatch)
    b = _seen_batches(pinned.replace(seed=4), MAIN, monkeypatch)
    assert len(a) == 10 and all(torch.equal(x, y) for x, y in zip(a, b))  # another init, the same batches
    free = CFG.replace(curriculum=None)
    c = _seen_batches(free, MAIN, monkeypatch)
    d = _seen_batches(free.replace(seed=4), MAIN, monkeypatch)
    assert not torch.equal(c[0], d[0])  # without it the seed orders the batches too


def test_order_seed_reaches_the_curriculum(monkeypatch):
    pinned = CFG.replace(order_seed=7)
    seen = _seen_batches(pinned.replace(seed=4), MAIN, monkeypatch)
    easy = build_data(EASY, resolution=32, batch_size=16, seed=5, order_seed=7, train_size=3 * 16, val_size=16)
    assert torch.equal(seen[0], next(iter(easy.train))[0])
