"""Scaling-study experiment files: validation with key paths, expansion into points, FLOP matching."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest

from lknas.arch import ArchConfig
from lknas.study import ExperimentError, expand, load_experiment, parse_experiment
from lknas.study.points import odd_size
from lknas.study.runner import make_jobs

REPO = Path(__file__).resolve().parents[1]
BASE = {
    "stem": {"type": "patch"}, "block": "convnext", "layer_scale": 1e-6, "mlp_ratio": 2, "kernel_type": "dense",
    "stages": [{"depth": 1, "width": 8, "kernel": 3}, {"depth": 2, "width": 16, "kernel": 3}],
}
TRAIN = {"dataset": "pathfinder:easy,train=96,val=32", "resolution": 32, "steps": 2, "batch_size": 32,
         "warmup_epochs": 0}


def fake_flops(arch: ArchConfig, resolution: int) -> float:
    """Monotone in kernel, depth, width and resolution: enough to test the matching logic fast."""
    return resolution ** 2 * sum(s.depth * s.width * (s.width + s.kernel.max_size ** 2) for s in arch.stages)


def exp_dict(**changes) -> dict:
    data = {"name": "t", "base": copy.deepcopy(BASE), "train": dict(TRAIN), "seeds": 2,
            "scale": {"kernel": [[7, 5], 9]}}
    data.update(changes)
    return data


def test_odd_sizes():
    assert [odd_size(x) for x in (3, 5.9, 6, 6.9, 7, 14, 0.4)] == [3, 5, 7, 7, 7, 15, 1]


def test_every_problem_is_reported_with_its_key_path():
    data = exp_dict(seeds=0, colour="red", variants={"s": {"kernel_typ": "stripe"}},
                    scale={"kernel": [[7, 4], [3, 3, 3]], "depth": {"match": "width"}, "widht": [1],
                           "width": {"match": "kernel"}, "resolution": [8]})
    with pytest.raises(ExperimentError) as info:
        parse_experiment(data, "bad.yaml")
    text = str(info.value)
    for expected in ("bad.yaml: colour: unknown key", "seeds: a count", "variants.s.kernel_typ: unknown key 'kernel_typ'; "
                     "did you mean 'kernel_type'", "scale.kernel[0][1]: kernel size 4 is even",
                     "scale.kernel[1]: 3 values for 2 stages", "scale.depth.match: only 'kernel'",
                     "did you mean 'width'", "scale.resolution[0]"):
        assert expected in text, (expected, text)
    assert text.startswith(f"{len(info.value.problems)} problems in experiment")


def test_a_variant_that_does_not_build_names_the_variant():
    with pytest.raises(ExperimentError, match=r"variants.big_centre: stages\[0\].r_c: r_c 3 needs a kernel"):
        parse_experiment(exp_dict(variants={"big_centre": {"kernel_type": "peripheral", "r_c": 3}}), "x.yaml")


def test_expand_one_dimension_at_a_time_from_each_variant():
    exp = parse_experiment(exp_dict(
        variants={"dense": {}, "stripe": {"kernel_type": "stripe", "stripe_n": 3, "kernel": 5}},
        scale={"kernel": {"multipliers": [1, 2, 3]}, "depth": {"multipliers": [2]}, "width": [[16, 32]],
               "resolution": [48], "compound": {"phi": [1], "depth": 2.0, "width": 1.5, "resolution": 1.5}}))
    points = expand(exp, count=fake_flops)
    dense = [p for p in points if p.variant == "dense"]
    assert [(p.dimension, p.point) for p in dense] == [
        ("base", "base"), ("kernel", "x2 (7-7)"), ("kernel", "x3 (9-9)"), ("depth", "x2 (2-4)"),
        ("width", "16-32"), ("resolution", "48"), ("compound", "phi=1")]  # x1 kernel is the base: not repeated
    by = {p.point: p for p in dense}
    assert by["x2 (7-7)"].arch.kernel_sizes == (7, 7) and by["x2 (2-4)"].arch.depths == (2, 4)
    assert by["16-32"].arch.widths == (16, 32) and by["48"].resolution == 48 and by["48"].arch == dense[0].arch
    compound = by["phi=1"]
    assert compound.arch.depths == (2, 4) and compound.arch.widths == (16, 24) and compound.resolution == 48
    assert {p.arch.kernel_types for p in points if p.variant == "stripe"} == {("stripe", "stripe")}
    jobs = make_jobs(points, ("pathfinder", "shapes"), (0, 1))
    assert len(jobs) == len(points) * 4 and [j.trial for j in jobs] == list(range(len(jobs)))


def test_depth_and_width_matched_to_the_kernel_points_flops():
    exp = parse_experiment(exp_dict(scale={"kernel": [[15, 7], [31, 15]], "depth": {"match": "kernel"},
                                           "width": {"match": "kernel"}}))
    points = expand(exp, count=fake_flops)
    kernel = [p for p in points if p.dimension == "kernel"]
    for dim in ("depth", "width"):
        matched = [p for p in points if p.dimension == dim]
        assert len(matched) == len(kernel)
        for m, k in zip(matched, kernel):
            assert k.point in m.point
            ratio = fake_flops(m.arch, 32) / fake_flops(k.arch, 32)
            assert 0.6 < ratio < 1.6, (dim, m.point, ratio)  # depth moves in whole blocks, width in 8s
            assert m.arch.kernel_sizes == (3, 3)


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "experiments").glob("*.yaml")))
def test_bundled_experiments_load_and_expand(name):
    exp = load_experiment(REPO / "experiments" / f"{name}.yaml")
    points = expand(exp, count=fake_flops)
    assert len(points) >= 4 and len(exp.seeds) >= 2
    assert all(k % 2 == 1 for p in points for k in p.arch.kernel_sizes)
    if name == "kernel_types":
        assert {p.variant for p in points} == {"dense", "stripe", "peripheral", "dilated"}
    if name == "kernel_vs_depth_width":
        assert {p.dimension for p in points} == {"base", "kernel", "depth", "width"}
        assert {d.split(":")[0] for d in exp.datasets} == {"pathfinder", "shapes"}
    if name == "shortcut":  # the variant key reaches every stage, and the built network
        cut = [p for p in points if p.variant == "no_shortcut"]
        assert cut and all(s.shortcut is False for p in cut for s in p.arch.stages)
        assert all(s.shortcut is None for p in points if p.variant == "with_shortcut" for s in p.arch.stages)
    if name == "reparam_branch":
        assert {p.arch.stages[0].kernel.reparam for p in points} == {0, 3}


def test_a_malformed_experiment_fails_before_ray(tmp_path, capsys):
    from lknas.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("base: {stages: [{depth: 1, width: 8, kernel: 4}]}\nscale: {kernel: [6]}\n")
    assert main(["scale", "--experiment", str(bad), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "base.stages[0].kernel: kernel size 4 is even" in err and "scale.kernel[0]" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("content, needle", [
    (b"name: caf\xe9\n", "not UTF-8"),
    (b"a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + b"".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n".encode() for i in range(1, 8)), "1,000,000 values"),
])
def test_experiment_files_get_the_space_files_reading_limits(tmp_path, content, needle):
    from lknas.errors import LknasError

    bad = tmp_path / "bad.yaml"
    bad.write_bytes(content)
    with pytest.raises(LknasError, match=needle):
        load_experiment(bad)
