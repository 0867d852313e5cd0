"""Property-based tests of the CLI's error boundary (hypothesis): whatever the flags or the files,
a command ends with exit code 0 or 2, never 1, and prints no traceback.

Everything runs in-process through `lknas.cli.main`. Nothing trains and Ray never starts: the
commands that would train get inputs that fail validation first, and `init_ray` is replaced by a
stand-in that refuses (exit 2), so a resumed search whose settings pass every check stops there.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lknas import cli_args
from lknas.cli import build_parser, main
from lknas.errors import LknasError
from tests.helpers import small_arch, write_fake_run, write_tiny_space

# a broken trials.jsonl is read with a RunLogWarning per skipped line: expected here
pytestmark = pytest.mark.filterwarnings("ignore::lknas.search.store.RunLogWarning")

PROPERTY = settings(max_examples=40, deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
FEW = settings(PROPERTY, max_examples=15)

# flag values: numbers of every size and kind as text, the strings that trip number parsers, junk
NUMBERS = st.one_of(
    st.integers(-10**6, 10**6).map(str), st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "-nan", "inf", "-inf", "1e999", "-1e-999", "0x10", "1_000", "", " ", "\u0661\u0662",
                     "\u00bd", "-0", "0.0", "1.5", "True", "None", "9" * 5000, "--", "-"]),
    st.text(max_size=12),
)
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)


def run(capsys, argv: list[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def assert_clean(code: int, err: str, argv: list[str]) -> None:
    assert code in (0, 2), (code, argv, err[-2000:])
    assert "Traceback" not in err, (argv, err[-2000:])
    assert "error: unexpected" not in err, (argv, err[-2000:])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny space, a finished-looking run, a real checkpoint: the valid inputs to break."""
    from lknas.models import build_model
    from lknas.train.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("props")
    arch = small_arch()
    ckpt = save_checkpoint(root / "good.pt", "deploy", arch, build_model(arch, num_classes=2), num_classes=2,
                           in_chans=3)
    return {"root": root, "tiny": write_tiny_space(root / "tiny.yaml"), "run": write_fake_run(root / "run"),
            "ckpt": ckpt}


@pytest.fixture(autouse=True)
def no_ray(monkeypatch, tmp_path_factory):
    """Ray never starts here: the stand-in refuses as an unreachable cluster would."""
    def refuse(*args, **kwargs):
        raise LknasError("test stand-in: Ray is not started by the property tests")

    monkeypatch.setattr("lknas.search.cluster.init_ray", refuse)
    monkeypatch.setenv("LKNAS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def numeric_flags() -> dict[str, list[str]]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {name: [a.option_strings[0] for a in p._actions if isinstance(a.type, cli_args.Number) and a.option_strings]
            for name, p in sub.choices.items()}


FLAGS = numeric_flags()
# each command's required inputs, pointing at nothing: a command whose flags all parse stops at them
MISSING = "/nonexistent/lknas-property-test"
DEMO_DONE = Path(tempfile.mkdtemp(prefix="lknas-props-demo-"))  # holds a tour: `demo --out` it is refused
(DEMO_DONE / "search").mkdir()
BASE = {
    "validate": ["validate", MISSING], "sample": ["sample", MISSING], "count": ["count", MISSING],
    "search": ["search", "--space", MISSING], "export": ["export", MISSING, "--pareto"],
    "train": ["train", "--arch", MISSING, "--data", "pathfinder"], "deploy": ["deploy", MISSING, "--out", MISSING + ".pt"],
    "scale": ["scale", "--experiment", MISSING], "report": ["report", MISSING], "train-proxy": ["train-proxy", "--arch", MISSING],
    "latency": ["latency", "--arch", MISSING], "erf": ["erf", "--arch", MISSING],
    "fidelity": ["fidelity", "--space", MISSING], "demo": ["demo", "--out", str(DEMO_DONE)],
}


