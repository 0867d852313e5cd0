"""Sample efficiency of the search: random, TPE, NSGA-II and NSGA-II + MO-ASHA at equal wall-clock budget.

Each method runs real searches (`run_search`: local Ray, Optuna, the results store) with the same
time budget (`search.time_budget`), once per sampler seed, on a short-budget proxy of a bundled
space (default: peleK_space, the README's search, on an easier, smaller pointer data set, 400 steps).
Runs are interleaved seed by seed, so load drift on the machine hits every method alike; every
run trains with the same training seed, so an architecture scores the same under every method.

Hypervolume (`lknas.search.hypervolume`, the function of the report's history plot): objectives
minimized (maximized ones negated), min-max normalized with one pair of bounds for the whole
benchmark (the feasible, fully trained trials of every run of every method), reference point 1.1
in every normalized objective. Only fully trained feasible trials count (status ok): a trial
MO-ASHA stops is never on a front. Curves: hypervolume against seconds since the search was
started (`run_search` called; the same start-up for every method) and against finished trials
(every status counts as a trial), mean over seeds with a 95% t-interval.

    python benchmarks/search_efficiency.py                      # the measurement (hours: see --help)
    python benchmarks/search_efficiency.py --budget-s 50 --seeds 2 --steps 16 --trials 8 \\
        --data "pointer:miss=20,distance=0.1-0.8,train=256,val=64" --out /tmp/smoke   # smoke, ~10 min

Writes OUT/search_efficiency.json (settings, every trial of every run, curves, summary),
OUT/search_efficiency.md and OUT/search_efficiency.html (+ .png when kaleido finds a Chrome).
"""
from __future__ import annotations

import argparse
import io
import json
import math
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
METHODS = {  # name -> run_search settings
    "random": {"sampler": "random", "scheduler": "fifo"},
    "tpe": {"sampler": "tpe", "scheduler": "fifo"},
    "nsga2": {"sampler": "nsga2", "scheduler": "fifo"},
    "nsga2+moasha": {"sampler": "nsga2", "scheduler": "moasha"},
}
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228]  # t quantile, df 1..10


