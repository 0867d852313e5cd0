"""Figures and report.html built from small results sets the tests write themselves (no search runs)."""
from __future__ import annotations

import math
import random
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import optuna
import pytest

from tests.helpers import small_arch
from lknas.report import (
    build_figures, dimension_figure, edf_figure, export_pngs, hypervolume_figure, hypervolume_history, importance_figure,
    load_study, pareto_figure, scaling_figure, write_report,
)
from lknas.report import export as export_mod
from lknas.report.search_figures import hypervolume_2d
from lknas.search.store import RunStore
from lknas.space import Objective
from lknas.study import edf, error_edfs

DATA = "pathfinder:easy,train=96,val=32"
OBJECTIVES = (Objective("accuracy", "max"), Objective("latency", "min"))
CHROMIUM = export_mod.find_chromium()
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (apt-get install chromium)")


def _row(trial: int, arch, status: str = "ok", rng: random.Random | None = None, **extra) -> dict:
    rng = rng or random.Random(trial)
    k = arch.kernel_sizes[0]
    row = {"trial": trial, "status": status, "hash": arch.hash(), "summary": arch.summary(), "arch_yaml": arch.to_yaml(),
           "param.kernel_type": arch.kernel_types[0], "param.stages[0].kernel": k,
           "param.stages[0].width": arch.widths[0]}
    if status == "ok":
        flops = 1e6 * (1 + k / 5 + arch.widths[0] / 8)
        row.update(accuracy=50 + 4 * math.log(k) + rng.uniform(-3, 3), latency_ms=0.2 + k / 40 + rng.uniform(0, 0.1),
                   params_effective=1e4 * (k + arch.widths[0]), flops_effective=flops, flops=flops, erf=0.01 * k,
                   train_time=1.0)
    elif status == "infeasible":
        row["reason"] = "params 2,000,000 > max_params 1,500,000"
    else:
        row["error"] = "RuntimeError: boom"
    row.update(extra)
    return row


def make_search_run(root: Path, n: int = 16) -> Path:
    """A fake search run: trials.jsonl, run.json, space name, an Optuna study with the same trials."""
    store = RunStore(root)
    rng = random.Random(0)
    storage = f"sqlite:///{root / 'study.db'}"
    root.mkdir(parents=True)
    study = optuna.create_study(study_name="fake_space", storage=storage, directions=["maximize", "minimize"])
    dists = {"kernel_type": optuna.distributions.CategoricalDistribution(["dense", "stripe", "peripheral"]),
             "stages[0].kernel": optuna.distributions.CategoricalDistribution([3, 7, 13, 31]),
             "stages[0].width": optuna.distributions.CategoricalDistribution([8, 16])}
    for t in range(n):
        ktype = ["dense", "stripe", "peripheral"][t % 3]
        k, w = [3, 7, 13, 31][t % 4], [8, 16][t % 2]
        arch = small_arch(kernel=k, kernel_type=ktype, widths=(w, 16))
        status = "infeasible" if t == 5 else ("error" if t == 9 else "ok")
        row = _row(t, arch, status, rng)
        store.append(row)
        params = {"kernel_type": ktype, "stages[0].kernel": k, "stages[0].width": w}
        if status == "ok":
            study.add_trial(optuna.trial.create_trial(params=params, distributions=dists,
                                                      values=[row["accuracy"], row["latency_ms"]]))
    store.write_settings({"search": {"objectives": [o.to_dict() for o in OBJECTIVES], "trials": n, "sampler": "random"},
                          "train_overrides": {}, "space_name": "fake_space", "created": "2026-11-22T10:00:00",
                          "train": {"dataset": DATA, "resolution": 32}})
    store.refresh(OBJECTIVES, "fake summary\n")
    return root


