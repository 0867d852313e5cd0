"""Shared helpers of the benchmark scripts: interleaved median timing, GEMM throughput, output."""
from __future__ import annotations

import json
import math
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

RESULTS = Path(__file__).resolve().parent.parent / "results" / "benchmarks"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return "cuda-" + torch.cuda.get_device_name(device).lower().replace(" ", "-")
    return f"cpu{torch.get_num_threads()}t"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _minor_faults() -> int:
    """Minor page faults of this process so far (0 where getrusage is missing)."""
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    except (ImportError, OSError):
        return 0


def interleaved_samples(fns: dict[str, Callable[[], None]], device: torch.device, repeats: int,
                        first: dict[str, float] | None = None,
                        faults: dict[str, float] | None = None) -> dict[str, list[float]]:
    """ms of each function per round, timed in alternation (A B, B A, A B, ...) after one warm-up
    each, so that load from other processes hits all of them alike. `first`, if given, receives
    the ms of each warm-up call (selection, index maps, workspace: what a cold call costs);
    `faults` the minor page faults per timed call (memory touched afresh each call: a cause of
    unsteady timings that, unlike the times, does not depend on the machine's load)."""
    for name, fn in fns.items():
        t0 = time.perf_counter()
        fn()
        sync(device)
        if first is not None:
            first[name] = (time.perf_counter() - t0) * 1e3
    samples: dict[str, list[float]] = {k: [] for k in fns}
    order = list(fns)
    for i in range(repeats):
        # alternate the order (A B, B A, ...): on the shared CPU the first op of a round pays for
        # waking the thread pool, which would otherwise favour whichever runs second
        for name in order if i % 2 == 0 else order[::-1]:
            fn = fns[name]
            f0 = _minor_faults()
            t0 = time.perf_counter()
            fn()
            sync(device)
            samples[name].append((time.perf_counter() - t0) * 1e3)
            if faults is not None:
                faults[name] = faults.get(name, 0.0) + (_minor_faults() - f0) / max(1, repeats)
    return samples


def interleaved_ms(fns: dict[str, Callable[[], None]], device: torch.device, repeats: int) -> dict[str, float]:
    """Median ms of each function over interleaved rounds."""
    return {k: statistics.median(v) for k, v in interleaved_samples(fns, device, repeats).items()}


def spread(samples: list[float]) -> dict[str, float]:
    """p50, p90 (linear interpolation) and their ratio of repeated timings: how steady a call is."""
    p50 = statistics.median(samples)
    p90 = statistics.quantiles(samples, n=10, method="inclusive")[-1] if len(samples) > 1 else samples[0]
    return {"p50": p50, "p90": p90, "p90_p50": p90 / p50}


def paired_best_speedup(base: dict[str, list[float]], new: dict[str, list[float]]) -> float:
    """Median over rounds of (fastest of `base` in the round) / (fastest of `new` in the round)."""
    rounds = zip(zip(*base.values()), zip(*new.values()))
    return statistics.median(min(b) / min(n) for b, n in rounds)


def paired_speedup(base: list[float], new: list[float]) -> float:
    """Median over rounds of base/new, each ratio from two back-to-back runs (robust to load)."""
    return statistics.median(b / n for b, n in zip(base, new))


_GEMM_SCRIPT = """
import math, sys, time, torch
dev = torch.device(sys.argv[1]); n = int(sys.argv[2]); reps = int(sys.argv[3])
a = torch.randn(n, n, device=dev); b = torch.randn(n, n, device=dev)
def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
a @ b; sync(); best = math.inf
for _ in range(reps):
    t0 = time.perf_counter(); a @ b; sync(); best = min(best, time.perf_counter() - t0)
print(2 * n ** 3 / best / 1e9)
"""


def gemm_gflops(device: torch.device, n: int = 1024, repeats: int = 20) -> float:
    """Measured fp32 matmul throughput (n x n @ n x n), best of `repeats`, in GFLOP/s.

    Runs in a fresh interpreter: on the reference CPU a large matmul leaves BLAS threads behind
    that slow every later PyTorch op of the process several-fold, which would spoil the timings."""
    out = subprocess.run(
        [sys.executable, "-c", _GEMM_SCRIPT, str(device), str(n), str(repeats)],
        check=True, capture_output=True, text=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def _cpu_model() -> str:
    from lknas.device import cpu_model

    return cpu_model()


def _kept() -> bool:
    from lknas.ops.allocator import kept

    return kept()


def keep_freed_memory() -> None:
    """Run as lknas's own processes do (`lknas.ops.allocator`; LKNAS_MALLOC=system: glibc as it
    comes); stock and ours share the process, so both get it."""
    from lknas.ops.allocator import keep_freed_memory as keep

    keep()


def environment() -> dict:
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu": _cpu_model(),
        "threads": torch.get_num_threads(),
        "malloc": "keep" if _kept() else "system",  # lknas.ops.allocator: freed memory kept in the process
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write(stem: str, data: dict, table: str) -> tuple[Path, Path]:
    """Write results/benchmarks/STEM.json and .md, each atomically (a killed run leaves the old pair)."""
    from lknas.io import write_text_atomic

    jpath, mpath = RESULTS / f"{stem}.json", RESULTS / f"{stem}.md"
    write_text_atomic(jpath, json.dumps(data, indent=1) + "\n")
    write_text_atomic(mpath, table)
    return jpath, mpath


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")
