"""Latency timed in a fresh Python process: `ChildTimer`.

The process that ran a search is not a clean place to time a network (Ray's threads, among them
one that runs `gc.collect()` on request, a large heap). In one alternation right after a search on
the 2-core machine, the same deploy nets timed 4-21% slower in the driver than in a fresh process,
and a fresh process with OpenMP's default pool 4-11% slower than one with a 1-thread pool;
`benchmarks/latency_process.py` repeated both the same day and found neither (median ratios 0.97
and 0.98 to the child): on this machine these effects come and go. The child is the reproducible
place either way: a process like the one `lknas latency` runs in, with a 1-CPU trial's OpenMP pool.
It runs `lknas.measure.measure_latency` with the given settings, one architecture per request, and
answers with JSON lines; it ends when its input does (so a killed parent leaves no timer behind).

    python -m lknas.measure.isolated   # the child's side: settings, then one {"arch_yaml": ..., "layout": ...} a line
"""
from __future__ import annotations

from typing import Any

__all__ = ["ChildTimer", "ANSWER_KEYS"]

ANSWER_KEYS = ("latency_ms", "raw_ms", "throughput", "device", "threads", "method", "waited_s", "layout",
               "foreign_load", "attempts", "reference_measured_ms", "on_cpu")  # what the child sends back


class ChildTimer:
    """Times architectures in a fresh Python process, one at a time, with `measure_latency` and the
    trials' settings (`setting`: resolution, threads, repeats, reference_ms, num_classes, in_chans,
    device; optionally throughput_batch, None by default); see the module docstring.
    `pin_openmp=False` leaves OpenMP's pool at its default. The search's CPU trials time their
    deploy model in one (`lknas.search.trial`), the retime phase in another, and
    `benchmarks/latency_repeatability.py` its quiet yardstick."""

    def __init__(self, setting: dict[str, Any], pin_openmp: bool = True):
        import os
        import subprocess
        import sys

        env = {k: v for k, v in os.environ.items() if pin_openmp or k != "OMP_NUM_THREADS"}
        if pin_openmp and setting.get("threads"):  # as Ray sets it for a trial of that many CPUs
            env["OMP_NUM_THREADS"] = str(setting["threads"])
        self._proc = subprocess.Popen([sys.executable, "-m", "lknas.measure.isolated"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self._send(setting)

    def _send(self, message: Any) -> None:
        import json

        self._proc.stdin.write(json.dumps(message) + "\n")
        self._proc.stdin.flush()

    def __call__(self, arch_yaml: str, layout: str | None = None) -> dict[str, Any]:
        """`measure_latency`'s answer for one architecture; `layout` pins the memory layout (None:
        the setting's rule, by default both timed and the faster kept)."""
        import json

        from lknas.errors import LknasError

        try:
            self._send({"arch_yaml": arch_yaml, "layout": layout})
            line = self._proc.stdout.readline()
            return json.loads(line)
        except (OSError, ValueError):
            self._proc.kill()
            lines = self._proc.stderr.read().strip().splitlines()
            raise LknasError(f"the latency timing process failed: {lines[-1] if lines else 'no message'}") from None

    def close(self, wait: bool = True) -> None:
        """End the child: its input closes and it exits. `wait=False` returns at once and leaves
        the exit (torch's teardown: ~0.6 s on the 2-core machine) to a thread that reaps it."""
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        if wait:
            self._reap()
        else:
            import threading

            threading.Thread(target=self._reap, name="lknas-timer-reaper", daemon=True).start()

    def _reap(self) -> None:
        """Wait for the child's exit; one that does not end within 30 s is killed."""
        try:
            self._proc.wait(timeout=30)
        except Exception:  # noqa: BLE001 - best effort: never hide the caller's error
            self._proc.kill()
            self._proc.wait()


def _serve() -> None:
    """The child's side of `ChildTimer`: the setting on the first line, then one architecture YAML
    (and optionally a pinned layout) a line, one JSON answer a line."""
    import json
    import sys

    from lknas import quiet
    from lknas.ops.allocator import keep_freed_memory

    keep_freed_memory()  # as in the trials whose timings these repeat
    with quiet.working():  # importing torch is work on the node: no trial times its latency meanwhile
        from lknas.arch import ArchConfig
        from lknas.measure import measure_latency

    setting = json.loads(sys.stdin.readline())
    for line in sys.stdin:
        request = json.loads(line)
        arch = ArchConfig.from_yaml(request["arch_yaml"])
        lat = measure_latency(arch, setting["resolution"], threads=setting["threads"],
                              num_classes=setting["num_classes"], in_chans=setting["in_chans"],
                              device=setting["device"], repeats=setting["repeats"],
                              throughput_batch=setting.get("throughput_batch"), reference_ms=setting["reference_ms"],
                              layout=request.get("layout"))
        print(json.dumps({k: lat[k] for k in ANSWER_KEYS}), flush=True)


if __name__ == "__main__":
    _serve()
