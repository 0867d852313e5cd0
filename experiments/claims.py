"""The papers' claims (issue 16) read from the committed studies in results/studies/NAME/: per
point mean +- std over seeds, each claim's contrast against the seed noise, and a verdict
(`lknas.study.claims`: reproduced / not reproduced at 2 standard errors, else inconclusive).
Writes results/studies/NAME/claim.md and prints it.

    python experiments/claims.py shortcut         # one study; or: all
    python -m lknas scale --experiment experiments/shortcut.yaml --out results/studies/shortcut   # its data
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from lknas.arch import ArchConfig
from lknas.io import write_text_atomic
from lknas.study.claims import contrast, point_stats, seed_sd, verdict

ROOT = Path(__file__).resolve().parents[1]
STUDIES = ROOT / "results" / "studies"


def _diff(a: tuple, b: tuple) -> dict[tuple, float]:
    return {a: 1.0, b: -1.0}


def _interaction(hi: tuple[tuple, tuple], lo: tuple[tuple, tuple]) -> dict[tuple, float]:
    """(hi[0] - hi[1]) - (lo[0] - lo[1])."""
    return {hi[0]: 1.0, hi[1]: -1.0, lo[0]: -1.0, lo[1]: 1.0}


# name -> (title, metric, [(contrast text, weights(kmin, kmax), claimed sign or 0 for no claim)])
CLAIMS = {
    "shortcut": (
        "(d) Shortcuts are essential for large kernels (RepLKNet: without the identity shortcut, "
        "MobileNet V2 loses 3.1 points at 3x3 and 18.6 at 13x13)", "accuracy",
        [("cost of removing the shortcut at the largest kernel",
          lambda lo, hi: _diff(("with_shortcut", hi), ("no_shortcut", hi)), 1),
         ("cost at the largest kernel minus cost at the smallest (the claim)",
          lambda lo, hi: _interaction((("with_shortcut", hi), ("no_shortcut", hi)),
                                      (("with_shortcut", lo), ("no_shortcut", lo))), 1)]),
    "reparam_branch": (
        "(b) A parallel small-kernel (3x3) reparam branch helps large kernels, and more as the kernel "
        "grows (RepLKNet)", "accuracy",
        [("gain of the branch at the largest kernel", lambda lo, hi: _diff(("branch_3x3", hi), ("no_branch", hi)), 1),
         ("gain at the largest kernel minus gain at the smallest (helps more as it grows)",
          lambda lo, hi: _interaction((("branch_3x3", hi), ("no_branch", hi)), (("branch_3x3", lo), ("no_branch", lo))),
          1)]),
    "erf_kernel": (
        "(e) The effective receptive field grows with the kernel (RepLKNet); dense, stripe and peripheral "
        "kernels compared at the same size", "erf",
        [*[(f"{v}: ERF at the largest kernel minus at the smallest", (lambda v: lambda lo, hi: _diff((v, hi), (v, lo)))(v), 1)
           for v in ("dense", "stripe", "peripheral")],
         ("dense minus stripe at the largest kernel", lambda lo, hi: _diff(("dense", hi), ("stripe", hi)), 0),
         ("dense minus peripheral at the largest kernel", lambda lo, hi: _diff(("dense", hi), ("peripheral", hi)), 0)]),
}


def load(name: str) -> pd.DataFrame:
    path = STUDIES / name / "trials.csv"
    if not path.is_file():
        raise SystemExit(f"{path}: no such study; run it first: python -m lknas scale --experiment "
                         f"experiments/{name}.yaml --out results/studies/{name}")
    df = pd.read_csv(path)
    df["kernel"] = [ArchConfig.from_yaml(y).kernel_sizes[0] for y in df["arch_yaml"]]
    return df


def report(name: str) -> str:
    title, metric, contrasts = CLAIMS[name]
    df = load(name)
    by = ("variant", "kernel")
    order = {v: i for i, v in enumerate(dict.fromkeys(df["variant"]))}
    stats = point_stats(df, metric, by)
    stats = stats.assign(_v=stats["variant"].map(order)).sort_values(["_v", "kernel"]).drop(columns="_v")
    sd = seed_sd(df, metric, by)
    extra = [m for m in ("accuracy",) if m != metric and m in df]
    lines = [f"# Claim {title}", "",
             f"`results/studies/{name}`: {int((df['status'] == 'ok').sum())} ok trials of {len(df)}, seeds "
             f"{', '.join(map(str, sorted(df['seed'].unique())))}. Rerun: `python -m lknas scale --experiment "
             f"experiments/{name}.yaml --out results/studies/{name}`, then `python experiments/claims.py {name}`.", "",
             f"| variant | kernel | {metric} mean +- std (seeds) |" + "".join(f" {m} mean +- std |" for m in extra),
             "|---|---|---|" + "---|" * len(extra)]
    others = {m: point_stats(df, m, by).set_index(list(by)) for m in extra}
    for r in stats.itertuples():
        row = f"| {r.variant} | {r.kernel} | {r.mean:.3g} +- {r.std:.2g} ({r.n}) |"
        for m, s in others.items():
            o = s.loc[(r.variant, r.kernel)]
            row += f" {o['mean']:.1f} +- {o['std']:.1f} |"
        lines.append(row)
    lo, hi = int(df["kernel"].min()), int(df["kernel"].max())
    lines += ["", f"Seed noise (pooled within-point sd of {metric}): {sd:.3g}.", "",
              "| contrast | estimate | standard error | in seed sd | verdict |", "|---|---|---|---|---|"]
    for text, weights, sign in contrasts:
        try:
            c = contrast(df, weights(lo, hi), metric, by)
        except KeyError as err:  # a point without ok trials (a study still running, or failed trials)
            lines.append(f"| {text} | - | - | - | not measured: {err.args[0]} |")
            continue
        v = verdict(c, sign) if sign else f"no claim ({abs(c.z):.1f} standard errors)"
        lines.append(f"| {text} | {c.estimate:+.3g} | {c.se:.2g} | {c.in_seed_sd:+.2f} | {v} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", choices=[*CLAIMS, "all"])
    args = ap.parse_args(argv)
    for name in CLAIMS if args.name == "all" else [args.name]:
        text = report(name)
        write_text_atomic(STUDIES / name / "claim.md", text)
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