def make_scale_run(root: Path) -> Path:
    """A fake scaling study: base, kernel and depth points on two data sets, two seeds each."""
    store = RunStore(root)
    rng = random.Random(1)
    trial = 0
    points = [("base", "base", 3, 1), ("kernel", "7-7", 7, 1), ("kernel", "13-13", 13, 1),
              ("depth", "x2 (2-2)", 3, 2), ("depth", "x3 (3-3)", 3, 3)]
    for dataset in ("pathfinder", "shapes"):
        for dim, point, k, d in points:
            for seed in (0, 1):
                arch = small_arch(kernel=k, depths=(d, d))
                row = _row(trial, arch, "ok", rng, dimension=dim, point=point, value=float(k * d), variant="base",
                           dataset=dataset, seed=seed, resolution=32)
                row["flops_effective"] = 1e6 * (k + 3 * d)
                store.append({k2: v for k2, v in row.items() if not k2.startswith("param.")})
                trial += 1
    store.write_settings({"kind": "scale", "name": "fake_study", "experiment": "fake.yaml",
                          "search": {"objectives": [o.to_dict() for o in OBJECTIVES], "trials": trial},
                          "train": {"dataset": DATA, "resolution": 32}, "datasets": [DATA, "shapes"], "seeds": [0, 1],
                          "points": len(points), "created": "2026-11-22T11:00:00"})
    store.refresh(OBJECTIVES, "fake study\n")
    return root


@pytest.fixture(scope="module")
def search_run(tmp_path_factory) -> Path:
    return make_search_run(tmp_path_factory.mktemp("report") / "search")


@pytest.fixture(scope="module")
def scale_run(tmp_path_factory) -> Path:
    return make_scale_run(tmp_path_factory.mktemp("report") / "scale")


def _frame(run: Path):
    return RunStore(run).frame()


# ----------------------------------------------------------------------------- figures
def test_pareto_figure_shows_every_feasible_trial_and_highlights_the_front(search_run):
    df = _frame(search_run)
    fig = pareto_figure(df, x="latency_ms")
    ok = df[df["status"] == "ok"]
    markers = [t for t in fig.data if t.mode == "markers"]
    assert sum(len(t.x) for t in markers) == len(ok)  # infeasible and failed trials are not plotted
    assert {t.name for t in markers} == {"dense", "stripe", "peripheral"}
    outlined = sum(len(t.x) for t in markers if t.marker.line.width == 2)
    front = [t for t in fig.data if t.name == "Pareto front"][0]
    assert outlined == len(front.x) >= 1
    stored = set(RunStore(search_run).pareto(OBJECTIVES, df)["trial"])  # the same front as pareto.csv
    assert {int(c[0]) for t in markers if t.marker.line.width == 2 for c in t.customdata} == stored
    hover = markers[0].customdata[0]
    assert str(hover[1]).split(" ")[0] in ("dense", "stripe", "peripheral") and "k=" in hover[1]
    assert pareto_figure(df, x="flops_effective").layout.xaxis.type == "log"
    assert pareto_figure(df.iloc[0:0]) is None


def test_pareto_figure_error_bars_from_the_confirm_seeds(search_run):
    df = _frame(search_run)
    front = RunStore(search_run).pareto(OBJECTIVES, df)
    member = front.iloc[0]
    extra = []
    for i, delta in enumerate((1.0, 4.0)):  # two confirm seeds above the member: mean +5/3, sd 2.08 over 3
        row = member.to_dict()
        row.update(trial=1000 + i, accuracy=member["accuracy"] + delta, phase="confirm", confirms=member["trial"])
        extra.append(row)
    import pandas as pd

    fig = pareto_figure(pd.concat([df, pd.DataFrame(extra)], ignore_index=True), x="latency_ms")
    markers = [t for t in fig.data if t.mode == "markers" and t.name != "mean over seeds"]
    assert sum(len(t.x) for t in markers) == len(df[df["status"] == "ok"])  # confirm rows are no points
    bars = {int(c[0]): (up, down) for t in markers if t.error_y and t.error_y.array is not None
            for c, up, down in zip(t.customdata, t.error_y.array, t.error_y.arrayminus)}
    mean, sd = 5 / 3, float(np.std([0.0, 1.0, 4.0], ddof=1))
    # the bar spans mean +- sd of the 3 seeds; the marker stays at the search's own seed
    assert bars[int(member["trial"])] == (pytest.approx(mean + sd), pytest.approx(sd - mean))
    assert all(v == (0, 0) for t, v in bars.items() if t != int(member["trial"]))
    means = [t for t in fig.data if t.name == "mean over seeds"]
    assert len(means) == 1 and list(means[0].y) == [pytest.approx(member["accuracy"] + mean)]
    hover = [c[3] for t in markers for c in t.customdata if int(c[0]) == int(member["trial"])][0]
    assert "over 3 seeds" in hover


