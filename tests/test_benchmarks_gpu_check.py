"""benchmarks/gpu_check.sh: its plan covers issue 15's four parts within 8 minutes, steps fail,
time out and skip on their own, and it refuses to run without a GPU."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def _bench(name: str = "gpu_check"):
    """benchmarks/NAME.py as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _sh(*args):
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120)


def test_the_plan_covers_tests_three_dtypes_the_proxy_step_and_a_shared_gpu_search_in_8_minutes():
    gc = _bench()
    steps = gc.plan("python", Path("/tmp/x"))
    commands = [" ".join(s.argv) for s in steps]
    assert any("pytest" in c and "cuda" in c for c in commands)
    for dtype in ("float32", "bfloat16", "float16"):
        assert any("dwconv.py" in c and f"--dtype {dtype}" in c and "--device cuda" in c for c in commands)
    assert any("proxy_step.py" in c and "--device cuda" in c for c in commands)
    search = next(c for c in commands if " search " in c)
    assert "--gpus-per-trial 0.5" in search and "--trials 4" in search
    assert sum(s.limit_s for s in steps) <= 480

    proc = _sh("--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "budget 480 s" in proc.stdout and proc.stdout.count(" s  ") == len(steps)
    only = _sh("--dry-run", "--only", "proxy step, search")
    assert only.returncode == 0 and only.stdout.count(" s  ") == 2 and "dwconv" not in only.stdout
    wrong = _sh("--dry-run", "--only", "nothing")
    assert wrong.returncode == 1 and "names no step" in wrong.stderr and "proxy step" in wrong.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_without_a_gpu_it_says_so_and_exits_2_writing_nothing(tmp_path):
    before = set((ROOT / "results" / "benchmarks").glob("gpu_check*"))
    proc = _sh()
    assert proc.returncode == 2
    assert "no CUDA device" in proc.stderr and "Traceback" not in proc.stderr
    assert set((ROOT / "results" / "benchmarks").glob("gpu_check*")) == before


def test_each_step_passes_fails_times_out_or_skips_on_its_own():
    gc = _bench()
    py = sys.executable
    ok = gc.run_step(gc.Step("ok", [py, "-c", "print('fine')"], 30), 30)
    assert ok["status"] == "passed" and ok["returncode"] == 0 and "fine" in ok["output_tail"]
    bad = gc.run_step(gc.Step("bad", [py, "-c", "import sys; print('boom'); sys.exit(3)"], 30), 30)
    assert bad["status"] == "failed" and bad["returncode"] == 3 and "boom" in bad["output_tail"]
    slow = gc.run_step(gc.Step("slow", [py, "-c", "import time; print('started', flush=True); time.sleep(30)"], 1), 1)
    assert slow["status"] == "timed out after 1 s" and slow["seconds"] < 20 and "started" in slow["output_tail"]
    skipped = gc.run_step(gc.Step("skip", [py, "-c", "raise SystemExit(1)"], 30, needs=("no_such_module_xyz",)), 30)
    assert skipped["status"] == "skipped" and "no_such_module_xyz" in skipped["reason"]


def test_the_results_travel_back_as_one_archive(tmp_path, monkeypatch):
    gc = _bench()
    results = tmp_path / "results"
    results.mkdir()
    for name in ("dwconv-cuda-x-issue15.json", "dwconv-cuda-x-issue15.md", "dwconv-cpu2t.json"):
        (results / name).write_text("{}")
    monkeypatch.setattr(gc, "RESULTS", results)
    archive = gc.pack(tmp_path / "out")
    with tarfile.open(archive) as tar:
        names = sorted(tar.getnames())
    assert names == ["results/benchmarks/dwconv-cuda-x-issue15.json", "results/benchmarks/dwconv-cuda-x-issue15.md"]


def test_a_search_whose_every_trial_failed_fails_the_step(tmp_path):
    gc = _bench()
    py = sys.executable
    assert "wrote no" in (gc.search_verdict(tmp_path) or "")
    (tmp_path / "trials.csv").write_text("trial,status\n0,error\n1,error\n2,infeasible\n")
    assert gc.search_verdict(tmp_path) == "no trial finished ok (2 error, 1 infeasible)"
    step = gc.Step("search", [py, "-c", "pass"], 30, verify=lambda: gc.search_verdict(tmp_path))
    failed = gc.run_step(step, 30)
    assert failed["status"] == "failed" and failed["returncode"] == 0 and "2 error" in failed["reason"]
    (tmp_path / "trials.csv").write_text("trial,status\n0,error\n1,ok\n")
    assert gc.search_verdict(tmp_path) is None and gc.run_step(step, 30)["status"] == "passed"


def test_the_carry_pins_the_installed_versions_of_the_search_stack():
    carry = _bench("gpu_carry")
    pins = dict(p.split("==") for p in carry.pins())
    import importlib.metadata as md

    for name in ("ray", "optuna", "fvcore", "plotly", "pydantic"):  # pydantic: ray.train.v2 needs it
        assert pins[name] == md.version(name)
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_carry.py"), "--dry-run"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and f"ray=={md.version('ray')}" in out.stdout.split()


def test_the_carry_keeps_the_programs_in_a_wheel_executable(tmp_path):
    """Ray runs gcs_server and raylet from its package; a carry that drops their x bits fails every search."""
    carry = _bench("gpu_carry")
    import zipfile

    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, mode in (("pkg/core/server", 0o755), ("pkg/__init__.py", 0o644)):
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100000 | mode) << 16
            z.writestr(info, "x")
    carry.unpack_wheel(wheel, tmp_path / "site")
    assert os.access(tmp_path / "site" / "pkg" / "core" / "server", os.X_OK)
    assert not os.access(tmp_path / "site" / "pkg" / "__init__.py", os.X_OK)


