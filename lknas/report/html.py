"""`write_report(run)`: `results/RUN/report.html` (one page, plotly.js embedded, no network) and
the PNGs in `results/RUN/figures/`, for search runs and scaling studies alike."""
from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from lknas.errors import LknasError
from lknas.io import write_text_atomic
from lknas.report import figures as F
from lknas.report.export import export_pngs
from lknas.report.search_figures import hypervolume_figure, importance_figure, load_study
from lknas.search.objectives import metric_of
from lknas.search.store import RunStore, arch_file_name
from lknas.space.configs import Objective
from lknas.status import TrialStatus

__all__ = ["Figure", "ReportResult", "build_figures", "write_report", "run_objectives"]


@dataclass
class Figure:
    name: str  # file name of the PNG (figures/NAME.png) and the div id
    title: str
    caption: str
    fig: go.Figure


@dataclass
class ReportResult:
    html: Path
    figures: list[Figure]
    pngs: list[Path] = field(default_factory=list)
    png_message: str = ""
    skipped: dict[str, str] = field(default_factory=dict)


ERF_TITLE_TRAINED = ("Effective receptive fields of the trained proxies (|d centre output / d input|, "
                     "log scale)")


def run_objectives(settings: dict[str, Any]) -> tuple[Objective, ...]:
    from lknas.search.store import run_objectives as objectives_of

    return objectives_of(settings)


def _load(run: str | os.PathLike) -> tuple[RunStore, dict[str, Any], pd.DataFrame]:
    store = RunStore(run)
    if not store.root.is_dir():
        raise LknasError(f"{run}: no such run directory; give one that `python -m lknas search` or `scale` wrote")
    if not store.trials_jsonl.is_file():
        raise LknasError(f"{run}: no trials.jsonl: not a search or scaling run (or no trial has finished yet)")
    settings = store.read_settings()
    df = store.frame()
    if df.empty:
        raise LknasError(f"{store.trials_jsonl}: no trial record in it (no trial has finished yet, or its lines "
                         f"are not trial records): nothing to report")
    return store, settings, df


def _erf_choice(df: pd.DataFrame, front: pd.DataFrame, scale: bool, limit: int = 4) -> dict[str, Any]:
    """Up to `limit` trials worth comparing, {label: row}: a study's base and kernel points (or each
    variant's base), a search's Pareto set (best first objective first)."""
    from lknas.arch import ArchConfig

    ok = df[df["status"] == TrialStatus.OK] if "status" in df.columns else df
    if scale and not ok.empty and "dimension" in ok.columns:
        ok = ok[ok["dataset"] == ok["dataset"].iloc[0]] if "dataset" in ok.columns else ok
        variants = list(dict.fromkeys(ok.get("variant", pd.Series(["base"] * len(ok), index=ok.index))))
        if len(variants) > 1:
            rows = ok[ok["dimension"] == "base"]
        else:
            rows = ok[ok["dimension"].isin(["base", "kernel"])]
            if rows["hash"].nunique() < 2:
                rows = ok
    else:  # the Pareto set, then the most accurate of each kernel type, then the most accurate
        ranked = ok.sort_values("accuracy", ascending=False) if "accuracy" in ok.columns else ok
        per_type = ranked.groupby(ranked["summary"].astype(str).str.split(" ").str[0], sort=False).head(1)
        rows = pd.concat([front, per_type, ranked])
    chosen: dict[str, Any] = {}
    for _, row in rows.iterrows():
        if len(chosen) >= limit:
            break
        if not isinstance(row.get("arch_yaml"), str) or row["hash"] in {r["hash"] for r in chosen.values()}:
            continue
        arch = ArchConfig.from_yaml(row["arch_yaml"])
        prefix = f"{row['variant']}: " if scale and "variant" in row and row.get("variant") not in (None, "base") else ""
        chosen[f"{prefix}#{int(row['trial'])} {arch.summary().split(' d=')[0]}"] = row
    return chosen


