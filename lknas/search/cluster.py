"""Ray for searches and scaling studies: connect fast, or fail fast with what to do.

`init_ray(address, quiet, cpus_per_trial, gpus_per_trial)`:

- No address: a local Ray on this machine's cores. A trial that asks for more CPUs or GPUs than
  the machine has is refused before Ray starts (Ray Tune would keep it pending forever).
- An address: checked before Ray sees it, since `ray.init` retries an unreachable cluster for
  minutes (20 attempts of 40 s in Ray 2.x). 'auto' must find a running cluster on this machine;
  HOST:PORT (or ray://HOST:PORT) must accept a TCP connection within `CONNECT_TIMEOUT_S` and answer
  an HTTP/2 greeting as Ray's gRPC servers do (skipped with RAY_USE_TLS), so a closed port, a
  silent one or another kind of server fails in seconds. Then `handshake` asks the cluster's GCS
  whether it takes this driver: a refused token and a Ray/Python version mismatch are told apart
  from "no cluster there", each with its fix (`lknas.search.handshake`).
- Either way, once connected, `check_trial_resources` refuses a per-trial request that no node of
  the cluster can hold, with the cluster's resources in the message.

Every failure is an `LknasError` (exit code 2).
"""
from __future__ import annotations

import logging
import os
import socket
from typing import Any

from lknas.errors import LknasError
from lknas.search.handshake import TOKEN_HINT, handshake

__all__ = ["init_ray", "check_address", "check_trial_resources", "describe_cluster", "trial_slots", "CONNECT_TIMEOUT_S"]

CONNECT_TIMEOUT_S = 5.0
# A local Ray prestarts one task worker per CPU when the driver connects; trials are Ray Tune actors,
# which always get new processes, so those workers would only hold memory (156 MiB for two) and
# spend CPU beside the search's start (`benchmarks/ray_start.py`: two runs of 6 alternating pairs,
# medians 0.2 / 0.5 s shorter to the end of a 2-trial fit; the first trial's start within noise).
LOCAL_SYSTEM_CONFIG = {"prestart_worker_first_driver": False}
_START_HINT = ("start one with `ray start --head --port 6379` on the head machine (and `ray start --address "
               "HEAD:6379` on the others), then pass --address HEAD:6379; or leave --address out for a local Ray")


def _host_port(address: str) -> tuple[str, int]:
    """(host, port) of 'HOST:PORT', 'ray://HOST:PORT' or '[IPv6]:PORT'."""
    text = address.removeprefix("ray://").strip()
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise LknasError(f"--address {address}: expected 'auto' or HOST:PORT (e.g. 10.0.0.5:6379, "
                         f"ray://10.0.0.5:10001); {_START_HINT}")
    return host, int(port)