def _t(df: int) -> float:
    return T975[df - 1] if df <= len(T975) else 1.96


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="Wall time: about len(methods) x seeds x (budget-s + ~35 s start-up); "
                                        "the defaults, 4 x 5 x 635 s: about 3.5 hours.")
    ap.add_argument("--space", default="peleK_space.yaml", help="a bundled space or a path (default peleK_space)")
    ap.add_argument("--budget-s", type=float, default=600.0, help="wall-clock seconds per search (default 600)")
    ap.add_argument("--seeds", type=int, default=5, help="sampler seeds per method (default 5; >= 5 to measure)")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    ap.add_argument("--data", default="pointer:miss=30,distance=0.1-0.4,train=3200,val=500",
                    help="proxy data set (default: an easier pointer task than the space's, 3,200 training images; "
                         "one peleK architecture went 50, 54, 63, 74%% over its 4 epochs, where the space's own "
                         "task stayed at 50-54%% after 400 steps)")
    ap.add_argument("--steps", type=int, default=400, help="proxy steps per trial (default 400: 4 epochs of 100)")
    ap.add_argument("--batch-size", type=int, default=None, help="proxy batch size (default: the space's)")
    ap.add_argument("--resolution", type=int, default=None, help="proxy resolution (default: the space's)")
    ap.add_argument("--objectives", default=None, help="e.g. accuracy,flops (default: the space's)")
    ap.add_argument("--trials", type=int, default=32,
                    help="trials each sampler plans for (TPE's random start-up, NSGA-II's population: a quarter of "
                         "it): about what fits in the budget, concurrency x budget-s / seconds a trial (default 32)")
    ap.add_argument("--concurrency", type=int, default=2, help="trials at a time, 1 CPU each (default 2)")
    ap.add_argument("--reduction-factor", type=float, default=2.0, help="MO-ASHA's eta (default 2)")
    ap.add_argument("--grace-period", type=int, default=1, help="MO-ASHA's first rung, in epochs (default 1)")
    ap.add_argument("--runs", default=None,
                    help="keep each search's run directory and its record here (default: a temp dir); rerun with "
                         "the same --runs to continue an interrupted measurement: finished searches are kept")
    ap.add_argument("--out", default=str(REPO / "results" / "benchmarks"))
    ap.add_argument("--replot", metavar="JSON", help="only redraw the figure and table of a search_efficiency.json")
    args = ap.parse_args(argv)
    unknown = [m for m in args.methods.split(",") if m not in METHODS]
    if unknown:
        ap.error(f"--methods: unknown {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if args.seeds < 1 or args.budget_s <= 0 or args.steps < 1 or args.concurrency < 1 or args.trials < 1:
        ap.error("--seeds, --budget-s, --steps, --concurrency and --trials must be positive")
    return args


def run_one(args: argparse.Namespace, method: str, seed: int, root: Path, objectives) -> dict:
    """One search; its trials with their finish times (seconds since the search was started)."""
    from lknas.search import load_results, run_search

    out = root / f"{method.replace('+', '-')}-seed{seed}"
    shutil.rmtree(out, ignore_errors=True)  # an interrupted search's half is not resumed: its clock would differ
    overrides = dict(METHODS[method], seed=seed, trials=args.trials, time_budget=args.budget_s,
                     max_concurrent=args.concurrency, cpus_per_trial=1, confirm=0, dataset=args.data,
                     steps=args.steps, batch_size=args.batch_size, resolution=args.resolution,
                     objectives=objectives, reduction_factor=args.reduction_factor, grace_period=args.grace_period)
    start = time.time()
    run_search(args.space, out=out, quiet=True, stream=io.StringIO(), **overrides)
    wall = time.time() - start
    df = load_results(out)
    df = df.sort_values("finished_at", kind="stable") if "finished_at" in df.columns else df.iloc[0:0]
    trials = [{"trial": int(r["trial"]), "status": r["status"], "t": float(r["finished_at"]) - start,
               **{m: (float(r[m]) if isinstance(r.get(m), (int, float)) and math.isfinite(r[m]) else None)
                  for m in _metrics(objectives)}} for r in df.to_dict("records")]
    return {"method": method, "seed": seed, "wall_s": wall, "trials": trials}


def _metrics(objectives) -> list[str]:
    from lknas.search.objectives import metric_of

    return [metric_of(o) for o in objectives]


def _points(run: dict, metrics: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values of its fully trained feasible trials, their finish times, their finish order 1..n)."""
    rows = [(i + 1, t) for i, t in enumerate(run["trials"])
            if t["status"] == "ok" and all(t[m] is not None for m in metrics)]
    values = np.array([[t[m] for m in metrics] for _, t in rows], dtype=float).reshape(-1, len(metrics))
    return values, np.array([t["t"] for _, t in rows]), np.array([k for k, _ in rows])


def curves(runs: list[dict], objectives, grid_s: np.ndarray) -> dict:
    """Hypervolume of every run against time (on `grid_s`) and against finished trials, with shared bounds."""
    from lknas.search.hypervolume import bounds, minimized, normalized_hypervolume

    metrics, modes = _metrics(objectives), [o.mode for o in objectives]
    pooled = [_points(r, metrics)[0] for r in runs]
    pooled = np.concatenate([p for p in pooled if len(p)] or [np.zeros((0, len(metrics)))])
    if not len(pooled):
        raise SystemExit("no run finished a feasible trial: nothing to compare (raise --budget-s or --steps?)")
    lo, hi = bounds(minimized(pooled, modes))
    for run in runs:
        values, times, order = _points(run, metrics)
        run["hv_time"] = [normalized_hypervolume(values[times <= g], modes, lo, hi) for g in grid_s]
        n = len(run["trials"])
        run["hv_trials"] = [normalized_hypervolume(values[order <= k], modes, lo, hi) for k in range(1, n + 1)]
    return {"lo": lo.tolist(), "hi": hi.tolist(), "metrics": metrics, "modes": modes}


def band(series: list[list[float]]) -> dict:
    """Mean and 95% t-interval over runs (columns: the x values)."""
    arr = np.array(series, dtype=float)
    mean = arr.mean(axis=0)
    half = _t(len(arr) - 1) * arr.std(axis=0, ddof=1) / math.sqrt(len(arr)) if len(arr) > 1 else np.zeros_like(mean)
    return {"mean": mean.tolist(), "lo": (mean - half).tolist(), "hi": (mean + half).tolist()}


def summarize(runs: list[dict], methods: list[str], grid_s: np.ndarray, budget: float) -> dict:
    out = {}
    for m in methods:
        mine = [r for r in runs if r["method"] == m]
        shortest = min(len(r["hv_trials"]) for r in mine)
        final = [r["hv_time"][-1] for r in mine]
        out[m] = {
            "time": band([r["hv_time"] for r in mine]),
            "trials": band([r["hv_trials"][:shortest] for r in mine]) if shortest else {"mean": [], "lo": [], "hi": []},
            "final_hv_mean": float(np.mean(final)),
            "final_hv_ci": float(_t(len(final) - 1) * np.std(final, ddof=1) / math.sqrt(len(final)))
            if len(final) > 1 else None,
            "trials_mean": float(np.mean([len(r["trials"]) for r in mine])),
            "status_mean": {s: float(np.mean([sum(t["status"] == s for t in r["trials"]) for r in mine]))
                            for s in sorted({t["status"] for r in mine for t in r["trials"]})},
        }
    if "random" in out:
        target = out["random"]["final_hv_mean"]
        for m, s in out.items():
            reached = [g for g, v in zip(grid_s, s["time"]["mean"]) if v >= target - 1e-12]
            s["time_to_random_final_s"] = float(reached[0]) if reached else None
            s["fraction_of_budget"] = float(reached[0]) / budget if reached else None
    return out


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def figure(summary: dict, grid_s: np.ndarray, budget: float, title: str, top: float):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from lknas.report.figures import TEMPLATE

    colors = ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a"]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("against wall-clock time", "against finished trials"))
    for i, (m, s) in enumerate(summary.items()):
        c = colors[i % len(colors)]
        for col, key, xs in ((1, "time", list(grid_s)), (2, "trials", list(range(1, len(s["trials"]["mean"]) + 1)))):
            b = s[key]
            lo, hi = np.clip(b["lo"], 0, top), np.clip(b["hi"], 0, top)  # a hypervolume lies in [0, 1.1^d]
            for y, fill in ((lo, None), (hi, "tonexty")):
                fig.add_trace(go.Scatter(x=xs, y=y, mode="lines", line=dict(width=0, shape="hv"), fill=fill,
                                         fillcolor=_rgba(c, 0.18), hoverinfo="skip", showlegend=False,
                                         legendgroup=m), row=1, col=col)
            fig.add_trace(go.Scatter(x=xs, y=b["mean"], mode="lines", line=dict(color=c, shape="hv"), name=m,
                                     legendgroup=m, showlegend=col == 1), row=1, col=col)
    fig.add_vline(x=budget, line_dash="dot", line_color="grey", row=1, col=1)
    fig.update_xaxes(title_text="seconds since the search started", row=1, col=1)
    fig.update_xaxes(title_text="finished trials (every status)", row=1, col=2)
    fig.update_yaxes(title_text="hypervolume (mean, 95% band)", row=1, col=1)
    fig.update_layout(template=TEMPLATE, height=520, title=title)
    return fig


def markdown(result: dict) -> str:
    s, norm = result["summary"], result["normalization"]
    names = " x ".join(f"{m} ({mode})" for m, mode in zip(norm["metrics"], norm["modes"]))
    lines = [
        "# Search efficiency: hypervolume at equal wall-clock budget", "",
        f"`{result['command']}`", "",
        f"{result['space']}: {len(s)} methods x {result['seeds']} sampler seeds, {result['budget_s']:g} s each, "
        f"{result['concurrency']} trials at a time; proxy {result['proxy']}.", "",
        f"Hypervolume of {names}: objectives minimized (maximized ones negated), min-max normalized with one pair "
        f"of bounds over every run's fully trained feasible trials (minimized lo {_fmt(norm['lo'])}, hi "
        f"{_fmt(norm['hi'])}), reference point {norm['reference']} in every normalized objective "
        "(`lknas.search.hypervolume`, the report's function). Mean over seeds, +- the 95% t-interval.", "",
        "Time is counted from the call of `run_search` (each search's ~30 s start-up included), the budget from the "
        "start of its Tuner.", "",
        "| method | final hypervolume | trials | ok | truncated | time to random's final (share of budget) |",
        "|---|---|---|---|---|---|",
    ]
    for m, v in s.items():
        ci = f" +- {v['final_hv_ci']:.4f}" if v["final_hv_ci"] is not None else ""
        reach = (f"{v['time_to_random_final_s']:.0f} s ({v['fraction_of_budget']:.0%})"
                 if v.get("time_to_random_final_s") is not None else "not reached")
        st = v["status_mean"]
        lines.append(f"| {m} | {v['final_hv_mean']:.4f}{ci} | {v['trials_mean']:.1f} | {st.get('ok', 0):.1f} | "
                     f"{st.get('truncated', 0):.1f} | {reach} |")
    if result["seeds"] < 5:
        lines += ["", f"**{result['seeds']} seed(s): a smoke run, not a measurement (use >= 5).**"]
    lines += ["", f"Figure: `search_efficiency.html`{' and `.png`' if result.get('png') else ''}. "
              f"Accuracy of the ok trials: max {result['accuracy_max']}, median {result['accuracy_median']} "
              "(near 50% the proxy is at chance and the comparison is about the cost objective only)."]
    return "\n".join(lines) + "\n"


def _fmt(xs: list[float]) -> str:
    return "[" + ", ".join(f"{x:.4g}" for x in xs) + "]"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO))
    if args.replot:
        result = json.loads(Path(args.replot).read_text())
        write(result, Path(args.out), len(result["normalization"]["metrics"]))
        return 0
    import ray

    from lknas.io import write_text_atomic
    from lknas.search.hypervolume import REFERENCE
    from lknas.search.runner import parse_objectives_flag
    from lknas.space import load_space

    space = load_space(args.space)
    objectives = parse_objectives_flag(args.objectives) if args.objectives else space.search.objectives
    methods = args.methods.split(",")
    ray.init(address="local", num_cpus=args.concurrency, include_dashboard=False, logging_level="WARNING",
             log_to_driver=False)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.runs) if args.runs else Path(tmp)
        for seed in range(args.seeds):
            for method in methods:
                done = root / f"{method.replace('+', '-')}-seed{seed}.json"
                if done.is_file():  # kept by an earlier, interrupted run with the same --runs
                    run = json.loads(done.read_text())
                    print(f"{method} seed {seed}: kept from {done}", flush=True)
                else:
                    run = run_one(args, method, seed, root, objectives)
                    write_text_atomic(done, json.dumps(run) + "\n")
                runs.append(run)
                print(f"{method} seed {seed}: {len(run['trials'])} trials in {run['wall_s']:.0f} s", flush=True)
    ray.shutdown()
    horizon = max([args.budget_s] + [t["t"] for r in runs for t in r["trials"]])
    grid_s = np.linspace(0, horizon, 201)
    norm = curves(runs, objectives, grid_s)
    norm["reference"] = REFERENCE
    summary = summarize(runs, methods, grid_s, args.budget_s)
    accuracies = [t["accuracy"] for r in runs for t in r["trials"] if t["status"] == "ok" and t.get("accuracy")]
    result = {
        "command": "python benchmarks/search_efficiency.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "space": space.name, "seeds": args.seeds, "budget_s": args.budget_s, "concurrency": args.concurrency,
        "proxy": f"data {args.data}, {args.steps} steps" + (f", batch {args.batch_size}" if args.batch_size else "")
                 + (f", {args.resolution} px" if args.resolution else ""),
        "moasha": {"reduction_factor": args.reduction_factor, "grace_period": args.grace_period},
        "sampler_trials": args.trials, "normalization": norm, "grid_s": grid_s.tolist(), "summary": summary,
        "accuracy_max": round(max(accuracies), 1) if accuracies else None,
        "accuracy_median": round(float(np.median(accuracies)), 1) if accuracies else None,
        "runs": runs, "machine": {"platform": platform.platform(), "python": platform.python_version()},
    }
    write(result, Path(args.out), len(objectives))
    return 0


def write(result: dict, out: Path, n_objectives: int) -> None:
    """search_efficiency.{json,md,html} (+ .png) in `out`."""
    from lknas.io import write_text_atomic
    from lknas.report.export import export_pngs
    from lknas.search.hypervolume import REFERENCE

    out.mkdir(parents=True, exist_ok=True)
    fig = figure(result["summary"], np.array(result["grid_s"]), result["budget_s"],
                 f"Hypervolume of {result['space']} searches, {result['seeds']} seeds each",
                 top=REFERENCE ** n_objectives)
    fig.write_html(out / "search_efficiency.html", include_plotlyjs="cdn")
    written, note = export_pngs({"search_efficiency": fig}, out)
    result["png"] = bool(written)
    write_text_atomic(out / "search_efficiency.json", json.dumps(result, indent=1) + "\n")
    write_text_atomic(out / "search_efficiency.md", markdown(result))
    print(markdown(result))
    print(note)


if __name__ == "__main__":
    sys.exit(main())
