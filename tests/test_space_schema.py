"""Validation of space files: every problem at once, each with its exact key path."""
from __future__ import annotations

from pathlib import Path

import pytest

from lknas.errors import SpaceError
from lknas.space.schema import STAGE_FIELDS, schema_fields
from lknas.space import (
    Constraints, FloatRange, Objective, SearchConfig, TrainConfig, bundled_spaces, load_space, parse_space,
    resolve_space_path,
)


def stage(depth=2, width=16, kernel=7, **kw):
    return {"depth": depth, "width": width, "kernel": kernel, **kw}


def space(*stages, **top):
    return {"stages": list(stages) or [stage()], **top}


def problems(data, file="t.yaml"):
    with pytest.raises(SpaceError) as err:
        parse_space(data, file)
    assert all(p.file == file for p in err.value.problems)
    return {p.path: p.message for p in err.value.problems}


def test_minimal_space_defaults():
    sp = parse_space(space(), "x/mini.yaml")
    assert sp.name == "mini" and sp.is_fixed
    assert sp.train == TrainConfig() and sp.search == SearchConfig() and sp.constraints == Constraints()
    assert sp.search.objectives == (Objective("accuracy", "max"), Objective("latency", "min"))


def test_many_problems_come_back_together():
    data = {
        "kernal": 7,
        "stages": [
            stage(depth=True, kernel={"choice": [3, 50, 203]}),
            stage(width=0, kernel_type="stripe", stripe_n=9, reparam=7),
            "not a stage",
            stage(kernel=31, kernel_type="peripheral", k_prime=10, block="replk", layer_scale=0.1),
            stage(depth={"int": [5, 3]}, width={"float": [8, 16]}, kernel={"int": [3, 9]}),
        ],
        "search": {"objectives": [{"name": "latency", "mode": "up"}, "latency", "bogus"]},
        "train": {"epochs": {"int": [1, 3]}, "optimzer": "sgd"},
        "constraints": {"max_params": "5M", "min_params": "6M", "max_flops": "lots"},
        "sparsity": {"density": 0, "grwoth": "random"},
        "head": {"norm": "layer"},
    }
    found = problems(data)
    assert set(found) == {
        "kernal",
        "stages[0].depth",
        "stages[0].kernel.choice[1]",
        "stages[0].kernel.choice[2]",
        "stages[1].width",
        "stages[1].stripe_n",
        "stages[1].reparam",
        "stages[2]",
        "stages[3].k_prime",
        "stages[3].layer_scale",
        "stages[4].depth.int",
        "stages[4].width",
        "stages[4].kernel.step",
        "search.objectives[0].mode",
        "search.objectives[1]",
        "search.objectives[2].name",
        "train.epochs",
        "train.optimzer",
        "constraints.max_flops",
        "constraints.min_params",
        "sparsity.density",
        "sparsity.grwoth",
        "head.norm",
    }
    assert "did you mean 'kernel'?" in found["kernal"] and "valid keys:" in found["kernal"]
    assert found["stages[0].kernel.choice[1]"] == (
        "kernel size 50 is even; kernel sizes must be odd (3, 5, 7, ..., up to 201)")
    assert "out of range" in found["stages[0].kernel.choice[2]"]
    assert "boolean" in found["stages[0].depth"]
    assert "did you mean 'optimizer'?" in found["train.optimzer"]
    assert "search architecture" in found["train.epochs"] or "cannot be searched" in found["train.epochs"]
    assert "layer_scale only applies to convnext and unirep" in found["stages[3].layer_scale"]


def test_stage_shape_errors():
    assert set(problems({"stages": []})) == {"stages"}
    assert set(problems({"stages": {"depth": 1}})) == {"stages"}
    assert set(problems({})) == {"stages"}
    assert set(problems({"stages": [{"width": 8}]})) == {"stages[0].depth", "stages[0].kernel"}
    with pytest.raises(SpaceError):
        parse_space([1, 2])


