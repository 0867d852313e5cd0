"""Plotly figures of a run's results frame (`lknas.search.load_results`).

Each function takes the frame (and what it plots against) and returns a `go.Figure`, or None when
the frame has nothing to show (no feasible trial, no such column): the report leaves it out.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lknas.search.noise import CONFIRM_PHASE, noise_columns, search_rows
from lknas.search.store import FEASIBLE, PARAM_PREFIX, first_per_architecture, pareto_mask
from lknas.study.edf import error_edfs, kernel_type_of

__all__ = ["KERNEL_COLORS", "color_of", "with_kernel_type", "pareto_figure", "scaling_figure", "edf_figure",
           "dimension_figure", "AXIS_TITLES"]

KERNEL_COLORS = {"dense": "#1f77b4", "stripe": "#ff7f0e", "peripheral": "#2ca02c", "dilated": "#d62728"}
_PALETTE = ["#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939",
            "#8c6d31", "#843c39"]
AXIS_TITLES = {
    "accuracy": "top-1 accuracy (%)", "latency_ms": "latency (ms, deploy form)", "flops_effective": "FLOPs (MACs)",
    "params_effective": "params", "erf": "ERF area ratio (t = 20%)", "flops": "FLOPs (MACs)", "params": "params",
}
LOG_AXES = ("flops_effective", "params_effective", "flops", "params")
TEMPLATE = "plotly_white"


def color_of(name: str, names: list[str] | None = None) -> str:
    """The kernel type's colour (the same in every figure); others from a fixed palette."""
    if name in KERNEL_COLORS:
        return KERNEL_COLORS[name]
    others = [n for n in (names or [name]) if n not in KERNEL_COLORS]
    index = others.index(name) if name in others else abs(hash(name))
    return _PALETTE[index % len(_PALETTE)]


def with_kernel_type(df: pd.DataFrame) -> pd.DataFrame:
    """The frame with a `kernel_type` column ('dense', 'stripe', 'dense/peripheral', ...)."""
    out = df.copy()
    if "kernel_type" not in out.columns:
        out["kernel_type"] = [kernel_type_of(r) for r in out.to_dict("records")] if len(out) else []
    return out


def _log_axis(col: str, values: pd.Series) -> bool:
    """Counts always on a log axis; anything else (latency) when it spans more than 20x."""
    v = values.astype(float)
    return col in LOG_AXES or bool(len(v) and v.min() > 0 and v.max() / v.min() > 20)


def _feasible(df: pd.DataFrame, *cols: str) -> pd.DataFrame:
    if df.empty or any(c not in df.columns for c in ("status", *cols)):
        return df.iloc[0:0]
    ok = df[df["status"] == FEASIBLE]
    for c in cols:
        ok = ok[pd.to_numeric(ok[c], errors="coerce").notna()]
        ok = ok[np.isfinite(ok[c].astype(float))]
    return ok


