"""SHA-256 of bytes held in memory, taken on a thread beside the caller.

hashlib releases the GIL while it hashes more than a few KB, so on a machine with a core to spare
the digest of the next object is ready by the time the caller, busy parsing this one, needs it.
"""

import hashlib
from concurrent.futures import Future

from apps.imaging.threadpool import ProcessThreadPool

_pool = ProcessThreadPool(1, "sha256")


def _hexdigest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_soon(data: bytes) -> "Future[str]":
    """The hex SHA-256 of ``data``, taken on the digest thread."""
    return _pool.get().submit(_hexdigest, data)
