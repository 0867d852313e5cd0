"""The selector's rule never picks an algorithm measured slower than stock PyTorch on the shapes a
peleK_space search trains, at 2 threads and at 1 (a search trial's setting), at batch 64 and 32
(results/benchmarks/dwconv_rule-*.json: every algorithm timed, forward + backward, per input
layout, by benchmarks/dwconv_rule.py; the rule asked with the thread count each file was timed at)."""
import json
import math
from pathlib import Path

import pytest

from lknas.ops.dwconv_select import SMALL_KERNEL_TAPS, STOCK, rule, workspace_limit

RESULTS = Path(__file__).resolve().parents[1] / "results" / "benchmarks"
FILES = ("dwconv_rule-cpu2t.json", "dwconv_rule-cpu2t-b32.json", "dwconv_rule-cpu1t.json",
         "dwconv_rule-cpu1t-b32.json")
CASES = [(name, json.loads((RESULTS / name).read_text())) for name in FILES]
ROWS = [(name, data["environment"]["threads"], row) for name, data in CASES for row in data["rows"]]
NOISE = 1.05  # interleaved medians on the 2-core machine agree to a few %...
SMALL_NOISE = 1.15  # ...but calls under 5 ms vary by ~10% run to run ((32, 8 px, 7x7): 0.86x and 0.99x)


@pytest.mark.parametrize("name,threads,row", ROWS,
                         ids=lambda v: "{1}ch-{2}px-{4}x{5}".format(*v["shape"]) + "-" + v["layout"]
                         if isinstance(v, dict) else str(v))
def test_rule_is_never_slower_than_stock_as_measured(name, threads, row):
    b, c, h, w, kh, kw = row["shape"]
    chosen = rule(b, c, h, w, kh, kw, 4, True, False, workspace_limit(), row["layout"], threads)
    ms = row["ms"]
    stock = min(ms[a] for a in STOCK if a in ms)
    if kh * kw <= SMALL_KERNEL_TAPS:  # F.conv2d on the input as given, by design
        assert chosen == "direct"
    tolerance = NOISE if stock >= 5.0 else SMALL_NOISE
    assert ms[chosen] <= tolerance * stock, \
        f"{name}: rule picks {chosen} ({ms[chosen]:.1f} ms), stock {stock:.1f} ms: {ms}"


def test_the_measurements_cover_both_layouts_the_small_maps_and_one_and_two_threads():
    for name, data in CASES:
        rows = data["rows"]
        assert {r["layout"] for r in rows} == {"nchw", "channels_last"}, name
        assert {r["shape"][2] for r in rows} >= {2, 4, 8, 16}, name
    settings = {(data["environment"]["threads"], data["batch"]) for _, data in CASES}
    assert settings == {(1, 32), (1, 64), (2, 32), (2, 64)}


@pytest.mark.parametrize("name,data", CASES, ids=[name for name, _ in CASES])
def test_rule_is_close_to_the_measured_best_at_each_thread_count(name, data):
    """Geometric mean of (rule's time / fastest algorithm's) over the file's cases: 1.05-1.08 measured
    with the thread-aware estimates; 1.23 at 1 thread, batch 32 when the rule assumed 2 threads."""
    threads = data["environment"]["threads"]
    ratios = []
    for row in data["rows"]:
        b, c, h, w, kh, kw = row["shape"]
        chosen = rule(b, c, h, w, kh, kw, 4, True, False, workspace_limit(), row["layout"], threads)
        ratios.append(row["ms"][chosen] / min(row["ms"].values()))
    geomean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    assert geomean <= 1.10, f"{name}: the rule is {geomean:.2f}x short of the measured best"