def pareto_figure(df: pd.DataFrame, x: str = "latency_ms", y: str = "accuracy", x_mode: str = "min",
                  y_mode: str = "max", title: str | None = None, panels: str = "dataset") -> go.Figure | None:
    """Every feasible trial (status ok) as a point coloured by kernel type; the Pareto front of
    (y, x) highlighted and joined; hover: trial, architecture summary (and a study's point), both
    values. A study on several data sets gets one panel (and one front) per data set. Where the
    front was confirmed with extra seeds (`lknas.search.confirm`), its accuracy error bars span
    +- one standard deviation over the seeds, and the hover tells a lead within noise; where the
    latency front was re-timed (`lknas.search.retime`), latency bars span +- one sd of those timings."""
    confirm_rows = df[df["phase"] == CONFIRM_PHASE] if "phase" in df.columns else df.iloc[0:0]
    ok = with_kernel_type(_feasible(search_rows(df), x, y))
    if ok.empty:
        return None
    groups = list(dict.fromkeys(ok[panels])) if panels in ok.columns and ok[panels].nunique() > 1 else [None]
    fig = make_subplots(rows=1, cols=len(groups), subplot_titles=[str(g) for g in groups] if groups[0] else None)
    types = sorted(ok["kernel_type"].unique())
    n_front = 0
    shown_mean = False
    for col, group in enumerate(groups, start=1):
        part_all = ok if group is None else ok[ok[panels] == group]
        mask = np.array(pareto_mask(part_all[[y, x]].astype(float).values.tolist(), [y_mode, x_mode]))
        mask[mask] = first_per_architecture(part_all[mask])  # an architecture trained again: its first trial
        n_front += int(mask.sum())
        for kt in types:
            sel = (part_all["kernel_type"] == kt).values
            for on_front in (False, True):
                sub = part_all[sel & (mask == on_front)]
                if sub.empty:
                    continue
                label = sub["point"].astype(str) if "point" in sub.columns else pd.Series("", index=sub.index)
                if "dimension" in sub.columns:
                    seed = " · seed " + sub["seed"].astype(str) if "seed" in sub.columns else ""
                    label = sub["dimension"].astype(str) + " " + label + seed
                error_y = None
                if on_front and y == "accuracy" and not confirm_rows.empty:
                    noise = noise_columns(sub, pd.concat([sub, confirm_rows]), ())
                    if (noise["seeds"] > 1).any():
                        # the bar spans the seeds' mean +- sd; the marker stays at the search's own seed
                        mean, sd = noise["accuracy_mean"].astype(float), noise["accuracy_std"].fillna(0).astype(float)
                        own = sub[y].astype(float).values
                        error_y = dict(type="data", symmetric=False, array=np.maximum(0, mean.values + sd.values - own),
                                       arrayminus=np.maximum(0, own - (mean.values - sd.values)), thickness=1.5, width=4)
                        many = (noise["seeds"] > 1).values
                        fig.add_trace(go.Scatter(
                            x=sub[x].values[many], y=mean.values[many], mode="markers", name="mean over seeds",
                            legendgroup="mean", showlegend=not shown_mean, hoverinfo="skip",
                            marker=dict(symbol="line-ew-open", size=16, color="black", line=dict(width=2))),
                            row=1, col=col)
                        shown_mean = True
                        label = label + [f" · {m:.1f} +- {s:.1f} over {n} seeds" if n > 1 else ""
                                         for m, s, n in zip(noise["accuracy_mean"], noise["accuracy_std"],
                                                            noise["seeds"])]
                error_x = None
                if x == "latency_ms" and "latency_timings" in sub.columns and (sub["latency_timings"] > 1).any():
                    # the retime phase's quiet re-timings: the marker at their mean, the bar +- their sd
                    error_x = dict(type="data", array=sub["latency_std_ms"].fillna(0).astype(float).values,
                                   thickness=1.5, width=4)
                    label = label + [f" · latency {m:.2f} +- {s:.2f} ms over {int(n)} quiet re-timings "
                                     f"(in its trial {t:.2f} ms)" if n > 1 else ""
                                     for m, s, n, t in zip(sub["latency_ms"], sub["latency_std_ms"],
                                                           sub["latency_timings"], sub["latency_search_ms"])]
                fig.add_trace(go.Scatter(
                    x=sub[x], y=sub[y], mode="markers", name=kt, legendgroup=kt, error_y=error_y, error_x=error_x,
                    showlegend=bool(col == 1 and (not on_front or not (sel & ~mask).any())),
                    marker=dict(color=color_of(kt, types), size=13 if on_front else 8,
                                opacity=1.0 if on_front else 0.55, line=dict(color="black", width=2 if on_front else 0)),
                    customdata=np.stack([sub["trial"].astype(int), sub["summary"].fillna("").astype(str)
                                         if "summary" in sub.columns else label,
                                         np.full(len(sub), "on the Pareto front" if on_front else ""), label], axis=1),
                    hovertemplate=(f"trial %{{customdata[0]}} %{{customdata[2]}}<br>%{{customdata[1]}}<br>%{{customdata[3]}}"
                                   f"<br>{AXIS_TITLES.get(y, y)}: %{{y:.4g}}<br>{AXIS_TITLES.get(x, x)}: %{{x:.4g}}"
                                   "<extra></extra>"),
                ), row=1, col=col)
        front = part_all[mask].sort_values(x)
        fig.add_trace(go.Scatter(x=front[x], y=front[y], mode="lines", name="Pareto front", legendgroup="front",
                                 showlegend=col == 1, hoverinfo="skip",
                                 line=dict(color="black", dash="dash", width=1.5, shape="hv" if y_mode == "max" else "linear")),
                      row=1, col=col)
    fig.update_layout(
        template=TEMPLATE, title=title or f"{AXIS_TITLES.get(y, y)} vs {AXIS_TITLES.get(x, x)}: "
        f"{len(ok)} feasible of {len(search_rows(df))} trials, {n_front} on the front (outlined)",
        legend_title="kernel type",
    )
    fig.update_xaxes(title_text=AXIS_TITLES.get(x, x), type="log" if _log_axis(x, ok[x]) else "linear")
    fig.update_yaxes(title_text=AXIS_TITLES.get(y, y), col=1)
    return fig