def test_pareto_figure_latency_bars_from_the_retime_phase(search_run):
    from lknas.search.retime import apply_retimed

    df = _frame(search_run)
    member = RunStore(search_run).pareto(OBJECTIVES, df).iloc[0]
    df = apply_retimed(df, {member["hash"]: [2.0, 2.2, 2.4]})
    fig = pareto_figure(df, x="latency_ms")
    markers = [t for t in fig.data if t.mode == "markers"]
    bars = {int(c[0]): (xv, e) for t in markers if t.error_x and t.error_x.array is not None
            for c, xv, e in zip(t.customdata, t.x, t.error_x.array)}
    # the marker at the mean of the re-timings, the bar +- their sd; architectures not re-timed: no bar
    assert bars[int(member["trial"])] == (pytest.approx(2.2), pytest.approx(0.2))
    assert all(e == 0 for t, (_, e) in bars.items() if t != int(member["trial"]))
    hover = [c[3] for t in markers for c in t.customdata if int(c[0]) == int(member["trial"])][0]
    assert "over 3 quiet re-timings" in hover


def test_scaling_figure_one_line_per_dimension_with_seed_error_bars(scale_run):
    df = _frame(scale_run)
    fig = scaling_figure(df, x="flops_effective")
    names = {t.name for t in fig.data}
    assert names == {"kernel", "depth"}
    assert len(fig.data) == 4  # two dimensions x two data sets (panels)
    kernel = fig.data[0]
    assert len(kernel.x) == 3  # base + two kernel points, seeds averaged
    assert kernel.error_y.visible and all(e >= 0 for e in kernel.error_y.array)
    base = df[(df["dimension"] == "base") & (df["dataset"] == "pathfinder")]["accuracy"]
    assert np.isclose(kernel.error_y.array[0], base.std())
    assert scaling_figure(_frame(scale_run).drop(columns=["dimension"])) is None
    pareto = pareto_figure(df, x="flops_effective")  # one panel and one front per data set
    assert [a.text for a in pareto.layout.annotations] == ["pathfinder", "shapes"]
    assert len([t for t in pareto.data if t.name == "Pareto front"]) == 2
    assert "kernel 7-7 · seed" in " ".join(str(c[3]) for t in pareto.data if t.mode == "markers" for c in t.customdata)


def test_edf_is_the_fraction_of_models_below_each_error(search_run):
    e, f = edf([30, 10, 20, float("nan")])
    assert list(e) == [10, 20, 30] and list(f) == pytest.approx([1 / 3, 2 / 3, 1])
    df = _frame(search_run)
    curves = error_edfs(df)
    assert set(curves) == {"dense", "stripe", "peripheral"}
    assert sum(len(e) for e, _ in curves.values()) == (df["status"] == "ok").sum()
    fig = edf_figure(df)
    assert len(fig.data) == 3 and all(t.y[-1] == 1.0 for t in fig.data)
    spaces = edf_figure({"space A": df, "space B": df[df["param.kernel_type"] == "dense"]})
    assert [t.name.split(" (")[0] for t in spaces.data] == ["space A", "space B"]


def test_edf_of_a_single_kernel_type_still_names_its_curve(search_run):
    df = _frame(search_run)
    fig = edf_figure(df[df["param.kernel_type"] == "dense"])
    assert len(fig.data) == 1 and fig.data[0].name.startswith("dense (n=")
    assert fig.data[0].showlegend is True  # plotly hides a lone trace's legend unless told
    assert fig.layout.legend.title.text == "kernel type"


