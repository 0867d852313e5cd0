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

With `socket_path` the child is also the node's timing service: other processes (a search's Ray
workers) send it a request each over that Unix socket (`request_timing`: the setting and the
architecture), and it times them one at a time, in the same process as its parent's requests:
one torch import per search instead of one per worker. (Every timing of a search then comes from
one process; that did not rank nets 1-3% apart any better, since one process can time two such
nets a few % apart in either order: `results/benchmarks/latency_timing_process.md`.)

    python -m lknas.measure.isolated [--socket PATH]   # the child's side: settings, then one
                                                       # {"arch_yaml": ..., "layout": ...} a line
"""
from __future__ import annotations

from typing import Any

__all__ = ["ChildTimer", "request_timing", "service_path", "ANSWER_KEYS", "REQUEST_TIMEOUT_S"]

ANSWER_KEYS = ("latency_ms", "raw_ms", "throughput", "device", "threads", "method", "waited_s", "layout",
               "foreign_load", "attempts", "reference_measured_ms", "on_cpu")  # what the child sends back
REQUEST_TIMEOUT_S = 300.0  # a service request's wait, queueing and start-up included, before it gives up


class ChildTimer:
    """Times architectures in a fresh Python process, one at a time, with `measure_latency` and the
    trials' settings (`setting`: resolution, threads, repeats, reference_ms, num_classes, in_chans,
    device; optionally throughput_batch, None by default); see the module docstring.
    `pin_openmp=False` leaves OpenMP's pool at its default; `socket_path` makes it a timing
    service too (`request_timing`), and `setting` (the parent's own requests') may then be set
    later (`timer.setting = ...`, before the first call; `threads` then sizes OpenMP's pool).
    A search's driver starts one for its trials and its retime phase (`lknas.search.runner`), a
    worker without one its own (`lknas.search.trial`), and `benchmarks/latency_repeatability.py`
    times its quiet yardstick in them."""

    def __init__(self, setting: dict[str, Any] | None, pin_openmp: bool = True, socket_path: str | None = None,
                 threads: int | None = None):
        import os
        import subprocess
        import sys

        env = {k: v for k, v in os.environ.items() if pin_openmp or k != "OMP_NUM_THREADS"}
        threads = (setting or {}).get("threads") or threads
        if pin_openmp and threads:  # as Ray sets it for a trial of that many CPUs
            env["OMP_NUM_THREADS"] = str(threads)
        command = [sys.executable, "-m", "lknas.measure.isolated"]
        self.socket_path = socket_path
        server = _listen(socket_path) if socket_path else None  # bound here: requests queue from now on
        if server is not None:
            command += ["--socket", socket_path, "--socket-fd", str(server.fileno())]
        try:
            self._proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True, env=env,
                                          pass_fds=(server.fileno(),) if server is not None else ())
        finally:
            if server is not None:
                server.close()  # the child's copy serves it
        self.setting, self._sent = setting, False  # sent with the first request: a service may learn it late

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
            if not self._sent:
                self._send(self.setting)
                self._sent = True
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


def service_path() -> str | None:
    """Where a new timing service's socket goes: a new path of this process's in the node's lock
    directory (`lknas.quiet.lock_dir`); None when that is too long for a Unix socket. Sockets
    there whose search process is gone (killed with its service) are removed."""
    import os

    from lknas.quiet import lock_dir

    import secrets

    folder = lock_dir()
    for old in folder.glob("timer-*.sock"):  # left by a search killed with its service: its driver is gone
        pid = old.name[len("timer-"):-len(".sock")].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            old.unlink(missing_ok=True)
    # a new name each time: a service still ending (it removes its socket on exit) never takes the next one's
    path = str(folder / f"timer-{os.getpid()}-{secrets.token_hex(4)}.sock")
    return path if len(path.encode()) < 100 else None


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def request_timing(socket_path: str, setting: dict[str, Any], arch_yaml: str, layout: str | None = None,
                   timeout: float = REQUEST_TIMEOUT_S) -> dict[str, Any]:
    """`measure_latency`'s answer (`ANSWER_KEYS`) for one architecture, timed by the timing
    service at `socket_path` (a `ChildTimer` started with it) with `setting` (as `ChildTimer`'s).

    Raises:
        LknasError: the service is not there, fails, or does not answer within `timeout` seconds.
    """
    import json
    import socket

    from lknas.errors import LknasError

    message = json.dumps({"setting": setting, "arch_yaml": arch_yaml, "layout": layout}) + "\n"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(socket_path)
            conn.sendall(message.encode())
            answer = json.loads(_read_line(conn))
    except (OSError, ValueError) as err:
        raise LknasError(f"the timing service at {socket_path} did not answer: {err or type(err).__name__}") from None
    if "error" in answer:
        raise LknasError(f"the timing service at {socket_path} failed: {answer['error']}")
    return answer


def _read_line(conn) -> bytes:
    """One JSON message from a socket: the bytes up to its newline (or the peer's close)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(1 << 16)
        if not chunk:
            break
        data += chunk
    return data


def _time(setting: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    from lknas.arch import ArchConfig
    from lknas.measure import measure_latency

    arch = ArchConfig.from_yaml(request["arch_yaml"])
    lat = measure_latency(arch, setting["resolution"], threads=setting["threads"],
                          num_classes=setting["num_classes"], in_chans=setting["in_chans"],
                          device=setting["device"], repeats=setting["repeats"],
                          throughput_batch=setting.get("throughput_batch"), reference_ms=setting["reference_ms"],
                          layout=request.get("layout"))
    return {k: lat[k] for k in ANSWER_KEYS}


def _listen(path: str):
    """The service's listening socket, bound by the parent and handed to the child, so requests
    queue from the start (the child's imports take seconds)."""
    import os
    import socket

    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(64)
    return server


def _serve_socket(server, lock) -> None:
    """Answer the socket's requests one connection at a time; a request that fails gets its error
    back and the service goes on."""
    import json

    while True:
        try:
            conn, _ = server.accept()
        except OSError:  # closed: the service is ending
            return
        with conn:
            try:
                request = json.loads(_read_line(conn))
                with lock:
                    answer = _time(request["setting"], request)
            except Exception as err:  # noqa: BLE001 - the requester reports it; the service serves the next
                answer = {"error": f"{type(err).__name__}: {err}"}
            try:
                conn.sendall((json.dumps(answer) + "\n").encode())
            except OSError:
                pass  # the requester gave up


def _serve() -> None:
    """The child's side of `ChildTimer`: the setting on the first line, then one architecture YAML
    (and optionally a pinned layout) a line, one JSON answer a line; with `--socket PATH
    --socket-fd N` (the listening socket its parent bound), also the service's requests
    (`request_timing`), one timing at a time."""
    import json
    import os
    import socket
    import sys
    import threading

    path = sys.argv[sys.argv.index("--socket") + 1] if "--socket" in sys.argv else None
    server = socket.socket(fileno=int(sys.argv[sys.argv.index("--socket-fd") + 1])) if path else None

    from lknas import quiet
    from lknas.ops.allocator import keep_freed_memory

    keep_freed_memory()  # as in the trials whose timings these repeat
    with quiet.working():  # importing torch is work on the node: no trial times its latency meanwhile
        import lknas.arch  # noqa: F401
        import lknas.measure  # noqa: F401

    lock = threading.Lock()
    if server is not None:
        threading.Thread(target=_serve_socket, args=(server, lock), name="lknas-timing-service", daemon=True).start()
    try:
        first = sys.stdin.readline()  # a service whose parent never timed ends without a setting
        setting = json.loads(first) if first.strip() else None
        for line in sys.stdin if setting is not None else ():
            with lock:
                answer = _time(setting, json.loads(line))
            print(json.dumps(answer), flush=True)
    finally:
        if server is not None:
            server.close()
            try:
                os.unlink(path)
            except OSError:
                pass


if __name__ == "__main__":
    _serve()
