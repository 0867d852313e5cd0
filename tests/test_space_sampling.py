"""Resolution of a space into ArchConfigs: defaults, seeding, Optuna define-by-run, round trips."""
from __future__ import annotations

import optuna
import pytest
import yaml

from lknas.arch import ArchConfig
from lknas.errors import SpaceError
from lknas.space import load_arch, load_space, parse_space

optuna.logging.set_verbosity(optuna.logging.WARNING)


def stage(depth=2, width=16, kernel=7, **kw):
    return {"depth": depth, "width": width, "kernel": kernel, **kw}


SEARCHED = {
    "name": "searched",
    "kernel_type": {"choice": ["dense", "stripe", "peripheral"]},
    "r_c": {"int": [0, 3]},
    "m": {"choice": [2, 3]},
    "reparam": {"choice": [0, 3, 5]},
    "partial": {"choice": [1.0, 0.375]},
    "width_multiplier": {"choice": [1.0, 1.3]},
    "stages": [
        stage(depth={"int": [1, 3]}, width={"choice": [16, 24]}, kernel={"choice": [3, 13, 31, 51]}),
        stage(depth={"int": [1, 3]}, width={"choice": [32, 48]}, kernel={"choice": [[13, 3], 7, 31]}),
        stage(depth=1, width=64, kernel={"int": [3, 13], "step": 2}, block={"choice": ["convnext", "unirep"]}),
    ],
    "sparsity": {"density": {"float": [0.4, 1.0]}, "enabled": {"choice": [True, False]}},
    "drop_path": {"float": [0.0, 0.3]},
}


def test_defaults_convnext():
    arch = parse_space({"stages": [stage(), stage(width=32)]}).fixed()
    s0, s1 = arch.stages
    assert arch.stem.type == "patch" and arch.stem.width == 16
    assert arch.head.norm == "ln" and arch.head.dropout == 0.0 and arch.drop_path == 0.0 and arch.sparsity is None
    assert (s0.downsample, s1.downsample) == ("none", "patch")
    assert s0.block == "convnext" and s0.mlp_ratio == 4.0 and s0.grn is False and s0.layer_scale == 1e-6
    assert s0.se is None and s0.dw_ratio is None
    assert s0.kernel.size == (7,) and s0.kernel.type == "dense" and s0.kernel.reparam == 0
    assert s0.kernel.partial == 1.0 and s0.kernel.stripe_n is None and s0.kernel.r_c is None


def test_defaults_by_block():
    replk = parse_space({"block": "replk", "stages": [stage(), stage()]}).fixed()
    assert replk.stem.type == "replk" and replk.head.norm == "bn"
    assert replk.stages[1].downsample == "replk" and replk.stages[0].downsample == "none"
    assert replk.stages[0].dw_ratio == 1.0 and replk.stages[0].grn is None and replk.stages[0].layer_scale is None
    uni = parse_space({"block": "unirep", "kernel_type": "dilated", "stages": [stage(kernel=[13, 3]), stage()]}).fixed()
    assert uni.stem.type == "unirep" and uni.head.norm == "ln" and uni.stages[1].downsample == "conv3"
    assert uni.stages[0].grn is True and uni.stages[0].se is True and uni.stages[0].layer_scale == 1e-6
    assert uni.stages[0].kernel.size == (13, 3) and uni.stages[0].kernel.reparam is None
    v2 = parse_space({"grn": True, "layer_scale": 0, "stages": [stage(downsample="patch")]}).fixed()
    assert v2.stages[0].layer_scale is None and v2.stages[0].grn is True and v2.stages[0].downsample == "patch"
    stripe = parse_space({"stages": [stage(kernel=51, kernel_type="stripe")]}).fixed()
    assert stripe.stages[0].kernel.stripe_n == 5
    pelk = parse_space({"stages": [stage(kernel=51, kernel_type="peripheral")]}).fixed()
    assert (pelk.stages[0].kernel.r_c, pelk.stages[0].kernel.m, pelk.stages[0].kernel.pos_embed) == (2, 2, False)
    explicit = parse_space({"stem": {"type": "replk", "width": 32}, "head": {"norm": "none", "dropout": 0.1},
                            "stages": [stage()]}).fixed()
    assert (explicit.stem.type, explicit.stem.width, explicit.head.norm, explicit.head.dropout) == (
        "replk", 32, "none", 0.1)


