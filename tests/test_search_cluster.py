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
