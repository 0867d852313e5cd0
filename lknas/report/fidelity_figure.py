"""The figure of a fidelity run (`lknas fidelity`): each architecture's mean accuracy at the proxy
budget against the target budget, seed spread as error bars, coloured by kernel type, with the
rank correlations and ICC in the title."""
from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from lknas.report.figures import TEMPLATE, color_of, with_kernel_type
from lknas.study.fidelity import PROXY, fidelity_stats

__all__ = ["fidelity_figure"]


def fidelity_figure(df: pd.DataFrame) -> tuple[go.Figure | None, str]:
    """(figure, '') or (None, why not)."""
    try:
        stats = fidelity_stats(df)
    except ValueError as err:
        return None, str(err)
    ok = with_kernel_type(df[df["status"] == "ok"])
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
    fig.update_layout(template=TEMPLATE, title=dict(text=title, font=dict(size=14)), legend_title="kernel type",
                      xaxis_title="top-1 accuracy at the proxy budget (%, mean over seeds, bars: sd)",
                      yaxis_title="top-1 accuracy at the target budget (%)", height=560, margin=dict(t=90))
    return fig, ""
