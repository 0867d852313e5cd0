"""lknas.io: atomic files get an ordinary file's mode, OS errors name the path, and run directories
a failed command created are taken back."""
from __future__ import annotations

import os
import stat

import pytest

from lknas.errors import LknasError
from lknas.io import (
    atomic_path, file_mode, forget_run_dirs, make_run_dir, remove_unfinished_run_dirs, write_text_atomic,
)


@pytest.fixture
def umask():
    """Set a umask for the test, restore the previous one afterwards."""
    previous = os.umask(0o022)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(previous)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_atomic_files_get_the_mode_of_ordinary_files(tmp_path, umask, mask):
    umask(mask)
    (tmp_path / "plain.txt").write_text("x")
    write_text_atomic(tmp_path / "atomic.txt", "x")
    plain = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert stat.S_IMODE((tmp_path / "atomic.txt").stat().st_mode) == plain == 0o666 & ~mask
    assert file_mode() == plain


def test_atomic_write_onto_a_directory_is_a_user_error(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(LknasError, match="is a directory"):
        write_text_atomic(tmp_path / "d", "x")
    assert [p.name for p in tmp_path.iterdir()] == ["d"]  # no temporary file left behind


def test_atomic_write_under_a_file_is_a_user_error(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(LknasError, match="cannot write"):
        with atomic_path(tmp_path / "f" / "out.txt"):
            pass


def test_run_dirs_without_results_are_removed_with_their_new_parents(tmp_path):
    kept = make_run_dir(tmp_path / "kept", results=("trials.jsonl",))
    (kept / "trials.jsonl").write_text("{}\n")
    empty = make_run_dir(tmp_path / "new" / "parent" / "run", results=("trials.jsonl",))
    (empty / "run.json").write_text("{}")
    existing = tmp_path / "existing"
    existing.mkdir()
    make_run_dir(existing, results=("trials.jsonl",))  # not created by this call: never removed
    assert remove_unfinished_run_dirs() == [empty]
    assert kept.is_dir() and existing.is_dir()
    assert not (tmp_path / "new").exists()


def test_forgotten_run_dirs_stay(tmp_path):
    run = make_run_dir(tmp_path / "run", results=("trials.jsonl",))
    forget_run_dirs()
    assert remove_unfinished_run_dirs() == [] and run.is_dir()