def _erf_results(store: RunStore, settings: dict[str, Any], chosen: dict[str, Any]) -> tuple[dict, bool]:
    """({label: ErfResult}, trained): the trained networks' heatmaps that the trials saved, or, when
    any is missing (a run without them), every architecture measured freshly initialized."""
    from lknas.arch import ArchConfig
    from lknas.measure.erf import ErfResult, area_ratios
    from lknas.report.erf import compute_erfs

    saved = {label: store.erf_map(int(row["trial"])) for label, row in chosen.items()}
    if saved and all(m is not None for m in saved.values()):
        out = {}
        for label, heat in saved.items():
            row = chosen[label]
            ratios = area_ratios(heat)  # the trial's own ratios (measured at full size) where it has them
            ratios.update({t: float(row[f"erf_{round(t * 100)}"]) for t in ratios
                           if pd.notna(row.get(f"erf_{round(t * 100)}"))})
            out[label] = ErfResult(heatmap=heat, ratios=ratios, images=0)
        return out, True
    dataset, res = _data_of(store, settings)
    archs = {label: ArchConfig.from_yaml(row["arch_yaml"]) for label, row in chosen.items()}
    return compute_erfs(archs, res, dataset), False


def build_figures(run: str | os.PathLike, erf: bool = True, compare: list[str | os.PathLike] | tuple = ()
                  ) -> tuple[list[Figure], dict[str, str]]:
    """Every figure the run's data supports, and for each left out, why. `compare`: other runs
    (e.g. searches of other spaces) whose error EDFs are drawn beside this run's."""
    store, settings, df = _load(run)
    objectives = run_objectives(settings)
    fidelity = settings.get("kind") == "fidelity"
    scale = settings.get("kind") == "scale"
    figs: list[Figure] = []
    skipped: dict[str, str] = {}

    def add(name: str, title: str, caption: str, fig: go.Figure | None, reason: str = "no feasible trial") -> None:
        if fig is None:
            skipped[name] = reason
        else:
            figs.append(Figure(name, title, caption, fig))

    if fidelity:
        from lknas.report.fidelity_figure import fidelity_figure, kernel_effect_figure
        from lknas.study.fidelity import fidelity_stats

        try:  # once for both figures (its bootstrap is the costly part)
            stats, why = fidelity_stats(df), ""
        except ValueError as err:
            stats, why = None, str(err)
        fig, reason = (fidelity_figure(df, stats), "") if stats is not None else (None, why)
        add("fidelity", "Proxy fidelity: proxy vs target budget",
            "Each sampled architecture's mean top-1 accuracy over seeds at the proxy budget (the search's) "
            "against a larger target budget; bars are the seed standard deviations. A proxy that ranks like the "
            "target puts the points on a rising curve; the title gives the rank correlations with 95% bootstrap "
            "intervals, the proxy's ICC (the share of variance that is not seed noise), the Kendall tau a noise-free "
            "proxy could reach against this target's seed means, and the measured tau with both budgets' seed noise "
            "divided out (near 1: the budgets disagree by noise only; well below: the proxy is biased).", fig, reason)
        fig, reason = kernel_effect_figure(stats) if stats is not None else (None, why)
        add("fidelity_kernels", "Kernel effects at both budgets",
            "For the kernel dimensions whose values differ most at the proxy: each value's mean accuracy over the "
            "architectures that have it, as the distance from the budget's mean in units of that budget's seed "
            "standard deviation. A proxy whose kernel preference survives the larger budget draws two lines of "
            "the same shape; a flat target line means the larger budget erased the effect.", fig, reason)
    panels = "budget" if fidelity else "dataset"
    for x, label in (("latency_ms", "latency"), ("flops_effective", "FLOPs"), ("params_effective", "params")):
        add(f"pareto_{label.lower()}", f"Pareto front: accuracy vs {label}",
            "Every feasible trial, coloured by kernel type; the trials on the accuracy/" + label +
            " Pareto front are outlined and joined. Hover for the trial and its architecture.",
            F.pareto_figure(df, x=x, panels=panels))
    if scale:
        for x, label in (("flops_effective", "FLOPs"), ("latency_ms", "latency")):
            add(f"scaling_{label.lower()}", f"Scaling curves: accuracy vs {label}",
                "Each line starts at the base architecture and grows one dimension; points are means over "
                "seeds with the standard deviation as error bars; one panel per data set.", F.scaling_figure(df, x=x))
    add("edf_kernel_type", "Error EDF per kernel type",
        "RegNet's design-space comparison: the fraction of trained models with top-1 error below e. A curve "
        "further left/up means more good models of that kind.", F.edf_figure(df, by="kernel_type"))
    if compare:
        frames = {store.root.name: df}
        for other in compare:
            frames[Path(other).name] = _load(other)[2]
        add("edf_runs", "Error EDF per run (design spaces)",
            "RegNet's comparison of design spaces: one curve per run; the space whose curve lies left/up yields "
            "more good models.", F.edf_figure(frames, title="EDF of top-1 error per run (design space)"))
    if scale and "variant" in df.columns and df["variant"].nunique() > 1:
        add("edf_variant", "Error EDF per variant", "As above, one curve per variant of the study.",
            F.edf_figure(df, by="variant"))
    if not scale and not fidelity:
        add("dimensions", "Accuracy against each searched dimension",
            "pycls-style sweep analysis: accuracy of every feasible trial against the value it sampled for each "
            "dimension, with the mean per value.", F.dimension_figure(df), "no feasible trial with sampled dimensions")
        study = load_study(store.study_db, settings.get("space_name"))
        fig, reason = importance_figure(study, objectives)
        add("importance", "Optuna parameter importances",
            "How much each sampled dimension explains each objective (Optuna's default importance evaluator)"
            + (f". Note: {reason}" if fig is not None and reason else "."), fig, reason)
    fig, reason = (hypervolume_figure(df, objectives) if not (scale or fidelity)
                   else (None, "a study runs a fixed set of trials: no search"))
    add("hypervolume", "Hypervolume history",
        "The volume of objective space dominated by the feasible trials so far: it rises when a trial moves "
        "the Pareto front.", fig, reason)
    if erf and fidelity:
        skipped["erf"] = "a fidelity run measures no ERF"
    elif erf:
        front = store.pareto(objectives, df)
        chosen = _erf_choice(df, front, scale)
        trained = False
        try:
            from lknas.report.erf import erf_figure

            fig = None
            if chosen:
                results, trained = _erf_results(store, settings, chosen)
                fig = erf_figure(results, title=ERF_TITLE_TRAINED if trained else None)
            reason = "no feasible architecture to measure"
        except Exception as err:  # an ERF is a nice-to-have: the report goes on
            fig, reason = None, f"ERF failed: {type(err).__name__}: {err}"
        how = ("each the trial's trained network, measured when it finished" if trained else
               "each network freshly initialized (seed 0; this run saved no trained heatmaps)")
        add("erf", "Effective receptive fields",
            "ERF heatmaps of " + ("the study's base and kernel points" if scale else
                                  "the Pareto set (then the most accurate trial of each kernel type)") +
            f", {how}, on the run's validation images; log scale; r20/r99: "
            "area ratios holding 20%/99% of the contribution (RepLKNet).", fig, reason)
    else:
        skipped["erf"] = "skipped (--no-erf)"
    return figs, skipped


