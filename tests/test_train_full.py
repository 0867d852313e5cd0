"""The full recipe: checkpoints every epoch, exact resume, deploy checkpoint, clear checkpoint errors."""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch

from lknas.train.checkpoint import CheckpointError, load_checkpoint
from lknas.train.deploy import checkpoint_resolution, deploy_checkpoint, load_deploy_model
from lknas.train.full import TrainRecipe, train_full
from tests.helpers import ToyData, small_arch

# no mixup: fast and simple; the mixup/cutmix stream's resume has its own test below
RECIPE = TrainRecipe(epochs=3, batch_size=32, lr=3e-3, warmup_epochs=1, mixup=0, cutmix=0, auto_augment=None,
                     resolution=32, ema_decay=0.9, drop_path=0.1)
ARCH = small_arch(kernel=7, reparam=3, density=0.5)


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    return out, train_full(ARCH, ToyData(), RECIPE, out, progress=False)


def test_writes_checkpoint_metrics_and_deploy(trained):
    out, summary = trained
    assert [r["epoch"] for r in rows(out / "metrics.csv")] == ["1", "2", "3"]
    assert summary["deploy_matches"] and summary["accuracy"] > 70
    saved = json.loads((out / "summary.json").read_text())
    assert saved["lr"] == pytest.approx(3e-3) and saved["warmup_epochs"] == 1  # what ran, never null
    ckpt = load_checkpoint(out / "checkpoint-last.pt", kind="train")
    assert ckpt["epoch"] == 3 and ckpt["sparsity"] is not None and ckpt["ema"] is not None
    # torch.load(weights_only=True) reads both files
    for name in ("checkpoint-last.pt", "deploy.pt"):
        torch.load(out / name, weights_only=True)


def test_resume_continues_exactly(trained, tmp_path):
    out, _ = trained
    _train_epochs(RECIPE, tmp_path, stop_after=2)  # a job killed after its second epoch
    assert len(rows(tmp_path / "metrics.csv")) == 2
    train_full(ARCH, ToyData(), RECIPE, tmp_path, resume=True, progress=False)
    keys = ("epoch", "lr", "train_loss", "accuracy", "val_loss", "ema_accuracy")
    assert [[r[k] for k in keys] for r in rows(tmp_path / "metrics.csv")] == \
        [[r[k] for k in keys] for r in rows(out / "metrics.csv")]


def test_resume_with_the_default_mixup_and_cutmix_is_exact(tmp_path, one_thread_fresh_cache):
    """Default recipe (mixup 0.8 / cutmix 1.0) on a shuffled, flip-augmented loader: 3 epochs in
    one go, against a run killed in its second epoch (one checkpoint written) and resumed, with
    numpy's global RNG disturbed in between."""
    import numpy as np

    from lknas.data import build_data

    recipe = TrainRecipe(epochs=3, batch_size=16, lr=3e-3, warmup_epochs=1, resolution=32, ema_decay=0.9,
                         drop_path=0.1)
    assert recipe.mixup > 0 and recipe.cutmix > 0

    def data():
        return build_data("shapes:classes=2,train=64,val=32", resolution=32, batch_size=16, augment=True)

    np.random.seed(1)
    train_full(ARCH, data(), recipe, tmp_path / "whole", progress=False)
    np.random.seed(2)
    _train_epochs(recipe, tmp_path / "killed", stop_after=2, data=data())  # before its 2nd checkpoint
    np.random.seed(3)
    train_full(ARCH, data(), recipe, tmp_path / "killed", resume=True, progress=False)
    keys = ("epoch", "lr", "train_loss", "accuracy", "val_loss", "ema_accuracy")
    whole, resumed = rows(tmp_path / "whole" / "metrics.csv"), rows(tmp_path / "killed" / "metrics.csv")
    assert len(whole) == 3
    assert [[r[k] for k in keys] for r in resumed] == [[r[k] for k in keys] for r in whole]


