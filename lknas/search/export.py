"""`python -m lknas export results/RUN`: found architectures as self-contained YAML files.

Each file is the architecture (loadable by `lknas.load_arch`, `python -m lknas train --arch`, and
registrable with timm through `lknas.register_archs` / `LKNAS_ARCH_PATH`) plus a `provenance`
block: the run, the trial, its status and metrics.
"""
from __future__ import annotations

import datetime as dt
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from lknas.arch import ArchConfig
from lknas.errors import LknasError
from lknas.io import write_text_atomic
from lknas.search.objectives import metric_of
from lknas.search.store import FEASIBLE, RunStore, run_objectives
from lknas.space.configs import OBJECTIVE_MODES, Objective

__all__ = ["export_archs", "select_rows"]

_METRIC_KEYS = ("accuracy", "val_loss", "latency_ms", "latency_device", "latency_threads", "latency_layout",
                "layout", "throughput", "params",
                "params_effective", "flops", "flops_effective", "erf", "erf_20", "erf_30", "erf_50", "erf_99",
                "train_time", "epochs", "steps")


def _objectives(settings: dict[str, Any]) -> tuple[Objective, ...]:
    return run_objectives(settings)


def select_rows(store: RunStore, *, pareto: bool = False, trial: int | None = None,
                best: str | None = None) -> pd.DataFrame:
    """The trials to export: the Pareto set, one trial by number, or the best by one objective."""
    if sum(x is not None and x is not False for x in (pareto or None, trial, best)) != 1:
        raise LknasError("export: choose exactly one of --pareto, --trial ID or --best OBJECTIVE")
    settings = store.read_settings()
    df = store.frame()
    if pareto:
        rows = store.pareto(_objectives(settings), df)
        if rows.empty:
            raise LknasError(f"{store.root}: the Pareto set is empty (no trial finished with status ok)")
        return rows
    if trial is not None:
        rows = df[df["trial"] == trial]
        if rows.empty:
            known = ", ".join(str(t) for t in df["trial"]) or "none"
            raise LknasError(f"{store.root}: no trial {trial}; finished trials: {known}")
        return rows
    mode = next((o.mode for o in _objectives(settings) if o.name == best), OBJECTIVE_MODES.get(best or ""))
    if mode is None:
        raise LknasError(f"export --best: unknown objective {best!r}; choose from {', '.join(OBJECTIVE_MODES)}")
    column = metric_of(best)
    ok = df[(df["status"] == FEASIBLE) & df[column].notna()] if column in df.columns else df.iloc[0:0]
    if ok.empty:
        raise LknasError(f"{store.root}: no finished trial has a value for {best}")
    return ok.sort_values(column, ascending=mode == "min", kind="stable").head(1)


def _runs(row: pd.Series) -> dict[str, list]:
    """A trial's runs (`search.trial_seeds` > 1): each run's accuracy and its training seed."""
    out = {}
    for key in ("accuracy_seeds", "train_seeds"):
        value = row.get(key)
        if isinstance(value, (list, tuple)):
            out[key] = [_clean(v) for v in value]
    return out


def _clean(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _measured_with(row: pd.Series) -> dict[str, int]:
    """The model its metrics were measured on: input size, classes and channels (`lknas count
    --resolution R --num-classes N` repeats its params and FLOPs); empty for rows that lack them."""
    train = row.get("train") if isinstance(row.get("train"), dict) else {}
    values = {"resolution": train.get("resolution"), "num_classes": _clean(row.get("num_classes")),
              "in_chans": _clean(row.get("in_chans"))}  # _clean: a NaN (an older row) is None
    return {k: int(v) for k, v in values.items() if isinstance(v, (int, float))}


def export_archs(run: str | os.PathLike, out: str | os.PathLike | None = None, *, pareto: bool = False,
                 trial: int | None = None, best: str | None = None) -> list[Path]:
    """Write the selected trials' architectures to `out` (default `RUN/export/`); returns the files."""
    store = RunStore(run)
    settings = store.read_settings()
    rows = select_rows(store, pareto=pareto, trial=trial, best=best)
    out_dir = Path(out) if out is not None else store.root / "export"
    space = settings.get("space_name", "arch")
    written = []
    for _, row in rows.iterrows():
        if not isinstance(row.get("arch_yaml"), str):
            raise LknasError(f"{store.root}: trial {row['trial']} has no architecture recorded "
                             f"(status {row['status']}: {row.get('error') or row.get('reason') or ''})")
        arch = ArchConfig.from_yaml(row["arch_yaml"])
        data = arch.to_dict()
        data["provenance"] = {
            "run": str(store.root), "space": space, "trial": int(row["trial"]), "hash": arch.hash(),
            "status": row["status"], "summary": arch.summary(),
            "metrics": {k: _clean(row[k]) for k in _METRIC_KEYS if k in row and pd.notna(row[k])} | _runs(row),
            "exported": dt.datetime.now().isoformat(timespec="seconds"),
        }
        measured = _measured_with(row)
        if measured:
            data["provenance"]["measured_with"] = measured
        if isinstance(row.get("train"), dict) and row["train"]:
            data["train"] = row["train"]  # the proxy training it was ranked with: train-proxy repeats it
        name = f"{space}_trial{int(row['trial'])}.yaml"
        data_hint = "" if "train" in data else " --data imagefolder:PATH"
        header = (f"# {arch.summary()}\n# from {store.root}, trial {int(row['trial'])}: load with lknas.load_arch, "
                  f"train with `python -m lknas train --arch {out_dir / name}{data_hint}`\n")
        written.append(write_text_atomic(out_dir / name, header + yaml.safe_dump(data, sort_keys=False)))
    return written