def test_global_defaults_and_stage_overrides():
    arch = parse_space({"kernel": 31, "mlp_ratio": 2, "stages": [stage(kernel=13), {"depth": 1, "width": 8}]}).fixed()
    assert arch.kernel_sizes == (13, 31) and arch.stages[1].mlp_ratio == 2.0


def test_width_multiplier_truncates_like_slak():
    data = {"width_multiplier": 1.3, "stages": [stage(width=w) for w in (96, 192, 384, 768)]}
    arch = parse_space(data).fixed()
    assert arch.widths == (124, 249, 499, 998) and arch.stem.width == 124


def test_sampling_is_deterministic_and_varies():
    sp = parse_space(SEARCHED)
    assert sp.sample(3) == sp.sample(3)
    assert sp.sample(3).hash() == sp.sample(3).hash()
    assert len({sp.sample(seed).hash() for seed in range(10)}) > 1
    assert parse_space(SEARCHED).sample(7) == sp.sample(7)  # independent of the instance


def test_sampled_values_are_valid():
    sp = parse_space(SEARCHED)
    for seed in range(40):
        arch = sp.sample(seed)
        for s in arch.stages:
            k = s.kernel
            assert k.reparam == 0 or k.reparam < k.max_size
            assert (k.r_c is None) == (k.type != "peripheral")
            assert (k.stripe_n is None) == (k.type != "stripe")
            if k.type == "peripheral":
                assert 2 * k.r_c + 1 <= k.max_size
            if k.type == "stripe":
                assert k.stripe_n < k.max_size or k.max_size == 1
            assert s.width in (16, 24, 20, 31, 32, 48, 41, 62, 64, 83)
        assert arch.sparsity is None or 0.4 <= arch.sparsity.density <= 1.0
        assert 0.0 <= arch.drop_path <= 0.3


def test_dimensions_and_conditionals():
    sp = parse_space(SEARCHED)
    dims = {d.name: d.conditional for d in sp.dimensions}
    assert list(dims) == [
        "kernel_type", "stages[2].block", "r_c", "m", "reparam", "partial", "width_multiplier",
        "stages[0].depth", "stages[0].width", "stages[0].kernel", "stages[1].depth", "stages[1].width",
        "stages[1].kernel", "stages[2].kernel", "sparsity.enabled", "sparsity.density", "drop_path",
    ]
    assert {n for n, c in dims.items() if c} == {"r_c", "m", "sparsity.density"}


def _asked(sp, seed_trials=30):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for _ in range(seed_trials):
        trial = study.ask()
        arch = sp.suggest(trial)
        out.append((arch, dict(trial.params)))
        study.tell(trial, 0.0)
    return out


def test_conditional_dimension_only_asked_when_active():
    sp = parse_space({
        "kernel_type": {"choice": ["dense", "peripheral"]},
        "stages": [stage(kernel=31, r_c={"int": [0, 3]}), stage(kernel=13)],
    })
    runs = _asked(sp)
    kinds = set()
    for arch, params in runs:
        kinds.add(params["kernel_type"])
        assert params["kernel_type"] == arch.stages[0].kernel.type
        if params["kernel_type"] == "peripheral":
            assert set(params) == {"kernel_type", "stages[0].r_c"}
            assert arch.stages[0].kernel.r_c == params["stages[0].r_c"]
        else:
            assert set(params) == {"kernel_type"}
            assert arch.stages[0].kernel.r_c is None
    assert kinds == {"dense", "peripheral"}


def test_suggest_follows_trial_values_and_fixed_order():
    sp = parse_space(SEARCHED)
    order = [d.name for d in sp.dimensions]
    for arch, params in _asked(sp, 20):
        asked = list(params)
        assert asked == [n for n in order if n in params]  # asked in the dimensions' order
        assert arch.stages[0].depth == params["stages[0].depth"]
        assert arch.stages[1].kernel.size == ((13, 3) if params["stages[1].kernel"] == "[13, 3]"
                                              else (params["stages[1].kernel"],))
        assert (arch.sparsity is not None) == params["sparsity.enabled"]
        assert ("sparsity.density" in params) == params["sparsity.enabled"]
        assert arch.drop_path == params["drop_path"]


def test_reparam_not_smaller_than_sampled_kernel_becomes_zero():
    sp = parse_space({"reparam": 5, "stages": [stage(kernel={"choice": [3, 5, 31]})]})
    seen = {}
    for seed in range(30):
        k = sp.sample(seed).stages[0].kernel
        seen[k.size[0]] = k.reparam
    assert seen == {3: 0, 5: 0, 31: 5}


