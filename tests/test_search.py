"""End-to-end searches with a real local Ray and Optuna, on a tiny space and a tiny data set."""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest

from lknas.search import load_results, pareto_mask
from lknas.search.store import RunStore, parse_record
from lknas.space import Objective, load_arch

pytestmark = [pytest.mark.xdist_group("ray"), pytest.mark.ray]
REPO = Path(__file__).resolve().parents[1]
DATA = "pathfinder:easy,train=96,val=32"


def write_space(path: Path, *, constraints: str = "{resolution: 32}", lr: float = 2e-3, trials: int = 3,
                sampler: str = "random", objectives: str = "[accuracy, latency]", weight_decay: float = 0.05,
                steps: int = 2, confirm: str = "0", retime: int = 0) -> Path:
    path.write_text(textwrap.dedent(f"""\
        name: tiny_space
        stem: {{type: patch}}
        block: convnext
        layer_scale: 1.0e-6
        mlp_ratio: 2
        kernel_type: {{choice: [dense, stripe]}}
        stages:
          - {{depth: 1, width: {{choice: [8, 16]}}, kernel: {{choice: [3, 7, 9]}}}}
          - {{depth: 1, width: 16, kernel: {{choice: [3, 5]}}}}
        constraints: {constraints}
        train: {{dataset: "{DATA}", resolution: 32, steps: {steps}, batch_size: 32, lr: {lr},
                weight_decay: {weight_decay}, warmup_epochs: 0}}
        search: {{sampler: {sampler}, objectives: {objectives}, trials: {trials}, seed: 0, confirm: {confirm},
                 retime: {retime}}}
        """))
    return path


def study_of(run: Path) -> optuna.Study:
    return optuna.load_study(study_name="tiny_space", storage=f"sqlite:///{run / 'study.db'}")


def test_multi_objective_search_writes_every_result(local_ray, tmp_path, monkeypatch):
    from lknas.search import run_search
    from lknas.search.retime import TimerPrestart

    started, taken = [], []
    real_start, real_take = TimerPrestart.start, TimerPrestart.take
    monkeypatch.setattr(TimerPrestart, "start", lambda self: (started.append(time.time()), real_start(self))[1])
    monkeypatch.setattr(TimerPrestart, "take", lambda self: (lambda t: (taken.append(t), t)[1])(real_take(self)))
    out = tmp_path / "run"
    outcome = run_search(write_space(tmp_path / "s.yaml", retime=3), out=out, quiet=True)
    df = load_results(out)
    # the search's timing service times every trial and the retime phase: no retime timer of its own
    assert started == [] and taken == []
    assert len(df) == 3 and set(df["status"]) == {"ok"}
    assert sorted(df["trial"]) == [0, 1, 2]
    for name in ("trials.csv", "trials.parquet", "pareto.csv", "space.yaml", "study.db", "summary.txt", "run.json"):
        assert (out / name).is_file(), name
    for col in ("param.kernel_type", "param.stages[0].kernel", "hash", "arch_yaml", "accuracy", "latency_ms",
                "latency_raw_ms", "latency_foreign", "latency_attempts", "params_effective", "flops", "erf",
                "train_time", "wall_time", "data_time", "static_time"):
        assert col in df.columns, col
    # where the time went: each trial's phases fit in its wall time; the driver's phases in order
    assert (df["data_time"] + df["static_time"] + df["train_time"] <= df["wall_time"]).all()
    assert list(outcome.timings) == ["data", "latency_reference", "study", "ray_start", "trials", "retime", "confirm",
                                     "results"]
    assert all(v >= 0 for v in outcome.timings.values()) and outcome.timings["trials"] > 0
    # each CPU trial timed its deploy model in the node's timing service, throughput too
    assert set(df["latency_process"]) == {"service"} and (df["throughput"] > 0).all()
    # every latency is scaled to the one reference time the run measured before its first trial
    reference = json.loads((out / "run.json").read_text())["latency_reference"]
    assert reference["ms"] > 0 and reference["resolution"] == 32 and reference["threads"] == 1
    # the Pareto set: non-dominated among the trials, one YAML each that builds
    values = df[["accuracy", "latency_ms"]].values.tolist()
    expected = {t for t, keep in zip(df["trial"], pareto_mask(values, ["max", "min"])) if keep}
    assert set(outcome.pareto["trial"]) == expected
    archs = sorted((out / "archs").glob("*.yaml"))
    assert len(archs) == len(expected)
    assert load_arch(archs[0]).hash() in set(df["hash"])
    study = study_of(out)
    assert len(study.directions) == 2
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert "trials: 3 of 3 finished: ok 3" in (out / "summary.txt").read_text()
    # the front's latency is the mean of 3 quiet re-timings (retime.json); the trial's own stays beside it
    retimed = df[df["latency_timings"] > 0]
    assert set(outcome.pareto["hash"]) <= set(retimed["hash"]) and (retimed["latency_timings"] == 3).all()
    assert (out / "retime.json").is_file() and "latency_search_ms" in df.columns
    # ... each in the layout its trial measured fastest and recorded, the one pareto.csv names
    layout_of = dict(zip(df["hash"], df["latency_layout"]))
    retime_runs = json.loads((out / "retime.json").read_text())["timings"]
    assert retime_runs and all(r["layout"] == layout_of[h] for h, runs in retime_runs.items() for r in runs)
    assert "quiet re-timings" in archs[0].read_text() and "retime: " in (out / "summary.txt").read_text()
    # each trial's trained ERF heatmap, for the report's ERF figure
    heats = [RunStore(out).erf_map(t) for t in df["trial"]]
    assert all(h is not None and max(h.shape) <= 64 and h.max() == pytest.approx(1.0) for h in heats)
    assert "erf_map" not in df.columns


