"""Found architectures in the training framework: export, timm entrypoints, timm's API."""
from __future__ import annotations

import pytest
import timm
import torch

import lknas
from lknas.errors import LknasError
from lknas.models import build_model
from lknas.models.registry import model_name_for
from lknas.search.export import export_archs
from lknas.search.store import RunStore
from lknas.space.loader import bundled_dir
from tests.helpers import small_arch


@pytest.fixture()
def run_dir(tmp_path):
    """A results set as a search writes it: three trials, two on the Pareto front, one failed."""
    store = RunStore(tmp_path / "run")
    store.root.mkdir()
    store.write_settings({"space_name": "tiny", "search": {"objectives": [
        {"name": "accuracy", "mode": "max"}, {"name": "latency", "mode": "min"}]}})
    rows = [(0, 7, 80.0, 2.0), (1, 3, 70.0, 1.0), (2, 9, 60.0, 3.0)]  # trial 2 is dominated
    for trial, k, acc, lat in rows:
        arch = small_arch(kernel=k)
        store.append({"trial": trial, "status": "ok", "hash": arch.hash(), "summary": arch.summary(),
                      "arch_yaml": arch.to_yaml(), "accuracy": acc, "latency_ms": lat, "params": 1000 + k})
    store.append({"trial": 3, "status": "error", "error": "RuntimeError: boom"})
    return store.root


def test_export_pareto_writes_loadable_yamls_with_provenance(run_dir, tmp_path):
    files = export_archs(run_dir, tmp_path / "exp", pareto=True)
    assert sorted(f.name for f in files) == ["tiny_trial0.yaml", "tiny_trial1.yaml"]
    space = lknas.load_space(files[0])
    assert space.raw["provenance"]["trial"] == 0
    assert space.raw["provenance"]["metrics"]["accuracy"] == 80.0
    assert lknas.load_arch(files[0]).hash() == small_arch(kernel=7).hash()


def test_export_records_the_runs_of_a_trial_trained_with_several_seeds(tmp_path):
    store = RunStore(tmp_path / "run")
    store.root.mkdir()
    store.write_settings({"space_name": "tiny", "search": {"objectives": [{"name": "accuracy", "mode": "max"}]}})
    arch = small_arch(kernel=5)
    store.append({"trial": 0, "status": "ok", "hash": arch.hash(), "summary": arch.summary(),
                  "arch_yaml": arch.to_yaml(), "accuracy": 80.0, "accuracy_seeds": [79.0, 81.0],
                  "train_seeds": [0, 1], "latency_ms": 1.0})
    (f,) = export_archs(store.root, tmp_path / "exp", trial=0)
    metrics = lknas.load_space(f).raw["provenance"]["metrics"]
    assert metrics["accuracy"] == 80.0 and metrics["accuracy_seeds"] == [79.0, 81.0]
    assert metrics["train_seeds"] == [0, 1]


def test_export_one_trial_and_the_best(run_dir, tmp_path):
    (f,) = export_archs(run_dir, tmp_path, trial=2)
    assert lknas.load_arch(f).hash() == small_arch(kernel=9).hash()
    (f,) = export_archs(run_dir, tmp_path, best="latency")
    assert f.name == "tiny_trial1.yaml"
    with pytest.raises(LknasError, match="no trial 42"):
        export_archs(run_dir, tmp_path, trial=42)
    with pytest.raises(LknasError, match="no architecture recorded"):
        export_archs(run_dir, tmp_path, trial=3)


REFERENCE_FILES = sorted((bundled_dir() / "reference").glob("*.yaml"))  # every bundled reference architecture


def test_the_reference_architectures_are_found():
    assert len(REFERENCE_FILES) >= 6  # RepLKNet-31B, SLaK-T, PeLK-T, UniRepLKNet-T, ConvNeXt-T, ConvNeXt V2-T


@pytest.mark.parametrize("name", [model_name_for(f) for f in REFERENCE_FILES])
def test_reference_archs_are_timm_models(name):
    assert name in timm.list_models("lknas_*")
    with torch.device("meta"):
        model = timm.create_model(name, num_classes=10, drop_path_rate=0.1)
    assert model.num_classes == 10 and model.get_classifier().out_features == 10
    assert model.pretrained_cfg["architecture"] == name


