"""Durable staging: received bytes reach the disk (fsync'd) before anything else happens.

Staged files are named by the staged object's random public id, never by anything in the data.
"""

import hashlib
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings


class StagingTooLarge(Exception):
    pass


def staging_path(public_id: uuid.UUID) -> Path:
    return Path(settings.STAGING_DIR) / public_id.hex[:2] / public_id.hex


def staging_write(public_id: uuid.UUID, chunks: Iterable[bytes], *, max_size: int) -> tuple[int, str]:
    """Write ``chunks`` to the staging file of ``public_id`` and fsync it; return its size and
    SHA-256 (hashed on the way, so ingest need not read the file once more for it).

    Writes to a temporary name and renames, so a staged file is either complete or absent.
    """
    path = staging_path(public_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    size = 0
    digest = hashlib.sha256()
    try:
        with open(partial, "wb") as handle:
            for chunk in chunks:
                size += len(chunk)
                if size > max_size:
                    raise StagingTooLarge(size)
                digest.update(chunk)
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return size, digest.hexdigest()


def staging_remove(public_id: uuid.UUID) -> None:
    staging_path(public_id).unlink(missing_ok=True)
