"""Ray fails fast: a trial no node can hold, or an address where no cluster answers, is refused in
seconds with exit code 2 (Ray itself would wait forever, or retry for minutes)."""
from __future__ import annotations

import os
import socket
import threading
import time

import pytest
import torch

from lknas.cli import main
from lknas.errors import LknasError
from lknas.search.cluster import check_address, check_trial_resources
from tests.helpers import write_tiny_space


def run(capsys, *argv: str) -> tuple[int, str, float]:
    start = time.monotonic()
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err, time.monotonic() - start


@pytest.fixture
def search(tmp_path, monkeypatch):
    monkeypatch.setenv("LKNAS_CACHE", str(tmp_path / "cache"))
    return ["search", "--space", str(write_tiny_space(tmp_path / "tiny.yaml")), "--out", str(tmp_path / "run"),
            "--quiet"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_gpu_per_trial_on_a_machine_without_one_exits_2_at_once(capsys, search, tmp_path):
    code, err, seconds = run(capsys, *search, "--gpus-per-trial", "1")
    assert code == 2 and "--gpus-per-trial 1" in err and "0 GPUs" in err and "--gpus-per-trial 0" in err
    assert seconds < 30 and not (tmp_path / "run").exists()


@pytest.mark.skipif((os.cpu_count() or 1) >= 1024, reason="needs a machine with fewer than 1024 CPUs")
def test_more_cpus_per_trial_than_the_machine_has_exits_2_with_its_resources(capsys, search):
    code, err, _ = run(capsys, *search, "--cpus-per-trial", "1024")
    assert code == 2 and "--cpus-per-trial 1024" in err and f"{os.cpu_count()} CPUs" in err and "or less" in err


def test_an_address_where_nothing_listens_exits_2_within_30_s(capsys, search, tmp_path):
    code, err, seconds = run(capsys, *search, "--address", "127.0.0.1:1")
    assert code == 2 and "no Ray cluster answers there" in err and "ray start --head" in err
    assert seconds < 30 and not (tmp_path / "run").exists()


def test_a_port_that_accepts_but_never_answers_is_not_taken_for_a_cluster():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(server.accept()[0]), daemon=True).start()
    start = time.monotonic()
    try:
        with pytest.raises(LknasError, match="did not answer within 1 s"):
            check_address(f"127.0.0.1:{server.getsockname()[1]}", timeout=1)
    finally:
        server.close()
    assert time.monotonic() - start < 10


@pytest.mark.ray
@pytest.mark.xdist_group("ray")
def test_a_connected_clusters_resources_are_checked_per_node(local_ray):
    check_trial_resources(1, 0)
    with pytest.raises(LknasError, match=r"--cpus-per-trial 64: the Ray cluster has 2 CPUs, 0 GPUs on 1 node"):
        check_trial_resources(64, 0)
    with pytest.raises(LknasError, match=r"--gpus-per-trial 1: the Ray cluster has .*0 GPUs"):
        check_trial_resources(1, 1)


def test_an_unreadable_or_empty_ray_auth_token_path_is_refused_naming_it(tmp_path, monkeypatch):
    """Ray aborts the whole process on such a file: lknas says what is wrong first."""
    from lknas.search.handshake import token_source

    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(LknasError, match=r"RAY_AUTH_TOKEN_PATH=.*missing: cannot read it"):
        token_source()
    (tmp_path / "empty").write_text("\n")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "empty"))
    with pytest.raises(LknasError, match=r"the file is empty.*ray get-auth-token"):
        token_source()
    (tmp_path / "token").write_text("ab" * 32)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "token"))
    assert token_source() == f"RAY_AUTH_TOKEN_PATH={tmp_path / 'token'}"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "cd" * 32)  # Ray's order: the variable first
    assert token_source() == "RAY_AUTH_TOKEN"


