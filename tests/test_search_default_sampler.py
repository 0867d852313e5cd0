"""The default sampler of peleK_space is the best one measured by benchmarks/search_efficiency.py
(issue: make the default the best measured option), so the two cannot drift apart."""
import json
from pathlib import Path

from lknas.space import load_space

ROOT = Path(__file__).resolve().parents[1]


def test_pelek_default_sampler_is_the_best_measured():
    result = json.loads((ROOT / "results" / "benchmarks" / "search_efficiency.json").read_text())
    assert result["space"] == "peleK_space" and result["seeds"] >= 5
    plain = {m: s["final_hv_mean"] for m, s in result["summary"].items() if "+" not in m}  # samplers, fifo
    best = max(plain, key=plain.get)
    search = load_space("peleK_space.yaml").search
    assert search.sampler == best and search.scheduler == "fifo"