def _dims_per_group(ok: pd.DataFrame) -> list[str]:
    return [d for d in dict.fromkeys(ok["dimension"]) if d != "base"]


def _agg(rows: pd.DataFrame, x: str) -> pd.DataFrame:
    g = rows.groupby(["dimension", "point"], sort=False)
    out = g.agg(x=(x, "mean"), acc=("accuracy", "mean"), std=("accuracy", "std"), n=("accuracy", "count"),
                value=("value", "mean"), summary=("summary", "first")).reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out.sort_values("x")


def scaling_figure(df: pd.DataFrame, x: str = "flops_effective") -> go.Figure | None:
    """Accuracy against `x` (FLOPs or latency), one line per scaling dimension (and variant), all
    starting from the base architecture; error bars: the standard deviation over seeds; one panel
    per data set."""
    if "dimension" not in df.columns:
        return None
    ok = _feasible(df, x, "accuracy")
    if ok.empty:
        return None
    for col, default in (("variant", "base"), ("dataset", "data"), ("value", 1.0)):
        if col not in ok.columns:
            ok = ok.assign(**{col: default})
    datasets = list(dict.fromkeys(ok["dataset"]))
    variants = list(dict.fromkeys(ok["variant"]))
    dims = _dims_per_group(ok)
    fig = make_subplots(rows=1, cols=len(datasets), subplot_titles=[str(d) for d in datasets], shared_yaxes=False)
    by_variant = len(variants) > 1 and len(dims) <= 1
    names = variants if by_variant else (dims or ["base"])
    symbols = ["circle", "square", "diamond", "triangle-up", "x", "star", "hexagon", "cross"]
    shown: set[str] = set()
    for col, dataset in enumerate(datasets, start=1):
        data = ok[ok["dataset"] == dataset]
        for vi, variant in enumerate(variants):
            rows = data[data["variant"] == variant]
            base = rows[rows["dimension"] == "base"]
            for dim in dims or ["base"]:
                line = pd.concat([base, rows[rows["dimension"] == dim]]) if dim != "base" else base
                if line.empty:
                    continue
                a = _agg(line, x)
                key = variant if by_variant else dim
                name = key if (by_variant or len(variants) == 1) else f"{dim} · {variant}"
                fig.add_trace(go.Scatter(
                    x=a["x"], y=a["acc"], mode="lines+markers", name=name, legendgroup=name,
                    showlegend=name not in shown, error_y=dict(type="data", array=a["std"], visible=True),
                    line=dict(color=color_of(key, names), dash="solid" if by_variant or vi == 0 else "dot"),
                    marker=dict(symbol=symbols[vi % len(symbols)] if not by_variant else "circle", size=8),
                    customdata=np.stack([a["point"], a["summary"].fillna(""), a["n"], a["std"]], axis=1),
                    hovertemplate=(f"{name}: %{{customdata[0]}}<br>%{{customdata[1]}}<br>accuracy %{{y:.2f}} "
                                   f"± %{{customdata[3]:.2f}} (%{{customdata[2]}} seeds)<br>{AXIS_TITLES.get(x, x)} "
                                   f"%{{x:.4g}}<extra></extra>"),
                ), row=1, col=col)
                shown.add(name)
    fig.update_layout(template=TEMPLATE, title=f"Scaling: accuracy vs {AXIS_TITLES.get(x, x)}, one line per "
                      f"{'variant' if by_variant else 'dimension'} from the base (mean ± std over seeds)",
                      legend_title="variant" if by_variant else "dimension")
    fig.update_xaxes(title_text=AXIS_TITLES.get(x, x), type="log" if _log_axis(x, ok[x]) else "linear")
    fig.update_yaxes(title_text=AXIS_TITLES["accuracy"], col=1)
    return fig


