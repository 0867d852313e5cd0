"""ERF heatmaps of chosen architectures, side by side (RepLKNet's figure).

The trials keep their ERF ratios, not the trained weights, so the report measures the ERF of each
chosen architecture freshly initialized (a fixed seed) on the run's validation images: what the
architecture alone (kernel sizes, depth, kernel design) makes visible. Layer scale (ConvNeXt's
gamma, 1e-6 at initialization) would hide every residual branch at initialization, so it is set to
1 for the measurement, as if trained.
"""
from __future__ import annotations

import dataclasses
import math
import textwrap

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lknas.arch import ArchConfig
from lknas.measure.erf import log_scaled
from lknas.report.figures import TEMPLATE

__all__ = ["compute_erfs", "erf_figure", "erf_heatmap_figure", "write_erf_png"]

COLORBAR_TITLE = "log₁₀(1 + 99g) / 2<br>(g: |gradient| / max)"


def _images(dataset: str | None, resolution: int, n: int, seed: int):
    """(images, num_classes, in_chans): the data set's validation images, or Gaussian noise."""
    import torch

    if dataset:
        try:
            from lknas.data import build_data

            bundle = build_data(dataset, resolution=resolution, batch_size=n, seed=seed)
            x, _ = next(iter(bundle.val))
            return x[:n].float(), bundle.num_classes, bundle.in_chans
        except Exception:  # no such data here: the architecture's ERF on noise
            pass
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, resolution, resolution, generator=g), 2, 3


def compute_erfs(archs: dict[str, ArchConfig], resolution: int, dataset: str | None = None, images: int = 8,
                 seed: int = 0):
    """{label: ErfResult} of each architecture at initialization (seeded)."""
    import torch

    from lknas.measure import effective_receptive_field
    from lknas.models import build_model

    x, num_classes, in_chans = _images(dataset, resolution, images, seed)
    out = {}
    for label, arch in archs.items():
        torch.manual_seed(seed)
        model = build_model(_visible(arch), num_classes=num_classes, in_chans=in_chans)
        out[label] = effective_receptive_field(model, x, max_images=images)
    return out


def _visible(arch: ArchConfig) -> ArchConfig:
    """The same network with layer scale 1 where it has one (its branches then show at init)."""
    stages = tuple(dataclasses.replace(s, layer_scale=1.0) if s.layer_scale else s for s in arch.stages)
    return arch.replace(stages=stages)


def _wrap(label: str, width: int = 24) -> str:
    """A panel title on lines of about `width` characters, so that neighbours do not run together."""
    return "<br>".join(textwrap.wrap(label, width, break_long_words=False)) or label


def erf_figure(results: dict, cols: int = 4, title: str | None = None) -> go.Figure | None:
    """Heatmaps side by side, log-scaled as ERF plots are (log10(1 + 99 x) / 2), with each
    architecture's t = 20% / 99% area ratios in its title."""
    if not results:
        return None
    labels = list(results)
    cols = min(cols, len(labels))
    rows = math.ceil(len(labels) / cols)
    titles = [f"{_wrap(label)}<br><sub>ERF r20 {r.ratios[0.2]:.3f} · r99 {r.ratios[0.99]:.3f}</sub>"
              for label, r in results.items()]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.03,
                        vertical_spacing=0.12 if rows > 1 else 0.1)
    for i, (label, r) in enumerate(results.items()):
        z = log_scaled(r.heatmap)
        fig.add_trace(go.Heatmap(z=z[::-1], colorscale="Viridis", zmin=0, zmax=1, showscale=i == 0,
                                 colorbar=dict(title=COLORBAR_TITLE, len=0.8), name=label,
                                 hovertemplate=f"{label}<br>x %{{x}}, y %{{y}}: %{{z:.3f}}<extra></extra>"),
                      row=i // cols + 1, col=i % cols + 1)
    fig.update_xaxes(showticklabels=False, constrain="domain")
    fig.update_yaxes(showticklabels=False, scaleanchor="x", constrain="domain")
    for i in range(1, len(labels)):
        fig.update_yaxes(scaleanchor=f"x{i + 1}", row=i // cols + 1, col=i % cols + 1)
    extra = 22 * max(t.count("<br>") - 1 for t in titles)  # wrapped panel titles need room under the title
    text = title or "Effective receptive fields at initialization, layer scale 1 (|d centre output / d input|, log scale)"
    fig.update_layout(template=TEMPLATE, height=330 * rows + 120 + extra, margin=dict(t=120 + extra),
                      title=dict(text=text, yref="container", y=1 - 20 / (330 * rows + 120 + extra), yanchor="top"))
    return fig


def erf_heatmap_figure(result, title: str) -> go.Figure:
    """One ERF heatmap (`lknas erf --out`): `title` (what was measured) over the t = 20% / 99% area
    ratios, axes in input pixels (row 0 at the top, as the image), a colorbar with the scale."""
    z = log_scaled(result.heatmap)
    h, w = z.shape
    ratios = " · ".join(f"area ratio t = {t:.0%}: {r:.3f}" for t, r in result.ratios.items() if t in (0.2, 0.99))
    fig = go.Figure(go.Heatmap(z=z, x=np.arange(w), y=np.arange(h), colorscale="Viridis", zmin=0, zmax=1,
                               colorbar=dict(title=COLORBAR_TITLE),
                               hovertemplate="x %{x} px, y %{y} px: %{z:.3f}<extra></extra>"))
    fig.update_xaxes(title_text=f"x (input pixels, 0 to {w - 1})", constrain="domain", showgrid=False)
    fig.update_yaxes(title_text=f"y (input pixels, 0 to {h - 1})", autorange="reversed", scaleanchor="x",
                     constrain="domain", showgrid=False)
    text = "<br>".join(textwrap.wrap(title, 70, break_long_words=False))
    lines = text.count("<br>") + 2
    fig.update_layout(template=TEMPLATE, width=760, height=640 + 22 * lines, margin=dict(t=60 + 26 * lines),
                      title=dict(text=f"{text}<br><sub>{ratios}</sub>", x=0.02, xanchor="left"))
    return fig


def write_erf_png(result, path: str, title: str) -> str:
    """`erf_heatmap_figure` as a PNG at `path`; without kaleido and Chrome/Chromium, the bare
    heatmap (`save_heatmap`). Returns what was written, for the user."""
    import os
    import tempfile
    from pathlib import Path

    from lknas.measure.erf import save_heatmap
    from lknas.report.export import NO_CHROMIUM, NO_KALEIDO, export_pngs

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".erf-") as tmp:
        fig = erf_heatmap_figure(result, title)
        written, message = export_pngs({"erf": fig}, tmp, width=fig.layout.width, height=fig.layout.height, scale=1)
        if written:
            os.replace(written[0], out)
            return f"wrote {out}"
    save_heatmap(result.heatmap, str(out))
    if message in (NO_KALEIDO, NO_CHROMIUM):
        message = "the figure needs kaleido and Chrome/Chromium: `pip install kaleido`, `apt-get install chromium`"
    return f"wrote {out}: the bare heatmap, without title, axes or colorbar ({message})"
