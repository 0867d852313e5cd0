"""The selector's rule never picks an algorithm measured slower than stock PyTorch on the shapes a
peleK_space search trains (results/benchmarks/dwconv_rule-cpu2t.json: every algorithm timed,
forward + backward, per input layout, by benchmarks/dwconv_rule.py)."""
import json
from pathlib import Path

import pytest

from lknas.ops.dwconv_select import STOCK, rule, workspace_limit

RESULT = Path(__file__).resolve().parents[1] / "results" / "benchmarks" / "dwconv_rule-cpu2t.json"
ROWS = json.loads(RESULT.read_text())["rows"]
NOISE = 1.05  # interleaved medians on the 2-core machine agree to a few %


@pytest.mark.parametrize("row", ROWS, ids=lambda r: "{1}ch-{2}px-{4}x{5}".format(*r["shape"]) + "-" + r["layout"])
def test_rule_is_never_slower_than_stock_as_measured(row):
    b, c, h, w, kh, kw = row["shape"]
    chosen = rule(b, c, h, w, kh, kw, 4, True, False, workspace_limit(), row["layout"])
    ms = row["ms"]
    stock = min(ms[a] for a in STOCK if a in ms)
    assert ms[chosen] <= NOISE * stock, f"rule picks {chosen} ({ms[chosen]:.1f} ms), stock {stock:.1f} ms: {ms}"


def test_the_measurement_covers_both_layouts_and_the_small_maps():
    assert {r["layout"] for r in ROWS} == {"nchw", "channels_last"}
    assert {r["shape"][2] for r in ROWS} >= {2, 4, 8, 16}