def test_erf_heatmap_figure_has_title_pixel_axes_and_colorbar(tmp_path, monkeypatch):
    from lknas.measure.erf import ErfResult, area_ratios
    from lknas.report.erf import erf_heatmap_figure, write_erf_png

    heat = np.zeros((24, 32))
    heat[12, 16], heat[0, 0] = 1.0, 0.25
    result = ErfResult(heatmap=heat, ratios=area_ratios(heat), images=4)
    title = "ERF of arch (dense k=31-7 d=1-1 w=8-16) at initialization: 4 shapes images at 32x24 px"
    fig = erf_heatmap_figure(result, title)
    assert fig.layout.title.text.replace("<br>", " ").startswith(title)
    assert "t = 20%" in fig.layout.title.text and "t = 99%" in fig.layout.title.text
    assert "pixels" in fig.layout.xaxis.title.text and "pixels" in fig.layout.yaxis.title.text
    assert fig.layout.yaxis.autorange == "reversed"  # row 0 at the top, as in the image
    (trace,) = fig.data
    assert "log" in trace.colorbar.title.text and trace.showscale is not False
    assert list(trace.x) == list(range(32)) and list(trace.y) == list(range(24))
    assert np.asarray(trace.z)[12, 16] == pytest.approx(1.0) and np.asarray(trace.z)[0, 0] > 0
    # without a browser for kaleido, the bare heatmap is still written, and the message says why
    monkeypatch.setattr(export_mod, "find_chromium", lambda: None)
    message = write_erf_png(result, str(tmp_path / "erf.png"), title)
    assert (tmp_path / "erf.png").is_file() and "without title, axes or colorbar" in message
    assert "chromium" in message and not list(tmp_path.glob(".erf-*"))


@needs_chromium
def test_erf_png_is_the_full_figure_where_chromium_is(tmp_path):
    from PIL import Image

    from lknas.measure.erf import ErfResult, area_ratios
    from lknas.report.erf import write_erf_png

    heat = np.random.default_rng(0).random((32, 32))
    message = write_erf_png(ErfResult(heat, area_ratios(heat), 1), str(tmp_path / "out" / "erf.png"), "ERF of x")
    assert message == f"wrote {tmp_path / 'out' / 'erf.png'}"
    assert Image.open(tmp_path / "out" / "erf.png").size[0] > 600  # the figure, not the 128 px bare map
    _not_blank(tmp_path / "out" / "erf.png")


def test_dimension_figure_has_a_panel_per_searched_dimension(search_run):
    fig = dimension_figure(_frame(search_run))
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["kernel_type", "stages[0].kernel", "stages[0].width"]
    assert any(t.name == "mean" for t in fig.data)
    mean = next(t for t in fig.data if t.name == "mean")
    assert mean.marker.symbol.endswith("-open")  # a single trial's dot stays visible under its mean


def test_importances_and_hypervolume(search_run, tmp_path):
    study = load_study(search_run / "study.db", "fake_space")
    fig, note = importance_figure(study, OBJECTIVES)
    assert fig is not None and {t.name for t in fig.data} == {"accuracy", "latency"}
    assert set(fig.data[0].y) <= {"kernel_type", "stages[0].kernel", "stages[0].width"}
    # few trials: no figure, a reason
    small = optuna.create_study(directions=["maximize", "minimize"])
    fig, note = importance_figure(small, OBJECTIVES)
    assert fig is None and "at least 3" in note
    assert importance_figure(None, OBJECTIVES)[0] is None
    hist = hypervolume_history(_frame(search_run), OBJECTIVES)
    assert len(hist) == 16 and hist["hypervolume"].is_monotonic_increasing and hist["hypervolume"].iloc[-1] > 0
    # confirm re-trainings are not trials of the search: the history ignores them
    df = _frame(search_run)
    confirm = df.iloc[[0]].assign(trial=999, accuracy=100.0, phase="confirm", confirms=int(df["trial"].iloc[0]))
    import pandas as pd

    assert hypervolume_history(pd.concat([df, confirm], ignore_index=True), OBJECTIVES).equals(hist)
    assert hypervolume_2d(np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]]), np.array([2.0, 2.0])) == pytest.approx(3.25)
    # a short run is ticked per trial, not at half trials
    fig, _ = hypervolume_figure(df[df["trial"] < 4], OBJECTIVES)
    assert fig.layout.xaxis.dtick == 1


