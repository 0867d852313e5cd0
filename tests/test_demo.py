"""`python -m lknas demo`: the tour runs end to end (here with 2 trials of 2 steps) and says where
everything is."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lknas.cli import main
from lknas.space import load_space

REPO = Path(__file__).resolve().parents[1]


def test_demo_space_is_a_valid_bundled_space():
    from lknas.demo import DEMO_SPACE

    space = load_space(DEMO_SPACE)
    assert not space.is_fixed and not space.warnings()


def test_the_tour_runs_end_to_end_and_lists_its_outputs(tmp_path):
    out = tmp_path / "tour"
    result = subprocess.run([sys.executable, "-m", "lknas", "demo", "--out", str(out), "--trials", "2", "--steps", "2",
                             "--no-png"], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = result.stdout
    for step in ("1/4 search", "2/4 report", "3/4 export", "4/4 re-train"):
        assert step in text
    assert "$ python -m lknas search --space demo_space.yaml" in text  # each command is shown before it runs
    assert (out / "search" / "trials.csv").is_file() and (out / "search" / "report.html").is_file()
    (exported,) = (out / "export").glob("*.yaml")
    where = text.split("where everything is:")[1]
    for path in (out / "search", out / "search" / "report.html", exported):
        assert str(path) in where
    assert "re-trained accuracy" in text and "the search measured" in text


def test_a_second_tour_into_the_same_directory_is_refused(tmp_path, capsys):
    (tmp_path / "search").mkdir()
    assert main(["demo", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path} already holds a demo; give another --out"]
