"""One deploy form per architecture: stripes are counted, timed, deployed and exported in the
same form, SLaK's decomposed convs unless the dense merge is measured faster for that shape."""
from __future__ import annotations

import pytest
import torch

from lknas.arch import ArchConfig, HeadSpec, KernelSpec, StageSpec, StemSpec
from lknas.measure import complexity, measure_latency
from lknas.measure.complexity import count_flops
from lknas.models import build_model, reparameterize
from lknas.ops import DeployDWConv, DeployStripeConv
from lknas.ops import stripe_form as sf
from lknas.train.checkpoint import build_from_checkpoint, load_checkpoint, save_checkpoint
from lknas.train.deploy import deploy_checkpoint

RES = 32  # stage maps 8 and 4


def stripe_arch() -> ArchConfig:
    def stage(k, width, down):
        return StageSpec(depth=1, width=width, kernel=KernelSpec(size=(k,), type="stripe", stripe_n=3, reparam=3),
                         block="convnext", mlp_ratio=2.0, downsample=down, layer_scale=1.0)
    return ArchConfig(stem=StemSpec("patch", 8), stages=(stage(13, 8, "none"), stage(7, 16, "patch")),
                      head=HeadSpec("ln"))


@pytest.fixture
def fake_timings(monkeypatch, tmp_path):
    """Dense measured faster on the 4x4 map only; decisions cached in a file of the test's own."""
    monkeypatch.setenv("LKNAS_STRIPE_FORM_CACHE", str(tmp_path / "forms.json"))
    monkeypatch.setenv("LKNAS_QUIET_DIR", str(tmp_path / "quiet"))
    monkeypatch.delenv("LKNAS_STRIPE_FORM", raising=False)
    calls = []

    def fake(c, h, w, k, n, small=0, device="cpu", dtype=torch.float32, repeats=21):
        calls.append((c, h, w, k, n, small))
        return {"decomposed": 1.0, "dense": 0.5 if h == 4 else 0.95}

    monkeypatch.setattr(sf, "measure_forms", fake)
    sf.clear_cache()
    yield calls
    sf.clear_cache()


def _deploy_kinds(model) -> dict[str, str]:
    return {name: "dense" if isinstance(m, DeployDWConv) else "decomposed"
            for name, m in model.named_modules() if isinstance(m, (DeployDWConv, DeployStripeConv))
            and ".lk" in name}


def test_the_choice_is_measured_cached_and_needs_a_clear_win(fake_timings):
    assert sf.stripe_form(16, 4, 4, 7, 3) == "dense"  # 0.5 <= MARGIN
    assert sf.stripe_form(8, 8, 8, 13, 3) == "decomposed"  # 0.95: a near tie stays decomposed
    n = len(fake_timings)
    assert n == 3  # dense had to win twice; the near tie lost at once
    sf.clear_cache()  # a new process: the decision comes from the disk cache, not a new timing
    assert sf.stripe_form(16, 4, 4, 7, 3) == "dense"
    assert len(fake_timings) == n


def test_forced_form(monkeypatch, fake_timings):
    monkeypatch.setenv("LKNAS_STRIPE_FORM", "decomposed")
    assert sf.stripe_form(16, 4, 4, 7, 3) == "decomposed"
    monkeypatch.setenv("LKNAS_STRIPE_FORM", "nonsense")
    with pytest.raises(ValueError, match="LKNAS_STRIPE_FORM"):
        sf.stripe_form(16, 4, 4, 7, 3)
    assert not fake_timings


def test_count_latency_deploy_and_export_share_one_form(fake_timings, tmp_path):
    arch = stripe_arch()
    torch.manual_seed(0)
    model = build_model(arch, num_classes=3).eval()
    deploy = reparameterize(model, resolution=RES)
    expected = {"stages.0.blocks.0.lk": "decomposed", "stages.1.blocks.0.lk": "dense"}
    assert deploy.stripe_forms == expected
    assert _deploy_kinds(deploy) == expected

    counts = complexity(model, resolution=RES)
    assert counts["stripe_forms"] == expected
    assert counts["flops"] == count_flops(deploy, RES)[0]  # FLOPs of the form that is deployed
    latency = measure_latency(model, RES, repeats=2, warmup=1, throughput_batch=None)
    assert latency["stripe_forms"] == expected

    # deploy checkpoint (lknas deploy) and train's deploy.pt format keep the form when reloaded
    ckpt = save_checkpoint(tmp_path / "train.pt", "train", arch, model, num_classes=3, in_chans=3, epoch=1,
                           optimizer={}, scheduler={}, rng=torch.get_rng_state(), history="[]", best_accuracy=0.0)
    result = deploy_checkpoint(ckpt, tmp_path / "model.pt", resolution=RES, export="export", threads=1)
    assert result["flops"] == counts["flops"]
    _, reloaded = build_from_checkpoint(load_checkpoint(tmp_path / "model.pt"))
    assert _deploy_kinds(reloaded) == expected
    x = torch.randn(2, 3, RES, RES)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), model(x), atol=1e-5, rtol=0)
    # the exported program runs the decomposed stripes of stage 0 (13 x 3 and 3 x 13 kernels)
    program = torch.export.load(result["export"])
    shapes = {tuple(t.shape[-2:]) for t in program.state_dict.values() if t.dim() == 4}
    assert {(13, 3), (3, 13)} <= shapes and (13, 13) not in shapes
    assert (7, 7) in shapes and (7, 3) not in shapes  # stage 1 merged dense


def test_without_a_resolution_stripes_stay_decomposed(fake_timings):
    deploy = reparameterize(build_model(stripe_arch(), num_classes=3))
    assert set(_deploy_kinds(deploy).values()) == {"decomposed"}
    assert not fake_timings
