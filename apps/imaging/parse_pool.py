"""Helper processes that parse and validate the objects of a STOW-RS request while the request's
own process stores and indexes the ones before (apps.imaging.dicom.prepare).

pydicom and the rules are Python code holding the GIL, so a thread would not help; a process does,
on another core. Each web worker starts ``STOW_PARSE_PROCESSES`` helpers as it starts
(config/wsgi.py), or on first use: ``python -m apps.imaging.dicom.helper``, a fresh interpreter
with an environment of its own (no key, password or database address in it) that inherits nothing
of the worker's threads and connections. A helper is sent an object's bytes and the hospital's
validation policy, and sends back the parsed facts, the findings and the metadata document. A
request hands its objects to its helpers in turn and talks to them directly, without threads of
its own, one object per helper at a time: it sends a helper its next object only once it has read
the result of the last, so neither side ever waits on the other's full pipe.

Nothing depends on the helpers: when one is not started yet, is busy with another request, cannot
parse an object, or fails, the request does the work itself, with the same code.
"""

import collections
import contextlib
import fcntl
import io
import logging
import os
import pickle
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any

from django.conf import settings

from apps.imaging.dicom.helper import READY
from apps.imaging.dicom.prepare import Prepared
from apps.imaging.dicom.rules import ValidationPolicy

logger = logging.getLogger(__name__)

# How long a request waits for one result before it gives the helper up and does the work itself
# (well under a worker's timeout: parsing a header takes milliseconds).
RESULT_TIMEOUT = 10.0
# Pipes this large take a CT or MR slice in one write.
_PIPE_SIZE = 1024 * 1024
# What the helper's environment keeps of the worker's: nothing secret.
_HELPER_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONPATH", "TMPDIR")


# What a helper's messages may name: the result types and what they hold. A helper parses untrusted
# DICOM, so what it sends is read as data only: a pickle naming any other callable is refused.
_RESULT_CLASSES = frozenset(
    {
        ("apps.imaging.dicom.prepare", "Prepared"),
        ("apps.imaging.dicom.parse", "ParsedInstance"),
        ("apps.imaging.dicom.rules", "Finding"),
        ("apps.imaging.dicom.rules", "Severity"),
        ("pydicom.dataset", "Dataset"),  # the parsed facts' data set, emptied
        ("datetime", "date"),
        ("datetime", "time"),
    }
)


class _ResultUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _RESULT_CLASSES:
            raise pickle.UnpicklingError(f"{module}.{name} is not a result type")
        return super().find_class(module, name)


def _loads(raw: bytes) -> Any:
    """A message from a helper, read as data (``_RESULT_CLASSES``)."""
    return _ResultUnpickler(io.BytesIO(raw)).load()


