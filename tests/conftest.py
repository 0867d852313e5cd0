"""Fixtures shared by several test files."""
from __future__ import annotations

import pytest
import torch


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