def test_the_plan_reuses_the_searchs_best_architecture_on_the_gpu():
    steps = _bench().plan("python", Path("/tmp/run"))
    names = [s.name for s in steps]
    last = steps[names.index("found architecture trained, deployed, timed")]
    assert names.index("search 4 trials, 0.5 GPU each") < names.index(last.name)
    assert last.argv[1:] == ["benchmarks/found_arch_check.py", "/tmp/run", "--device", "cuda"]
    found = _bench("found_arch_check")
    assert found.export_command(Path("/r"), Path("/w"))[-5:] == ["/r", "--best", "accuracy", "--out", "/w/export"]
    calls = dict(found.reuse_commands(Path("/w/f.yaml"), Path("/w"), "cuda", 2, 2048))
    assert calls["train"][3:5] == ["train", "/w/f.yaml"] and calls["train"][-4:-2] == ["--device", "cuda"]
    assert calls["deploy"][4] == "/w/train/checkpoint-last.pt"  # deploy reads the GPU-trained checkpoint
    assert calls["latency"][-3:] == ["--device", "cuda", "--json"]


@pytest.mark.parametrize("matches, fail_at, code", [(True, None, 0), (False, None, 1), (True, "deploy", 1)])
def test_found_architecture_check_passes_only_when_all_ran_and_the_deploy_form_matches(
        monkeypatch, matches, fail_at, code):
    found = _bench("found_arch_check")
    ran = []

    def fake_run(name, cmd):
        ran.append(name)
        if name == fail_at:
            return None
        out = cmd[cmd.index("--out") + 1] if "--out" in cmd else None
        if name == "export":
            Path(out).mkdir()
            (Path(out) / "space_trial0.yaml").write_text("{}")
        if name == "train":
            Path(out).mkdir()
            (Path(out) / "summary.json").write_text(
                '{"arch": "a", "accuracy": 90.0, "deploy_accuracy": 90.0, "deploy_matches": %s}' % str(matches).lower())
        stdout = '{"latency_ms": 1.5, "resolution": 64, "device": "cuda", "method": "quiet-lock"}'
        return subprocess.CompletedProcess(cmd, 0, stdout, "")

    monkeypatch.setattr(found, "_run", fake_run)
    assert found.main(["/some/run", "--device", "cuda"]) == code
    assert ran == (["export", "train", "deploy", "latency"] if fail_at is None else ["export", "train", "deploy"])
