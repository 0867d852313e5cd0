"""One writer per run directory: the lock on RUN/.lock, its release, its takeover after kill -9,
and a second search or study on the same --out refused before Ray starts."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lknas.search.runlock import LOCK_NAME, RunBusyError, RunLock, hold_run

REPO = Path(__file__).resolve().parents[1]


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path):
    with hold_run(tmp_path, "search"):
        with pytest.raises(RunBusyError, match=rf"{tmp_path}.*in use by another process \(pid {os.getpid()} on "):
            RunLock.acquire(tmp_path, "search")


def test_the_lock_is_released_when_the_block_raises(tmp_path):
    with pytest.raises(KeyError):
        with hold_run(tmp_path, "search"):
            raise KeyError("boom")
    with hold_run(tmp_path, "search") as lock:
        assert lock.held and lock.previous is None  # a clean release leaves no holder behind
    assert (tmp_path / LOCK_NAME).read_text() == ""


def test_a_lock_left_by_kill_9_is_taken_over(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""\
        import time
        from lknas.search.runlock import RunLock
        RunLock.acquire({str(tmp_path)!r}, "search")
        print("locked", flush=True)
        time.sleep(600)
        """)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunBusyError, match=f"pid {holder.pid} "):
            RunLock.acquire(tmp_path, "search")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with hold_run(tmp_path, "search") as lock:
        assert lock.held and lock.previous["pid"] == holder.pid


def test_a_lock_kept_by_a_forked_child_of_a_dead_holder_says_so(tmp_path):
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""\
        import os, time
        from lknas.search.runlock import RunLock
        RunLock.acquire({str(tmp_path)!r}, "search")
        child = os.fork()  # a fork without exec keeps the descriptor, and with it the lock
        if child == 0:
            os.close(1), os.close(2)  # let the caller read to the end
            time.sleep(600)
            os._exit(0)
        print(os.getpid(), child, flush=True)
        os._exit(0)
        """)], cwd=REPO, capture_output=True, text=True, timeout=120).stdout.split()
    holder, child = int(out[0]), int(out[1])
    try:
        with pytest.raises(RunBusyError, match=f"pid {holder} .*that pid has ended, so a process it forked"):
            RunLock.acquire(tmp_path, "search")
    finally:
        os.kill(child, signal.SIGKILL)


def _space(path: Path) -> Path:
    path.write_text(textwrap.dedent("""\
        name: tiny_space
        stem: {type: patch}
        block: convnext
        stages:
          - {depth: 1, width: 8, kernel: {choice: [3, 7]}}
        train: {dataset: "pathfinder:easy,train=64,val=32", resolution: 32, steps: 1, batch_size: 32}
        search: {sampler: random, trials: 2}
        """))
    return path


def test_a_second_search_on_the_same_out_exits_2_before_ray_starts(tmp_path):
    out = tmp_path / "run"
    with hold_run(out, "search"):
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "lknas", "search", "--space", str(_space(tmp_path / "s.yaml")),
                               "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=120)
        took = time.monotonic() - start
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"error: {out} is in use by another process (pid {os.getpid()} ")
    assert "Traceback" not in proc.stderr and took < 60
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written, no Ray directory


def test_a_second_scaling_study_on_the_same_out_is_refused(tmp_path):
    from lknas.study import run_scale

    exp = tmp_path / "tiny.yaml"
    exp.write_text(textwrap.dedent("""\
        name: tiny_study
        base:
          stem: {type: patch}
          block: convnext
          stages: [{depth: 1, width: 8, kernel: 3}]
        train: {dataset: "pathfinder:easy,train=64,val=32", resolution: 32, steps: 1, batch_size: 32}
        scale: {kernel: [[5]]}
        """))
    out = tmp_path / "run"
    with hold_run(out, "scale"):
        with pytest.raises(RunBusyError, match=f"pid {os.getpid()} "):
            run_scale(exp, out=out, quiet=True)
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]
