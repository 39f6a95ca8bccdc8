"""Files that are either whole and on the disk, or absent: written under a temporary name, fsync'd,
moved into place, and the directory fsync'd so the move survives a power cut too (as do directories
made for it on the way)."""

import os
import re
import uuid
from collections.abc import Iterable
from pathlib import Path


def _fsync_directory(directory: Path) -> None:
    handle = os.open(directory, os.O_RDONLY)
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
        _fsync_directory(created.parent)


# What this module names a file while writing it: ``<name>.<12 hex>.part``.
PARTIAL_NAME = re.compile(r"^(?P<name>.+)\.[0-9a-f]{12}\.part$")


def write_durably(path: Path, pieces: Iterable[bytes], *, new: bool = False) -> int:
    """Write ``pieces`` to ``path`` durably and return the number of bytes written.

    ``new``: the path must not exist yet (object keys are never reused); the file is linked into
    place, which fails rather than replaces. Anything raised while the pieces are produced or
    written removes this call's temporary file and propagates.
    """
    _make_directories(path.parent)
    # A name of this call's own: a crashed writer's leftover is never taken over or removed here.
    partial = path.with_name(f"{path.name}.{uuid.uuid4().hex[:12]}.part")
    size = 0
    with open(partial, "xb") as handle:
        try:
            for piece in pieces:
                handle.write(piece)
                size += len(piece)
            handle.flush()
            os.fsync(handle.fileno())
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    try:
        if new:
            os.link(partial, path)  # FileExistsError if the name is taken: never overwritten
        else:
            os.replace(partial, path)
        _fsync_directory(path.parent)
    finally:
        partial.unlink(missing_ok=True)
    return size
