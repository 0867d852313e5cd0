"""The papers' claims (issue 16) read from the committed studies in results/studies/NAME/: per
point mean +- std over seeds, each claim's contrast against the seed noise, and a verdict
(`lknas.study.claims`: reproduced / not reproduced at the 95% t critical value, paired by seed, else
inconclusive).
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


def _pairs(df: pd.DataFrame, variants: tuple[str, str]) -> list[tuple[str, dict[tuple, float], int]]:
    """For a with/without study over kernels: the effect at the largest kernel, and its growth."""
    lo, hi = int(df["kernel"].min()), int(df["kernel"].max())
    a, b = variants
    return [(f"{a} minus {b} at kernel {hi}", _diff((a, hi), (b, hi)), 1),
            (f"the same at kernel {hi} minus at kernel {lo} (grows with the kernel)",
             _interaction(((a, hi), (b, hi)), ((a, lo), (b, lo))), 1)]


def _erf(df: pd.DataFrame) -> list[tuple[str, dict[tuple, float], int]]:
    lo, hi = int(df["kernel"].min()), int(df["kernel"].max())
    grow = [(f"{v}: ERF at kernel {hi} minus at {lo}", _diff((v, hi), (v, lo)), 1)
            for v in dict.fromkeys(df["variant"])]
    return grow + [(f"dense minus {v} at kernel {hi}", _diff(("dense", hi), (v, hi)), 0)
                   for v in dict.fromkeys(df["variant"]) if v != "dense"]


def _matched(df: pd.DataFrame) -> list[tuple[str, dict[tuple, float], int]]:
    """Each depth / width point matched to a kernel point ('... ~ k 13') against that kernel point,
    then all pairs together."""
    pairs = []
    for dim, point in dict.fromkeys(zip(df["dimension"], df["point"])):
        if dim in ("depth", "width") and "~ k " in point:
            pairs.append((dim, point, point.rsplit("~ k ", 1)[1]))
    out = [(f"kernel {k} minus {dim} {point.split(' ~')[0]}", _diff(("kernel", k), (dim, point)), 1)
           for dim, point, k in pairs]
    total: dict[tuple, float] = {}
    for dim, point, k in pairs:
        total[("kernel", k)] = total.get(("kernel", k), 0.0) + 1 / len(pairs)
        total[(dim, point)] = total.get((dim, point), 0.0) - 1 / len(pairs)
    return out + [("kernel minus the matched depth / width point, mean over the pairs (the claim)", total, 1)]


def _peripheral(df: pd.DataFrame) -> list[tuple[str, dict[tuple, float], int | str]]:
    """PeLK's claim: peripheral about level with dense ("=": a gap beyond the noise is a
    non-reproduction), the reversed grid worse; then why peripheral falls with the kernel."""
    kernels = sorted(int(k) for k in df["kernel"].unique())
    lo, hi = kernels[0], kernels[-1]
    variants = list(dict.fromkeys(df["variant"]))
    out: list[tuple[str, dict[tuple, float], int | str]] = [
        (f"peripheral minus dense at kernel {k} (PeLK: level, with a fraction of the kernel's parameters)",
         _diff(("peripheral", k), ("dense", k)), "=") for k in kernels]
    out += [(f"peripheral minus reversed (coarse centre) at kernel {k}", _diff(("peripheral", k), ("reversed", k)), 1)
            for k in kernels]
    mean_rev = {}
    for k in kernels:
        mean_rev[("peripheral", k)] = 1 / len(kernels)
        mean_rev[("reversed", k)] = -1 / len(kernels)
    out.append(("peripheral minus reversed, mean over the kernels (PeLK: the reversed grid is worse)", mean_rev, 1))
    out.append((f"(peripheral minus dense) at kernel {hi} minus at {lo}: does peripheral fall behind as the kernel grows?",
                _interaction((("peripheral", hi), ("dense", hi)), (("peripheral", lo), ("dense", lo))), 0))
    for v in variants:
        if v.startswith("scale_"):
            out += [(f"{v} minus peripheral at kernel {k} (investigation)", _diff((v, k), ("peripheral", k)), 0)
                    for k in kernels if k != lo]
    return out


# name -> (title, metric, the columns a point is told apart by, its contrasts)
CLAIMS = {
    "matched_flops": (
        "(a) At matched FLOPs a larger kernel buys more accuracy than more depth or width (RepLKNet)",
        "accuracy", ("dimension", "point"), _matched),
    "reparam_branch": (
        "(b) A parallel small-kernel (3x3) reparam branch helps large kernels, and more as the kernel "
        "grows (RepLKNet)", "accuracy", ("variant", "kernel"), lambda df: _pairs(df, ("branch_3x3", "no_branch"))),
    "peripheral_claim": (
        "(c) Peripheral sharing reaches about dense accuracy with a fraction of the kernel parameters, and the "
        "reversed grid (coarse centre) is worse (PeLK)", "accuracy", ("variant", "kernel"), _peripheral),
    "shortcut": (
        "(d) Shortcuts are essential for large kernels (RepLKNet: without the identity shortcut, "
        "MobileNet V2 loses 3.1 points at 3x3 and 18.6 at 13x13)", "accuracy", ("variant", "kernel"),
        lambda df: _pairs(df, ("with_shortcut", "no_shortcut"))),
    "erf_kernel": (
        "(e) The effective receptive field grows with the kernel (RepLKNet); dense, stripe and peripheral "
        "kernels compared at the same size", "erf", ("variant", "kernel"), _erf),
}


def load(name: str) -> pd.DataFrame:
    path = STUDIES / name / "trials.csv"
    if not path.is_file():
        raise SystemExit(f"{path}: no such study; run it first: python -m lknas scale --experiment "
                         f"experiments/{name}.yaml --out results/studies/{name}")
    df = pd.read_csv(path, dtype={"point": str})
    df["kernel"] = [ArchConfig.from_yaml(y).kernel_sizes[0] for y in df["arch_yaml"]]
    return df


def report(name: str) -> str:
    title, metric, by, contrasts = CLAIMS[name]
    df = load(name)
    stats = point_stats(df, metric, by)
    if by == ("variant", "kernel"):
        order = {v: i for i, v in enumerate(dict.fromkeys(df["variant"]))}
        stats = stats.assign(_v=stats["variant"].map(order)).sort_values(["_v", "kernel"]).drop(columns="_v")
    sd = seed_sd(df, metric, by)
    extra = [m for m in ("accuracy", "flops", "params") if m != metric and m in df]
    counts = ("flops", "params")  # shown as one value in millions (the same for every seed)
    lines = [f"# Claim {title}", "",
             f"`results/studies/{name}`: {int((df['status'] == 'ok').sum())} ok trials of {len(df)}, seeds "
             f"{', '.join(map(str, sorted(df['seed'].unique())))}. Rerun: `python -m lknas scale --experiment "
             f"experiments/{name}.yaml --out results/studies/{name}`, then `python experiments/claims.py {name}`.", "",
             f"| {' | '.join(by)} | {metric} mean +- std (seeds) |" + "".join(f" {m} |" if m in counts else f" {m} mean +- std |" for m in extra),
             "|---|---|---|" + "---|" * len(extra)]
    others = {m: point_stats(df, m, by).set_index(list(by)) for m in extra}
    for r in stats.to_dict("records"):
        key = tuple(r[c] for c in by)
        row = f"| {' | '.join(map(str, key))} | {r['mean']:.3g} +- {r['std']:.2g} ({r['n']}) |"
        for m, st in others.items():
            o = st.loc[key]
            row += f" {o['mean']:.1f} +- {o['std']:.1f} |" if m not in counts else f" {o['mean'] / 1e6:.4g}M |"
        lines.append(row)
    lines += ["", f"Seed noise (pooled within-point sd of {metric}): {sd:.3g}.", "",
              "| contrast | estimate | standard error (paired by seed) | in seed sd | verdict |", "|---|---|---|---|---|"]
    for text, weights, sign in contrasts(df):
        try:
            c = contrast(df, weights, metric, by)
        except KeyError as err:  # a point without ok trials (a study still running, or failed trials)
            lines.append(f"| {text} | - | - | - | not measured: {err.args[0]} |")
            continue
        v = verdict(c, sign) if sign else f"no claim ({abs(c.z):.1f} standard errors)"
        pairing = f" ({c.paired_seeds} seeds)" if c.paired_seeds else " (unpaired)"
        lines.append(f"| {text} | {c.estimate:+.3g} | {c.se:.2g}{pairing} | {c.in_seed_sd:+.2f} | {v} |")
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