def _data_of(store: RunStore, settings: dict[str, Any]) -> tuple[str | None, int]:
    """The data set and resolution the run trained on (a study's first data set)."""
    train = dict(settings.get("train") or {})
    if not train and store.space_file.is_file():
        try:
            from lknas.space import load_space

            train = load_space(store.space_file).train.to_dict()
        except Exception:
            pass
    train.update(settings.get("train_overrides") or {})
    dataset = (settings.get("datasets") or [None])[0] or train.get("dataset")
    return dataset, int(train.get("resolution") or 64)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1300px;
color:#222;padding:0 16px}h1{margin-bottom:4px}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:36px}
.caption{color:#555;margin:4px 0 8px}table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;
padding:3px 7px;text-align:left}th{background:#f4f4f4}pre{background:#f7f7f7;padding:10px;overflow:auto;font-size:12px}
nav a{margin-right:12px}.muted{color:#777}
"""


def _pareto_table(store: RunStore, df: pd.DataFrame, objectives: tuple[Objective, ...]) -> str:
    group = next((c for c in ("budget", "dataset") if c in df.columns and df[c].nunique() > 1), None)
    if group:  # a study on several data sets, a fidelity run's two budgets: one front each
        front = pd.concat([store.pareto(objectives, part) for _, part in df.groupby(group, sort=False)])
    else:
        front = store.pareto(objectives, df)
    if front.empty:
        return "<p class='muted'>The Pareto set is empty: no trial finished with status ok.</p>"
    cols = [metric_of(o) for o in objectives]
    extra = [c for c in ("budget", "dataset", "variant", "dimension", "point", "seed") if c in front.columns]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["trial", "architecture", *cols, *extra, "summary"])
    body = []
    for _, row in front.iterrows():
        name = arch_file_name(row)
        link = f"<a href='archs/{html.escape(name)}'>{html.escape(name)}</a>" if (store.root / "archs" / name).is_file() \
            else html.escape(str(row["hash"]))
        cells = [str(int(row["trial"])), link] + [f"{row[c]:.4g}" if isinstance(row[c], (int, float)) else
                                                  html.escape(str(row[c])) for c in cols]
        cells += [html.escape(str(row[c])) for c in extra] + [html.escape(str(row.get("summary", "")))]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _page(store: RunStore, settings: dict[str, Any], df: pd.DataFrame, figs: list[Figure], skipped: dict[str, str],
          pngs: list[Path], png_message: str) -> str:
    from plotly.offline import get_plotlyjs

    objectives = run_objectives(settings)
    kind = {"scale": "scaling study", "fidelity": "fidelity measurement"}.get(settings.get("kind"), "search")
    counts = df["status"].value_counts().to_dict() if "status" in df.columns else {}
    status = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    png_names = {p.stem for p in pngs}
    sections = []
    for f in figs:
        div = pio.to_html(f.fig, full_html=False, include_plotlyjs=False, div_id=f"fig-{f.name}",
                          config={"displaylogo": False, "responsive": True}, default_width="100%")
        png = f" <a href='figures/{f.name}.png'>PNG</a>" if f.name in png_names else ""
        sections.append(f"<section id='{f.name}'><h2>{html.escape(f.title)}</h2><p class='caption'>"
                        f"{html.escape(f.caption)}{png}</p>{div}</section>")
    nav = " ".join(f"<a href='#{f.name}'>{html.escape(f.title)}</a>" for f in figs)
    missing = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in skipped.items())
    summary = (store.root / "summary.txt").read_text() if (store.root / "summary.txt").is_file() else ""
    title = f"lknas {kind}: {settings.get('name') or settings.get('space_name') or store.root.name}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_CSS}</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head><body>
<h1>{html.escape(title)}</h1>
<p class="muted">{html.escape(str(store.root))} · {len(df)} trials ({html.escape(status)}) · objectives:
{html.escape(', '.join(f'{o.name} ({o.mode})' for o in objectives))} · {html.escape(str(settings.get('created', '')))}</p>
<nav>{nav} <a href="#pareto-table">Pareto table</a> <a href="#settings">Settings</a></nav>
{''.join(sections)}
<section id="pareto-table"><h2>Pareto set</h2><p class="caption">Feasible, fully trained trials that no other
dominates in {html.escape(', '.join(o.name for o in objectives))}; each architecture is a loadable YAML
(<code>lknas.load_arch</code>).</p>{_pareto_table(store, df, objectives)}</section>
<section id="settings"><h2>Settings</h2><pre>{html.escape(summary)}</pre>
<pre>{html.escape(json.dumps(settings, indent=2, default=str))}</pre>
<p class="muted">Static figures: {html.escape(png_message)}</p>
{f'<p>Not shown:</p><ul>{missing}</ul>' if missing else ''}</section>
</body></html>
"""


def write_report(run: str | os.PathLike, png: bool = True, erf: bool = True,
                 compare: list[str | os.PathLike] | tuple = ()) -> ReportResult:
    """Write RUN/report.html and (when a Chromium is found) RUN/figures/*.png; `compare`: other
    runs to draw error EDFs against."""
    store, settings, df = _load(run)
    figs, skipped = build_figures(run, erf=erf, compare=compare)
    pngs, message = ([], "skipped (--no-png)")
    if png:
        pngs, message = export_pngs({f.name: f.fig for f in figs}, store.root / "figures")
    path = write_text_atomic(store.root / "report.html", _page(store, settings, df, figs, skipped, pngs, message))
    return ReportResult(path, figs, pngs, message, skipped)
