"""Malformed inputs and faults through the CLI: how many end in a clear error, how many in a traceback.

A catalogue of bad inputs, each run through `lknas.cli.main` in this process (stdout and stderr
captured; a few also as `python -m lknas` subprocesses, the real entry point):

- every numeric flag of every command (read from the parser, so a new flag is covered) with a
  value below its range, NaN, infinity, a word, and for integer flags a fraction;
- out-of-range values the parser cannot see: a resolution below the architecture's stride, CUDA on
  a machine without it, duplicate objectives, more CPUs / GPUs per trial than the machine has, a
  Ray address where no cluster answers (closed port, silent port, malformed);
- bad files of each kind: space YAMLs (syntax, junk keys and values, empty, binary, a directory),
  run directories (garbage / truncated / mistyped run.json, corrupt study.db, jobs.json),
  checkpoints (garbage, truncated, missing keys, bad architecture, foreign pickle), image folders
  (one class, an undecodable image, a decompression bomb), `--out` paths (a directory where a
  file goes, a file where a directory goes);
- a bad value of each LKNAS_* setting a search's trials read (set for that case only).

Nothing trains beyond a few steps of a tiny network and no Ray starts (in-process, `ray.init` is a
stand-in that marks a case reaching it as not refused). Each case expects exit code
2 ("clear": an `error:` message, no traceback). Writes results/benchmarks/bad_inputs.json and .md.

    python benchmarks/bad_inputs.py            # about 1-3 minutes on 2 cores
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.helpers import TINY_DATA, small_arch, write_fake_run, write_tiny_space  # noqa: E402


@dataclass
class Case:
    name: str
    group: str
    argv: list[str]
    subprocess: bool = False
    env: dict[str, str] = field(default_factory=dict)  # set for this case only


@dataclass
class Outcome:
    name: str
    group: str
    argv: list[str]
    code: int
    seconds: float
    verdict: str  # clear | traceback | unexpected | accepted | other
    message: str
    subprocess: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- fixtures
def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A PNG whose header claims width x height 1-bit pixels (900 M: PIL refuses to decode it)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0"))
            + png_chunk(b"IEND", b""))


def image_folder(root: Path, classes: list[str], per_class: int = 4, bad: dict[str, bytes] | None = None) -> Path:
    from PIL import Image

    for i, name in enumerate(classes):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            Image.new("RGB", (16, 16), (40 * i, 255 - 40 * i, 7 * j)).save(d / f"{j}.png")
    for rel, data in (bad or {}).items():
        (root / rel).write_bytes(data)
    return root


def four_stage_arch(path: Path) -> Path:
    path.write_text("stem: {type: patch}\nblock: convnext\nkernel_type: dense\nstages:\n"
                    + "".join(f"  - {{depth: 1, width: {8 * 2 ** i}, kernel: 3}}\n" for i in range(4)))
    return path


def checkpoints(root: Path) -> dict[str, Path]:
    import torch

    from lknas.models import build_model
    from lknas.train.checkpoint import FORMAT, save_checkpoint

    arch = small_arch()
    good = save_checkpoint(root / "good.pt", "deploy", arch, build_model(arch, num_classes=2), num_classes=2,
                           in_chans=3)
    data = good.read_bytes()
    out = {"garbage": root / "garbage.pt", "truncated": root / "truncated.pt", "missing_keys": root / "missing.pt",
           "bad_arch": root / "bad_arch.pt", "list": root / "list.pt", "wrong_weights": root / "wrong.pt",
           "train_missing": root / "train_missing.pt", "empty": root / "empty.pt", "good": good}
    out["garbage"].write_bytes(os.urandom(2048))
    out["truncated"].write_bytes(data[: len(data) // 2])
    out["empty"].write_bytes(b"")
    torch.save({"format": FORMAT, "version": 1, "kind": "deploy"}, out["missing_keys"])
    loaded = torch.load(good, weights_only=True)
    torch.save({**loaded, "arch_yaml": "stages: [{depth: -1}]\n"}, out["bad_arch"])
    torch.save([1, 2, 3], out["list"])
    torch.save({**loaded, "model": {"stem.0.weight": torch.zeros(1)}}, out["wrong_weights"])
    torch.save({**loaded, "kind": "train"}, out["train_missing"])
    return out


def runs(root: Path) -> dict[str, Path]:
    """Fake search runs, each broken in one way."""
    out = {}

    def run(name: str, change: Callable[[Path], None]) -> None:
        path = write_fake_run(root / name)
        change(path)
        out[name] = path

    run("run_json_garbage", lambda p: (p / "run.json").write_bytes(b"\x00\xffnot json"))
    run("run_json_truncated", lambda p: (p / "run.json").write_text((p / "run.json").read_text()[:40]))
    run("run_json_list", lambda p: (p / "run.json").write_text("[1, 2]"))
    run("run_json_no_search", lambda p: (p / "run.json").write_text('{"space_name": "tiny"}'))
    run("run_json_bad_trials", lambda p: _edit_settings(p, lambda s: s["search"].update(trials=-3)))
    run("run_json_bad_objective", lambda p: _edit_settings(
        p, lambda s: s["search"].update(objectives=[{"name": "speed", "mode": "max"}])))
    run("run_json_no_overrides", lambda p: _edit_settings(p, lambda s: s.pop("train_overrides")))
    run("run_json_steps_zero", lambda p: _edit_settings(p, lambda s: s["train_overrides"].update(steps=0)))
    run("run_json_address_int", lambda p: _edit_settings(p, lambda s: s.update(address=6379)))
    run("no_run_json", lambda p: (p / "run.json").unlink())
    run("no_space", lambda p: (p / "space.yaml").unlink())
    run("study_garbage", lambda p: (p / "study.db").write_bytes(b"SQLite format 3\x00" + os.urandom(4000)))
    run("study_text", lambda p: (p / "study.db").write_text("not a database"))
    run("jobs_garbage", lambda p: (_as_study(p), (p / "jobs.json").write_text("{oops")))
    run("jobs_wrong_shape", lambda p: (_as_study(p), (p / "jobs.json").write_text('[{"trial": 0}]')))
    run("trials_garbage", lambda p: (p / "trials.jsonl").write_bytes(os.urandom(300)))
    (root / "empty_run").mkdir()
    out["empty_run"] = root / "empty_run"
    return out


def _as_study(run: Path) -> None:
    """Turn a fake search run into a fake scaling study (the settings `lknas scale --out` reads)."""
    from lknas.space.configs import TrainConfig

    _edit_settings(run, lambda s: s.update(kind="scale", name="tiny", experiment="tiny.yaml", points=1,
                                           datasets=[TINY_DATA], seeds=[0], train=TrainConfig().to_dict()))


def _edit_settings(run: Path, change: Callable[[dict], None]) -> None:
    settings = json.loads((run / "run.json").read_text())
    change(settings)
    (run / "run.json").write_text(json.dumps(settings))


def spaces(root: Path) -> dict[str, Path]:
    texts = {
        "syntax": "stages: [\n  {depth: 1,\n",
        "junk_keys": "stages:\n  - {depth: 1, width: 8, kernal: 3, colour: blue}\nfoo: bar\n",
        "junk_values": "stages:\n  - {depth: -4, width: .nan, kernel: 4}\ntrain: {epochs: 0, lr: -1, batch_size: x}\n",
        "empty": "",
        "list": "- 1\n- 2\n",
        "scalar": "42\n",
        "huge_kernel": "stages:\n  - {depth: 1, width: 8, kernel: 100001}\n",
        "bad_search": "stages:\n  - {depth: 1, width: 8, kernel: 3}\nsearch: {trials: 0, sampler: magic, "
                      "objectives: [accuracy, accuracy]}\n",
        "domains": "stages:\n  - {depth: 1, width: {choice: [8, 16]}, kernel: 3}\n",
        "duplicate_key": "stages:\n  - {depth: 1, width: 8, kernel: 3}\nstages: []\n",
        "deep_nesting": "stages: " + "[" * 200 + "]" * 200 + "\n",
    }
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, text in texts.items():
        out[name] = root / f"{name}.yaml"
        out[name].write_text(text)
    out["binary"] = root / "binary.yaml"
    out["binary"].write_bytes(os.urandom(512))
    out["directory"] = root / "a_directory.yaml"
    out["directory"].mkdir()
    out["experiment_junk"] = root / "experiment_junk.yaml"
    out["experiment_junk"].write_text("name: x\nbase: {stages: [{depth: 1, width: 8, kernel: 3}]}\nscale: {kernel: [4]}\n"
                                      "run: {cpus_per_trial: 0}\nseeds: 0\n")
    return out


class SilentPort:
    """A TCP port that accepts connections and never answers (not a Ray cluster)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.conns.append(self.sock.accept()[0])