@pytest.mark.parametrize(
    "data, path, needle",
    [
        (space(stage(kernel=[13, 4])), "stages[0].kernel[1]", "even"),
        (space(stage(kernel={"choice": [[13, 3], [12, 3]]})), "stages[0].kernel.choice[1][0]", "even"),
        (space(stage(kernel={"choice": []})), "stages[0].kernel.choice", "empty"),
        (space(stage(kernel={"float": [3, 9]})), "stages[0].kernel", "int: [low, high]"),
        (space(stage(reparam=4)), "stages[0].reparam", "0 (none), 3, 5 or 7"),
        (space(stage(reparam={"choice": [0, 9]})), "stages[0].reparam.choice[1]", "0 (none), 3, 5 or 7"),
        (space(stage(kernel=5, reparam=5)), "stages[0].reparam", "smaller than the kernel"),
        (space(stage(partial=0.0)), "stages[0].partial", "(0, 1]"),
        (space(stage(width=4, partial=0.1)), "stages[0].partial", "no channel"),
        (space(stage(width=8, partial={"float": [0.01, 0.5]})), "stages[0].partial", "no channel"),
        (space(stage(kernel=7, kernel_type="stripe", stripe_n=7)), "stages[0].stripe_n", "smaller than the kernel"),
        (space(stage(kernel_type="stripe", stripe_n=4)), "stages[0].stripe_n", "even"),
        (space(stage(kernel=7, kernel_type="peripheral", r_c=4)), "stages[0].r_c", "r_c <= 3"),
        (space(stage(kernel={"choice": [5, 7]}, kernel_type="peripheral", r_c={"int": [0, 4]})),
         "stages[0].r_c", "largest r_c"),
        (space(stage(r_c=2)), "stages[0].r_c", "r_c only applies to peripheral kernels"),
        (space(stage(kernel_type="dense", pos_embed=True)), "stages[0].pos_embed", "peripheral"),
        (space(stage(kernel_type="dense", grid="coarse_centre")), "stages[0].grid", "peripheral"),
        (space(stage(kernel_type="peripheral", grid="reversed")), "stages[0].grid", "fine_centre, coarse_centre"),
        (space(stage(kernel_type="peripheral", share_scale="area")), "stages[0].share_scale", "none, init, lr, both"),
        (space(stage(kernel_type="dense", stripe_n=3)), "stages[0].stripe_n", "stripe kernels"),
        (space(stage(kernel=13, kernel_type="dilated", reparam=5)), "stages[0].reparam", "dilated"),
        (space(stage(block="replk", grn=True)), "stages[0].grn", "convnext and unirep"),
        (space(stage(block="convnext", se=True)), "stages[0].se", "unirep"),
        (space(stage(block="unirep", dw_ratio=1.5)), "stages[0].dw_ratio", "replk"),
        (space(stage(layer_scale=-1)), "stages[0].layer_scale", "[0, 1]"),
        (space(stage(mlp_ratio=0)), "stages[0].mlp_ratio", "(0, 16]"),
        (space(stage(downsample="pool")), "stages[0].downsample", "none, patch, conv3, replk"),
        (space(stage(block="convnxt")), "stages[0].block", "did you mean 'convnext'"),
        (space(stage(), r_c=2), "r_c", "r_c only applies to peripheral kernels"),
        (space(stage(), depth=3), "depth", "unknown key"),
        (space(stage(), width_multiplier=0), "width_multiplier", "(0, 8]"),
        (space(stage(width=2), width_multiplier=0.3), "width_multiplier", "no channel"),
        (space(drop_path=1.0), "drop_path", "[0, 1)"),
        (space(stem={"type": "conv"}), "stem.type", "patch, replk, unirep"),
        (space(stem={"widht": 8}), "stem.widht", "did you mean 'width'"),
        (space(head={"dropout": 1.5}), "head.dropout", "[0, 1)"),
        (space(sparsity={"update_interval": 0}), "sparsity.update_interval", ">= 1"),
        (space(sparsity={"init": "random"}), "sparsity.init", "uniform, erk, snip"),
        (space(sparsity={"init": "snip", "snip_mask": "top_k"}), "sparsity.snip_mask", "did you mean 'topk'"),
        (space(sparsity={"snip_mask": "topk"}), "sparsity.snip_mask", "set sparsity.init: snip"),
        (space(sparsity={"init": {"choice": ["uniform", "erk"]}, "snip_mask": {"choice": ["random", "topk"]}}),
         "sparsity.snip_mask",
         "only applies to SNIP"),
        (space(sparsity="yes"), "sparsity", "mapping"),
        (space(train={"resolution": 8}), "train.resolution", "16"),
        (space(train={"lr": 0}), "train.lr", "(0, 10]"),
        (space(train={"lr": {"float": [0, 1e-2], "log": True}}), "train.lr.float[0]", "low > 0"),
        (space(train={"batch_size": {"choice": [32, 64]}}), "train.batch_size", "cannot be searched"),
        (space(train="fast"), "train", "mapping"),
        (space(search={"sampler": "bayes"}), "search.sampler", "tpe, nsga2"),
        (space(search={"trials": 0}), "search.trials", ">= 1"),
        (space(search={"trial_seeds": 0}), "search.trial_seeds", ">= 1"),
        (space(train={"zero_init_last": "yes"}), "train.zero_init_last", "true or false"),
        (space(search={"objectives": []}), "search.objectives", "non-empty"),
        (space(search={"objectives": ["accuracy", "accuracy"]}), "search.objectives[1]", "twice"),
        (space(search={"objectives": [{"name": "params", "mode": "maximize"}]}), "search.objectives[0].mode",
         "max or min"),
        (space(search={"objectives": [{"name": "params", "goal": "min"}]}), "search.objectives[0].goal",
         "unknown key"),
        (space(constraints={"max_flops": "1.2X"}), "constraints.max_flops", "'1.2G'"),
        (space(constraints={"min_flops": "2G", "max_flops": "1G"}), "constraints.min_flops", "min must be <= max"),
        (space(name=3), "name", "string"),
    ],
)
def test_single_problem_path(data, path, needle):
    found = problems(data)
    assert path in found, found
    assert needle in found[path], found[path]