def test_single_objective_search(local_ray, tmp_path):
    from lknas.search import run_search

    out = tmp_path / "run"
    run_search(write_space(tmp_path / "s.yaml"), out=out, quiet=True, trials=2, sampler="tpe",
               objectives=(Objective("accuracy", "max"),), max_concurrent=1)
    study = study_of(out)
    assert len(study.directions) == 1 and len(study.trials) == 2
    # --max-concurrent 1 below the 2 CPUs: nothing sampled ahead, so one trial at a time
    first, second = load_results(out).sort_values("started_at").to_dict("records")
    assert second["started_at"] >= first["finished_at"] - 0.5  # finished_at: when the driver had the result
    assert study.best_trial.value == max(load_results(out)["accuracy"])


def test_infeasible_samples_cost_no_training_and_teach_optuna(local_ray, tmp_path):
    from lknas.search import run_search

    out = tmp_path / "run"
    space = write_space(tmp_path / "s.yaml", constraints="{max_params: 1000, resolution: 32}", trials=2)
    outcome = run_search(space, out=out, quiet=True)
    df = load_results(out)
    assert set(df["status"]) == {"infeasible"}
    assert df["reason"].str.contains("max_params 1,000").all()
    assert "train_time" not in df.columns or df["train_time"].isna().all()
    assert outcome.pareto.empty and not list((out / "archs").glob("*.yaml"))
    for t in study_of(out).trials:
        constraints = [v for k, v in t.system_attrs.items() if k.startswith("constraints")]
        assert constraints and max(constraints) > 0


def test_a_diverging_trial_is_recorded_and_the_search_goes_on(local_ray, tmp_path):
    from lknas.search import run_search

    out = tmp_path / "run"
    # the largest lr and weight decay the schema allows: AdamW's decay flips and grows the weights
    # 99-fold a step, so the loss is nan within 8 steps (lr 1e8 is now refused at validation)
    run_search(write_space(tmp_path / "s.yaml", lr=10, weight_decay=10, steps=8, trials=2), out=out, quiet=True)
    df = load_results(out)
    assert len(df) == 2 and set(df["status"]) == {"diverged"}
    assert df["error"].str.contains("lower train.lr").all()
    assert "diverged" in (out / "summary.txt").read_text()
    assert {t.state for t in study_of(out).trials} == {optuna.trial.TrialState.FAIL}


