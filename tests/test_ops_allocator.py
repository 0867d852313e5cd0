"""`lknas.ops.allocator`: freed memory stays with the process (no page faults when a large block
is allocated again), LKNAS_MALLOC=system leaves glibc as it is, a bad value is a clear error, and
lknas's own processes (the CLI, the latency timer's child, the trials) turn it on."""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lknas.errors import LknasError
from lknas.ops import allocator

REPO = Path(__file__).resolve().parents[1]
GLIBC = sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")

# a loop of 40 MiB temporaries (above glibc's largest dynamic mmap threshold, 32 MiB), each
# iteration's minor page faults
_REALLOC = textwrap.dedent("""
    import json, resource, sys, torch
    from lknas.ops.allocator import keep_freed_memory
    applied = keep_freed_memory() if sys.argv[1] == "call" else None
    faults = []
    for _ in range(20):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        a = torch.empty(10 << 20).fill_(1.0)
        b = a * 2
        (a + b).sum()
        del a, b
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    print(json.dumps({"applied": applied, "faults": faults}))
""")
PAGES = (40 << 20) // 4096  # one temporary


def _realloc(mode: str, call: bool = True) -> dict:
    import json

    env = {**os.environ, "LKNAS_MALLOC": mode, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", _REALLOC, "call" if call else "no"], env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_kept_memory_is_not_faulted_in_again():
    kept, system = _realloc("keep"), _realloc("system")
    assert kept["applied"] is True and system["applied"] is False
    assert kept["faults"][0] > PAGES  # the first iterations touch fresh pages ...
    assert min(system["faults"][5:]) > PAGES  # ... and as glibc comes, every later one does again
    # kept: most iterations reuse them; the median, as the kernel may reclaim and refault a kept
    # block now and then under load (CI saw 2 of 15 iterations refault one temporary)
    assert statistics.median(kept["faults"][5:]) < 0.1 * PAGES
    assert sum(f > PAGES // 2 for f in kept["faults"][5:]) <= 5  # system: all 15


def test_bad_mode_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("LKNAS_MALLOC", "jemalloc")
    with pytest.raises(LknasError, match="LKNAS_MALLOC='jemalloc'.*'keep'.*'system'"):
        allocator.keep_freed_memory()


def test_modes(monkeypatch):
    monkeypatch.delenv("LKNAS_MALLOC", raising=False)
    assert allocator.allocator_mode() == "keep"
    monkeypatch.setenv("LKNAS_MALLOC", " System ")
    assert allocator.allocator_mode() == "system"


def test_cli_reports_a_bad_mode_without_traceback():
    env = {**os.environ, "LKNAS_MALLOC": "tcmalloc"}
    out = subprocess.run([sys.executable, "-m", "lknas", "validate", "peleK_space.yaml"], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "LKNAS_MALLOC='tcmalloc'" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_lknas_processes_turn_it_on(monkeypatch):
    """The CLI, the latency timer's child and the search's and studies' trials call it (each is a
    process of lknas's own); a library import alone does not."""
    import inspect

    from lknas import cli
    from lknas.measure import isolated
    from lknas.search import trial
    from lknas.study import runner

    for fn in (cli.main, isolated._serve, trial.run_trial, runner.run_point):
        assert "keep_freed_memory()" in inspect.getsource(fn), fn.__qualname__
    assert min(_realloc("keep", call=False)["faults"][5:]) > PAGES  # importing lknas changes nothing
