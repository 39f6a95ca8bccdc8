"""Files that are either whole and on the disk, or absent: written under a temporary name, fsync'd,
renamed into place, and the directory fsync'd so the rename survives a power cut too."""

import os
from collections.abc import Iterable
from pathlib import Path


def write_durably(path: Path, pieces: Iterable[bytes], *, new: bool = False) -> int:
    """Write ``pieces`` to ``path`` durably and return the number of bytes written.

    ``new``: the path must not exist yet (object keys are never reused). Anything raised while the
    pieces are produced or written removes the partial file and propagates.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.part")
    size = 0
    try:
        with open(partial, "xb" if new else "wb") as handle:
            for piece in pieces:
                handle.write(piece)
                size += len(piece)
            handle.flush()
            os.fsync(handle.fileno())
        if new and path.exists():
            raise FileExistsError(f"{path.name} exists already.")
        os.replace(partial, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return size