def test_build_figures_for_a_search_and_a_scaling_run(search_run, scale_run):
    figs, skipped = build_figures(search_run)
    names = [f.name for f in figs]
    for name in ("pareto_latency", "pareto_flops", "pareto_params", "edf_kernel_type", "dimensions", "importance",
                 "hypervolume", "erf"):
        assert name in names, (name, skipped)
    erf = [f for f in figs if f.name == "erf"][0].fig
    assert 1 <= len(erf.data) <= 4 and all(np.asarray(t.z).max() > 0 for t in erf.data)
    panel_titles = [a.text.split("<br><sub>")[0] for a in erf.layout.annotations]
    assert all(len(line) <= 30 for t in panel_titles for line in t.split("<br>"))  # wrapped, never run together
    figs, skipped = build_figures(scale_run, erf=False, compare=[search_run])
    names = [f.name for f in figs]
    runs = [f for f in figs if f.name == "edf_runs"][0].fig
    assert [t.name.split(" (")[0] for t in runs.data] == ["scale", "search"]
    assert "scaling_flops" in names and "scaling_latency" in names and "importance" not in names
    assert skipped["erf"].startswith("skipped")


def test_the_erf_figure_shows_the_trained_heatmaps_the_trials_saved(search_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(search_run, run)
    store = RunStore(run)
    ok = [r for r in store.rows() if r["status"] == "ok"]
    store.erf_file(0).parent.mkdir()
    for i, r in enumerate(ok):  # a distinct, recognizable map per trial
        heat = np.zeros((16, 16), dtype=np.float32)
        heat[8, 8], heat[0, i % 16] = 1.0, 0.5
        np.save(store.erf_file(r["trial"]), heat)
    figs, _ = build_figures(run)
    fig = [f for f in figs if f.name == "erf"][0]
    assert "trained" in fig.fig.layout.title.text and "trained network" in fig.caption
    for trace in fig.fig.data:
        trial = int(re.search(r"#(\d+)", trace.name).group(1))
        i = [r["trial"] for r in ok].index(trial)
        z = np.asarray(trace.z)[::-1]  # drawn upside down (row 0 at the bottom)
        assert z.shape == (16, 16) and z[8, 8] == pytest.approx(1.0) and z[0, i % 16] > 0
    # without saved maps (the fixture) the networks are measured freshly initialized, and say so
    figs, _ = build_figures(search_run)
    fig = [f for f in figs if f.name == "erf"][0]
    assert "initialization" in fig.fig.layout.title.text and "freshly initialized" in fig.caption


# ----------------------------------------------------------------------------- report and PNGs
def test_report_without_chromium_says_how_to_get_pngs(scale_run, monkeypatch, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(scale_run, run)
    monkeypatch.setattr(export_mod, "find_chromium", lambda: None)
    result = write_report(run, erf=False)
    assert result.html.is_file() and not result.pngs
    assert "apt-get install chromium" in result.png_message
    text = result.html.read_text()
    assert "apt-get install chromium" in text
    assert "<script src=" not in text and len(text) > 3_000_000  # plotly.js is inline: nothing fetched
    assert "archs/trial" in text  # the Pareto table links the architecture YAMLs


def test_report_cli_rejects_a_directory_that_is_not_a_run(tmp_path, capsys):
    from lknas.cli import main

    assert main(["report", str(tmp_path)]) == 2
    assert "not a search or scaling run" in capsys.readouterr().err


PROBE = """<script>
document.documentElement.setAttribute("data-lknas-probe", "1");
function lknasRecord(text) {
  var el = document.documentElement;
  el.setAttribute("data-js-errors", (el.getAttribute("data-js-errors") || "") + text + "; ");
}
window.addEventListener("error", function (e) { lknasRecord("error: " + e.message); });
window.addEventListener("unhandledrejection", function (e) { lknasRecord("rejection: " + e.reason); });
var lknasConsoleError = console.error;
console.error = function () { lknasRecord("console.error: " + Array.from(arguments).join(" "));
                              lknasConsoleError.apply(console, arguments); };
</script>"""


def _not_blank(path: Path) -> None:
    from PIL import Image

    img = np.asarray(Image.open(path).convert("L"), dtype=float)
    assert img.shape[0] > 200 and img.shape[1] > 200
    assert img.std() > 5, f"{path} looks blank"


@needs_chromium
def test_report_html_renders_in_headless_chromium_with_pngs(search_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(search_run, run)
    result = write_report(run)
    assert result.pngs, result.png_message
    assert {p.stem for p in result.pngs} == {f.name for f in result.figures}, result.png_message
    for f in result.figures:
        _not_blank(run / "figures" / f"{f.name}.png")
    html = run / "report.html"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,2000", "--virtual-time-budget=15000"]
    # a probe records uncaught errors and console.error calls on the page, in the dumped DOM
    probe = run / "report_probe.html"
    probe.write_text(html.read_text().replace("<head>", "<head>" + PROBE, 1))
    dom = subprocess.run([CHROMIUM, *flags, "--enable-logging=stderr", "--v=0", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html_tag = re.search(r"<html[^>]*>", dom.stdout).group(0)
    assert 'data-lknas-probe="1"' in html_tag  # the probe ran
    assert "data-js-errors" not in html_tag, html_tag
    assert not [line for line in dom.stderr.splitlines() if "Uncaught" in line]
    # every plot rendered: plotly draws its SVG (`main-svg`) with markers, lines, bars or a heatmap image
    starts = sorted((dom.stdout.index(f'id="fig-{f.name}"'), f.name) for f in result.figures)
    for (start, name), (end, _) in zip(starts, starts[1:] + [(len(dom.stdout), "")]):
        part = dom.stdout[start:end]
        assert 'class="main-svg"' in part, name
        assert any(mark in part for mark in ('class="point"', 'class="js-line"', "<image")), name
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", html.as_uri()], capture_output=True, timeout=180)
    assert shot.is_file()
    _not_blank(shot)
    shutil.copy(shot, run / "figures" / "report_screenshot.png")


def test_png_export_never_crashes(monkeypatch, tmp_path):
    import plotly.graph_objects as go
    import plotly.io as pio

    figs = {"a": go.Figure(go.Scatter(x=[1, 2], y=[2, 1]))}
    monkeypatch.setattr(export_mod, "find_chromium", lambda: "/usr/bin/chromium")

    def broken(*args, **kwargs):
        raise RuntimeError("browser did not start")

    monkeypatch.setattr(pio, "write_images", broken)
    paths, message = export_pngs(figs, tmp_path)
    assert paths == [] and "PNG export failed" in message and "browser did not start" in message


def test_png_export_retries_a_figure_the_browser_dropped(monkeypatch, tmp_path):
    import plotly.graph_objects as go
    import plotly.io as pio

    figs = {n: go.Figure(go.Scatter(x=[1, 2], y=[2, 1])) for n in ("a", "b", "c")}
    monkeypatch.setattr(export_mod, "find_chromium", lambda: "/usr/bin/chromium")
    calls = []

    def flaky(figures, paths, **kwargs):  # drops "b" on the first call; "c" never renders
        calls.append([p.stem for p in paths])
        for p in paths:
            if p.stem == "a" or (p.stem == "b" and len(calls) > 1):
                p.write_bytes(b"png")
        if len(calls) > 1:
            raise RuntimeError("render timed out")

    monkeypatch.setattr(pio, "write_images", flaky)
    (tmp_path / "c.png").write_bytes(b"an old report's")
    paths, message = export_pngs(figs, tmp_path)
    assert calls == [["a", "b", "c"], ["b", "c"]]
    assert [p.stem for p in paths] == ["a", "b"] and not (tmp_path / "c.png").exists()
    assert "failed for c" in message and "render timed out" in message

    calls.clear()
    monkeypatch.setattr(pio, "write_images", lambda figures, paths, **kw: [p.write_bytes(b"png") for p in paths])
    paths, message = export_pngs(figs, tmp_path)
    assert len(paths) == 3 and message.startswith("wrote 3 PNGs")
