"""The figure of a fidelity run (`lknas fidelity`): each architecture's mean accuracy at the proxy
budget against the target budget, seed spread as error bars, coloured by kernel type, with the
rank correlations and ICC in the title; and the kernel effects at both budgets, in units of each
budget's seed sd, so a user sees whether a kernel preference of the proxy survives the target."""
from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lknas.report.figures import TEMPLATE, color_of, with_kernel_type
from lknas.status import TrialStatus
from lknas.study.fidelity import PROXY, TARGET

__all__ = ["fidelity_figure", "kernel_effect_figure"]


def fidelity_figure(df: pd.DataFrame, stats: dict) -> go.Figure:
    """The proxy-vs-target figure of a fidelity run's trials `df`, with `stats = fidelity_stats(df)`."""
    ok = with_kernel_type(df[df["status"] == TrialStatus.OK])
    first = ok[ok["budget"] == PROXY].groupby("point").first()
    table = pd.DataFrame({"point": stats["points"], "proxy": stats["proxy_mean"], "target": stats["target_mean"],
                          "proxy_std": stats["proxy_std"], "target_std": stats["target_std"]})
    table["kernel_type"] = [first.loc[p, "kernel_type"] for p in table["point"]]
    table["summary"] = [str(first.loc[p].get("summary", "")) for p in table["point"]]
    fig = go.Figure()
    types = sorted(table["kernel_type"].unique())
    for kt in types:
        sub = table[table["kernel_type"] == kt]
        fig.add_trace(go.Scatter(
            x=sub["proxy"], y=sub["target"], mode="markers", name=kt,
            marker=dict(color=color_of(kt, types), size=11, line=dict(color="black", width=1)),
            error_x=dict(type="data", array=sub["proxy_std"].fillna(0), thickness=1, width=3),
            error_y=dict(type="data", array=sub["target_std"].fillna(0), thickness=1, width=3),
            customdata=sub[["point", "summary"]].values,
            hovertemplate="%{customdata[0]}: %{customdata[1]}<br>proxy %{x:.1f}%<br>target %{y:.1f}%<extra></extra>",
        ))
    icc = stats["icc_proxy"]
    title = (f"Proxy vs target budget, {stats['archs']} architectures: Spearman {stats['spearman']:.2f} "
             f"[{stats['spearman_ci'][0]:.2f}, {stats['spearman_ci'][1]:.2f}], Kendall {stats['kendall']:.2f} "
             f"[{stats['kendall_ci'][0]:.2f}, {stats['kendall_ci'][1]:.2f}]<br>proxy ICC {icc['icc']:.2f}"
             + (f" [{icc['icc_ci'][0]:.2f}, {icc['icc_ci'][1]:.2f}]" if icc.get("icc_ci") else "") + " "
             f"(seed sd {math.sqrt(icc['var_seed']):.1f}, architecture sd {math.sqrt(icc['var_arch']):.1f} points)")
    ceiling, corrected = stats.get("tau_ceiling"), stats.get("tau_corrected")
    if isinstance(ceiling, float) and math.isfinite(ceiling):  # noise or bias, as the text report says
        title += f"<br>Kendall tau a noise-free proxy could reach: {ceiling:.2f}" + (
            f"; ours with both budgets' seed noise divided out: {corrected:.2f}"
            if isinstance(corrected, float) and math.isfinite(corrected) else "")
    fig.update_layout(template=TEMPLATE, title=dict(text=title, font=dict(size=14)), legend_title="kernel type",
                      xaxis_title="top-1 accuracy at the proxy budget (%, mean over seeds, bars: sd)",
                      yaxis_title="top-1 accuracy at the target budget (%)", height=580, margin=dict(t=110))
    return fig


def kernel_effect_figure(stats: dict, max_dims: int = 4) -> tuple[go.Figure | None, str]:
    """(figure, '') or (None, why not), from a run's `fidelity_stats`: for the kernel dimensions with
    the largest proxy effects, each value's mean accuracy at the proxy and at the target, as the
    distance from that budget's mean over architectures in units of its seed sd (|y| > 0.5 on both
    sides of a value: a range over 1 seed sd)."""
    effects = [e for e in stats.get("kernel_effects", []) if "target_values" in e][:max_dims]
    if not effects:
        return None, "no kernel dimension takes 2 or more values among the architectures, or no target seeds"
    centre = {b: float(pd.Series(stats[f"{b}_mean"]).mean()) for b in (PROXY, TARGET)}
    seed_sd = {b: math.sqrt(stats[f"icc_{b}"]["var_seed"]) if stats.get(f"icc_{b}") else float("nan")
               for b in (PROXY, TARGET)}
    if not all(math.isfinite(v) and v > 0 for v in seed_sd.values()):
        return None, "the seed sd is unknown or zero at a budget (one seed, or identical seeds)"
    fig = make_subplots(rows=1, cols=len(effects), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[e["dimension"] for e in effects])
    for col, e in enumerate(effects, start=1):
        keys = list(e["values"])
        for budget, values, color in ((PROXY, e["values"], color_of(PROXY, [PROXY, TARGET])),
                                      (TARGET, e["target_values"], color_of(TARGET, [PROXY, TARGET]))):
            acc = [values[k] for k in keys]
            fig.add_trace(go.Scatter(
                x=keys, y=[(a - centre[budget]) / seed_sd[budget] for a in acc], mode="lines+markers",
                name=budget, legendgroup=budget, showlegend=col == 1, line=dict(color=color),
                customdata=[[a, e["archs"][k]] for a, k in zip(acc, keys)],
                hovertemplate=(f"{budget}: {e['dimension']} = %{{x}}<br>%{{customdata[0]:.1f}}% over "
                               "%{customdata[1]} architectures<br>%{y:.2f} seed sd from the budget's mean"
                               "<extra></extra>"),
            ), row=1, col=col)
        fig.update_xaxes(type="category", row=1, col=col)
    fig.update_yaxes(title_text="mean accuracy - budget's mean (seed sds)", row=1, col=1)
    fig.update_layout(template=TEMPLATE, height=420, legend_title="budget", margin=dict(t=70),
                      title=dict(text=f"Kernel effects at the proxy and the target (seed sd {seed_sd[PROXY]:.2f} "
                                      f"and {seed_sd[TARGET]:.2f} points)", font=dict(size=14)))
    return fig, ""