def edf_figure(frames: dict[str, pd.DataFrame] | pd.DataFrame, by: str = "kernel_type",
               title: str | None = None) -> go.Figure | None:
    """RegNet's error EDFs: F(e) = fraction of models with error < e, one curve per kernel type
    (or per value of `by`) of one frame, or per named frame (one per design space)."""
    curves = error_edfs(frames, by=by)
    if not curves:
        return None
    fig = go.Figure()
    names = list(curves)
    for name, (e, f) in curves.items():
        fig.add_trace(go.Scatter(x=np.concatenate([[e[0]], e]), y=np.concatenate([[0.0], f]), mode="lines",
                                 line=dict(shape="hv", width=2.5, color=color_of(name, names)),
                                 name=f"{name} (n={len(e)})", showlegend=True,  # one curve too: its colour names it
                                 hovertemplate=f"{name}<br>error < %{{x:.2f}}%: %{{y:.0%}} of models<extra></extra>"))
    fig.update_layout(template=TEMPLATE, title=title or f"EDF of top-1 error per {by.replace('_', ' ')} "
                      "(RegNet: F(e) = fraction of models with error < e; left is better)",
                      xaxis_title="top-1 error (%)", yaxis_title="cumulative prob.", yaxis_range=[0, 1.02],
                      legend_title=by.replace("_", " "))
    return fig


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def dimension_figure(df: pd.DataFrame, y: str = "accuracy", cols: int = 3) -> go.Figure | None:
    """pycls-style sweep analysis: `y` against each searched dimension (`param.*`), one panel per
    dimension, every feasible trial a dot, the mean per value a black line."""
    ok = with_kernel_type(_feasible(df, y))
    params = [c for c in ok.columns if c.startswith(PARAM_PREFIX) and ok[c].notna().any()]
    if ok.empty or not params:
        return None
    rows = math.ceil(len(params) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[p[len(PARAM_PREFIX):] for p in params],
                        vertical_spacing=min(0.12, 0.5 / rows), horizontal_spacing=0.06)
    types = sorted(ok["kernel_type"].unique())
    for i, p in enumerate(params):
        r, c = i // cols + 1, i % cols + 1
        sub = ok[ok[p].notna()]
        numeric = all(_is_number(v) for v in sub[p])
        xs = sub[p].astype(float) if numeric else sub[p].astype(str)
        for kt in types:
            m = (sub["kernel_type"] == kt).values
            if m.any():
                fig.add_trace(go.Scatter(x=xs[m], y=sub[y][m], mode="markers", name=kt, legendgroup=kt,
                                         showlegend=i == 0, marker=dict(color=color_of(kt, types), size=7, opacity=0.7),
                                         customdata=np.stack([sub["trial"][m], sub["summary"][m].fillna("")], axis=1),
                                         hovertemplate="trial %{customdata[0]}<br>%{customdata[1]}<br>"
                                                       f"{p[len(PARAM_PREFIX):]} = %{{x}}<br>{y} %{{y:.4g}}<extra></extra>"),
                              row=r, col=c)
        means = pd.DataFrame({"x": xs, "y": sub[y].astype(float)}).groupby("x", sort=True)["y"].mean()
        if len(means) <= 12:
            fig.add_trace(go.Scatter(x=list(means.index), y=means.values, mode="lines+markers", name="mean",
                                     legendgroup="mean", showlegend=i == 0, line=dict(color="black", width=1.5),
                                     # open: a value with one trial shows its dot through the mean
                                     marker=dict(symbol="diamond-open", size=11, color="black", line=dict(width=2)),
                                     hoverinfo="skip"),
                          row=r, col=c)
        if not numeric:
            fig.update_xaxes(type="category", row=r, col=c)
    fig.update_layout(template=TEMPLATE, height=max(350, 300 * rows),
                      title=f"{AXIS_TITLES.get(y, y)} against each searched dimension (feasible trials)",
                      legend_title="kernel type")
    return fig
