"""A search trial is reproducible from its files: archs/*.yaml and export files carry the proxy
training it ran, `train-proxy --arch FILE` repeats it to the same accuracy, and the export's
`lknas train` hint needs no extra flag."""
from __future__ import annotations

import json

import pytest
import yaml

from lknas.cli import main
from lknas.search import load_results
from lknas.space import load_space
from tests.test_search import write_space

pytestmark = [pytest.mark.xdist_group("ray"), pytest.mark.ray]


@pytest.fixture(scope="module")
def run(local_ray, tmp_path_factory):
    from lknas.search import run_search

    root = tmp_path_factory.mktemp("repro")
    # lr 3e-3 and 12 steps: accuracies that differ between trials, so a wrong setting would show
    run_search(write_space(root / "s.yaml", steps=12, lr=3e-3, trials=3), out=root / "run", quiet=True)
    return root / "run"


def test_a_trials_file_repeats_its_accuracy_with_train_proxy(run, capsys):
    df = load_results(run)
    files = sorted((run / "archs").glob("*.yaml"))
    assert files
    text = files[0].read_text()
    assert "python -m lknas train-proxy --arch FILE --threads 1" in text
    trial = df[df["trial"] == int(files[0].name[5:9])].iloc[0]
    cfg = load_space(files[0]).train
    assert (cfg.dataset, cfg.steps, cfg.lr, cfg.seed) == ("pathfinder:easy,train=96,val=32", 12, 3e-3, 0)
    assert main(["train-proxy", "--arch", str(files[0]), "--threads", "1", "--no-latency", "--no-erf"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["accuracy"] == trial["accuracy"]  # to the last decimal: same data, seed, order, threads
    assert metrics["train_loss"] == pytest.approx(trial["train_loss"], rel=1e-6)


def test_an_export_carries_the_training_and_its_hint_runs_without_data_flag(run, capsys):
    trial = int(sorted((run / "archs").glob("*.yaml"))[0].name[5:9])
    assert main(["export", str(run), "--trial", str(trial)]) == 0
    exported = next((run / "export").glob("*.yaml"))
    text = exported.read_text()
    assert f"train with `python -m lknas train --arch {exported}`" in text  # no --data needed
    assert yaml.safe_load(text)["train"]["dataset"] == "pathfinder:easy,train=96,val=32"
    from lknas.cli import _file_dataset

    assert _file_dataset(load_space(exported)) == "pathfinder:easy,train=96,val=32"


def test_train_without_data_on_a_file_that_names_none_says_to_give_one(tmp_path, capsys):
    arch = tmp_path / "a.yaml"
    arch.write_text("stem: {type: patch}\nstages: [{depth: 1, width: 8, kernel: 3}]\n")
    assert main(["train", "--arch", str(arch), "--epochs", "1"]) == 2
    assert "names no data set (no train.dataset): give one with --data" in capsys.readouterr().err
