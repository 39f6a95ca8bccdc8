"""STOW-RS reads the next in-memory part ahead of its turn and takes its SHA-256 on a thread
(apps.dicomweb.stow._ReadAhead, apps.imaging.digests)."""

import hashlib
import os
import threading

from apps.dicomweb import stow
from apps.dicomweb.multipart import split_parts
from apps.imaging import digests
from apps.imaging.dicom.rules import ValidationPolicy
from tests.dicomweb.test_multipart import _body


def test_each_part_comes_with_its_digest_taken_on_the_digest_thread(monkeypatch):
    contents = [os.urandom(10_000 + n) for n in range(5)]
    body = _body(contents)
    parts = split_parts(body, "b0undary")
    threads = []
    hexdigest = digests._hexdigest

    def recording(data):
        threads.append(threading.current_thread().name)
        return hexdigest(data)

    monkeypatch.setattr(digests, "_hexdigest", recording)
    # Parts 1 and 3 are not ingested from memory (a large object, say): never read ahead.
    ahead = stow._ReadAhead(body, [True, False, True, False, True], ValidationPolicy(institution_name="X"), [])
    taken = [ahead.take(parts, index)[:2] for index in (0, 2, 4)]
    assert taken == [(contents[i], hashlib.sha256(contents[i]).hexdigest()) for i in (0, 2, 4)]
    assert len(threads) == 3
    assert all(name.startswith("sha256") for name in threads)


def test_at_most_the_next_part_is_held(monkeypatch):
    contents = [bytes([n]) * 1000 for n in range(6)]
    body = _body(contents)
    parts = split_parts(body, "b0undary")
    ahead = stow._ReadAhead(body, [True] * 6, ValidationPolicy(institution_name="X"), [])
    for index in range(6):
        assert ahead.take(parts, index)[0] == contents[index]
        assert set(ahead._held) <= {index + 1}


class _FakeHelper:
    """Stands in for a ParseHelper: refuses a second object while one is out, as the real one does,
    and answers with the object it was sent."""

    def __init__(self, log: list[tuple[str, int, bytes]], number: int) -> None:
        self.log, self.number, self.out = log, number, None

    def send(self, data, policy):
        if self.out is not None:
            return False
        self.out = data
        self.log.append(("send", self.number, data))
        return True

    def receive(self):
        data, self.out = self.out, None
        self.log.append(("receive", self.number, data))
        return data


def test_with_helpers_the_parts_go_to_them_in_turn_and_n_plus_one_are_held(monkeypatch):
    contents = [bytes([n]) * 1000 for n in range(8)]
    body = _body(contents)
    parts = split_parts(body, "b0undary")
    log: list[tuple[str, int, bytes]] = []
    helpers = [_FakeHelper(log, 0), _FakeHelper(log, 1), _FakeHelper(log, 2)]
    ahead = stow._ReadAhead(body, [True] * 8, ValidationPolicy(institution_name="X"), helpers)
    prepared = []
    for index in range(8):
        data, _, result = ahead.take(parts, index)
        assert data == contents[index]
        prepared.append(result)
        assert len(ahead._held) <= 3
    # The first part is the request's own; every other one went to a helper, in turn, and came back
    # as that part's result (none refused for being sent while its helper was busy).
    assert prepared == [None, *contents[1:]]
    sends = [(number, data) for kind, number, data in log if kind == "send"]
    assert sends == [(n % 3, contents[n + 1]) for n in range(7)]
