"""`run_search` refuses keyword arguments it does not take, as a fixed signature would, instead
of dropping them; every override the CLI passes is one it takes."""
from __future__ import annotations

import pytest

from lknas.errors import LknasError
from lknas.search import runner


def test_a_misspelt_override_is_refused_by_name_before_anything_is_written(tmp_path, monkeypatch):
    out = tmp_path / "run"

    def no_space(*args, **kwargs):  # reached only if the names were not checked first: fail fast, start no search
        raise AssertionError("run_search read the space before checking its keyword arguments")

    monkeypatch.setattr(runner, "load_space", no_space)
    with pytest.raises(TypeError) as err:
        runner.run_search("peleK_space.yaml", out=out, quiet=True, trails=5, lr=1e-3)
    message = str(err.value)
    assert "'trails' (did you mean 'trials'?)" in message
    assert "'lr'" in message and "trials" in message.split("it takes", 1)[1]
    assert not out.exists()


def test_every_override_the_cli_passes_is_taken(monkeypatch, tmp_path):
    seen = {}

    def fake_run_search(space=None, *, resume=None, out=None, quiet=False, stream=None, **overrides):
        runner._check_override_names(overrides)  # the real function's first step
        seen.update(overrides)
        raise LknasError("stopped by the test")  # before a search would start

    monkeypatch.setattr(runner, "run_search", fake_run_search)
    from lknas.cli import main

    assert main(["search", "--space", "peleK_space.yaml", "--out", str(tmp_path / "run"), "--trials", "2"]) == 2
    assert seen["trials"] == 2 and {"objectives", "from_", "trial_seeds", "dataset"} <= set(seen)
