"""Hostile space files: each is one clear problem (SpaceError, exit code 2), never a traceback, a
hang or exhausted memory: non-UTF-8 bytes, huge files and integers, deep nesting, alias bombs,
cycles."""
from __future__ import annotations

import time

import pytest

from lknas.cli import main
from lknas.errors import SpaceError
from lknas.limits import MAX_FILE_BYTES, MAX_NESTING
from lknas.space import load_space, parse_space

GOOD = "stages: [{depth: 1, width: 8, kernel: 7}]\n"


def refused(tmp_path, content: str | bytes) -> str:
    """The one problem `load_space` reports for a file with `content`."""
    path = tmp_path / "hostile.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    start = time.perf_counter()
    with pytest.raises(SpaceError) as err:
        load_space(path)
    assert time.perf_counter() - start < 20  # generous: what matters is that it ends
    (problem,) = err.value.problems
    assert problem.file == str(path)
    return f"{problem.path}: {problem.message}"


def test_non_utf8_bytes(tmp_path):
    message = refused(tmp_path, GOOD.encode() + b"description: caf\xe9\n")
    assert "not UTF-8" in message and "line 2" in message


def test_a_file_over_the_size_limit_is_not_parsed(tmp_path):
    message = refused(tmp_path, GOOD + "# " + "x" * MAX_FILE_BYTES + "\n")
    assert "larger than 256 kB" in message


def test_a_5000_digit_integer(tmp_path):
    message = refused(tmp_path, "stages: [{depth: " + "9" * 5000 + ", width: 8, kernel: 7}]\n")
    assert "5000 digits" in message and "line 1" in message


def test_an_impossible_date(tmp_path):
    assert "YAML value error" in refused(tmp_path, GOOD + "description: 2024-13-45\n")


def test_nesting_deeper_than_the_parser_can_go(tmp_path):
    message = refused(tmp_path, GOOD + "provenance: {a: " + "[" * 5000 + "]" * 5000 + "}\n")
    assert "nest" in message


def test_nesting_deeper_than_the_limit(tmp_path):
    depth = MAX_NESTING + 5
    message = refused(tmp_path, GOOD + "provenance: {a: " + "[" * depth + "]" * depth + "}\n")
    assert message.startswith("provenance.a") and f"more than {MAX_NESTING} levels" in message


def test_an_alias_bomb_is_measured_not_expanded(tmp_path):
    lines = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]  # 10^10 values
    text = "provenance:\n" + "".join(f"  {line}\n" for line in lines)
    text += "stages: [{depth: 1, width: 8, kernel: {choice: *a9}}]\n"  # validation would compare them all
    assert "more than 1,000,000 values" in refused(tmp_path, text)


def test_a_value_that_contains_itself(tmp_path):
    assert "contains itself" in refused(tmp_path, GOOD + "provenance: &loop {again: *loop}\n")


def test_the_python_api_gets_the_same_checks():
    loop: dict = {}
    loop["again"] = loop
    with pytest.raises(SpaceError, match="contains itself"):
        parse_space({"stages": [{"depth": 1, "width": 8, "kernel": 7}], "provenance": loop})


def test_the_cli_reports_them_with_exit_code_2(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"\xff\xfe" + GOOD.encode())
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "not UTF-8" in err and "Traceback" not in err
