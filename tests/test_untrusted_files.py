"""Files lknas reads from users never run code: CIFAR batches go through a restricted unpickler;
checkpoints, the data cache and ERF maps are read with torch's and numpy's no-code loaders."""
from __future__ import annotations

import io
import os
import pickle
import warnings

import numpy as np
import pytest
import torch

from lknas.data import DataError, build_data
from lknas.data.safe_pickle import ALLOWED, RestrictedUnpickler, UnsafePickleError, load_plain
from tests.test_data_folders import write_cifar10


class RunsCode:
    """Unpickling this runs a shell command that creates `marker` (the attack)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class Calls:
    """Unpickling this calls `func(*args)`."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def test_pickle_itself_would_run_the_payload(tmp_path):
    """The control: the crafted batch really is an attack for plain pickle.load."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps({b"data": RunsCode(marker)}))
    assert marker.exists()


@pytest.mark.parametrize("victim", ["data_batch_3", "batches.meta"])
def test_a_crafted_cifar_file_is_refused_and_nothing_runs(tmp_path, victim):
    write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    with open(tmp_path / victim, "wb") as f:
        pickle.dump({b"data": RunsCode(marker), b"labels": [0]}, f)
    with pytest.raises(UnsafePickleError) as err:
        build_data(f"cifar10:{tmp_path}", resolution=32, batch_size=8)
    assert isinstance(err.value, DataError)
    assert str(tmp_path / victim) in str(err.value) and "posix.system" in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    Calls(eval, "1 + 1"), Calls(exec, "x = 1"), Calls(getattr, "os", "system"),
    Calls(__import__, "subprocess"), Calls(np.load, "x.npy"), Calls(io.open, "x", "w"),
])
def test_only_plain_data_names_resolve(payload):
    with pytest.raises(UnsafePickleError):
        RestrictedUnpickler(io.BytesIO(pickle.dumps([payload]))).load()


def test_codecs_is_allowed_for_latin1_bytes_only():
    import codecs

    with pytest.raises(pickle.UnpicklingError, match="only latin1"):
        RestrictedUnpickler(io.BytesIO(pickle.dumps(Calls(codecs.encode, "x", "rot13")))).load()


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_data_loads_under_every_protocol(tmp_path, protocol):
    batch = {b"data": np.arange(3072 * 2, dtype=np.uint8).reshape(2, 3072), b"labels": [3, 4],
             b"names": {b"a", b"b"}, b"n": np.int64(7), b"raw": b"\x00\xff", b"f": (1.5, 2 + 1j)}
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps(batch, protocol=protocol))
    out = load_plain(path, "test", encoding="bytes")
    assert np.array_equal(out[b"data"], batch[b"data"]) and out[b"labels"] == [3, 4]
    assert out[b"names"] == {b"a", b"b"} and out[b"n"] == 7 and out[b"raw"] == b"\x00\xff"
    assert ("os", "system") not in ALLOWED and ("posix", "system") not in ALLOWED


def test_checkpoints_are_read_without_unpickling_objects(tmp_path):
    from lknas.train.checkpoint import CheckpointError, load_checkpoint

    marker = tmp_path / "pwned"
    torch.save({"format": "lknas-checkpoint", "model": RunsCode(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_a_crafted_data_cache_file_is_regenerated_not_run(tmp_path, monkeypatch):
    from lknas.data import cache

    monkeypatch.setenv("LKNAS_CACHE", str(tmp_path / "cache"))
    key = {"kind": "shapes", "split": "train", "resolution": 32}
    path = cache.cache_path(key, cache.cache_dir())
    path.parent.mkdir(parents=True)
    marker = tmp_path / "pwned"
    torch.save({"key": key, "x": RunsCode(marker)}, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obj, hit = cache.load_or_generate(key, lambda: {"x": torch.zeros(1)})
    assert not hit and not marker.exists()


def test_erf_maps_are_read_without_pickles(tmp_path):
    from lknas.search.store import RunStore

    store = RunStore(tmp_path)
    store.erf_file(0).parent.mkdir(parents=True)
    marker = tmp_path / "pwned"
    np.save(store.erf_file(0), np.array([RunsCode(marker)], dtype=object), allow_pickle=True)
    assert store.erf_map(0) is None and not marker.exists()