def test_peripheral_option_on_sometimes_peripheral_stage_is_fine():
    sp = parse_space(space(stage(kernel=31, kernel_type={"choice": ["dense", "peripheral"]}, r_c=3)))
    assert [d.name for d in sp.dimensions] == ["stages[0].kernel_type"]
    # a global r_c used by at least one peripheral stage is fine too
    parse_space(space(stage(), stage(kernel=31, kernel_type="peripheral"), r_c=3))


def test_k_prime_checks():
    found = problems(space(stage(kernel=31, kernel_type="peripheral", k_prime=13, r_c=2)))
    assert "stages[0].k_prime" in found and "11" in found["stages[0].k_prime"]
    found = problems(space(stage(kernel=31, kernel_type="peripheral", k_prime=7)))
    assert "no r_c gives k_prime 7" in found["stages[0].k_prime"]
    found = problems(space(stage(kernel={"choice": [31, 51]}, kernel_type="peripheral", k_prime=11)))
    assert "single constant kernel" in found["stages[0].k_prime"]
    found = problems(space(stage(kernel=31, kernel_type="peripheral", k_prime=11, r_c={"int": [1, 3]})))
    assert "either k_prime or a searched r_c" in found["stages[0].k_prime"]
    found = problems(space(stage(kernel=31, kernel_type="peripheral", k_prime={"choice": [9, 11]})))
    assert "cannot be searched" in found["stages[0].k_prime"]


def test_sampler_rules():
    floaty = space(stage(partial={"float": [0.25, 1.0]}), search={"sampler": "grid"})
    found = problems(floaty)
    assert set(found) == {"search.sampler"} and "stages[0].partial" in found["search.sampler"]
    found = problems(space(train={"lr": {"float": [1e-4, 1e-2], "log": True}}, search={"sampler": "grid"}))
    assert "train.lr" in found["search.sampler"]
    sp = parse_space(space(stage(kernel={"choice": [3, 7]}, depth={"int": [1, 3]}), search={"sampler": "grid"}))
    assert sp.grid() == {"stages[0].depth": [1, 2, 3], "stages[0].kernel": [3, 7]}
    found = problems(space(search={"sampler": "cmaes", "objectives": ["accuracy", "latency"]}))
    assert set(found) == {"search.sampler"} and "single objective" in found["search.sampler"]
    sp = parse_space(space(search={"sampler": "cmaes", "objectives": ["accuracy"]}))
    assert sp.search.objectives == (Objective("accuracy", "max"),)