def test_r_c_clipped_to_kernel():
    arch = parse_space({"stages": [stage(kernel=[3, 3], kernel_type="peripheral")]}).fixed()
    assert arch.stages[0].kernel.r_c == 1  # default 2 does not fit a 3-kernel


def test_k_prime_derives_r_c():
    arch = parse_space({"kernel_type": "peripheral", "stages": [
        stage(kernel=51, k_prime=9), stage(kernel=51, k_prime=13), stage(kernel=31, k_prime=11, r_c=2),
        stage(kernel=51, k_prime=11, m=2)]}).fixed()
    assert [s.kernel.r_c for s in arch.stages] == [0, 2, 2, 1]
    assert "k_prime" not in arch.to_dict()["stages"][0]


def test_fixed_refuses_domains():
    sp = parse_space(SEARCHED)
    assert not sp.is_fixed
    with pytest.raises(SpaceError) as err:
        sp.fixed()
    assert {p.path for p in err.value.problems} == {d.name for d in sp.dimensions}


def test_train_domains():
    sp = parse_space({"stages": [stage()], "train": {"lr": {"float": [1e-4, 1e-2], "log": True},
                                                    "weight_decay": {"choice": [0.0, 0.05]}}})
    assert [d.name for d in sp.dimensions] == ["train.lr", "train.weight_decay"]
    assert sp.sample_train(1) == sp.sample_train(1)
    assert 1e-4 <= sp.sample_train(1).lr <= 1e-2 and sp.sample_train(1).weight_decay in (0.0, 0.05)
    trial = optuna.create_study().ask()
    cfg = sp.suggest_train(trial)
    assert cfg.lr == trial.params["train.lr"] and cfg.epochs == 10


def test_summary_reports_size():
    sp = parse_space({
        "kernel_type": {"choice": ["dense", "peripheral"]},
        "r_c": {"int": [0, 3]},
        "stages": [stage(kernel={"choice": [3, 7, 13]}), stage(depth={"int": [1, 4]})],
        "drop_path": {"float": [0.0, 0.2]},
    }, "s.yaml")
    assert sp.size() == (2 * 4 * 3 * 4, 1)
    text = sp.summary()
    assert "search space 's'" in text
    assert "5 dimensions (1 conditional)" in text
    assert "96 combinations" in text and "continuous (1 float dimension)" in text
    assert any(line.split()[0] == "r_c" and "[conditional]" in line for line in text.splitlines())
    assert len(text.splitlines()) == 3 + 5


# ----------------------------------------------------------------------------- round trips
ROUND_TRIP_SPACES = [
    SEARCHED,
    {"block": "unirep", "kernel_type": "dilated", "stages": [stage(kernel={"choice": [[13, 3], 7]}),
                                                             stage(kernel=13, se=False)]},
    {"block": "replk", "reparam": 5, "stages": [stage(kernel=31, dw_ratio={"choice": [1.0, 1.5]}), stage()]},
    {"kernel_type": "stripe", "stages": [stage(kernel={"choice": [31, 51]}, stripe_n={"choice": [3, 5]})],
     "sparsity": {"density": 0.6}},
    {"grn": True, "layer_scale": 0, "stages": [stage(kernel={"choice": [7, 9]})]},
]


@pytest.mark.parametrize("data", ROUND_TRIP_SPACES)
def test_round_trip(tmp_path, data):
    sp = parse_space(data)
    for seed in range(5):
        arch = sp.sample(seed)
        assert ArchConfig.from_yaml(arch.to_yaml()) == arch
        assert ArchConfig.from_json(arch.to_json()) == arch
        path = tmp_path / f"arch{seed}.yaml"
        path.write_text(arch.to_yaml())
        fixed = load_space(path)
        assert fixed.is_fixed
        again = load_arch(path)
        assert again == arch and again.hash() == arch.hash()
        assert load_arch(arch.to_dict()) == arch
        assert load_arch(arch) is arch


def test_load_arch_rejects_domains(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"stages": [stage(kernel={"choice": [3, 5]})]}))
    with pytest.raises(SpaceError) as err:
        load_arch(path)
    assert [p.path for p in err.value.problems] == ["stages[0].kernel"]
    with pytest.raises(SpaceError):
        load_arch({"stages": [stage(kernel=4)]})
    with pytest.raises(TypeError):
        load_arch(42)
