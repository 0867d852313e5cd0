import numpy as np
import pytest
import torch

from lknas.measure import area_ratios, effective_receptive_field, measure_latency, save_heatmap
from lknas.models import build_model
from lknas.space import TrainConfig
from tests.helpers import ToyData, small_arch


def test_latency_reports_its_conditions_and_restores_threads():
    before = torch.get_num_threads()
    result = measure_latency(small_arch(), 32, threads=1, repeats=3, warmup=1, throughput_batch=4)
    assert torch.get_num_threads() == before
    assert result["latency_ms"] > 0 and result["throughput"] > 0
    assert (result["device"], result["threads"], result["batch"], result["throughput_batch"]) == ("cpu", 1, 1, 4)


def test_latency_uses_the_deploy_form_and_leaves_the_model_alone():
    model = build_model(small_arch(kernel=7, reparam=3), num_classes=2)
    model.train()
    measure_latency(model, 32, repeats=2, warmup=1, throughput_batch=None)
    assert model.training  # a reparameterized copy was timed
    assert any(type(m).__name__ == "DenseLK" for m in model.modules())


def test_area_ratios_of_known_maps():
    point = np.zeros((33, 33))
    point[16, 16] = 1.0
    assert area_ratios(point)[0.99] == pytest.approx(1 / 33**2)
    flat = np.ones((33, 33))
    ratios = area_ratios(flat)
    assert ratios[0.99] == pytest.approx(1.0)
    # smallest centred square with >= 20% of a uniform map: side 15 (225/1089 = 20.7%)
    assert ratios[0.2] == pytest.approx(15**2 / 33**2)
    assert list(ratios) == [0.2, 0.3, 0.5, 0.99]


def test_a_larger_kernel_has_a_larger_erf():
    from lknas.measure.erf import erf_resolution

    images = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ratios = {}
    for k in (3, 15):
        torch.manual_seed(0)
        # no layer scale: at init a 1e-6 scale would silence every block and leave only the stem
        model = build_model(small_arch(kernel=k, depths=(2, 2), layer_scale=None), num_classes=2)
        assert erf_resolution(model, 32) == 64  # the last map (stride 8) gets 8 cells a side
        ratios[k] = effective_receptive_field(model, images, resolution=64).ratios
    assert ratios[15][0.5] >= ratios[3][0.5]
    assert ratios[15][0.99] > 2 * ratios[3][0.99]


def test_erf_heatmap_is_normalized_and_saved(tmp_path):
    model = build_model(small_arch(), num_classes=2)
    result = effective_receptive_field(model, ToyData().val, max_images=16)
    assert result.images == 16 and result.heatmap.shape == (32, 32)
    assert result.heatmap.max() == pytest.approx(1.0) and result.heatmap.min() >= 0
    assert set(result.metrics()) == {"erf", "erf_20", "erf_30", "erf_50", "erf_99"}
    out = save_heatmap(result.heatmap, tmp_path / "erf.png")
    from PIL import Image

    img = np.asarray(Image.open(out))
    assert img.shape == (128, 128, 3) and img.std() > 0


def test_measure_trial_has_every_objective_column():
    from lknas.measure import measure_trial

    m = measure_trial(small_arch(), TrainConfig(epochs=1, batch_size=32, resolution=32), ToyData(), erf_map=True)
    for key in ("status", "accuracy", "val_loss", "params", "flops", "latency_ms", "throughput", "erf",
                "erf_99", "train_time", "latency_threads"):
        assert key in m, key
    assert m["status"] == "ok" and m["flops"] > 0 and 0 < m["erf"] <= 1
    heat = np.asarray(m["erf_map"])  # the trained network's heatmap, for the report
    assert heat.shape == (m["erf_resolution"],) * 2 and heat.max() == pytest.approx(1.0) and heat.min() >= 0


def test_compact_heatmap_block_averages_to_at_most_64_a_side():
    from lknas.measure.erf import compact_heatmap

    heat = np.zeros((256, 256))
    heat[124:132, 124:132] = 1.0  # an 8 x 8 hot centre
    small = compact_heatmap(heat)
    assert small.shape == (64, 64) and small.dtype == np.float32
    assert small.max() == pytest.approx(1.0) and small.sum() == pytest.approx(4.0)  # 64 cells / 16 per block
    odd = compact_heatmap(np.ones((100, 70)))  # factor 2, padded with zeros at the far edges
    assert odd.shape == (50, 35) and odd.max() == pytest.approx(1.0)
    assert compact_heatmap(np.eye(32)).shape == (32, 32)  # small maps are kept as they are


def test_erf_is_centred_on_the_image_when_the_last_map_is_even():
    model = build_model(small_arch(), num_classes=2)  # 32 px -> a 4 x 4 last map
    heat = effective_receptive_field(model, torch.randn(4, 3, 32, 32)).heatmap
    assert heat.shape == (32, 32)
    quadrants = [heat[:16, :16].sum(), heat[:16, 16:].sum(), heat[16:, :16].sum(), heat[16:, 16:].sum()]
    assert min(quadrants) > 0.5 * max(quadrants)  # not all in one quadrant
