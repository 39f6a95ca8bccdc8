"""SHA-256 of bytes held in memory, taken on a thread beside the caller.

hashlib releases the GIL while it hashes more than a few KB, so on a machine with a core to spare
the digest of the next object is ready by the time the caller, busy parsing this one, needs it.
"""

import hashlib
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _digest_pool() -> ThreadPoolExecutor:
    global _pool  # one thread per process, started on first use
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256")
        return _pool


def _forget_pool_after_fork() -> None:
    # A forked child (a Celery or gunicorn worker) inherits the pool without its thread.
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _hexdigest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_soon(data: bytes) -> "Future[str]":
    """The hex SHA-256 of ``data``, taken on the digest thread."""
    return _digest_pool().submit(_hexdigest, data)
