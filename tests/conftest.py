"""Fixtures shared by several test files."""
from __future__ import annotations

import os

import pytest
import torch

# The tests run the dwconv rule alone, deterministic on every machine: no per-machine timing of its
# picks against stock (`lknas.ops.dwconv_select.verify`; its own tests switch it on). Set here, at
# import, so the CLI and Ray subprocesses the tests start inherit it.
os.environ["LKNAS_DWCONV_VERIFY"] = "0"


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray for the module (the tests that use it are grouped on one xdist worker)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def one_thread_fresh_cache(tmp_path, monkeypatch):
    """Seeded training runs that stay deterministic: one intra-op thread, a data cache of their own."""
    monkeypatch.setenv("LKNAS_CACHE", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