def test_exported_archs_register_and_give_multiscale_features(run_dir, tmp_path):
    files = export_archs(run_dir, tmp_path / "exp", pareto=True)
    names = lknas.register_archs(tmp_path / "exp")
    assert names == ["lknas_tiny_trial0", "lknas_tiny_trial1"]
    model = timm.create_model("lknas_tiny_trial0", num_classes=5)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 5)
    feats = timm.create_model("lknas_tiny_trial0", features_only=True)
    outs = feats(torch.zeros(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == feats.feature_info.channels() == [8, 16]
    assert [64 // o.shape[-1] for o in outs] == feats.feature_info.reduction() == [4, 8]
    assert lknas.load_arch(files[0]).hash() == model.arch.hash()


def test_arch_path_environment_variable(run_dir, tmp_path):
    import subprocess
    import sys

    export_archs(run_dir, tmp_path / "exp", pareto=True)
    code = "import lknas, timm; print(timm.create_model('lknas_tiny_trial1', num_classes=3).num_classes)"
    out = subprocess.run([sys.executable, "-c", code], env={**__import__("os").environ,
                         "LKNAS_ARCH_PATH": str(tmp_path / "exp")}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"


def test_pretrained_weights_are_refused_clearly():
    with pytest.raises(LknasError, match="no pretrained weights"):
        timm.create_model("lknas_convnext_t", pretrained=True)


def test_a_few_steps_through_timms_own_factories(run_dir, tmp_path):
    from timm.data import create_transform, resolve_data_config
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2

    export_archs(run_dir, tmp_path / "exp", pareto=True)
    lknas.register_archs(tmp_path / "exp")
    torch.manual_seed(0)
    model = timm.create_model("lknas_tiny_trial0", num_classes=2, drop_path_rate=0.1)
    model.set_grad_checkpointing(True)
    cfg = resolve_data_config({"input_size": (3, 32, 32)}, model=model)
    transform = create_transform(**cfg, is_training=True)
    from PIL import Image

    images = [Image.fromarray((torch.rand(40, 40, 3) * 255).byte().numpy()) for _ in range(8)]
    x = torch.stack([transform(img) for img in images])
    y = torch.tensor([0, 1] * 4)
    opt = create_optimizer_v2(model, opt="adamw", lr=1e-3, weight_decay=0.05)
    sched, _ = create_scheduler_v2(opt, sched="cosine", num_epochs=3, warmup_epochs=1)
    before = [p.detach().clone() for p in model.parameters()]
    losses = []
    for epoch in range(3):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step(epoch + 1)
        losses.append(float(loss))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    groups = model.group_matcher()
    assert set(groups) == {"stem", "blocks"}


@pytest.mark.parametrize("name", timm.list_models("lknas_*"))
def test_timm_and_lknas_build_the_same_pretrained_cfg(name):
    """One helper for both ways a model is made: the config timm's create_model attaches names the
    real first conv and describes the model as built (its classes and channels), as LKNet's own does."""
    with torch.device("meta"):
        model = timm.create_model(name, num_classes=10, in_chans=1)
        own = build_model(model.arch, num_classes=10, in_chans=1)
    cfg = model.pretrained_cfg
    assert {k: cfg.get(k) for k in own.pretrained_cfg if k != "architecture"} == {
        k: v for k, v in own.pretrained_cfg.items() if k != "architecture"}  # timm adds its defaults for other keys
    assert cfg["architecture"] == name and cfg["num_classes"] == 10 and cfg["input_size"] == (1, 224, 224)
    first = dict(model.named_modules())[cfg["first_conv"]]
    assert isinstance(first, torch.nn.Conv2d) and first.in_channels == 1
    data = timm.data.resolve_data_config(model=model)
    assert data["input_size"] == (1, 224, 224) and len(data["mean"]) == len(data["std"]) == 1
    reduction = model.feature_info[-1]["reduction"]
    assert cfg["pool_size"] == (224 // reduction, 224 // reduction)


def test_an_exported_trial_says_what_it_was_measured_on_and_count_repeats_its_numbers(tmp_path, capsys):
    """provenance.measured_with (input size, classes, channels of the trial's model): with the flags the
    note names, `lknas count` gives the trial's params and FLOPs exactly."""
    from lknas.cli import main
    from lknas.measure.trial import measure_static

    store = RunStore(tmp_path / "run")
    store.root.mkdir()
    store.write_settings({"space_name": "tiny", "search": {"objectives": [{"name": "accuracy", "mode": "max"}]}})
    arch = small_arch(kernel=7)
    counts = measure_static(arch, 32, num_classes=8, in_chans=3)
    store.append({"trial": 0, "status": "ok", "hash": arch.hash(), "summary": arch.summary(),
                  "arch_yaml": arch.to_yaml(), "accuracy": 50.0, "latency_ms": 1.0, "train": {"resolution": 32},
                  "num_classes": 8, "in_chans": 3, **counts})
    (f,) = export_archs(store.root, tmp_path / "exp", trial=0)
    assert lknas.load_space(f).raw["provenance"]["measured_with"] == {"resolution": 32, "num_classes": 8,
                                                                       "in_chans": 3}
    assert main(["count", str(f), "--json"]) == 0
    note = capsys.readouterr().err
    assert "add --resolution 32 --num-classes 8 to repeat" in note
    assert main(["count", str(f), "--resolution", "32", "--num-classes", "8", "--json"]) == 0
    import json

    again = json.loads(capsys.readouterr().out)
    assert (again["params"], again["flops"]) == (counts["params"], counts["flops"])
    assert main(["latency", str(f), "--repeats", "2", "--throughput-batch", "0"]) == 0
    assert "add --resolution 32 --num-classes 8 to repeat" in capsys.readouterr().err
