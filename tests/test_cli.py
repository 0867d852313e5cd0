"""The command line: help texts, exit codes, and no tracebacks for user errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lknas.cli import _join_file_arg, build_parser, main

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lknas", *args], capture_output=True, text=True, cwd=REPO, timeout=300
    )


def _subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


def test_help_lists_every_subcommand():
    result = run_cli("--help")
    assert result.returncode == 0
    for name in _subcommands():
        assert name in result.stdout
    assert {"validate", "sample", "count"} <= set(_subcommands())


@pytest.mark.parametrize("name", _subcommands())
def test_each_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    assert "usage:" in capsys.readouterr().out


# each command that reads one space or architecture file, and the name its flag gives it
FILE_COMMANDS = {"validate": "space", "sample": "space", "search": "space", "fidelity": "space", "count": "arch",
                 "latency": "arch", "train": "arch", "train-proxy": "arch", "erf": "arch"}
OPTIONAL_FILE = {"search", "fidelity"}  # --resume RUN / --out RUN instead


def _parsed(argv: list[str]):
    args = build_parser().parse_args(argv)
    _join_file_arg(args)
    return args


@pytest.mark.parametrize("command,name", FILE_COMMANDS.items())
def test_the_input_file_is_taken_as_argument_or_as_flag(command, name):
    assert getattr(_parsed([command, "x.yaml"]), name) == "x.yaml"
    assert getattr(_parsed([command, f"--{name}", "x.yaml"]), name) == "x.yaml"
    assert getattr(_parsed([command, "x.yaml", f"--{name}", "x.yaml"]), name) == "x.yaml"  # the same file twice


@pytest.mark.parametrize("command,name", FILE_COMMANDS.items())
def test_two_different_input_files_or_none_is_a_usage_error(command, name, capsys):
    with pytest.raises(SystemExit) as exc:
        _parsed([command, "x.yaml", f"--{name}", "y.yaml"])
    assert exc.value.code == 2
    assert "given twice (x.yaml and" in capsys.readouterr().err
    if command in OPTIONAL_FILE:
        assert getattr(_parsed([command]), name) is None
        return
    with pytest.raises(SystemExit) as exc:
        _parsed([command])
    assert exc.value.code == 2
    assert f"required: {name.upper()} (or --{name} {name.upper()})" in capsys.readouterr().err


def test_validate_takes_the_space_as_search_does(capsys):
    assert main(["validate", "--space", "peleK_space.yaml"]) == 0
    assert "dimensions" in capsys.readouterr().out


def test_validate_bundled_space_by_bare_name():
    result = run_cli("validate", "peleK_space.yaml")
    assert result.returncode == 0, result.stderr
    assert "dimensions" in result.stdout


def test_invalid_space_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "stages:\n"
        "  - {depth: 2, width: 32, kernel: 50}\n"
        "  - {depth: 1, width: 64, kernel: {choice: [7, 8]}, kernal_type: dense}\n"
    )
    result = run_cli("validate", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "stages[0].kernel" in result.stderr
    assert "stages[1].kernel.choice[1]" in result.stderr
    assert "stages[1].kernal_type" in result.stderr
    assert str(bad) in result.stderr


def test_missing_file_exits_2(tmp_path):
    result = run_cli("validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "nope.yaml" in result.stderr


def test_sample_prints_a_loadable_config(tmp_path):
    result = run_cli("sample", "peleK_space.yaml", "--seed", "3")
    assert result.returncode == 0, result.stderr
    data = yaml.safe_load(result.stdout)
    assert len(data["stages"]) == 4
    out = tmp_path / "arch.yaml"
    out.write_text(result.stdout)
    again = run_cli("sample", str(out), "--seed", "99")
    assert again.returncode == 0, again.stderr
    assert yaml.safe_load(again.stdout) == data


def test_count_prints_params_and_flops():
    result = run_cli("count", "search_spaces/reference/convnext_t.yaml", "--json")
    assert result.returncode == 0, result.stderr
    data = yaml.safe_load(result.stdout)
    assert data["params"] == 28_589_128
    assert abs(data["flops"] / 4.47e9 - 1) < 0.03


def test_train_proxy_refuses_a_misspelt_data_set_before_announcing_it(tmp_path, capsys, monkeypatch):
    arch = tmp_path / "arch.yaml"
    assert main(["sample", "peleK_space.yaml", "--out", str(arch)]) == 0
    monkeypatch.setattr("lknas.measure.measure_trial", lambda *a, **k: pytest.fail("trained on a misspelt data set"))
    assert main(["train-proxy", str(arch), "--data", "pointr", "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'pointer'?" in err and "training " not in err


def test_train_on_the_files_own_data_uses_the_resolution_the_search_measured(tmp_path):
    from lknas.cli import _train_resolution
    from lknas.space import load_space

    arch = tmp_path / "found.yaml"
    arch.write_text("stem: {type: patch}\nstages: [{depth: 1, width: 8, kernel: 13}]\n"
                    "train: {dataset: 'shapes:train=64,val=16', resolution: 32}\n")
    space = load_space(arch)
    cases = {(): 32, ("--resolution", "48"): 48, ("--data", "imagefolder:/data"): 224}
    for flags, expected in cases.items():
        args = _parsed(["train", str(arch), *flags])
        assert _train_resolution(args, space, data_from_file=args.dataset is None) == expected, flags