# ----------------------------------------------------------------------------- the catalogue
def flag_cases(base: dict[str, list[str]]) -> list[Case]:
    """Every numeric flag of every command with values outside its range (from the parser)."""
    from lknas import cli_args as A
    from lknas.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    cases = []
    for command, p in sub.choices.items():
        for action in p._actions:
            if not isinstance(action.type, A.Number) or not action.option_strings:
                continue
            number, flag = action.type, action.option_strings[0]
            bad = ["nan", "inf", "lots"]
            if number.lo is not None:
                bad.insert(0, str(int(number.lo) - 1) if number.kind is int or not number.lo_open else str(number.lo))
            if number.hi is not None:
                bad.append(str(int(number.hi) + 1) if number.kind is int else str(number.hi * 2))
            if number.kind is int:
                bad.append("1.5")
            for value in bad:
                cases.append(Case(f"{command} {flag} {value}", "flag range", [*base[command], flag, value]))
    return cases


def catalogue(tmp: Path, silent_port: int) -> list[Case]:
    tiny = write_tiny_space(tmp / "tiny.yaml")
    four = four_stage_arch(tmp / "four_stage.yaml")
    fake = write_fake_run(tmp / "fake_run")
    ck = checkpoints(tmp)
    bad_runs = runs(tmp / "runs")
    bad_spaces = spaces(tmp / "spaces")
    folders = {
        "one_class": image_folder(tmp / "img_one", ["only"]),
        "bomb": image_folder(tmp / "img_bomb", ["a", "b"], bad={"a/bomb.png": bomb_png()}),
        "garbage_image": image_folder(tmp / "img_garbage", ["a", "b"], bad={"a/x.jpg": b"not a jpeg at all"}),
        "truncated_image": image_folder(tmp / "img_trunc", ["a", "b"],
                                        bad={"b/t.png": (tmp / "img_one" / "only" / "0.png").read_bytes()[:60]}),
    }
    afile = tmp / "a_file.txt"
    afile.write_text("x")
    adir = tmp / "a_dir"
    adir.mkdir()
    out = lambda name: str(tmp / "out" / name)  # noqa: E731  (fresh, never created beforehand)
    train_small = ["--resolution", "32", "--batch-size", "8", "--epochs", "1", "--workers", "0", "--aa", "none"]
    proxy = ["train-proxy", "--arch", str(tiny), "--no-latency", "--no-erf"]
    base = {
        "validate": ["validate", str(tiny)], "sample": ["sample", str(tiny)], "count": ["count", str(tiny)],
        "search": ["search", "--space", str(tiny), "--out", out("flag_search")],
        "export": ["export", str(fake), "--pareto"], "train": ["train", "--arch", str(tiny), "--data", TINY_DATA],
        "deploy": ["deploy", str(ck["good"]), "--out", out("flag_deploy.pt")],
        "scale": ["scale", "--experiment", "experiments/kernel_types.yaml", "--out", out("flag_scale")],
        "report": ["report", str(fake)], "train-proxy": proxy[:3], "latency": ["latency", "--arch", str(tiny)],
        "erf": ["erf", "--arch", str(tiny)], "fidelity": ["fidelity", "--space", str(tiny), "--out", out("flag_fid")],
        "demo": ["demo", "--out", out("flag_demo")],  # the bad values are refused by the parser: nothing runs
    }
    cases = flag_cases(base)
    C = lambda name, group, *argv, sub=False: cases.append(Case(name, group, list(argv), sub))  # noqa: E731

    # values the parser cannot judge
    C("count: resolution below the stride", "meaningless value", "count", str(four), "--resolution", "16")
    C("latency: resolution below the stride", "meaningless value", "latency", "--arch", str(four), "--resolution", "16")
    C("erf: --erf-resolution below the stride", "meaningless value", "erf", "--arch", str(four), "--data", TINY_DATA,
      "--resolution", "32", "--batch-size", "8", "--erf-resolution", "16")
    C("latency --device cuda without CUDA", "device", "latency", "--arch", str(tiny), "--device", "cuda",
      "--resolution", "32")
    C("latency --device cuda:9", "device", "latency", "--arch", str(tiny), "--device", "cuda:9", "--resolution", "32")
    C("train-proxy --device cuda without CUDA", "device", *proxy, "--device", "cuda")
    C("train --device cuda without CUDA", "device", "train", "--arch", str(tiny), "--data", TINY_DATA, *train_small,
      "--device", "cuda", "--out", out("train_cuda"))
    C("latency --device tpu", "device", "latency", "--arch", str(tiny), "--device", "tpu")
    C("search --objectives accuracy,accuracy", "meaningless value", "search", "--space", str(tiny), "--objectives",
      "accuracy,accuracy", "--out", out("dup"))
    C("search --objectives speed", "meaningless value", "search", "--space", str(tiny), "--objectives", "speed")
    C("search --objectives accuracy:up", "meaningless value", "search", "--space", str(tiny), "--objectives",
      "accuracy:up")
    C("search --objectives ','", "meaningless value", "search", "--space", str(tiny), "--objectives", ",")
    C("search --sampler cmaes with two objectives", "meaningless value", "search", "--space", str(tiny),
      "--sampler", "cmaes", "--out", out("cmaes"))
    C("search --space and --resume", "meaningless value", "search", "--space", str(tiny), "--resume", str(fake))
    C("search without --space or --resume", "meaningless value", "search")
    C("search --resume with --epochs", "meaningless value", "search", "--resume", str(fake), "--epochs", "3")
    C("search --out a run that holds trials", "meaningless value", "search", "--space", str(tiny), "--out", str(fake))
    C("export --trial 99 (no such trial)", "meaningless value", "export", str(fake), "--trial", "99")
    C("export --best erf (no values)", "meaningless value", "export", str(fake), "--best", "erf")
    C("train --aa unknown policy", "meaningless value", "train", "--arch", str(tiny), "--data", TINY_DATA,
      *train_small[:-2], "--aa", "definitely-not-a-policy", "--out", out("train_aa"))
    C("train --batch-size above the data", "meaningless value", "train", "--arch", str(tiny), "--data", TINY_DATA,
      "--resolution", "32", "--batch-size", "4096", "--epochs", "1", "--out", out("train_big_batch"))
    C("train-proxy --data unknown:x", "data", *proxy, "--data", "unknown:x")
    C("train-proxy --data pathfinder:difficulty=extreme", "data", *proxy, "--data", "pathfinder:difficulty=extreme")
    C("train-proxy --data pathfinder:train=0", "data", *proxy, "--data", "pathfinder:train=0")
    C("train-proxy --resolution 2000 on synthetic data", "data", *proxy, "--resolution", "2000")
    diverging = write_tiny_space(tmp / "diverging.yaml", steps=8, lr=10, weight_decay=10)
    C("train-proxy: lr 10 and weight decay 10 (diverges)", "meaningless value", "train-proxy", "--arch",
      str(diverging), "--no-latency", "--no-erf")

    # Ray: resources and addresses (all refused before Ray starts)
    C("search --gpus-per-trial 1 without a GPU", "ray", "search", "--space", str(tiny), "--gpus-per-trial", "1",
      "--out", out("gpu"), "--quiet")
    C("search --cpus-per-trial 64", "ray", "search", "--space", str(tiny), "--cpus-per-trial", "64",
      "--out", out("cpu64"), "--quiet")
    C("search --gpus-per-trial 1.5", "ray", "search", "--space", str(tiny), "--gpus-per-trial", "1.5")
    C("search --address 127.0.0.1:1 (closed port)", "ray", "search", "--space", str(tiny), "--address",
      "127.0.0.1:1", "--out", out("closed"), "--quiet")
    C("search --address on a silent port", "ray", "search", "--space", str(tiny), "--address",
      f"127.0.0.1:{silent_port}", "--out", out("silent"), "--quiet")
    C("search --address nonsense", "ray", "search", "--space", str(tiny), "--address", "nonsense", "--quiet")
    C("search --address host:99999", "ray", "search", "--space", str(tiny), "--address", "localhost:99999")
    C("scale --cpus-per-trial 64", "ray", "scale", "--experiment", "experiments/kernel_types.yaml", "--cpus-per-trial",
      "64", "--steps", "1", "--seeds", "1", "--data", TINY_DATA, "--out", out("scale_cpu64"), "--quiet")

    # image folders
    for name, folder in folders.items():
        C(f"train-proxy on imagefolder: {name}", "image folder", *proxy, "--data", f"imagefolder:{folder}",
          "--resolution", "32", "--batch-size", "2", "--steps", "4")
    C("search on imagefolder: one class", "image folder", "search", "--space", str(tiny), "--data",
      f"imagefolder:{folders['one_class']}", "--out", out("one_class"))
    C("search on imagefolder: missing", "image folder", "search", "--space", str(tiny), "--data",
      f"imagefolder:{tmp / 'nope'}", "--out", out("missing_data"))

    # --out paths
    C("sample --out a directory", "out path", "sample", str(tiny), "--out", str(adir))
    C("sample --out under a file", "out path", "sample", str(tiny), "--out", str(afile / "x.yaml"))
    C("search --out an existing file", "out path", "search", "--space", str(tiny), "--out", str(afile))
    C("train --out an existing file", "out path", "train", "--arch", str(tiny), "--data", TINY_DATA, "--out", str(afile))
    C("export --out an existing file", "out path", "export", str(fake), "--pareto", "--out", str(afile))
    C("deploy --out a directory", "out path", "deploy", str(ck["good"]), "--out", str(adir))
    C("erf --out a directory", "out path", "erf", "--arch", str(tiny), "--out", str(adir))
    C("scale --out an existing file", "out path", "scale", "--experiment", "experiments/kernel_types.yaml",
      "--out", str(afile))

    # space and experiment files
    for name, path in bad_spaces.items():
        if name not in ("experiment_junk", "domains"):  # a space with domains is a valid space
            C(f"validate: {name}", "space file", "validate", str(path))
    C("count: a space with domains", "space file", "count", str(bad_spaces["domains"]))
    C("latency: a space with domains", "space file", "latency", "--arch", str(bad_spaces["domains"]))
    C("search: a space with a bad search section", "space file", "search", "--space", str(bad_spaces["bad_search"]))
    C("validate: missing file", "space file", "validate", str(tmp / "nope.yaml"))
    C("scale: experiment with junk", "space file", "scale", "--experiment", str(bad_spaces["experiment_junk"]))
    C("scale: missing experiment", "space file", "scale", "--experiment", str(tmp / "nope.yaml"))
    C("scale: no experiment", "space file", "scale")

    # run directories
    search_only = ("run_json_no_overrides", "run_json_steps_zero", "run_json_address_int")  # export/report ignore them
    for name, path in bad_runs.items():
        if name.startswith(("run_json", "no_", "empty")):  # (a resume rebuilds a corrupt study.db: no case)
            C(f"search --resume: {name}", "run directory", "search", "--resume", str(path), "--quiet")
        if name.startswith(("run_json", "no_run", "empty", "trials")) and name not in search_only:
            C(f"export: {name}", "run directory", "export", str(path), "--pareto")
        if name.startswith(("run_json", "study", "empty", "trials")) and name not in search_only:
            C(f"report: {name}", "run directory", "report", str(path), "--no-png", "--no-erf")
        if name.startswith("jobs"):
            C(f"scale --out: {name}", "run directory", "scale", "--out", str(path), "--quiet")
    C("report: no such run", "run directory", "report", str(tmp / "no_such_run"))
    C("export: no such run", "run directory", "export", str(tmp / "no_such_run"), "--pareto")

    # checkpoints
    for name, path in ck.items():
        if name != "good":
            C(f"deploy: {name} checkpoint", "checkpoint", "deploy", str(path), "--out", out(f"deploy_{name}.pt"))
    C("deploy: no such checkpoint", "checkpoint", "deploy", str(tmp / "nope.pt"), "--out", out("nope.pt"))
    C("deploy: a directory", "checkpoint", "deploy", str(adir), "--out", out("dir.pt"))
    resume_dir = tmp / "train_resume"
    resume_dir.mkdir()
    (resume_dir / "checkpoint-last.pt").write_bytes(ck["truncated"].read_bytes())
    C("train --resume from a truncated checkpoint", "checkpoint", "train", "--arch", str(tiny), "--data", TINY_DATA,
      *train_small, "--out", str(resume_dir), "--resume")
    C("train --resume without a checkpoint", "checkpoint", "train", "--arch", str(tiny), "--data", TINY_DATA,
      *train_small, "--out", out("train_no_ckpt"), "--resume")

    # settings every search trial reads, refused before the search starts
    for var, value in (("LKNAS_DWCONV", "bogus"), ("LKNAS_DWCONV_MAX_WORKSPACE_MB", "lots"), ("LKNAS_LAYOUT", "nhwc"),
                       ("LKNAS_STRIPE_FORM", "merged")):
        cases.append(Case(f"search with {var}={value}", "environment",
                          ["search", "--space", str(tiny), "--out", out(f"env_{var.lower()}"), "--quiet"],
                          env={var: value}))

    # the real entry point, in subprocesses
    C("[subprocess] count --resolution 0", "subprocess", "count", str(tiny), "--resolution", "0", sub=True)
    C("[subprocess] latency --repeats 0", "subprocess", "latency", "--arch", str(tiny), "--repeats", "0", sub=True)
    C("[subprocess] search --address 127.0.0.1:1", "subprocess", "search", "--space", str(tiny), "--address",
      "127.0.0.1:1", "--out", out("sub_closed"), "--quiet", sub=True)
    C("[subprocess] deploy: missing keys", "subprocess", "deploy", str(ck["missing_keys"]), "--out", out("sub.pt"),
      sub=True)
    C("[subprocess] validate: binary", "subprocess", "validate", str(bad_spaces["binary"]), sub=True)
    return cases


