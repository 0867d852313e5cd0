"""Would the proxy rank better by its loss than by its accuracy? Recomputed from shipped trials.

Early-training loss is a common low-fidelity score (the validation loss is smoother than a
thresholded accuracy; the mean training loss over a run is the "training speed" estimate of Ru et
al., NeurIPS 2021). Every `lknas fidelity` trial records `accuracy`, `val_loss` and `train_loss`
(the mean over the last epoch: with the default proxy's one 800-step epoch, over the whole run),
so each measured proxy can be re-scored without training: for each score, its Kendall tau
against the target's mean accuracy and its ICC (seed noise share) over the architectures.

    python benchmarks/fidelity_scores.py            # every results/benchmarks/proxy_fidelity_*_trials.jsonl

Writes results/benchmarks/fidelity_scores.json and .md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCORES = (("accuracy", "accuracy", 1.0), ("-val_loss", "val_loss", -1.0), ("-train_loss", "train_loss", -1.0))
MIN_ARCHS = 12


def score_run(path: Path) -> dict | None:
    """{run, archs, score -> {tau, icc}} for one trials file; None when it is not a fidelity run
    with at least MIN_ARCHS architectures measured at both budgets."""
    import pandas as pd

    from lknas.study.rank_stats import icc_oneway, kendall_tau

    df = pd.DataFrame([json.loads(line) for line in path.read_text().splitlines() if line.strip()])
    if "budget" not in df.columns or not set(c for _, c, _ in SCORES) <= set(df.columns):
        return None
    ok = df[df["status"] == "ok"]
    proxy, target = ok[ok["budget"] == "proxy"], ok[ok["budget"] == "target"]
    points = sorted(set(proxy["point"]) & set(target["point"]))
    if len(points) < MIN_ARCHS:
        return None
    target_mean = [float(target[target["point"] == p]["accuracy"].astype(float).mean()) for p in points]
    out = {"run": path.name.removeprefix("proxy_fidelity_").removesuffix("_trials.jsonl"), "archs": len(points)}
    for name, column, sign in SCORES:
        groups = [(sign * proxy[proxy["point"] == p][column].astype(float)).tolist() for p in points]
        means = [sum(g) / len(g) for g in groups]
        out[name] = {"tau": kendall_tau(means, target_mean), "icc": icc_oneway(groups)["icc"]}
    return out


def table(rows: list[dict]) -> str:
    head = " | ".join(f"{name}: tau / ICC" for name, _, _ in SCORES)
    lines = ["# The proxy scored by accuracy or by loss", "",
             "`python benchmarks/fidelity_scores.py`: each shipped `lknas fidelity` run's proxy trials re-scored; "
             "Kendall tau against the target's mean accuracy over the architectures, and the proxy score's ICC "
             "(architecture variance over architecture + seed variance). Item 5 asks tau >= 0.6 and ICC >= 0.75.", "",
             f"| run | archs | {head} |", "|---|---|" + "---|" * len(SCORES)]
    for r in rows:
        cells = " | ".join(f"{r[name]['tau']:.2f} / {r[name]['icc']:.2f}" for name, _, _ in SCORES)
        lines.append(f"| {r['run']} | {r['archs']} | {cells} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    files = args.files or sorted((REPO / "results" / "benchmarks").glob("proxy_fidelity_*_trials.jsonl"))
    rows = [r for r in (score_run(f) for f in files) if r is not None]
    text = table(rows)
    print(text)
    if not args.no_write:
        import _timing

        _timing.write("fidelity_scores", {"runs": rows}, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
