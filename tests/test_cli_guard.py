"""The CLI's error boundary: documented flag ranges, clear exit-2 errors for bad inputs, a short
exit-1 message for bugs, and nothing left behind by a refused command. Everything runs in-process
(`lknas.cli.main`), nothing trains beyond two steps and no Ray starts."""
from __future__ import annotations

import argparse
import json
import struct
import zlib

import pytest
import torch
from PIL import Image

from lknas import cli, cli_args
from lknas.cli import build_parser, main
from lknas.data import DataError, build_data
from lknas.search.samplers import SAMPLER_NAMES
from lknas.space.configs import SAMPLERS
from tests.helpers import small_arch, write_fake_run, write_tiny_space


def run(capsys, *argv: str) -> tuple[int, str]:
    """(exit code, stderr) of `python -m lknas ARGV`, in-process."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def numeric_flags() -> list[tuple[str, argparse.Action]]:
    return [(name, action) for name, p in commands().items() for action in p._actions
            if isinstance(action.type, cli_args.Number)]


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("LKNAS_CACHE", str(tmp_path / "cache"))
    return write_tiny_space(tmp_path / "tiny.yaml")


# ----------------------------------------------------------------------------- flag ranges
def test_every_numeric_flag_has_a_range_shown_in_its_help():
    for name, p in commands().items():
        for action in p._actions:
            assert action.type not in (int, float), f"{name} {action.option_strings}: a plain {action.type.__name__}"
    flags = numeric_flags()
    assert len(flags) > 40
    for name, action in flags:
        assert action.type.describe() in action.help, (name, action.option_strings)


@pytest.mark.parametrize("argv", [
    ["count", "X", "--resolution", "0"], ["count", "X", "--num-classes", "-1"], ["latency", "--arch", "X", "--repeats", "0"],
    ["train-proxy", "--arch", "X", "--epochs", "0"], ["train-proxy", "--arch", "X", "--lr", "nan"],
    ["train-proxy", "--arch", "X", "--lr", "inf"], ["train", "--arch", "X", "--data", "d", "--batch-size", "0"],
    ["search", "--trials", "0"], ["search", "--trial-seeds", "0"], ["search", "--steps", "0"],
    ["search", "--time-budget", "-1"],
    ["search", "--cpus-per-trial", "0"], ["search", "--gpus-per-trial", "1.5"], ["search", "--seed", "-1"],
    ["train", "--arch", "X", "--data", "d", "--drop-path", "1"], ["latency", "--arch", "X", "--device", "tpu"],
    ["erf", "--arch", "X", "--epochs", "2.5"],
])
def test_out_of_range_values_are_refused_when_parsed(capsys, argv):
    code, err = run(capsys, *argv)
    flag = next(a for a in argv if a.startswith("--") and a not in ("--arch", "--data"))
    assert code == 2 and f"argument {flag}" in err and "must be" in err and "Traceback" not in err


def test_every_number_type_refuses_nan_inf_and_values_outside_its_range():
    for name, action in numeric_flags():
        number = action.type
        for bad in ("nan", "inf", "-inf", "x"):
            with pytest.raises(argparse.ArgumentTypeError):
                number(bad)
        if number.lo is not None:
            with pytest.raises(argparse.ArgumentTypeError):
                number(str(number.lo) if number.lo_open else str(number.lo - 1))
            assert number(str(number.lo + (1 if number.lo_open else 0))) >= number.lo
        if number.hi is not None:
            with pytest.raises(argparse.ArgumentTypeError):
                number(str(number.hi + 1))


def test_out_paths_refuse_a_directory_for_a_file_and_a_file_for_a_directory(tmp_path, capsys, tiny):
    (tmp_path / "f").write_text("x")
    code, err = run(capsys, "sample", str(tiny), "--out", str(tmp_path))
    assert code == 2 and "is a directory" in err
    code, err = run(capsys, "search", "--space", str(tiny), "--out", str(tmp_path / "f"))
    assert code == 2 and "is an existing file" in err


def test_samplers_and_objectives_come_from_the_space_registry():
    search = commands()["search"]
    sampler = next(a for a in search._actions if a.dest == "sampler")
    assert tuple(sampler.choices) == SAMPLERS and SAMPLER_NAMES is SAMPLERS


# ----------------------------------------------------------------------------- values the parser cannot judge
def test_duplicate_objectives_are_refused(capsys, tiny, tmp_path):
    code, err = run(capsys, "search", "--space", str(tiny), "--objectives", "accuracy,latency,accuracy",
                    "--out", str(tmp_path / "run"))
    assert code == 2 and "'accuracy' is given twice" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(capsys, tiny):
    code, err = run(capsys, "latency", "--arch", str(tiny), "--device", "cuda", "--resolution", "32")
    assert code == 2 and "--device cuda: CUDA is not available" in err and "use --device cpu" in err


def test_a_resolution_below_the_architectures_stride_is_refused(capsys, tmp_path):
    arch = tmp_path / "four.yaml"
    arch.write_text("stem: {type: patch}\nblock: convnext\nkernel_type: dense\nstages:\n"
                    + "".join(f"  - {{depth: 1, width: {8 * 2 ** i}, kernel: 3}}\n" for i in range(4)))
    code, err = run(capsys, "count", str(arch), "--resolution", "16")
    assert code == 2 and "total stride 32" in err and "--resolution 32 or more" in err


def test_resume_refuses_the_flags_it_would_ignore(capsys, tmp_path):
    code, err = run(capsys, "search", "--resume", str(write_fake_run(tmp_path / "run")), "--epochs", "3")
    assert code == 2 and "cannot take --epochs 3" in err
    code, err = run(capsys, "search", "--resume", str(write_fake_run(tmp_path / "run")), "--trial-seeds", "2")
    assert code == 2 and "cannot take --trial-seeds 2" in err  # its trials' accuracies would not be alike


def test_a_one_class_image_folder_is_refused(tmp_path):
    for i in range(3):
        (tmp_path / "only").mkdir(exist_ok=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "only" / f"{i}.png")
    with pytest.raises(DataError, match="needs at least 2 classes"):
        build_data(f"imagefolder:{tmp_path}", resolution=32, batch_size=1)


def _bomb_png(side: int = 30000) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b""))


@pytest.mark.parametrize("workers", [0, 1])
def test_a_decompression_bomb_in_an_image_folder_is_a_data_error_naming_the_file(tmp_path, workers):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.new("RGB", (8, 8)).save(tmp_path / name / f"{i}.png")
    (tmp_path / "a" / "bomb.png").write_bytes(_bomb_png())
    bundle = build_data(f"imagefolder:{tmp_path}", resolution=32, batch_size=1, workers=workers)  # reads every image
    with pytest.raises(DataError) as err:
        list(bundle.train)
        list(bundle.val)
    assert "bomb.png is too large to decode safely" in str(err.value)
    assert "Traceback" not in str(err.value)  # a worker's traceback is not passed on


# ----------------------------------------------------------------------------- bad files
def test_a_corrupt_run_json_is_a_clear_error(capsys, tmp_path):
    run_dir = write_fake_run(tmp_path / "run")
    (run_dir / "run.json").write_text('{"search": {"trials": ')
    for argv in (["export", str(run_dir), "--pareto"], ["report", str(run_dir), "--no-png"],
                 ["search", "--resume", str(run_dir)]):
        code, err = run(capsys, *argv)
        assert code == 2 and "run.json: cannot read the run's settings" in err, argv


def test_a_corrupt_study_db_is_a_clear_error(capsys, tmp_path):
    run_dir = write_fake_run(tmp_path / "run")
    (run_dir / "study.db").write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 8)
    code, err = run(capsys, "report", str(run_dir), "--no-png", "--no-erf")
    assert code == 2 and "study.db: the Optuna study is not a readable SQLite database" in err


def test_a_checkpoint_missing_keys_is_a_clear_error(capsys, tmp_path):
    from lknas.train.checkpoint import FORMAT

    ckpt = tmp_path / "ckpt.pt"
    data = {"format": FORMAT, "version": 1, "kind": "train", "arch_yaml": small_arch().to_yaml(), "num_classes": 2,
            "in_chans": 3, "model": {}}
    torch.save(data, ckpt)
    code, err = run(capsys, "deploy", str(ckpt), "--out", str(tmp_path / "model.pt"))
    assert code == 2 and "not a complete 'train' checkpoint" in err and "optimizer is missing" in err


# ----------------------------------------------------------------------------- the boundary
def test_an_unexpected_error_is_one_short_line_and_debug_shows_the_traceback(capsys, monkeypatch, tiny):
    def boom(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(cli, "_cmd_validate", boom)
    code, err = run(capsys, "validate", str(tiny))
    assert code == 1 and "Traceback" not in err
    assert err.strip() == ("error: unexpected ZeroDivisionError: division by zero "
                           "(run with --debug for the traceback)")
    for argv in (["--debug", "validate", str(tiny)], ["validate", str(tiny), "--debug"]):
        code, err = run(capsys, *argv)
        assert code == 1 and "Traceback (most recent call last)" in err and "ZeroDivisionError" in err


def test_a_refused_search_leaves_no_run_directory(capsys, tiny, tmp_path):
    out = tmp_path / "new" / "run"
    code, err = run(capsys, "search", "--space", str(tiny), "--data", f"imagefolder:{tmp_path / 'nope'}",
                    "--out", str(out))
    assert code == 2 and "does not exist" in err
    assert not (tmp_path / "new").exists()


def test_a_curriculum_of_another_task_is_refused_before_any_trial(capsys, tiny, tmp_path):
    text = tiny.read_text().replace("warmup_epochs: 0,", "warmup_epochs: 0, curriculum: 'shapes',")
    tiny.write_text(text)
    out = tmp_path / "run"
    code, err = run(capsys, "search", "--space", str(tiny), "--out", str(out))
    assert code == 2 and "train.curriculum 'shapes' has num_classes" in err, err
    assert not out.exists()


def test_a_failed_trial_exits_2_with_its_status(capsys, tmp_path):
    # the largest lr and weight decay a space allows: AdamW's decay makes the loss nan within 8 steps
    arch = write_tiny_space(tmp_path / "diverging.yaml", steps=8, lr=10, weight_decay=10)
    try:
        code = main(["train-proxy", "--arch", str(arch), "--no-latency", "--no-erf"])
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    assert code == 2 and "the trial ended with status diverged" in captured.err
    assert json.loads(captured.out)["status"] == "diverged"  # the metrics still go to stdout


def test_search_and_train_flags_have_the_space_files_ranges():
    """A flag and the space-file key it overrides accept the same values (both come from lknas.limits)."""
    from lknas.space.configs import SEARCH_FIELDS, TRAIN_FIELDS
    from lknas.space.fields import Invalid

    search = {a.dest: a.type for a in commands()["search"]._actions if isinstance(a.type, cli_args.Number)}
    pairs = [(search[k], SEARCH_FIELDS[k]) for k in ("trials", "seed", "cpus_per_trial", "gpus_per_trial",
                                                      "max_concurrent", "time_budget", "grace_period",
                                                      "reduction_factor")]
    pairs += [(search[k], TRAIN_FIELDS[k]) for k in ("epochs", "steps", "batch_size", "subset")]
    proxy = {a.dest: a.type for a in commands()["train-proxy"]._actions if isinstance(a.type, cli_args.Number)}
    pairs += [(proxy[k], TRAIN_FIELDS[k]) for k in ("lr", "resolution", "time_limit", "seed")]
    for number, field in pairs:
        for value in (number.lo, number.hi):
            inside = number.kind(value + (1 if number.lo_open and value == number.lo else 0))
            number(str(inside))
            field.check(inside)
        with pytest.raises(argparse.ArgumentTypeError):
            number(str(number.kind(number.hi * 2)))
        with pytest.raises(Invalid):
            field.check(number.kind(number.hi * 2))
