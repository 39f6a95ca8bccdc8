"""Files that are either whole and on the disk, or absent: written under a temporary name, fsync'd,
moved into place, and the directory fsync'd so the move survives a power cut too (as do directories
made for it on the way). A new file that nothing names until it is synced (a stored object, named
by the row committed after) is written under its own name instead: one journal commit and two
directory changes fewer, and a crash half-way leaves an orphan that ``archive_sweep`` removes."""

import os
import re
import threading
import uuid
from collections.abc import Iterable
from concurrent.futures import Future, wait
from pathlib import Path
from typing import BinaryIO

from apps.imaging.threadpool import ProcessThreadPool


def _fsync_path(path: Path) -> None:
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _make_directories(directory: Path) -> None:
    """Create ``directory`` and any missing parents, each made durable in its own parent."""
    missing = []
    while not directory.is_dir():
        missing.append(directory)
        directory = directory.parent
    for created in reversed(missing):
        created.mkdir(exist_ok=True)
        _fsync_path(created.parent)


def make_directory_fan(parent: Path, names: Iterable[str]) -> None:
    """Make ``parent`` and those of its subdirectories ``names`` that are missing, durably, with one
    sync of ``parent`` for all of them (rather than one per directory as files first need them)."""
    _make_directories(parent)
    made = False
    for name in names:
        try:
            (parent / name).mkdir()
        except FileExistsError:
            continue
        made = True
    if made:
        _fsync_path(parent)


# What this module names a file while writing it: ``<name>.<12 hex>.part``.
PARTIAL_NAME = re.compile(r"^(?P<name>.+)\.[0-9a-f]{12}\.part$")


def write_durably(path: Path, pieces: Iterable[bytes], *, new: bool = False) -> int:
    """Write ``pieces`` to ``path`` durably and return the number of bytes written.

    ``new``: the path must not exist yet (object keys are never reused; FileExistsError if it
    does). Such a file is written under its own name at once, never replacing anything: until it
    is synced nothing names it (an object is named by the row committed after), and a crash
    half-way leaves an orphan for ``archive_sweep``. Otherwise the file is written under a
    temporary name and moved into place, so that readers of ``path`` see the old file or the new
    one, whole. Anything raised while the pieces are produced or written removes this call's file
    and propagates.
    """
    partial, descriptor, size = _write_partial(path, pieces, new=new)
    _sync_into_place(partial, descriptor, path, new)
    return size


def _create(path: Path) -> BinaryIO:
    """Open a file that must not exist yet; its directory is made (durably) only if missing."""
    try:
        return open(path, "xb")  # the caller closes it
    except FileNotFoundError:
        _make_directories(path.parent)
        return open(path, "xb")


def _write_partial(path: Path, pieces: Iterable[bytes], *, new: bool = False) -> tuple[Path, int, int]:
    """Write ``pieces`` to the file they will be synced in (``path`` itself if ``new``, else a
    temporary file beside it); return it, an open descriptor of it (for its fsync: one that saw
    the writes, so that a write-back error is reported there) and its size."""
    # A name of this call's own: a crashed writer's leftover is never taken over or removed here.
    partial = path if new else path.with_name(f"{path.name}.{uuid.uuid4().hex[:12]}.part")
    size = 0
    with _create(partial) as handle:
        try:
            for piece in pieces:
                handle.write(piece)
                size += len(piece)
            handle.flush()
            descriptor = os.dup(handle.fileno())
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    return partial, descriptor, size


def _sync_into_place(partial: Path, descriptor: int, path: Path, new: bool) -> None:
    """fsync the written file, move it into place (unless it was written there) and fsync its
    directory; closes ``descriptor``. On failure the file written is removed."""
    try:
        os.fsync(descriptor)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        os.close(descriptor)
    if new:
        try:
            _fsync_path(path.parent)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return
    try:
        os.replace(partial, path)
        _fsync_path(path.parent)
    finally:
        partial.unlink(missing_ok=True)


# fsync waits on the disk with the GIL released: a few at once let the journal commit them together.
_sync_pool = ProcessThreadPool(4, "durable-sync")
# Files written and not yet synced, per process: each holds a descriptor, and a writer that gets
# this far ahead of the disk waits.
_IN_FLIGHT = 64
_in_flight = threading.BoundedSemaphore(_IN_FLIGHT)


def _forget_slots_after_fork() -> None:
    # A forked child starts with none in flight.
    global _in_flight
    _in_flight = threading.BoundedSemaphore(_IN_FLIGHT)


os.register_at_fork(after_in_child=_forget_slots_after_fork)


def _sync_in_flight(partial: Path, descriptor: int, path: Path, new: bool, slot: threading.BoundedSemaphore) -> None:
    try:
        _sync_into_place(partial, descriptor, path, new)
    finally:
        slot.release()


class DeferredWrites:
    """Durable writes whose slow half runs beside the caller: ``write`` puts the bytes in a file of
    its own and returns; the fsync, the link into place and the directory's fsync run on a small
    thread pool. The caller must ``wait`` before it commits anything that names one of these files,
    and treats a failure there as if the writes had failed (rolling back what names them).

    A file whose syncing failed or was never waited for is not lost data but an orphan: nothing
    committed names it, and ``archive_sweep`` removes it after its grace period.
    """

    def __init__(self) -> None:
        self._pending: dict[Path, Future[None]] = {}
        self._written: list[Path] = []

    def write(self, path: Path, pieces: Iterable[bytes], *, new: bool = False) -> int:
        slot = _in_flight
        slot.acquire()
        try:
            partial, descriptor, size = _write_partial(path, pieces, new=new)
        except BaseException:
            slot.release()
            raise
        try:
            future = _sync_pool.get().submit(_sync_in_flight, partial, descriptor, path, new, slot)
        except BaseException:
            os.close(descriptor)
            partial.unlink(missing_ok=True)
            slot.release()
            raise
        self._written.append(path)
        self._pending[path] = future
        return size

    def settle(self, path: Path) -> None:
        """Wait for one file's syncing, so that it can be deleted without a race; errors are the
        caller's to ignore (the file is being given up anyway)."""
        future = self._pending.pop(path, None)
        if future is not None:
            wait([future])

    def _drain(self) -> list[Future[None]]:
        """Wait for every pending file; return their finished futures."""
        pending, self._pending = list(self._pending.values()), {}
        wait(pending)
        return pending

    def wait(self) -> None:
        """Wait for every pending file; if any failed, raise the first failure (after all finished)."""
        for future in self._drain():
            if (error := future.exception()) is not None:
                raise error

    def discard(self) -> None:
        """Wait for every pending file, then remove every file written through this object: for a
        caller whose transaction will not commit, so that nothing names them."""
        self._drain()
        for path in self._written:
            path.unlink(missing_ok=True)
        self._written = []
