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
from lknas.report.figures import TEMPLATE

__all__ = ["compute_erfs", "erf_figure"]


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
        z = np.log10(1 + 99 * np.clip(r.heatmap, 0, None)) / 2
        fig.add_trace(go.Heatmap(z=z[::-1], colorscale="Viridis", zmin=0, zmax=1, showscale=i == 0,
                                 colorbar=dict(title="log", len=0.8), name=label,
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
