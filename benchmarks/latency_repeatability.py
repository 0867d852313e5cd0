"""Is a latency measured inside a search the architecture's, or the noise of the trial beside it?

Runs a default-size search (16 trials, 2 at a time, each training the full proxy budget while the
other is measured, then the space's confirm re-trainings, which time their architectures again)
on a space derived from a bundled one by fixing every dimension except a few, so that the random
sampler draws each of its few architectures several times. Then:

- repeatability: for each architecture drawn 2+ times, the coefficient of variation (sd / mean)
  of the latencies its different trials measured; target <= 10%;
- ranking: Spearman's rho between each trial's in-search latency and a quiet re-measurement of
  its architecture afterwards (nothing else running, same protocol, scaled to the run's reference
  time, median of 6 timings over 3 fresh processes; a second such re-measurement from 3 other
  processes, ranked against the first, is the ceiling); target >= 0.9. Architectures whose
  latencies differ by less than the timing noise (a few %) cannot be ordered by any timing, so the
  per-architecture table is the fuller picture.

- the retime phase (`lknas.search.retime`): the architectures it re-timed after the trials, their
  mean over its rounds ranked against the same quiet yardstick (and their first in-search timing,
  for comparison), the CV across its rounds and the largest gap of a mean to the yardstick.

It also reports the CV of the unscaled medians (`latency_raw_ms`), which shows what the reference
net (`lknas.measure.reference`) takes out, and how many timings were repeated because other
processes loaded the node (`lknas.measure.interference`).

The search runs twice, with the quiet-timing lock (`LKNAS_QUIET=1`, the default) and without it
(`LKNAS_QUIET=0`, the behaviour before the lock) as the control, in the same process run.

    python benchmarks/latency_repeatability.py            # both modes, ~25 minutes on 2 cores
    python benchmarks/latency_repeatability.py --modes on --trials 8 --epochs 2

Writes results/benchmarks/latency_repeatability.json and .md. Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# the dimensions left free (everything else fixed at its first value): 3 kernel designs x 3 depths
# of stage 3, so that the few architectures drawn repeatedly differ in latency
FREE = {"kernel_type": None, "stages[2].depth": None}
QUIET_REPEATS = 2  # timings per architecture in each process of the quiet re-measurement
QUIET_PROCESSES = 3  # fresh processes per quiet re-measurement (a pass): a net's speed varies between processes


def _derived_space(base: str, tmp: Path, epochs: int | None, trials: int, steps: int | None = None,
                   as_is: bool = False) -> Path:
    """The base space with only FREE dimensions searched, random sampler, the base space's confirm
    phase (its re-trainings time their architectures again, while other trials start and end).
    `as_is`: the base space unchanged (its dimensions, sampler, constraints, confirm) but for the
    trial count and budget: the architectures a default search really draws."""
    from lknas.space import resolve_space_path

    raw = yaml.safe_load(resolve_space_path(base).read_text())
    if as_is:
        raw.setdefault("search", {})["trials"] = trials
        return _write_space(raw, tmp, epochs, steps)

    def first(value):
        if isinstance(value, dict) and "choice" in value:
            return value["choice"][0]
        if isinstance(value, dict) and "int" in value:
            return value["int"][0]
        return value

    for key in list(raw):
        if key not in ("stages", "search", "train", "constraints", "name", "description", "sparsity") \
                and key not in FREE:
            raw[key] = first(raw[key])
    for i, stage in enumerate(raw["stages"]):
        for key in list(stage):
            if f"stages[{i}].{key}" not in FREE:  # kernels at their largest, so every kernel type applies
                value = stage[key]
                stage[key] = max(value["choice"]) if key == "kernel" and isinstance(value, dict) \
                    and "choice" in value else first(value)
    if isinstance(raw.get("sparsity"), dict):
        raw["sparsity"] = {k: first(v) for k, v in raw["sparsity"].items()}
    raw.pop("constraints", None)
    raw["search"] = {"sampler": "random", "objectives": [{"name": "accuracy", "mode": "max"},
                                                         {"name": "latency", "mode": "min"}],
                     "trials": trials, "seed": 0, "confirm": (raw.get("search") or {}).get("confirm", "auto")}
    return _write_space(raw, tmp, epochs, steps)


def _write_space(raw: dict, tmp: Path, epochs: int | None, steps: int | None) -> Path:
    if epochs:
        raw.setdefault("train", {})["epochs"] = epochs
    if steps:
        raw.setdefault("train", {})["steps"] = steps
    raw["name"] = f"{raw.get('name', 'space')}_latency"
    path = tmp / "space.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _quiet_latencies(yamls: list[tuple[str, str]], resolution: int, num_classes: int, in_chans: int,
                     reference_ms: float | None, passes: int = 2,
                     layouts: dict[str, str] | None = None) -> list[dict[str, float]]:
    """The same protocol as in the search, scaled to the same reference time, in fresh processes
    (`lknas.measure.isolated`: not the driver that ran the search). A pass is QUIET_PROCESSES
    processes, each timing every architecture QUIET_REPEATS times in interleaved rounds; its value
    per architecture is the median of those timings, so the yardstick averages over what differs
    between processes (where a net's buffers land: the in-search timings each come from another
    trial process) and is steadier than the values it ranks. `passes` independent yardsticks from
    disjoint processes, started in alternation (the second ranks against the first: the ceiling,
    across processes as the in-search timings are). Each timing decides the memory layout as a
    trial does (both timed, the faster kept), or with `layouts` (hash -> layout) times the given
    one, as the retime phase does: its yardstick."""
    from lknas.measure.isolated import ChildTimer
    from lknas.search.trial import LATENCY_REPEATS

    setting = {"resolution": resolution, "threads": 1, "repeats": LATENCY_REPEATS, "reference_ms": reference_ms,
               "num_classes": num_classes, "in_chans": in_chans, "device": "cpu"}
    runs = {h: [[] for _ in range(passes)] for h, _ in yamls}
    for _ in range(QUIET_PROCESSES):
        for p in range(passes):
            timer = ChildTimer(setting)
            try:
                for _ in range(QUIET_REPEATS):
                    for h, y in yamls:
                        runs[h][p].append(timer(y, (layouts or {}).get(h))["latency_ms"])
            finally:
                timer.close()
    return [{h: statistics.median(runs[h][p]) for h in runs} for p in range(passes)]


def _run(mode: str, space: Path, tmp: Path, concurrency: int) -> dict:
    from lknas.search import load_results, run_search
    from lknas.study.rank_stats import spearman

    os.environ["LKNAS_QUIET"] = "1" if mode == "on" else "0"
    out = tmp / f"run-{mode}"
    start = time.perf_counter()
    run_search(space, out=out, quiet=True, max_concurrent=concurrency, cpus_per_trial=1)
    wall = time.perf_counter() - start
    df = load_results(out)
    ok = df[df["status"] == "ok"]
    from lknas.data import build_data
    from lknas.space import load_space

    train = load_space(space).train
    data = build_data(train.dataset, resolution=train.resolution, batch_size=train.batch_size, seed=train.seed)
    os.environ["LKNAS_QUIET"] = "1"
    reference = (json.loads((out / "run.json").read_text()).get("latency_reference") or {}).get("ms")
    yamls = list(ok.groupby("hash")["arch_yaml"].first().items())
    # the ceiling: a second quiet re-measurement ranked against the first (no timing ranks better)
    quiet, quiet_again = _quiet_latencies(yamls, train.resolution, data.num_classes, data.in_chans, reference)
    from lknas.search.retime import read_retimed

    retimed = read_retimed(out)  # the retime phase's quiet rounds, per architecture near the front
    retime_file = out / "retime.json"
    retime_runs = json.loads(retime_file.read_text())["timings"] if retime_file.is_file() else {}
    if "latency_search_ms" in ok.columns:  # the frame carries the re-timed mean: rank the trials' own timings
        ok = ok.assign(latency_ms=ok["latency_search_ms"].where(ok["latency_search_ms"].notna(), ok["latency_ms"]))
    per_arch = []
    for h, rows in ok.groupby("hash"):
        lat = rows["latency_ms"].astype(float).tolist()
        foreign = rows["latency_foreign"].astype(float).tolist() if "latency_foreign" in rows else []
        attempts = rows["latency_attempts"].astype(float).tolist() if "latency_attempts" in rows else []
        on_cpu = rows["latency_on_cpu"].astype(float).tolist() if "latency_on_cpu" in rows else []
        per_arch.append({"hash": h, "summary": rows["summary"].iloc[0], "trials": len(lat),
                         "foreign_load": [round(v, 3) for v in foreign], "attempts": [int(v) for v in attempts],
                         "on_cpu": [round(v, 3) for v in on_cpu],
                         "latency_ms": [round(v, 4) for v in lat], "quiet_ms": round(quiet[h], 4),
                         "quiet_again_ms": round(quiet_again[h], 4),
                         "retimed_ms": [round(v, 4) for v in retimed.get(h, [])],
                         "retimed_runs": retime_runs.get(h, []),
                         "cv": statistics.stdev(lat) / statistics.mean(lat) if len(lat) > 1 else None})
    repeated = [a["cv"] for a in per_arch if a["cv"] is not None]
    rho = spearman(ok["latency_ms"].astype(float).tolist(), [quiet[h] for h in ok["hash"]])
    rho_quiet = spearman([quiet_again[h] for h in ok["hash"]], [quiet[h] for h in ok["hash"]])
    raw_cv = [statistics.stdev(r) / statistics.mean(r) for r in
              (rows["latency_raw_ms"].astype(float).tolist() for _, rows in ok.groupby("hash")
               if "latency_raw_ms" in rows) if len(r) > 1]
    # the retime phase: its mean per architecture against a quiet yardstick timed as it times (each
    # architecture in the layout its retime recorded, not the faster of both at each timing), over the
    # re-timed ones; their first in-search timing against the trials' yardstick
    front = [h for h in retimed if h in quiet]
    first_in_search = {h: float(rows["latency_ms"].iloc[0]) for h, rows in ok.groupby("hash")}
    retime = {"archs": len(front), "rounds": max((len(v) for v in retimed.values()), default=0)}
    if len(front) >= 3:
        layouts = {h: runs[0]["layout"] for h, runs in retime_runs.items() if runs and runs[0].get("layout")}
        pinned, pinned_again = _quiet_latencies([(h, y) for h, y in yamls if h in front], train.resolution,
                                                data.num_classes, data.in_chans, reference, layouts=layouts)
        for a in per_arch:
            if a["hash"] in pinned:
                a.update(quiet_layout=layouts.get(a["hash"]), quiet_pinned_ms=round(pinned[a["hash"]], 4),
                         quiet_pinned_again_ms=round(pinned_again[a["hash"]], 4))
        retime.update(
            spearman_mean_vs_quiet=spearman([statistics.fmean(retimed[h]) for h in front], [pinned[h] for h in front]),
            spearman_in_search_vs_quiet=spearman([first_in_search[h] for h in front], [quiet[h] for h in front]),
            spearman_quiet_vs_quiet=spearman([pinned_again[h] for h in front], [pinned[h] for h in front]),
            max_round_cv=max(statistics.stdev(retimed[h]) / statistics.fmean(retimed[h]) for h in front
                             if len(retimed[h]) > 1),
            max_mean_vs_quiet=max(abs(statistics.fmean(retimed[h]) / pinned[h] - 1) for h in front),
            yardstick="each architecture in its retime layout")
    return {"mode": mode, "trials": len(df), "ok": len(ok), "wall_s": wall, "archs": per_arch, "retime": retime,
            "reference_ms": reference, "max_cv_unscaled": max(raw_cv) if raw_cv else None,
            "max_cv": max(repeated) if repeated else None,
            "median_cv": statistics.median(repeated) if repeated else None,
            "spearman_vs_quiet": rho, "spearman_quiet_vs_quiet": rho_quiet,
            "latency_range_ms": [min(quiet.values()), max(quiet.values())],
            "waited_s": float(ok["latency_wait"].astype(float).sum()) if "latency_wait" in ok.columns else None,
            "repeated_timings": int((ok["latency_attempts"].astype(float) > 1).sum())
            if "latency_attempts" in ok.columns else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="peleK_space.yaml")
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--epochs", type=int, help="proxy epochs (default: the space's)")
    ap.add_argument("--steps", type=int, help="proxy steps (default: the space's; a smoke test: 20)")
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--modes", default="on,off", help="on (quiet lock), off (LKNAS_QUIET=0): the control")
    ap.add_argument("--as-is", action="store_true",
                    help="search the space as bundled (its own dimensions, sampler, constraints) instead of the "
                         "few repeated architectures; writes latency_repeatability-as_is.json / .md")
    ap.add_argument("--out", default=str(REPO / "results" / "benchmarks"))
    ap.add_argument("--replot", metavar="JSON", help="only rewrite the .md of a latency_repeatability.json")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    if args.replot:
        report = json.loads(Path(args.replot).read_text())
        _write_md(report, Path(args.out), Path(args.replot).stem)
        return 0

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        space = _derived_space(args.space, Path(tmp), args.epochs, args.trials, args.steps, args.as_is)
        for mode in args.modes.split(","):
            results.append(_run(mode.strip(), space, Path(tmp), args.concurrency))
            print(json.dumps({k: v for k, v in results[-1].items() if k != "archs"}), flush=True)
    from lknas.io import write_text_atomic

    stem = "latency_repeatability" + ("-as_is" if args.as_is else "")
    report = {"space": args.space, "free_dimensions": "all (the space as bundled)" if args.as_is else list(FREE),
              "trials": args.trials,
              "concurrency": args.concurrency, "targets": {"max_cv": 0.10, "spearman_vs_quiet": 0.9},
              "results": results,
              "machine": {"platform": platform.platform(), "python": platform.python_version(),
                          "cpus": os.cpu_count()},
              "command": "python benchmarks/latency_repeatability.py " + " ".join(sys.argv[1:])}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / f"{stem}.json", json.dumps(report, indent=2) + "\n")
    _write_md(report, out, stem)
    return 0


def ordered_pairs(archs: list[dict], apart: float) -> tuple[int, int]:
    """(pairs of trials ordered as the quiet re-measurement orders their architectures, pairs
    compared): over pairs of trials whose architectures' quiet latencies differ by more than the
    fraction `apart`."""
    points = [(v, a["quiet_ms"]) for a in archs for v in a["latency_ms"]]
    same = total = 0
    for (a1, q1), (a2, q2) in itertools.combinations(points, 2):
        if abs(q1 - q2) <= apart * min(q1, q2):
            continue
        total += 1
        same += (a1 - a2) * (q1 - q2) > 0
    return same, total


def _pairs(archs: list[dict]) -> str:
    same, total = ordered_pairs(archs, 0.05)
    return f"{same} of {total} ({100 * same / total:.0f}%)" if total else "-"


def _num(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def _range(r: dict) -> str:
    quiet = [a["quiet_ms"] for a in r["archs"]]
    lo_hi = r.get("latency_range_ms") or [min(quiet), max(quiet)]
    return f"{lo_hi[0]:.2f}-{lo_hi[1]:.2f}"


def _write_md(report: dict, out: Path, stem: str = "latency_repeatability") -> None:
    from lknas.io import write_text_atomic

    results = report["results"]
    lines = ["| timing | trials ok | archs drawn 2+ times | median CV | max CV (target <= 10%) | "
             "max CV unscaled | Spearman vs quiet (target >= 0.9) | quiet vs quiet again (the ceiling) | "
             "quiet latencies (ms) | pairs ordered as quiet, archs >= 5% apart | time waited for the node | "
             "timings repeated under load | search wall |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        n_rep = sum(a["cv"] is not None for a in r["archs"])
        cv = lambda v: "-" if v is None else f"{100 * v:.1f}%"  # noqa: E731
        lines.append(f"| {'quiet lock' if r['mode'] == 'on' else 'plain (LKNAS_QUIET=0)'} | {r['ok']} | {n_rep} | "
                     f"{cv(r['median_cv'])} | {cv(r['max_cv'])} | {cv(r.get('max_cv_unscaled'))} | "
                     f"{r['spearman_vs_quiet']:.3f} | {_num(r.get('spearman_quiet_vs_quiet'))} | {_range(r)} | "
                     f"{_pairs(r['archs'])} | "
                     f"{r['waited_s'] or 0:.1f} s | {r.get('repeated_timings', '-')} | {r['wall_s']:.0f} s |")
    detail = ["", "| timing | architecture | trials | in-search latencies (ms) | other processes' load "
              "(cores) / timing thread on CPU / attempts | quiet (ms) | CV |", "|---|---|---|---|---|---|---|"]
    for r in results:
        for a in r["archs"]:
            spread = "-" if a["cv"] is None else f"{100 * a['cv']:.1f}%"
            values = ", ".join(f"{v:.2f}" for v in a["latency_ms"])
            load = ", ".join(f"{f:.2f}/{c:.2f}/{n}" for f, c, n in
                             zip(a.get("foreign_load", []), a.get("on_cpu", []), a.get("attempts", []))) or "-"
            detail.append(f"| {r['mode']} | {a['summary']} | {a['trials']} | {values} | {load} | "
                          f"{a['quiet_ms']:.2f} | {spread} |")
    retime = ["", "The retime phase (`lknas.search.retime`): the architectures near the latency front timed "
              "again after the trials, in interleaved rounds on the idle node, each in the memory layout its trial "
              "chose; the front uses their mean. Its yardstick (`quiet, pinned`; files before 2026-12-04: the "
              "faster of both layouts at each timing, which is not what the retime times) times each in the same "
              "layout; their first in-search timing is ranked against the trials' yardstick (`quiet`).", "",
              "| timing | archs re-timed | rounds | Spearman, re-timed mean vs quiet | Spearman, their first "
              "in-search timing vs quiet | quiet again vs quiet (the ceiling) | largest CV across rounds | "
              "largest mean vs quiet |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        t = r.get("retime") or {}
        if "spearman_mean_vs_quiet" in t:
            retime.append(f"| {r['mode']} | {t['archs']} | {t['rounds']} | {t['spearman_mean_vs_quiet']:.3f} | "
                          f"{t['spearman_in_search_vs_quiet']:.3f} | {t['spearman_quiet_vs_quiet']:.3f} | "
                          f"{100 * t['max_round_cv']:.1f}% | {100 * t['max_mean_vs_quiet']:.1f}% |")
    for r in results:
        for a in r["archs"]:
            if a.get("retimed_ms"):
                searched = ", ".join(f"{v:.2f}" for v in a["latency_ms"])
                again = a.get("quiet_again_ms", float("nan"))
                pinned = (f"; quiet, pinned ({a['quiet_layout']}) {a['quiet_pinned_ms']:.2f}, again "
                          f"{a['quiet_pinned_again_ms']:.2f}" if "quiet_pinned_ms" in a else "")
                retime.append(f"- {r['mode']}: {a['summary']}: in-search {searched}; re-timed "
                              f"{', '.join(f'{v:.2f}' for v in a['retimed_ms'])}; quiet {a['quiet_ms']:.2f}, "
                              f"again {again:.2f}{pinned} ms")
    text = (f"# Latency inside a search: repeatability and ranking\n\n`{report['command']}`\n\n"
            + "\n".join(lines + detail + (retime if len(retime) > 5 else [])) + "\n")
    write_text_atomic(out / f"{stem}.md", text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
