"""The node's timing service (`lknas.measure.isolated`): a `ChildTimer` with a Unix socket that
times other processes' requests one at a time, beside its parent's own."""
from __future__ import annotations

import os
import shutil
import tempfile
import threading

import pytest

from lknas.errors import LknasError
from lknas.measure.isolated import ANSWER_KEYS, ChildTimer, request_timing
from tests.helpers import small_arch

SETTING = {"resolution": 32, "threads": 1, "repeats": 5, "reference_ms": None, "num_classes": 2, "in_chans": 3,
           "device": "cpu", "throughput_batch": 4}


@pytest.fixture
def socket_path():
    short = tempfile.mkdtemp(prefix="lknas-t-")  # a Unix socket's path must stay under ~100 bytes
    yield os.path.join(short, "timer.sock")
    shutil.rmtree(short, ignore_errors=True)


def test_the_service_times_concurrent_requests_and_its_parents_own(socket_path):
    service = ChildTimer(None, socket_path=socket_path)
    answers, errors = [], []

    def ask(kernel):
        try:
            answers.append(request_timing(socket_path, SETTING, small_arch(kernel=kernel).to_yaml()))
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    try:
        askers = [threading.Thread(target=ask, args=(k,)) for k in (3, 7, 13)]  # sent before the child is ready
        for t in askers:
            t.start()
        for t in askers:
            t.join(120)
        assert not errors and len(answers) == 3
        for answer in answers:
            assert set(answer) == set(ANSWER_KEYS) and answer["latency_ms"] > 0 and answer["throughput"] > 0
        service.setting = {k: v for k, v in SETTING.items() if k != "throughput_batch"}  # learnt late
        own = service(small_arch().to_yaml(), "nchw")
        assert own["layout"] == "nchw" and own["throughput"] is None  # its own setting: no throughput batch
    finally:
        service.close()
    assert service._proc.returncode == 0 and not os.path.exists(socket_path)  # ended, socket removed


def test_a_service_whose_parent_never_timed_ends_cleanly(socket_path):
    service = ChildTimer(None, socket_path=socket_path)
    assert request_timing(socket_path, SETTING, small_arch().to_yaml())["latency_ms"] > 0
    service.close()
    assert service._proc.returncode == 0, service._proc.stderr.read()


def test_a_bad_request_gets_its_error_and_the_service_goes_on(socket_path):
    service = ChildTimer(None, socket_path=socket_path)
    try:
        with pytest.raises(LknasError, match=f"timing service at {socket_path} failed: .*Error"):
            request_timing(socket_path, SETTING, "stages: [not an architecture")
        assert request_timing(socket_path, SETTING, small_arch().to_yaml())["latency_ms"] > 0
    finally:
        service.close()


def test_no_service_at_the_path_is_a_clear_error(socket_path):
    with pytest.raises(LknasError, match=f"timing service at {socket_path} did not answer"):
        request_timing(socket_path, SETTING, small_arch().to_yaml(), timeout=5)


def test_a_new_service_path_clears_sockets_of_searches_that_are_gone(tmp_path, monkeypatch):
    import subprocess
    import sys

    from lknas.measure.isolated import service_path

    monkeypatch.setenv("LKNAS_QUIET_DIR", str(tmp_path))
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = tmp_path / f"timer-{ended.stdout.strip()}-0a1b2c3d.sock"
    alive = tmp_path / f"timer-{os.getppid()}-0a1b2c3d.sock"
    for path in (gone, alive):
        path.write_text("")
    first, second = service_path(), service_path()
    assert first.startswith(str(tmp_path / f"timer-{os.getpid()}-")) and first.endswith(".sock")
    assert second != first  # a service still ending never removes the next one's socket
    assert not gone.exists() and alive.exists()