def test_every_command_has_a_base_here():
    assert set(BASE) == set(FLAGS)


@PROPERTY
@given(data=st.data())
def test_any_numeric_flag_values_exit_0_or_2_without_a_traceback(capsys, data):
    command = data.draw(st.sampled_from(sorted(FLAGS)))
    flags = data.draw(st.lists(st.sampled_from(FLAGS[command]), min_size=1, max_size=4, unique=True)) if FLAGS[command] else []
    argv = list(BASE[command])
    for flag in flags:
        argv += [flag, data.draw(NUMBERS)]
    assert_clean(*run(capsys, argv), argv)


@PROPERTY
@given(text=NUMBERS, index=st.integers(0, 10**6))
def test_a_number_flag_accepts_only_finite_values_in_its_range(text, index):
    types = sorted({type_ for name, flags in FLAGS.items() for type_ in _types(name)}, key=repr)
    number = types[index % len(types)]
    try:
        value = number(text)
    except argparse.ArgumentTypeError:
        return
    assert isinstance(value, number.kind) and math.isfinite(value)
    assert number.lo is None or (value > number.lo if number.lo_open else value >= number.lo)
    assert number.hi is None or (value < number.hi if number.hi_open else value <= number.hi)


def _types(command: str) -> list[cli_args.Number]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return [a.type for a in sub.choices[command]._actions if isinstance(a.type, cli_args.Number)]


@FEW
@given(resolution=NUMBERS, classes=NUMBERS)
def test_count_with_any_resolution_and_classes(capsys, files, resolution, classes):
    argv = ["count", str(files["tiny"]), "--resolution", resolution, "--num-classes", classes, "--json"]
    assert_clean(*run(capsys, argv), argv)


@FEW
@given(seed=NUMBERS, out=st.sampled_from(["file", "dir", "under_file", "new/deep/x.yaml", None]))
def test_sample_with_any_seed_and_out(capsys, files, seed, out):
    root = files["root"]
    (root / "a_file").write_text("x")
    target = {"file": root / "a_file", "dir": root, "under_file": root / "a_file" / "x.yaml"}.get(out, out and root / out)
    argv = ["sample", str(files["tiny"]), "--seed", seed] + (["--out", str(target)] if target else [])
    assert_clean(*run(capsys, argv), argv)


# ----------------------------------------------------------------------------- generated bad files
SPACE_KEYS = ["name", "stem", "block", "stages", "kernel_type", "kernel", "depth", "width", "train", "search",
              "constraints", "sparsity", "head", "mlp_ratio", "reparam", "drop_path", "layer_scale", "choice", "int",
              "float", "epochs", "lr", "trials", "objectives", "sampler", "resolution"]
YAML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**9, 10**9) | st.floats() | st.text(max_size=10)
    | st.sampled_from(SPACE_KEYS),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(SPACE_KEYS) | st.text(max_size=6),
                                                                inner, max_size=5),
    max_leaves=20)


@PROPERTY
@given(space=st.dictionaries(st.sampled_from(SPACE_KEYS) | st.text(max_size=8), YAML_VALUES, max_size=8))
def test_validate_and_sample_any_junk_space(capsys, tmp_path, space):
    path = tmp_path / "junk.yaml"
    path.write_text(yaml.safe_dump(space, allow_unicode=True))
    for argv in (["validate", str(path)], ["sample", str(path), "--seed", "3"]):
        assert_clean(*run(capsys, argv), argv)


@FEW
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_validate_any_bytes(capsys, tmp_path, raw):
    path = tmp_path / "bytes.yaml"
    path.write_bytes(raw)
    assert_clean(*run(capsys, ["validate", str(path)]), ["validate", raw])


def _fresh_run(files, tmp_path) -> Path:
    run_dir = tmp_path / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(files["run"], run_dir)
    return run_dir


