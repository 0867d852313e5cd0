"""`python -m lknas demo`: the end-to-end tour, about 2 minutes on a 2-core laptop CPU.

It runs, in order, the commands a newcomer would type, each printed before it runs, on the bundled
`search_spaces/demo_space.yaml` (a tiny two-stage network, dense or stripe kernels, the synthetic
`shapes` task at 32x32, 60 proxy steps a trial):

1. `search`: 4 trials, two at a time on a local Ray, into OUT/search;
2. `report`: OUT/search/report.html and its PNG figures;
3. `export --best accuracy`: the most accurate architecture as a self-contained YAML (timm-registrable);
4. `train-proxy --arch` that file: re-trains it with the settings the file carries and compares the
   accuracy with the one the search measured;

then lists where each output is. `--trials` and `--steps` make it smaller (the test uses 2 and 2).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import sys
from pathlib import Path
from typing import TextIO

from lknas.errors import LknasError

__all__ = ["run_demo", "DEMO_SPACE"]

DEMO_SPACE = "demo_space.yaml"


def _run(title: str, argv: list[str], stream: TextIO, capture: bool = False) -> str:
    """Print the step and its command line, run it in this process; its stdout if `capture`."""
    from lknas.cli import main

    print(f"\n== {title}\n$ python -m lknas {' '.join(argv)}", file=stream, flush=True)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer) if capture else contextlib.nullcontext():
        code = main(argv)
    if code != 0:
        raise LknasError(f"the demo stopped: `python -m lknas {argv[0]}` exited with code {code} (its message is above)")
    return buffer.getvalue()


def run_demo(out: str | None = None, trials: int | None = None, steps: int | None = None, png: bool = True,
             stream: TextIO | None = None) -> dict[str, Path]:
    """Run the tour into `out` (default results/demo-DATE-TIME); returns {what: path}.

    Args:
        out: directory for everything the tour writes; it must not hold a previous tour.
        trials: search trials (default: the space's, 4).
        steps: proxy training steps a trial (default: the space's, 60).
        png: also write the report's PNG figures (needs kaleido and Chrome/Chromium).

    Raises:
        LknasError: `out` already holds a tour, or one of the commands failed.
    """
    stream = stream or sys.stdout
    root = Path(out or Path("results") / f"demo-{dt.datetime.now():%Y%m%d-%H%M%S}")
    run = root / "search"
    if run.exists():
        raise LknasError(f"{root} already holds a demo; give another --out")
    budget = [*(["--trials", str(trials)] if trials else []), *(["--steps", str(steps)] if steps else [])]
    print(f"lknas demo: a tiny search, its report, an export and a re-training, all under {root}", file=stream)
    _run("1/4 search: multi-objective (accuracy, latency), Ray Tune trials sampled by Optuna",
         ["search", "--space", DEMO_SPACE, "--out", str(run), *budget, "--quiet"], stream)
    _run("2/4 report: interactive HTML and static figures", ["report", str(run), *([] if png else ["--no-png"])],
         stream)
    export = root / "export"
    text = _run("3/4 export: the most accurate architecture, with the training settings it was measured with",
                ["export", str(run), "--best", "accuracy", "--out", str(export)], stream, capture=True)
    print(text, end="", file=stream)
    (arch_file,) = sorted(export.glob("*.yaml"))
    retrain = _run("4/4 re-train that file as the search did (seed, data and budget come from the file)",
                   ["train-proxy", "--arch", str(arch_file), "--no-erf", *(["--steps", str(steps)] if steps else [])],
                   stream, capture=True)
    metrics = json.loads(retrain)
    from lknas.space import load_space

    searched = load_space(arch_file).raw.get("provenance", {}).get("metrics", {}).get("accuracy")
    print(f"re-trained accuracy {metrics['accuracy']:.2f}%; the search measured "
          f"{'-' if searched is None else f'{searched:.2f}%'} for this architecture", file=stream)
    outputs = {
        "search results (trials.csv, pareto.csv, summary.txt)": run,
        "report": run / "report.html",
        "figures": run / "figures",
        "exported architecture": arch_file,
    }
    print("\nwhere everything is:", file=stream)
    for what, path in outputs.items():
        print(f"  {what:<54} {path}", file=stream)
    print("at this budget the accuracies are close to chance (the tour shows the outputs, not a result); for real "
          "numbers: python -m lknas search --space peleK_space.yaml (about 10 minutes on 2 cores)", file=stream)
    return outputs
