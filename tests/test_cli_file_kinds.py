"""The right message for the wrong kind of file: a space where one architecture is expected (an
error), and one architecture given to `search` (a warning: every trial would train the same net)."""
from __future__ import annotations

from tests.test_cli import run_cli


def test_a_space_given_where_an_architecture_is_expected_says_to_sample_one(tmp_path):
    for args in (["count", "peleK_space.yaml"], ["train-proxy", "--arch", "peleK_space.yaml", "--steps", "1"]):
        result = run_cli(*args)
        assert result.returncode == 2, result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, result.stderr  # one line, not one per searched dimension
        assert "is a search space (16 searched dimensions: kernel_type" in lines[0]
        assert "python -m lknas sample" in lines[0] and "Traceback" not in result.stderr


def test_one_architecture_given_to_search_is_said_to_be_one(tmp_path, capsys):
    from lknas.cli import main

    arch = tmp_path / "arch.yaml"
    assert run_cli("sample", "peleK_space.yaml", "--seed", "0", "--out", str(arch)).returncode == 0
    # a missing data set stops it before Ray starts; the warning comes first
    code = main(["search", "--space", str(arch), "--data", f"imagefolder:{tmp_path / 'nope'}",
                 "--out", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert code == 2
    assert "is one architecture (nothing in it is searched): every trial trains the same network" in out
    assert f"python -m lknas train-proxy --arch {arch}" in out