def _train_epochs(recipe: TrainRecipe, out, stop_after: int, data=None) -> None:
    """Run `recipe` but stop after `stop_after` epochs, as a killed job would."""
    import lknas.train.full as full

    class Stop(Exception):
        pass

    original = full._Metrics.add

    def add(self, row):
        original(self, row)
        if row["epoch"] == stop_after:
            raise Stop

    full._Metrics.add = add
    try:
        with pytest.raises(Stop):
            train_full(ARCH, data if data is not None else ToyData(), recipe, out, progress=False)
    finally:
        full._Metrics.add = original


def test_deploy_checkpoint_equals_the_trained_model(trained, tmp_path):
    out, _ = trained
    ckpt = load_checkpoint(out / "checkpoint-last.pt")
    from lknas.train.checkpoint import build_from_checkpoint

    _, model = build_from_checkpoint(ckpt)
    deploy = load_deploy_model(out / "deploy.pt")
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), deploy(x), atol=1e-5)
    result = deploy_checkpoint(out / "checkpoint-last.pt", tmp_path / "model.pt", resolution=32, export="export")
    assert result["flops"] > 0 and result["latency_ms"] > 0
    program = torch.export.load(result["export"])
    with torch.no_grad():
        assert torch.allclose(program.module()(x), deploy(x), atol=1e-5)
    assert torch.allclose(load_deploy_model(tmp_path / "model.pt")(x), deploy(x), atol=1e-6)


def test_deploy_defaults_to_the_resolution_the_checkpoint_was_trained_at(trained, tmp_path):
    out, _ = trained
    for name in ("checkpoint-last.pt", "deploy.pt"):  # the recipe's, and the deploy file's own
        result = deploy_checkpoint(out / name, tmp_path / f"from-{name}", measure=False)
        assert result["resolution"] == RECIPE.resolution != 224, name
        assert checkpoint_resolution(load_checkpoint(tmp_path / f"from-{name}")) == RECIPE.resolution
    assert checkpoint_resolution({"recipe": "not json"}) == checkpoint_resolution({}) == 224  # older files
    assert deploy_checkpoint(out / "deploy.pt", tmp_path / "m.pt", resolution=64, measure=False)["resolution"] == 64


def test_truncated_and_foreign_checkpoints_get_clear_errors(trained, tmp_path):
    out, _ = trained
    data = (out / "deploy.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an lknas checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="'deploy' checkpoint where a 'train' one"):
        load_checkpoint(out / "deploy.pt", kind="train")
    proc = subprocess.run([sys.executable, "-m", "lknas", "deploy", str(tmp_path / "cut.pt"), "--out",
                           str(tmp_path / "m.pt")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "truncated" in proc.stderr and "Traceback" not in proc.stderr


def test_a_warmup_longer_than_the_run_is_clamped_with_a_warning(tmp_path, capsys):
    recipe = dataclasses.replace(RECIPE, epochs=1, warmup_epochs=20, drop_path=None)
    assert recipe.effective_warmup == 0 and dataclasses.replace(recipe, epochs=3).effective_warmup == 2
    summary = train_full(ARCH, ToyData(), recipe, tmp_path / "run", progress=True)
    assert "warning: a warm-up of 20 epochs does not fit 1 epochs: using 0" in capsys.readouterr().err
    assert summary["warmup_epochs"] == 0
    default_lr = dataclasses.replace(recipe, lr=None, batch_size=256)
    assert default_lr.peak_lr == pytest.approx(4e-3 * 256 / 4096)


def test_default_loader_workers_follow_the_cores():
    assert TrainRecipe().workers == max(1, min(4, os.cpu_count() or 1))


def test_snip_init_is_scored_on_a_training_batch(tmp_path, recwarn):
    """SLaK's SNIP scores one training batch; the full trainer hands it over (no ERK fallback)."""
    arch = dataclasses.replace(ARCH, sparsity=dataclasses.replace(ARCH.sparsity, init="snip"))
    recipe = dataclasses.replace(RECIPE, epochs=1, warmup_epochs=0)
    train_full(arch, ToyData(), recipe, tmp_path, progress=False)
    assert not [w for w in recwarn if "SNIP" in str(w.message)]