# ----------------------------------------------------------------------------- running
def verdict(code: int, stderr: str) -> str:
    if "Traceback (most recent call last)" in stderr:
        return "traceback"
    if code == 2 and "error:" in stderr:
        return "clear"
    if code == 1 and "unexpected" in stderr:
        return "unexpected"
    if code == 0:
        return "accepted"
    return "other"


class RayStarted(BaseException):
    """Raised by the stand-in for ray.init: no case may get that far (it would run a search)."""


def no_ray(*args: Any, **kwargs: Any) -> None:
    raise RayStarted("a malformed input reached ray.init")


def run_in_process(case: Case) -> tuple[int, str]:
    from lknas.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in case.env}
    os.environ.update(case.env)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(case.argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except RayStarted as exc:
            print(f"not refused: {exc}", file=sys.stderr)
            code = 99
        except BaseException:  # escaped the CLI's boundary: a traceback
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return code, err.getvalue()


def run_subprocess(case: Case) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "lknas", *case.argv], capture_output=True, text=True, cwd=REPO,
                          timeout=300, env={**os.environ, **case.env, "PYTHONPATH": str(REPO)})
    return proc.returncode, proc.stderr


def message_of(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    return (errors[-1] if errors else (lines[-1] if lines else ""))[:400]


def leftovers(tmp: Path) -> list[str]:
    """Output directories the catalogue pointed --out at that a refused command left behind."""
    root = tmp / "out"
    return sorted(str(p.relative_to(root)) for p in root.iterdir()) if root.is_dir() else []


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "results" / "benchmarks"))
    ap.add_argument("--only", help="run the cases whose name contains this text")
    args = ap.parse_args()
    os.chdir(REPO)
    outcomes = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        os.environ["LKNAS_CACHE"] = str(tmp / "cache")
        import ray

        ray.init = no_ray  # every case must be refused before Ray starts
        silent = SilentPort()
        cases = catalogue(tmp, silent.port)
        if args.only:
            cases = [c for c in cases if args.only in c.name]
        start = time.perf_counter()
        for i, case in enumerate(cases):
            t0 = time.perf_counter()
            code, stderr = (run_subprocess if case.subprocess else run_in_process)(case)
            seconds = time.perf_counter() - t0
            outcome = Outcome(case.name, case.group, case.argv, code, round(seconds, 3), verdict(code, stderr),
                              message_of(stderr), case.subprocess)
            outcomes.append(outcome)
            mark = "ok " if outcome.verdict == "clear" else "!! "
            print(f"{mark}[{i + 1}/{len(cases)}] {case.name}: exit {code} {outcome.verdict} ({seconds:.1f}s) "
                  f"{outcome.message[:150]}", flush=True)
        wall = time.perf_counter() - start
        left = leftovers(tmp)
        for outcome in outcomes:
            outcome.argv = [a.replace(tmp_name, "$TMP") for a in outcome.argv]
            outcome.message = outcome.message.replace(tmp_name, "$TMP")
    counts = {v: sum(o.verdict == v for o in outcomes) for v in ("clear", "traceback", "unexpected", "accepted", "other")}
    result = {
        "tried": len(outcomes), **counts, "left_behind": left, "wall_s": round(wall, 1),
        "by_group": {g: {"tried": sum(o.group == g for o in outcomes),
                         "clear": sum(o.group == g and o.verdict == "clear" for o in outcomes)}
                     for g in dict.fromkeys(o.group for o in outcomes)},
        "slowest": sorted(({"name": o.name, "seconds": o.seconds} for o in outcomes), key=lambda d: -d["seconds"])[:5],
        "environment": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()},
        "cases": [asdict(o) for o in outcomes],
    }
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not args.only:
        (out_dir / "bad_inputs.json").write_text(json.dumps(result, indent=2) + "\n")
        (out_dir / "bad_inputs.md").write_text(markdown(result))
    print(f"{len(outcomes)} malformed inputs tried: {counts['clear']} clear errors (exit 2), "
          f"{counts['traceback']} tracebacks, {counts['unexpected']} unexpected errors, {counts['accepted']} accepted, "
          f"{counts['other']} other; left behind: {left or 'nothing'}; {wall:.0f} s")
    return 0 if counts["clear"] == len(outcomes) and not left else 1


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Malformed inputs through the CLI (`python benchmarks/bad_inputs.py`)", "",
        f"{result['tried']} malformed inputs tried: **{result['clear']} clear errors** (exit 2, an `error:` message, "
        f"no traceback), {result['traceback']} tracebacks, {result['unexpected']} unexpected errors (exit 1), "
        f"{result['accepted']} accepted, {result['other']} other. Output directories left behind by refused "
        f"commands: {', '.join(result['left_behind']) or 'none'}. Wall time {result['wall_s']} s "
        f"({result['environment']['cpus']} CPUs).", "",
        "| group | tried | clear |", "|---|---:|---:|",
    ]
    lines += [f"| {g} | {v['tried']} | {v['clear']} |" for g, v in result["by_group"].items()]
    lines += ["", "| case | exit | verdict | s | message |", "|---|---:|---|---:|---|"]
    for c in result["cases"]:
        message = c["message"].replace("|", "\\|")
        lines.append(f"| {c['name'].replace('|', '/')} | {c['code']} | {c['verdict']} | {c['seconds']:.2f} | "
                     f"{message[:220]} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