def check_address(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """LknasError unless a Ray cluster can be there: 'auto' finds a running one on this machine,
    HOST:PORT accepts a TCP connection and answers an HTTP/2 greeting within `timeout` seconds."""
    if address == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address
        except ImportError:  # a Ray without this helper: let ray.init decide
            return
        try:
            found = canonicalize_bootstrap_address("auto")
        except (ConnectionError, ValueError) as err:
            raise LknasError(f"--address auto: no running Ray cluster found on this machine ({err}); "
                             f"{_START_HINT}") from None
        if found is None:
            raise LknasError(f"--address auto: no running Ray cluster found on this machine; {_START_HINT}")
        address = f"auto ({found}, from {os.environ.get('RAY_ADDRESS') or 'the last `ray start` here'})"
        host, port = _host_port(found)
    else:
        host, port = _host_port(address)
    reasons = []
    for candidate in _candidates(host):
        reason = _probe(candidate, port, timeout)
        if not reason:
            if not address.startswith("ray://"):  # Ray Client has no GCS to ask
                handshake(address, f"{candidate}:{port}")
            return
        reasons.append(reason)
    raise LknasError(f"--address {address}: no Ray cluster answers there ({'; '.join(reasons)}); {_START_HINT}")


def _candidates(host: str) -> list[str]:
    """`host`, and for a loopback name also the address Ray itself turns it into (the node's IP)."""
    out = [host]
    if host in ("localhost", "127.0.0.1"):
        try:
            from ray._private.services import resolve_ip_for_localhost

            out.append(resolve_ip_for_localhost(host))
        except Exception:  # a Ray without this helper: the loopback address alone
            pass
    return list(dict.fromkeys(out))


_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS


def _probe(host: str, port: int, timeout: float) -> str:
    """'' when `host:port` accepts a connection and answers an HTTP/2 greeting (Ray's GCS and Ray
    Client are gRPC servers) within `timeout` seconds; else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            if os.environ.get("RAY_USE_TLS", "0") not in ("", "0"):
                return ""  # a TLS cluster: the plaintext greeting would not be answered
            conn.sendall(_HTTP2_PREFACE)
            head = b""
            while len(head) < 9:
                chunk = conn.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
    except TimeoutError:
        return f"{host}:{port} did not answer within {timeout:g} s"
    except OSError as err:
        return f"{host}:{port}: {err.strerror or err}"
    if len(head) == 9 and head[3] == 0x4:  # the server's SETTINGS frame
        return ""
    return f"{host}:{port} accepts connections but is not a Ray (gRPC) server"


def _local_resources() -> tuple[float, float]:
    import torch

    return float(os.cpu_count() or 1), float(torch.cuda.device_count() if torch.cuda.is_available() else 0)


def init_ray(address: str | None, quiet: bool, cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0) -> None:
    """Start or join Ray (see the module docstring), then check that one trial fits on a node.

    Raises:
        LknasError: no cluster at `address`, the cluster refused our credentials (token
            authentication), its Ray or Python version differs, Ray cannot start, or a trial fits
            on no node.
    """
    import ray

    if not ray.is_initialized():
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        kwargs: dict[str, Any] = dict(include_dashboard=False, logging_level=logging.WARNING,
                                      log_to_driver=not quiet, configure_logging=True)
        if address:
            check_address(address)
            try:
                ray.init(address=address, **kwargs)
            except Exception as err:  # what the handshake could not tell beforehand
                raise _join_error(address, err) from None
        else:
            cpus, gpus = _local_resources()
            _refuse_unless_fits(cpus_per_trial, gpus_per_trial, [(cpus, gpus)],
                                f"this machine has {_count(cpus, 'CPU')} and {_count(gpus, 'GPU')}")
            try:
                ray.init(address="local", num_cpus=os.cpu_count() or 1, _system_config=LOCAL_SYSTEM_CONFIG, **kwargs)
            except (RuntimeError, OSError, ConnectionError) as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise LknasError(f"could not start a local Ray ({first}); Ray keeps its session files in "
                                 f"$RAY_TMPDIR/ray (default /tmp/ray): set RAY_TMPDIR to a writable directory "
                                 f"with free space") from None
    check_trial_resources(cpus_per_trial, gpus_per_trial)


def _join_error(address: str, err: Exception) -> Exception:
    """The LknasError for an exception of `ray.init(address=...)`, or `err` itself when it is not
    about the cluster (a bug)."""
    text = str(err).strip()
    first = text.splitlines()[0] if text else type(err).__name__
    if type(err).__name__ == "AuthenticationError":
        return LknasError(f"--address {address}: the Ray cluster there refused our credentials (token "
                          f"authentication: {first}); {TOKEN_HINT}")
    if "Version mismatch" in text:
        versions = " ".join(line.strip() for line in text.splitlines()[1:] if line.strip())
        return LknasError(f"--address {address}: Ray version mismatch ({versions}); install the cluster's Ray and "
                          f"Python here, or start every node with this machine's")
    if isinstance(err, (ConnectionError, TimeoutError, RuntimeError)):
        return LknasError(f"--address {address}: something answers there but Ray could not join it as a cluster "
                          f"({first}); {_START_HINT}")
    return err


def _count(n: float, what: str) -> str:
    return f"{n:g} {what}{'' if n == 1 else 's'}"


def describe_cluster() -> str:
    """'2 CPUs, 0 GPUs on 1 node' (with the largest node when there are several)."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    cpus = sum(r.get("CPU", 0) for r in nodes)
    gpus = sum(r.get("GPU", 0) for r in nodes)
    text = f"{_count(cpus, 'CPU')}, {_count(gpus, 'GPU')} on {len(nodes)} node{'' if len(nodes) == 1 else 's'}"
    if len(nodes) > 1:
        big = max(nodes, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)))
        text += f" (largest: {_count(big.get('CPU', 0), 'CPU')}, {_count(big.get('GPU', 0), 'GPU')})"
    return text


def trial_slots(cpus_per_trial: float, gpus_per_trial: float = 0.0, resources: dict[str, float] | None = None) -> int:
    """How many trials the cluster's resources (default: the connected Ray's) fit at once, at least 1."""
    if resources is None:
        import ray

        resources = ray.cluster_resources()
    slots = int(resources.get("CPU", 1) // cpus_per_trial) if cpus_per_trial > 0 else 10**6
    if gpus_per_trial > 0:
        slots = min(slots, int(resources.get("GPU", 0) // gpus_per_trial))
    return max(1, slots)


def check_trial_resources(cpus_per_trial: float, gpus_per_trial: float) -> None:
    """LknasError unless some alive node of the connected cluster holds one trial's CPUs and GPUs."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    _refuse_unless_fits(cpus_per_trial, gpus_per_trial, [(r.get("CPU", 0), r.get("GPU", 0)) for r in nodes],
                        f"the Ray cluster has {describe_cluster()}")


def _refuse_unless_fits(cpus: float, gpus: float, nodes: list[tuple[float, float]], have: str) -> None:
    if any(c >= cpus and g >= gpus for c, g in nodes):
        return
    if gpus > 0 and not any(g >= gpus for _, g in nodes):
        fix = ("use --gpus-per-trial 0 (the default) to train on CPUs" if not any(g for _, g in nodes)
               else f"use --gpus-per-trial {max(g for _, g in nodes):g} or less")
        raise LknasError(f"--gpus-per-trial {gpus:g}: {have}, so no trial could ever start; {fix}, "
                         f"or run on a cluster with GPUs (--address)")
    most = max((c for c, g in nodes if g >= gpus), default=0)
    if most <= 0:
        raise LknasError(f"--cpus-per-trial {cpus:g}: {have}, so no trial could ever start; add nodes with CPUs")
    raise LknasError(f"--cpus-per-trial {cpus:g}: {have}, so no trial could ever start (a trial runs on one "
                     f"node); use --cpus-per-trial {most:g} or less, or add nodes (--address)")