class _Helper:
    def __init__(self) -> None:
        self.process = subprocess.Popen(  # our own module, with this interpreter
            [sys.executable, "-m", "apps.imaging.dicom.helper"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=settings.BASE_DIR,
            env={name: os.environ[name] for name in _HELPER_ENVIRONMENT if name in os.environ},
        )
        try:
            assert self.process.stdin is not None and self.process.stdout is not None
            for pipe in (self.process.stdin, self.process.stdout):
                _enlarge(pipe.fileno())
            self.requests = Connection(os.dup(self.process.stdin.fileno()), readable=False)
            self.results = Connection(os.dup(self.process.stdout.fileno()), writable=False)
        finally:
            self.process.stdin.close()  # type: ignore[union-attr]
            self.process.stdout.close()  # type: ignore[union-attr]
        self.ready = False
        self.sent = 0  # numbers the requests: each result names the one it answers
        self.outstanding: collections.deque[tuple[int, int]] = collections.deque()  # (number, size)
        self.in_use = threading.Lock()

    def is_ready(self) -> bool:
        """Whether it has started (it says so once its imports are done: a second or so)."""
        if not self.ready and self.results.poll(0):
            self.ready = _loads(self.results.recv_bytes()) == READY
        return self.ready

    def disown(self) -> None:
        """Close this process's ends of the pipes only (a forked child's copies)."""
        for name in ("requests", "results"):
            if (connection := getattr(self, name, None)) is not None:
                connection.close()

    def close(self) -> None:
        self.disown()
        self.process.kill()
        self.process.wait()


def _enlarge(descriptor: int) -> None:
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux only; elsewhere pipes stay as they are
    if set_size is not None:
        # Over the system's limit, the pipe stays as it is: a large object's write takes a few turns.
        with contextlib.suppress(OSError):
            fcntl.fcntl(descriptor, set_size, _PIPE_SIZE)


# The process's helpers, by slot (0 to STOW_PARSE_PROCESSES - 1), and the process that started them.
_helpers: dict[int, _Helper] = {}
_helpers_pid = 0
_lock = threading.Lock()


def _started(slot: int = 0) -> _Helper | None:
    """The process's helper in ``slot``, started if it has none (or only one inherited through a
    fork); None if the setting has no such slot, or it cannot start."""
    global _helpers, _helpers_pid
    if slot >= settings.STOW_PARSE_PROCESSES:
        return None
    with _lock:
        if _helpers_pid != os.getpid():
            _helpers, _helpers_pid = {}, os.getpid()  # a parent's helpers are not this process's
        if slot not in _helpers:
            try:
                _helpers[slot] = _Helper()
            except Exception as error:  # noqa: BLE001 - the requests do the work themselves
                logger.warning("STOW: the parse helper could not start (%s)", type(error).__name__)
                return None
        return _helpers[slot]


def _disown_after_fork() -> None:
    # A forked child (gunicorn --preload) closes its copies of the parent's helper pipes at once:
    # the helpers are the parent's, and the descriptors would leak, a pair per helper and fork.
    global _helpers, _lock
    for inherited in _helpers.values():
        inherited.disown()
    _helpers, _lock = {}, threading.Lock()


os.register_at_fork(after_in_child=_disown_after_fork)


def start_helper() -> None:
    """Start the process's helpers ahead of their first use (a web worker, as it starts)."""
    for slot in range(settings.STOW_PARSE_PROCESSES):
        _started(slot)


def _forget(helper: _Helper) -> None:
    with _lock:
        for slot, known in list(_helpers.items()):
            if known is helper:
                del _helpers[slot]
    helper.close()


class ParseHelper:
    """The process's helper, held by one request at a time (``checkout``, then ``release``)."""

    def __init__(self, helper: _Helper) -> None:
        self._helper: _Helper | None = helper

    @classmethod
    def checkout(cls) -> "list[ParseHelper]":
        """The process's helpers that are ready and free, for this request (none: none configured,
        starting, or in use)."""
        return [helper for slot in range(settings.STOW_PARSE_PROCESSES) if (helper := cls._checkout(slot))]

    @classmethod
    def _checkout(cls, slot: int) -> "ParseHelper | None":
        helper = _started(slot)
        if helper is None or not helper.in_use.acquire(blocking=False):
            return None
        try:
            if helper.process.poll() is None and helper.is_ready():
                return cls(helper)
            if helper.process.poll() is not None:  # it ended: the next request starts another
                logger.warning("STOW: the parse helper stopped; starting another")
                _forget(helper)
        except Exception as error:  # noqa: BLE001 - ended, or said something else than it should
            logger.warning("STOW: the parse helper failed to start (%s); starting another", type(error).__name__)
            _forget(helper)
        helper.in_use.release()
        return None

    def send(self, data: bytes, policy: ValidationPolicy) -> bool:
        """Send an object to be prepared; False if it is not taken (then prepare it yourself).
        Only one object is out at a time."""
        helper = self._helper
        if helper is None or helper.outstanding:
            return False
        helper.sent += 1
        try:
            helper.requests.send((helper.sent, policy))
            helper.requests.send_bytes(data)  # as it is: no pickled copy
        except Exception as error:  # noqa: BLE001 - ended, or a message that cannot be written
            self._give_up(f"stopped ({type(error).__name__})")
            return False
        helper.outstanding.append((helper.sent, len(data)))
        return True

    def receive(self) -> Prepared | None:
        """The result for the object sent, or None: prepare it yourself (the helper could not parse
        it, or failed; then it is given up, and the rest of the request goes without it)."""
        helper = self._helper
        if helper is None or not helper.outstanding:
            return None
        try:
            if not helper.results.poll(RESULT_TIMEOUT):
                self._give_up(f"did not answer within {RESULT_TIMEOUT:.0f} s")
                return None
            raw = helper.results.recv_bytes()
        except Exception as error:  # noqa: BLE001 - ended, or a message that cannot be read
            self._give_up(f"stopped ({type(error).__name__})")
            return None
        try:
            answer = _loads(raw)
        except Exception as error:  # noqa: BLE001 - anything but a result is refused unread
            self._give_up(f"sent something other than a result ({type(error).__name__})")
            return None
        if not isinstance(answer, tuple) or len(answer) != 3:
            self._give_up("sent something other than a result")
            return None
        if answer[:2] != helper.outstanding.popleft():
            self._give_up("answered out of order")  # never seen; but a result must not go astray
            return None
        result = answer[2]
        return result if isinstance(result, Prepared) else None

    def release(self) -> None:
        """Let the helper go to the next request, once the result of this one is read."""
        helper = self._helper
        if helper is None:
            return
        if helper.outstanding:
            self.receive()
        if self._helper is not None:
            self._helper = None
            helper.in_use.release()

    def _give_up(self, why: str) -> None:
        helper, self._helper = self._helper, None
        if helper is not None:
            logger.warning("STOW: the parse helper %s; starting another", why)
            _forget(helper)
            helper.in_use.release()
