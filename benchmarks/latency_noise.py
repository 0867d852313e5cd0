"""How well can this machine rank architectures by latency at all, with nothing else running?

Builds the deploy forms of `--archs` distinct architectures sampled from a space within its
constraints (`lknas.study.fidelity.sample_archs`: the ones a search trains), then times every
one of them in `--rounds` rounds (one after another within a round, rounds one after another),
each timing as the search does: `--repeats` batch-1 runs alternating with the fixed reference net
(`lknas.measure.reference`), one thread. For each estimator it reports how well one round ranks
the architectures like another (Spearman, mean and worst over all pairs of rounds) and each
architecture's CV across rounds:

- `median_ratio`: the median of the per-pair model / reference ratios (what lknas reports);
- `q25_ratio`: their lower quartile; `min_ratio`: fastest model run / fastest reference run;
- `raw_median`, `raw_min`: the model's own times, without the reference.

The round-vs-round Spearman of `median_ratio` is the ceiling for any in-search latency's
agreement with a quiet re-measurement (benchmarks/latency_repeatability.py).

    python benchmarks/latency_noise.py            # 10 architectures x 5 rounds, ~3 minutes
    python benchmarks/latency_noise.py --archs 4 --rounds 2 --repeats 10 --no-write   # smoke run

Writes results/benchmarks/latency_noise.json and .md. Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _timing  # noqa: E402

from lknas.measure.reference import paired_samples, reference_net  # noqa: E402
from lknas.models import build_model, reparameterize  # noqa: E402
from lknas.space import load_space  # noqa: E402
from lknas.study.fidelity import sample_archs  # noqa: E402
from lknas.study.rank_stats import spearman  # noqa: E402

ESTIMATORS = ("median_ratio", "q25_ratio", "min_ratio", "raw_median", "raw_min")


def estimates(model_ms: list[float], ref_ms: list[float]) -> dict[str, float]:
    ratios = sorted(a / b for a, b in zip(model_ms, ref_ms))
    return {"median_ratio": statistics.median(ratios), "q25_ratio": ratios[len(ratios) // 4],
            "min_ratio": min(model_ms) / min(ref_ms), "raw_median": 1e3 * statistics.median(model_ms),
            "raw_min": 1e3 * min(model_ms)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="peleK_space.yaml")
    ap.add_argument("--archs", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=100, help="paired runs per timing (the search's)")
    ap.add_argument("--write", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    space = load_space(args.space)
    res = space.train.resolution
    archs = sample_archs(space, args.archs, num_classes=2, in_chans=1)
    nets = [reparameterize(build_model(a, num_classes=2, in_chans=1), resolution=res, in_chans=1).eval()
            for a in archs]
    ref, dev = reference_net(1).eval(), torch.device("cpu")
    x, rx = torch.randn(1, 1, res, res), torch.randn(1, 1, res, res)
    rounds: list[list[dict[str, float]]] = []
    for r in range(args.rounds):
        row = [estimates(*paired_samples(net, ref, x, rx, dev, 5, args.repeats)) for net in nets]
        rounds.append(row)
        print(f"round {r}: raw median ms " + " ".join(f"{e['raw_median']:.2f}" for e in row), flush=True)
    summary = {}
    for name in ESTIMATORS:
        values = [[e[name] for e in row] for row in rounds]
        rhos = [spearman(a, b) for a, b in itertools.combinations(values, 2)]
        cvs = [statistics.stdev(col) / statistics.mean(col) for col in zip(*values)]
        summary[name] = {"spearman_mean": statistics.mean(rhos), "spearman_min": min(rhos),
                         "cv_median": statistics.median(cvs), "cv_max": max(cvs)}
    lines = ["# Latency ranking noise of this machine, nothing else running", "",
             f"`python benchmarks/latency_noise.py {' '.join(sys.argv[1:])}`: {args.archs} architectures of "
             f"{args.space} (deploy form, batch 1 at {res} px, 1 thread), {args.rounds} rounds of "
             f"{args.repeats} paired runs each.", "",
             "| estimator | round-vs-round Spearman, mean | worst | CV across rounds, median | worst |",
             "|---|---|---|---|---|"]
    for name, s in summary.items():
        lines.append(f"| {name} | {s['spearman_mean']:.3f} | {s['spearman_min']:.3f} | "
                     f"{100 * s['cv_median']:.1f}% | {100 * s['cv_max']:.1f}% |")
    lines += ["", "Raw median ms per round (one column per architecture):", ""]
    lines += [f"- round {r}: " + ", ".join(f"{e['raw_median']:.2f}" for e in row) for r, row in enumerate(rounds)]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        from lknas.io import write_json_atomic, write_text_atomic

        out = _timing.RESULTS
        write_json_atomic(out / "latency_noise.json", {
            "space": args.space, "archs": [a.summary() for a in archs], "rounds": rounds, "summary": summary,
            "repeats": args.repeats, "environment": _timing.environment(),
            "command": "python benchmarks/latency_noise.py " + " ".join(sys.argv[1:])})
        write_text_atomic(out / "latency_noise.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