@PROPERTY
@given(settings_=JSON | st.fixed_dictionaries({"search": JSON}) | st.fixed_dictionaries(
    {"search": st.fixed_dictionaries({"trials": JSON, "objectives": JSON}), "train_overrides": JSON,
     "space_name": JSON, "address": JSON}))
def test_any_run_json_exits_0_or_2(capsys, files, tmp_path, settings_):
    run_dir = _fresh_run(files, tmp_path)
    (run_dir / "run.json").write_text(json.dumps(settings_))
    for argv in (["export", str(run_dir), "--pareto", "--out", str(tmp_path / "export")],
                 ["search", "--resume", str(run_dir), "--quiet"]):
        assert_clean(*run(capsys, argv), argv)


@FEW
@given(cut=st.floats(0, 1), junk=st.binary(max_size=64))
def test_a_truncated_run_json_or_trial_log_exits_0_or_2(capsys, files, tmp_path, cut, junk):
    run_dir = _fresh_run(files, tmp_path)
    for name in ("run.json", "trials.jsonl"):
        data = (run_dir / name).read_bytes()
        (run_dir / name).write_bytes(data[: int(len(data) * cut)] + junk)
        argv = ["export", str(run_dir), "--pareto", "--out", str(tmp_path / "export")]
        assert_clean(*run(capsys, argv), argv)
        (run_dir / name).write_bytes(data)


@FEW
@given(raw=st.binary(max_size=2000), header=st.booleans())
def test_any_study_db_exits_0_or_2(capsys, files, tmp_path, raw, header):
    run_dir = _fresh_run(files, tmp_path)
    (run_dir / "study.db").write_bytes((b"SQLite format 3\x00" if header else b"") + raw)
    for argv in (["report", str(run_dir), "--no-png", "--no-erf"],
                 ["search", "--resume", str(run_dir), "--trials", "9", "--quiet"]):
        assert_clean(*run(capsys, argv), argv)


CHECKPOINT_KEYS = ["format", "version", "kind", "arch_yaml", "num_classes", "in_chans", "model", "epoch", "optimizer",
                   "scheduler", "rng", "history", "best_accuracy"]


@PROPERTY
@given(data=st.data())
def test_any_checkpoint_exits_0_or_2(capsys, files, tmp_path, data):
    from lknas.train.checkpoint import FORMAT

    good = files["ckpt"].read_bytes()
    kind = data.draw(st.sampled_from(["truncated", "bytes", "dict", "altered"]))
    path = tmp_path / "ckpt.pt"
    if kind == "truncated":
        path.write_bytes(good[: data.draw(st.integers(0, len(good) - 1))])
    elif kind == "bytes":
        path.write_bytes(data.draw(st.binary(max_size=500)))
    else:
        loaded = torch.load(files["ckpt"], weights_only=True) if kind == "altered" else {"format": FORMAT}
        keys = data.draw(st.lists(st.sampled_from(CHECKPOINT_KEYS), max_size=5, unique=True))
        for key in keys:
            loaded[key] = data.draw(JSON | st.sampled_from([torch.zeros(2), {"stem.0.weight": torch.ones(1)}, "train",
                                                          "deploy", FORMAT]))
        for key in data.draw(st.lists(st.sampled_from(CHECKPOINT_KEYS), max_size=3, unique=True)):
            loaded.pop(key, None)
        torch.save(loaded, path)
    argv = ["deploy", str(path), "--out", str(tmp_path / "model.pt"), "--resolution", "32", "--threads", "1"]
    assert_clean(*run(capsys, argv), argv)


def test_the_stand_in_keeps_ray_away(capsys, files, tmp_path):
    """The resume properties rely on it: a run with trials to go stops where Ray would start."""
    run_dir = _fresh_run(files, tmp_path)
    code, err = run(capsys, ["search", "--resume", str(run_dir), "--trials", "9", "--quiet"])
    assert code == 2 and "Ray is not started by the property tests" in err
