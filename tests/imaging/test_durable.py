"""Durable writes whose fsyncs run in the background (apps.imaging.durable.DeferredWrites): whole
files on the disk once waited for, or no file at all; never a partial file left behind."""

import errno
import os

import pytest

from apps.imaging import durable
from apps.imaging.durable import DeferredWrites


def _names(directory) -> list[str]:
    return sorted(path.name for path in directory.rglob("*") if path.is_file())


def test_files_are_in_place_and_whole_once_waited_for(tmp_path):
    writes = DeferredWrites()
    pieces = {tmp_path / "a" / f"object{n}": [b"x" * (1000 * n), b"tail%d" % n] for n in range(1, 6)}
    sizes = {path: writes.write(path, parts, new=True) for path, parts in pieces.items()}
    writes.wait()
    for path, parts in pieces.items():
        assert path.read_bytes() == b"".join(parts)
        assert sizes[path] == len(b"".join(parts))
    assert _names(tmp_path) == sorted(path.name for path in pieces)  # no .part file left


def test_a_new_file_never_replaces_one_that_exists(tmp_path):
    taken = tmp_path / "objects" / "taken"
    taken.parent.mkdir()
    taken.write_bytes(b"first")
    writes = DeferredWrites()
    writes.write(taken, [b"second"], new=True)
    with pytest.raises(FileExistsError):
        writes.wait()
    assert taken.read_bytes() == b"first"
    assert _names(tmp_path) == ["taken"]


def test_a_failed_sync_raises_at_the_wait_and_leaves_no_file(tmp_path, monkeypatch):
    """The disk reports an I/O error on fsync (a fault outside our code, simulated)."""

    def failing_fsync(_descriptor):
        raise OSError(errno.EIO, "Input/output error")

    writes = DeferredWrites()
    monkeypatch.setattr(durable.os, "fsync", failing_fsync)
    writes.write(tmp_path / "broken", [b"bytes"], new=True)
    with pytest.raises(OSError) as raised:
        writes.wait()
    monkeypatch.undo()
    assert raised.value.errno == errno.EIO
    assert _names(tmp_path) == []


def test_every_write_is_waited_for_even_when_one_fails(tmp_path):
    (tmp_path / "taken").write_bytes(b"first")
    writes = DeferredWrites()
    writes.write(tmp_path / "taken", [b"again"], new=True)
    for n in range(8):
        writes.write(tmp_path / f"fine{n}", [os.urandom(100_000)], new=True)
    with pytest.raises(FileExistsError):
        writes.wait()
    # The others were finished, not abandoned half-way: each is whole.
    for n in range(8):
        assert (tmp_path / f"fine{n}").stat().st_size == 100_000
    assert not [name for name in _names(tmp_path) if name.endswith(".part")]


def test_settle_lets_one_file_finish_before_it_is_deleted(tmp_path):
    writes = DeferredWrites()
    path = tmp_path / "given-up"
    writes.write(path, [b"data"], new=True)
    writes.settle(path)
    assert path.read_bytes() == b"data"
    path.unlink()
    writes.wait()  # nothing pending any more: the deleted file is not brought back
    assert _names(tmp_path) == []
