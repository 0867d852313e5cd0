"""One tiny end-to-end scaling study on a real local Ray: the search's results format plus
`dimension`, `point` and `seed`, a report that works on it, and a re-run that only continues."""
from __future__ import annotations

import io
import json
import textwrap

import pytest

from lknas.search import load_results

pytestmark = [pytest.mark.xdist_group("ray"), pytest.mark.ray]


def test_tiny_scale_study_lands_in_the_results_format(local_ray, tmp_path):
    from lknas.report import write_report
    from lknas.study import run_scale

    exp = tmp_path / "tiny.yaml"
    exp.write_text(textwrap.dedent("""\
        name: tiny_study
        base:
          stem: {type: patch}
          block: convnext
          layer_scale: 1.0e-6
          mlp_ratio: 2
          kernel_type: dense
          stages:
            - {depth: 1, width: 8, kernel: 3}
            - {depth: 1, width: 16, kernel: 3}
        train: {dataset: "pathfinder:easy,train=64,val=32", resolution: 32, steps: 1, batch_size: 32,
                warmup_epochs: 0}
        seeds: 1
        scale:
          kernel: [[7, 5]]
        """))
    out = tmp_path / "run"
    outcome = run_scale(exp, out=out, quiet=True, stream=io.StringIO())
    df = load_results(out)
    assert len(df) == 2 and set(df["status"]) == {"ok"} and not outcome.interrupted
    assert sorted(zip(df["dimension"], df["point"], df["seed"])) == [("base", "base", 0), ("kernel", "7-5", 0)]
    for col in ("accuracy", "latency_ms", "flops_effective", "params_effective", "erf", "hash", "arch_yaml", "variant",
                "dataset"):
        assert col in df.columns and df[col].notna().all(), col
    settings = json.loads((out / "run.json").read_text())
    assert settings["kind"] == "scale" and settings["search"]["trials"] == 2
    for name in ("trials.csv", "pareto.csv", "summary.txt", "jobs.json", "experiment.yaml"):
        assert (out / name).is_file(), name
    assert "kernel" in (out / "summary.txt").read_text()
    result = write_report(out, png=False, erf=False)
    assert {"scaling_flops", "pareto_latency"} <= {f.name for f in result.figures}
    # the same --out again: nothing left to run
    stream = io.StringIO()
    run_scale(out=out, quiet=True, stream=stream)
    assert "all 2 trials are done" in stream.getvalue() and len(load_results(out)) == 2


@pytest.mark.parametrize("settings, line", [
    ({"kind": "scale", "name": "kernel_types", "experiment": "experiments/kernel_types.yaml"},
     "experiment: experiments/kernel_types.yaml"),
    ({"kind": "scale", "name": "mine", "experiment": "experiments/kernel_types.yaml"},
     "experiment: mine (experiments/kernel_types.yaml)"),
    ({"kind": "fidelity", "name": "fidelity-peleK_space", "space_name": "peleK_space",
      "space": "/x/search_spaces/peleK_space.yaml"}, "space: /x/search_spaces/peleK_space.yaml"),
])
def test_summary_names_the_source_once(settings, line, tmp_path):
    from lknas.search.store import RunStore
    from lknas.study.runner import _summary

    store = RunStore(tmp_path)
    assert _summary(store, settings, total=4).splitlines()[1] == line


def test_a_continued_study_grows_its_seeds_and_keeps_its_trials(tmp_path):
    """`lknas scale --out RUN --seeds N` on a study of fewer seeds appends the missing seeds to
    every point (jobs.json, run.json); asking it again adds nothing; fewer seeds is refused."""
    from lknas.errors import LknasError
    from lknas.search.store import RunStore
    from lknas.study.runner import Job, _more_seeds, _read_jobs

    store = RunStore(tmp_path / "run")
    store.root.mkdir(parents=True, exist_ok=True)
    jobs = [Job(i, v, "kernel", p, 1.0, "pathfinder", 0, 64, f"yaml-{v}-{p}") for i, (v, p) in
            enumerate([("a", "3"), ("a", "13"), ("b", "3")])]
    settings = {"seeds": [0], "search": {"trials": 3}}
    store.write_settings(settings)
    out = _more_seeds(store, settings, jobs, 3, io.StringIO())
    assert [j.trial for j in out] == list(range(9)) and out[:3] == jobs
    assert sorted((j.variant, j.point, j.seed) for j in out) == sorted(
        (v, p, s) for v, p in [("a", "3"), ("a", "13"), ("b", "3")] for s in range(3))
    assert all(j.arch_yaml == f"yaml-{j.variant}-{j.point}" for j in out)
    assert _read_jobs(store.root / "jobs.json") == out
    assert json.loads(store.settings_file.read_text())["seeds"] == [0, 1, 2] and settings["search"]["trials"] == 9
    assert _more_seeds(store, settings, out, 3, io.StringIO()) == out
    with pytest.raises(LknasError, match="can only grow"):
        _more_seeds(store, settings, out, 2, io.StringIO())
