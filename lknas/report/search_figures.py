"""Figures of the search itself: Optuna's parameter importances and the hypervolume history.

Both degrade gracefully: with too few trials (or no study) they return (None, reason).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from lknas.report.figures import AXIS_TITLES, TEMPLATE, _feasible
from lknas.search.hypervolume import REFERENCE, bounds, hypervolume, hypervolume_2d, minimized, normalize
from lknas.search.noise import search_rows
from lknas.search.objectives import metric_of
from lknas.space.configs import Objective

__all__ = ["load_study", "importance_figure", "hypervolume_history", "hypervolume_figure", "hypervolume_2d"]


def load_study(study_db: str | Path, name: str | None = None):
    """The Optuna study in a run's study.db (the only one there, or the one called `name`), or None."""
    import optuna

    path = Path(study_db)
    if not path.is_file():
        return None
    from lknas.search.store import check_study_db

    check_study_db(path)
    storage = f"sqlite:///{path.resolve()}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if not names:
        return None
    return optuna.load_study(study_name=name if name in names else names[0], storage=storage)


def importance_figure(study, objectives: tuple[Objective, ...]) -> tuple[go.Figure | None, str]:
    """Optuna's hyperparameter importances (its default evaluator), one bar group per objective."""
    import optuna

    if study is None:
        return None, "no Optuna study (study.db) in this run"
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 3:
        return None, f"parameter importances need at least 3 completed trials; this study has {len(complete)}"
    fig = go.Figure()
    problems = []
    n_values = len(study.directions)
    for i, obj in enumerate(objectives[:n_values]):
        sign = -1.0 if obj.mode == "max" else 1.0  # the evaluator ranks params by how they reach low values
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                imp = optuna.importance.get_param_importances(study, target=lambda t, i=i, s=sign: s * t.values[i])
        except Exception as err:  # too few distinct values, no common parameters, ...
            problems.append(f"{obj.name}: {type(err).__name__}: {err}")
            continue
        if imp:
            names = list(imp)[::-1]
            fig.add_trace(go.Bar(x=[imp[n] for n in names], y=names, orientation="h", name=obj.name,
                                 hovertemplate=f"{obj.name}: %{{y}} %{{x:.3f}}<extra></extra>"))
    if not fig.data:
        return None, "parameter importances could not be computed: " + ("; ".join(problems) or "no parameters")
    fig.update_layout(template=TEMPLATE, barmode="group", height=max(350, 28 * len(fig.data[0].y) * len(fig.data) + 150),
                      title=f"Optuna parameter importances ({len(complete)} completed trials), per objective",
                      xaxis_title="importance", legend_title="objective")
    return fig, "; ".join(problems)


def hypervolume_history(df: pd.DataFrame, objectives: tuple[Objective, ...]) -> pd.DataFrame:
    """After each finished trial (in trial order), the hypervolume of the feasible trials so far,
    each objective min-max normalized over all feasible trials, reference point 1.1 (all minimized):
    `lknas.search.hypervolume`, the definition the benchmarks use too.
    Confirm re-trainings are not trials of the search: left out."""
    cols = [metric_of(o) for o in objectives]
    df = search_rows(df)
    ok = _feasible(df, *cols)
    if ok.empty:
        return pd.DataFrame(columns=["trial", "hypervolume"])
    values = minimized(ok[cols].astype(float).values, [o.mode for o in objectives])
    norm = normalize(values, *bounds(values))
    ref = np.full(len(cols), REFERENCE)
    ok_trials = ok["trial"].astype(int).values
    history, seen = [], []
    for trial in sorted(df["trial"].astype(int)):
        seen.extend(np.nonzero(ok_trials == trial)[0])
        history.append((trial, hypervolume(norm[seen], ref) if seen else 0.0))
    return pd.DataFrame(history, columns=["trial", "hypervolume"])


def hypervolume_figure(df: pd.DataFrame, objectives: tuple[Objective, ...]) -> tuple[go.Figure | None, str]:
    if len(objectives) < 2:
        return None, "the hypervolume history is for multi-objective runs; this run has one objective"
    hist = hypervolume_history(df, objectives)
    if hist.empty or (hist["hypervolume"] <= 0).all():
        return None, "no feasible trial yet: no hypervolume to show"
    names = " x ".join(AXIS_TITLES.get(metric_of(o), o.name) + f" ({o.mode})" for o in objectives)
    fig = go.Figure(go.Scatter(x=hist["trial"], y=hist["hypervolume"], mode="lines+markers", line=dict(shape="hv"),
                               name="hypervolume", hovertemplate="after trial %{x}: %{y:.4f}<extra></extra>"))
    fig.update_layout(template=TEMPLATE, xaxis_title="trial", yaxis_title="hypervolume (normalized objectives)",
                      title=f"Hypervolume history of {names}<br><sub>objectives min-max normalized to [0, 1] "
                            f"over the feasible trials, all minimized, reference point {REFERENCE}</sub>")
    if hist["trial"].max() - hist["trial"].min() < 15:  # a short run: plotly would add ticks at half trials
        fig.update_xaxes(dtick=1)
    return fig, ""