def test_sections_parse():
    sp = parse_space(space(
        train={"epochs": 2, "steps": 300, "lr": 1e-3, "num_classes": 2, "time_limit": 60},
        search={"sampler": "nsga2", "objectives": ["accuracy", {"name": "params"}, {"name": "erf"}],
                "trials": 5, "scheduler": "asha", "gpus_per_trial": 0.5},
        constraints={"max_params": "1.5M", "min_params": 1000, "max_flops": "1.2G", "min_flops": "300k"},
    ))
    assert sp.train.epochs == 2 and sp.train.steps == 300 and sp.train.lr == 1e-3
    assert sp.search.objectives == (Objective("accuracy", "max"), Objective("params", "min"),
                                    Objective("erf", "max"))
    assert sp.search.directions == ["maximize", "minimize", "maximize"]
    assert sp.constraints == Constraints(max_params=1_500_000, min_params=1000, max_flops=1_200_000_000,
                                         min_flops=300_000, resolution=64)
    assert sp.constraints.violations(params=2e6, flops=1e5) == [
        "params 2,000,000 > max_params 1,500,000", "flops 100,000 < min_flops 300,000"]
    assert parse_space(space(train={"resolution": 128})).constraints.resolution == 128
    assert parse_space(space(train={"resolution": 128}, constraints={"resolution": 32})).constraints.resolution == 32
    assert sp.search.to_dict()["objectives"][1] == {"name": "params", "mode": "min"}
    searched = parse_space(space(train={"lr": {"float": [1e-4, 1e-2], "log": True}}))
    assert searched.train.lr == FloatRange(1e-4, 1e-2, True) and not searched.train.is_fixed
    assert searched.train.to_dict()["lr"] == {"float": [1e-4, 1e-2], "log": True}


# ----------------------------------------------------------------------------- files
def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_yaml_syntax_error_has_line_and_column(tmp_path):
    path = write(tmp_path, "broken.yaml", "stages:\n  - depth: 2\n    width: [16\n")
    with pytest.raises(SpaceError) as err:
        load_space(path)
    (problem,) = err.value.problems
    assert problem.file == str(path) and "line" in problem.message and "column" in problem.message


def test_duplicate_yaml_key_is_an_error(tmp_path):
    path = write(tmp_path, "dup.yaml", "stages:\n  - {depth: 2, width: 16, kernel: 7}\ndrop_path: 0.1\ndrop_path: 0.2\n")
    with pytest.raises(SpaceError, match="duplicate key 'drop_path'"):
        load_space(path)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "- 1\n- 2\n", "just text\n"])
def test_empty_or_non_mapping_file(tmp_path, text):
    with pytest.raises(SpaceError):
        load_space(write(tmp_path, "e.yaml", text))


def test_exponent_floats_without_dot_are_numbers(tmp_path):
    path = write(tmp_path, "f.yaml", "layer_scale: 1e-6\nstages: [{depth: 1, width: 8, kernel: 7}]\n"
                                     "train: {lr: 2e-3}\n")
    sp = load_space(path)
    assert sp.train.lr == 0.002 and sp.fixed().stages[0].layer_scale == 1e-6


def test_file_problems_name_the_file(tmp_path):
    path = write(tmp_path, "bad.yaml", "stages: [{depth: 1, width: 8, kernel: 8}]\n")
    with pytest.raises(SpaceError) as err:
        load_space(path)
    assert [(p.file, p.path) for p in err.value.problems] == [(str(path), "stages[0].kernel")]
    assert str(path) in str(err.value)


def test_bare_name_resolution(tmp_path):
    spaces = tmp_path / "search_spaces"
    (spaces / "reference").mkdir(parents=True)
    write(spaces, "mine.yaml", "stages: [{depth: 1, width: 8, kernel: 7}]\n")
    write(spaces / "reference", "ref.yaml", "stages: [{depth: 1, width: 8, kernel: 7}]\n")
    assert resolve_space_path("mine.yaml", spaces) == spaces / "mine.yaml"
    assert resolve_space_path("mine", spaces) == spaces / "mine.yaml"
    assert resolve_space_path("MINE.yaml", spaces) == spaces / "mine.yaml"
    assert resolve_space_path("reference/ref", spaces) == spaces / "reference" / "ref.yaml"
    assert load_space("mine", spaces).name == "mine"
    with pytest.raises(SpaceError) as err:
        resolve_space_path("nope.yaml", spaces)
    (problem,) = err.value.problems
    assert problem.file == "nope.yaml"
    assert "mine.yaml" in problem.message and "reference/ref.yaml" in problem.message


def test_existing_path_wins_over_bundled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "local.yaml", "stages: [{depth: 1, width: 8, kernel: 7}]\n")
    assert load_space("local.yaml").file == "local.yaml"
    with pytest.raises(SpaceError, match="file not found"):
        load_space(tmp_path / "missing" / "x.yaml")


