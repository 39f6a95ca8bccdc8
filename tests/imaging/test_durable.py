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
    with pytest.raises(FileExistsError):
        writes.write(taken, [b"second"], new=True)
    writes.wait()
    assert taken.read_bytes() == b"first"
    assert _names(tmp_path) == ["taken"]
    writes.discard()  # the file it did not write is not its to remove
    assert taken.read_bytes() == b"first"


def test_a_new_file_that_fails_half_way_is_removed(tmp_path):
    """Written under its own name at once: a failure while writing leaves nothing under it."""

    def pieces():
        yield b"x" * 1000
        raise ValueError("the source ended early")

    writes = DeferredWrites()
    with pytest.raises(ValueError, match="ended early"):
        writes.write(tmp_path / "object", pieces(), new=True)
    writes.wait()
    assert _names(tmp_path) == []


def test_a_new_file_whose_directory_sync_fails_is_removed(tmp_path, monkeypatch):
    """The file is synced but its directory entry is not (an I/O error, simulated): the file goes,
    and the caller hears the error at the wait."""
    directory_synced = durable._fsync_path

    def failing(path):
        if path == tmp_path / "d":
            raise OSError(errno.EIO, "Input/output error")
        directory_synced(path)

    (tmp_path / "d").mkdir()
    monkeypatch.setattr(durable, "_fsync_path", failing)
    writes = DeferredWrites()
    writes.write(tmp_path / "d" / "object", [b"bytes"], new=True)
    with pytest.raises(OSError) as raised:
        writes.wait()
    assert raised.value.errno == errno.EIO
    assert _names(tmp_path) == []


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


def test_every_write_is_waited_for_even_when_one_fails(tmp_path, monkeypatch):
    fsync = os.fsync
    failed: list[int] = []

    def first_fails(descriptor):
        if not failed:
            failed.append(descriptor)
            raise OSError(errno.EIO, "Input/output error")
        fsync(descriptor)

    monkeypatch.setattr(durable.os, "fsync", first_fails)
    writes = DeferredWrites()
    writes.write(tmp_path / "broken", [b"again"], new=True)
    for n in range(8):
        writes.write(tmp_path / f"fine{n}", [os.urandom(100_000)], new=True)
    with pytest.raises(OSError):
        writes.wait()
    # The others were finished, not abandoned half-way: each is whole.
    for n in range(8):
        assert (tmp_path / f"fine{n}").stat().st_size == 100_000
    assert _names(tmp_path) == sorted(f"fine{n}" for n in range(8))  # the one that failed is gone


def test_settle_lets_one_file_finish_before_it_is_deleted(tmp_path):
    writes = DeferredWrites()
    path = tmp_path / "given-up"
    writes.write(path, [b"data"], new=True)
    writes.settle(path)
    assert path.read_bytes() == b"data"
    path.unlink()
    writes.wait()  # nothing pending any more: the deleted file is not brought back
    assert _names(tmp_path) == []