def test_a_raising_trial_reports_status_error(monkeypatch, tmp_path):
    from ray import tune

    from lknas.search.trial import NUMBER_KEY, TrialContext, run_trial

    reported = []
    monkeypatch.setattr(tune, "report", reported.append)
    ctx = TrialContext(space_file=str(write_space(tmp_path / "s.yaml")))
    run_trial({NUMBER_KEY: 7, "kernel_type": "no-such-type"}, ctx)
    assert len(reported) == 1
    assert reported[0]["status"] == "error" and reported[0]["trial"] == 7
    assert "no-such-type" in reported[0]["error"]


def _cli(*args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "lknas", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, **kw)


def test_a_malformed_space_fails_before_ray_starts(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages:\n  - {depth: 1, width: 8, kernel: 4}\n")
    start = time.monotonic()
    proc = _cli("search", "--space", str(bad), "--out", str(tmp_path / "run"))
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, output
    assert "stages[0].kernel" in output and "Traceback" not in output
    assert not (tmp_path / "run").exists()
    assert time.monotonic() - start < 60


def _logged(jsonl: Path) -> set[int]:
    """The trials whose records are whole in the log (a torn last line is not one)."""
    records = [parse_record(line)[0] for line in jsonl.read_bytes().splitlines()] if jsonl.exists() else []
    return {r["trial"] for r in records if r is not None}


def _kill_when(proc: subprocess.Popen, jsonl: Path, records: int, extra: float) -> set[int]:
    """SIGKILL the search (its whole process group) `extra` seconds after the log holds `records`
    records; returns the trials the log held by then."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and len(_logged(jsonl)) < records:
        time.sleep(0.2)
    time.sleep(extra)
    assert proc.poll() is None, "the search ended before it could be killed: " + proc.stdout.read()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return _logged(jsonl)


def test_resume_after_kills_runs_only_the_missing_trials(local_ray, tmp_path):
    """Two real kill -9 at seeded random points, a torn last line between them, and a --trials
    given at one resume that the next resume, without flags, keeps."""
    from lknas.search import run_search

    rng = random.Random(14)
    out = tmp_path / "run"
    jsonl = out / "trials.jsonl"
    space = write_space(tmp_path / "s.yaml", trials=4)
    proc = _cli("search", "--space", str(space), "--out", str(out), "--max-concurrent", "1", "--quiet")
    first = _kill_when(proc, jsonl, 1, rng.uniform(0, 1))
    assert 1 <= len(first) < 4
    with open(jsonl, "a") as fh:
        fh.write('{"trial": 99, "status": "o')  # as a kill mid-write leaves it

    proc = _cli("search", "--resume", str(out), "--trials", "8", "--quiet")
    second = _kill_when(proc, jsonl, len(first) + 1, rng.uniform(0, 1))
    assert first < second and len(second) < 8

    outcome = run_search(resume=out, quiet=True)
    df = load_results(out)
    assert len(df) == 8 and df["trial"].is_unique and not outcome.interrupted
    assert second <= set(df["trial"])
    states = [t.state for t in study_of(out).trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 8
    assert optuna.trial.TrialState.RUNNING not in states


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_search_on_an_existing_ray_head_via_address(tmp_path):
    port = _free_port()
    head = subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", f"--port={port}",
         "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        out = tmp_path / "run"
        proc = _cli("search", "--space", str(write_space(tmp_path / "s.yaml", trials=2)), "--out", str(out),
                    "--address", f"127.0.0.1:{port}", "--quiet")
        output, _ = proc.communicate(timeout=400)
        assert proc.returncode == 0, output
        df = load_results(out)
        assert len(df) == 2 and set(df["status"]) == {"ok"}
        assert "Pareto front" in output
    finally:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()


def test_from_a_previous_run_evaluates_its_pareto_set_first(local_ray, tmp_path):
    from lknas.search import run_search

    space = write_space(tmp_path / "s.yaml", trials=2)
    first = tmp_path / "first"
    run_search(space, out=first, quiet=True)
    front = {p.stem.split("-")[1] for p in (first / "archs").glob("*.yaml")}  # trialNNNN-HASH.yaml
    assert front
    second = tmp_path / "second"
    run_search(space, out=second, quiet=True, from_=first, trials=len(front), seed=123)
    assert set(load_results(second)["hash"]) == front
