"""Latency timed in a fresh Python process: `ChildTimer`.

A long-lived process that has run a search is a poor place to time a network: measured on the
2-core machine right after a search, in alternation with a fresh process, the same deploy nets
timed 4-21% slower in the search's driver (Ray's threads, among them one that runs `gc.collect()`
on request, and a large heap). The child runs `lknas.measure.measure_latency` with the given
settings, one architecture per request, and answers with JSON lines; it ends when its input does
(so a killed parent leaves no timer behind). Its `OMP_NUM_THREADS` is the timing's thread count,
as in a Ray trial of that many CPUs: with OpenMP's default pool (2 threads here) a fresh process
timed the same 1-thread deploy nets 4-11% slower (4 nets, 4 alternating rounds).

    python -m lknas.measure.isolated   # the child's side: settings, then one {"arch_yaml": ...} a line
"""
from __future__ import annotations

from typing import Any

__all__ = ["ChildTimer"]


class ChildTimer:
    """Times architectures in a fresh Python process, one at a time, with `measure_latency` and the
    trials' settings (`setting`: resolution, threads, repeats, reference_ms, num_classes, in_chans,
    device). Not in the search's driver: measured on the 2-core machine right after a search, the
    same deploy nets timed in the driver (Ray's threads in it, a large heap) ran 4-21% slower than
    in a fresh process, in alternation (`benchmarks/latency_repeatability.py` uses it for its yardstick too)."""

    def __init__(self, setting: dict[str, Any]):
        import subprocess
        import sys

        import os

        env = dict(os.environ)
        if setting.get("threads"):  # as Ray sets it for a trial of that many CPUs: OpenMP's pool is that size
            env["OMP_NUM_THREADS"] = str(setting["threads"])
        self._proc = subprocess.Popen([sys.executable, "-m", "lknas.measure.isolated"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self._send(setting)

    def _send(self, message: Any) -> None:
        import json

        self._proc.stdin.write(json.dumps(message) + "\n")
        self._proc.stdin.flush()

    def __call__(self, arch_yaml: str) -> dict[str, Any]:
        import json

        from lknas.errors import LknasError

        try:
            self._send({"arch_yaml": arch_yaml})
            line = self._proc.stdout.readline()
            return json.loads(line)
        except (OSError, ValueError):
            self._proc.kill()
            lines = self._proc.stderr.read().strip().splitlines()
            raise LknasError(f"the latency timing process failed: {lines[-1] if lines else 'no message'}") from None

    def close(self) -> None:
        try:
            self._proc.stdin.close()
            self._proc.wait(timeout=30)
        except Exception:  # noqa: BLE001 - best effort: never hide the caller's error
            self._proc.kill()


def _serve() -> None:
    """The child's side of `ChildTimer`: the setting on the first line, then one architecture YAML
    a line, one JSON answer a line."""
    import json
    import sys

    from lknas.arch import ArchConfig
    from lknas.measure import measure_latency

    setting = json.loads(sys.stdin.readline())
    for line in sys.stdin:
        arch = ArchConfig.from_yaml(json.loads(line)["arch_yaml"])
        lat = measure_latency(arch, setting["resolution"], threads=setting["threads"],
                              num_classes=setting["num_classes"], in_chans=setting["in_chans"],
                              device=setting["device"], repeats=setting["repeats"], throughput_batch=None,
                              reference_ms=setting["reference_ms"])
        keep = ("latency_ms", "raw_ms", "layout", "foreign_load", "attempts", "reference_measured_ms", "on_cpu")
        print(json.dumps({k: lat[k] for k in keep}), flush=True)


if __name__ == "__main__":
    _serve()