REPO_SPACES = Path(__file__).resolve().parents[1] / "search_spaces"
BUNDLED = bundled_spaces(REPO_SPACES)


@pytest.mark.skipif(not BUNDLED, reason="no bundled search spaces yet")
@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_spaces_validate(name):
    sp = load_space(name)
    arch = sp.sample(0) if not sp.is_fixed else sp.fixed()
    assert len(arch.stages) == len(sp.template.stages)


# ----------------------------------------------------------------------------- bounds
FIELDS = schema_fields()
SECTION_OF = {"stem": "stem", "head": "head", "sparsity": "sparsity", "train": "train", "search": "search",
              "constraints": "constraints"}


def with_value(path: str, value) -> dict:
    """A minimal space with `value` at key path `path` (a stage key goes on the first stage)."""
    section, _, key = path.partition(".")
    if key:
        return space(**{section: {key: value}})
    if path in STAGE_FIELDS:
        return space(stage(**{path: value}))
    return space(**{path: value})


def where(path: str) -> str:
    return f"stages[0].{path}" if path in STAGE_FIELDS else path


def test_every_numeric_key_has_an_upper_bound():
    unbounded = [p for p, f in FIELDS.items() if f.kind in ("int", "float", "kernel", "count") and f.high is None]
    assert not unbounded


@pytest.mark.parametrize("path", [p for p, f in FIELDS.items() if f.high is not None])
def test_a_value_past_the_upper_bound_is_a_problem_naming_the_range(path):
    field = FIELDS[path]
    too_big = int(field.high) + 2 if field.kind in ("int", "kernel", "count") else field.high + 1
    found = problems(with_value(path, too_big))
    assert where(path) in found, found
    message = found[where(path)]
    assert str(int(field.high)) in message.replace(",", "") or "1e15" in message, message


def test_the_issues_depth_of_a_billion_is_refused_before_anything_runs():
    found = problems(space(stage(depth=1_000_000_000)))
    assert found == {"stages[0].depth": "depth must be an integer >= 1 and <= 64; got 1000000000"}


@pytest.mark.parametrize("value, path", [
    pytest.param(10**5000, "stages[0].depth", id="5000-digit-depth"),  # str() of it raises: messages must not
    (float("inf"), "stages[0].mlp_ratio"),
    (float("nan"), "stages[0].mlp_ratio"),
    ({"float": [1.0, float("inf")]}, "stages[0].mlp_ratio.float[1]"),
    ({"float": [float("nan"), 2.0]}, "stages[0].mlp_ratio.float[0]"),
    ({"float": [float("-inf"), 1e-2], "log": True}, "train.lr.float[0]"),
    pytest.param({"int": [1, 10**400]}, "stages[0].depth.int[1]", id="400-digit-bound"),
])
def test_huge_and_non_finite_numbers_are_problems_not_tracebacks(value, path):
    if path.startswith("train."):
        data = space(train={"lr": value})
    else:
        data = space(stage(**{path.split(".")[1]: value}))
    found = problems(data)
    assert path in found, found
    assert len(found[path]) < 300


@pytest.mark.parametrize("value", [float("inf"), float("nan"), "1e400", 10**20, "9" * 500])
def test_constraint_counts_are_finite_and_bounded(value):
    found = problems(space(constraints={"max_params": value}))
    assert "1e15" in found["constraints.max_params"]


def test_a_network_has_a_bounded_number_of_stages():
    found = problems(space(*[stage()] * 9))
    assert "at most 8 stages" in found["stages"]


def test_many_problems_are_capped_with_a_count():
    data = {"stages": [stage()], **{f"key{i}": 1 for i in range(150)}}
    with pytest.raises(SpaceError) as err:
        parse_space(data)
    assert len(err.value.problems) == 101 and "and 50 more problems" in err.value.problems[-1].message


def test_grid_over_the_limit_is_refused_with_its_count_before_enumerating():
    sp = load_space("peleK_space.yaml")
    total, continuous = sp.size()
    assert total == 1_658_880 and continuous == 0
    data = dict(sp.raw, search={**sp.raw["search"], "sampler": "grid"})
    found = problems(data)
    assert "1,658,880 combinations" in found["search.sampler"] and "100,000" in found["search.sampler"]
    with pytest.raises(SpaceError, match="1,658,880"):
        sp.grid()