def test_a_cluster_with_other_ray_or_python_versions_is_refused_with_both(monkeypatch):
    from lknas.search import handshake

    monkeypatch.setattr(handshake, "local_versions", lambda: ("2.60.0", "3.11.7"))
    monkeypatch.delenv("RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL", raising=False)
    handshake.check_versions("h:1", "2.60.0", "3.11.7")
    with pytest.raises(LknasError, match=r"Ray version mismatch: the cluster runs Ray 2.59.0 on Python 3.11.7, "
                                         r"this machine Ray 2.60.0 .*ray\[tune\]==2.59.0"):
        handshake.check_versions("h:1", "2.59.0", "3.11.7")
    with pytest.raises(LknasError, match="Python 3.11.9"):  # Ray's default: the same patch level
        handshake.check_versions("h:1", "2.60.0", "3.11.9")
    monkeypatch.setenv("RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL", "minor")
    handshake.check_versions("h:1", "2.60.0", "3.11.9")


def test_ray_init_errors_are_told_apart(monkeypatch):
    """What `ray.init` raises when the handshake could not tell beforehand (another Ray)."""
    from lknas.search.cluster import _join_error

    class AuthenticationError(Exception):
        pass

    auth = _join_error("h:1", AuthenticationError("Token authentication is enabled but no token was found"))
    assert "refused our credentials" in str(auth) and "RAY_AUTH_MODE=token" in str(auth)
    mismatch = _join_error("h:1", RuntimeError("Version mismatch: The cluster was started with:\n    Ray: 2.59.0\n"
                                               "    Python: 3.11.7\nThis process on node x was started with:\n"
                                               "    Ray: 2.60.0\n    Python: 3.11.7\n"))
    assert "Ray version mismatch" in str(mismatch) and "Ray: 2.59.0" in str(mismatch) and "\n" not in str(mismatch)
    assert "could not join it" in str(_join_error("h:1", ConnectionError("Failed to connect to Ray cluster")))
    bug = ValueError("a bug")
    assert _join_error("h:1", bug) is bug


@pytest.mark.parametrize("value, gpus, expected", [("", 0, "cpu"), ("", 0.5, "cuda"), ("cpu", 0.5, "cpu"),
                                                    ("CUDA", 1, "cuda")])
def test_the_trial_device_follows_the_gpu_request_unless_set(monkeypatch, value, gpus, expected):
    from lknas.device import trial_device

    monkeypatch.setenv("LKNAS_TRIAL_DEVICE", value)
    assert trial_device(gpus) == expected


@pytest.mark.parametrize("value, gpus, message", [("tpu", 1, "LKNAS_TRIAL_DEVICE=tpu: trials train on cpu or cuda"),
                                                  ("cuda", 0, "Ray gives such trials no GPU; pass --gpus-per-trial")])
def test_a_bad_trial_device_is_refused_naming_the_variable(monkeypatch, value, gpus, message):
    from lknas.device import trial_device

    monkeypatch.setenv("LKNAS_TRIAL_DEVICE", value)
    with pytest.raises(LknasError, match=message):
        trial_device(gpus)


def test_a_local_ray_prestarts_no_task_workers_the_trials_would_never_use():
    """Trials are Ray Tune actors, which get processes of their own: the task workers a local Ray
    prestarts would only take CPU from the search's start (`cluster.LOCAL_SYSTEM_CONFIG`)."""
    import subprocess
    import sys

    script = (
        "import time\n"
        "from lknas.search.cluster import init_ray\n"
        "init_ray(None, quiet=True)\n"
        "import psutil\n"  # Ray's own copy, on the path once ray is imported
        "time.sleep(3)\n"  # a prestarted worker is up within 1-2 s of ray.init
        "def command(p):\n"
        "    try:\n"
        "        return ' '.join(p.cmdline())\n"
        "    except psutil.Error:\n"  # a process that ended meanwhile
        "        return ''\n"
        "print(sum('ray::IDLE' in command(p) for p in psutil.Process().children(recursive=True)))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == "0", result.stdout
