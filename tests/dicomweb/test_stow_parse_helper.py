"""The STOW-RS parse helper (apps.imaging.parse_pool): a process of its own that parses and validates
the objects of a request while the request stores the ones before. Whatever it does, what is stored
is what the request would have stored by itself."""

import io
import json
import os
import pickle
import signal
import time

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from apps.dicomweb import stow as stow_module
from apps.imaging import parse_pool
from apps.imaging.dicom import prepare as prepare_module
from apps.imaging.dicom.header import metadata_document
from apps.imaging.dicom.parse import parse_part10
from apps.imaging.metadata import unseal_metadata
from apps.imaging.models import Instance, StagedObject, ValidationFinding
from apps.tenants.context import hospital_context
from tests.dicomweb.helpers import multipart_related, stow, token_for
from tests.imaging.dicom_factory import make_ct_series, make_ct_slice

pytestmark = pytest.mark.django_db


def _ready_helper(slot: int = 0) -> parse_pool._Helper:
    """The test process's helper (in ``slot``), started and answering."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        helper = parse_pool._started(slot)
        assert helper is not None
        if helper.process.poll() is None and helper.is_ready():
            return helper
        time.sleep(0.05)
    raise AssertionError("the parse helper did not start")


@pytest.fixture
def first(world, local_storage, settings):
    settings.STOW_PARSE_PROCESSES = 1
    return world.first.hospital, token_for(world.first.hospital)


@pytest.fixture
def parsed_here(monkeypatch):
    """The objects the request parsed itself (SOP Instance UIDs), rather than the helper."""
    uids: list[str] = []
    parse = prepare_module.parse_part10

    def counting(source):
        parsed = parse(source)
        uids.append(parsed.sop_instance_uid)
        return parsed

    monkeypatch.setattr(prepare_module, "parse_part10", counting)
    return uids


def _stored(hospital) -> dict[str, tuple[dict, list[str]]]:
    """Per SOP Instance UID: the unsealed metadata and the finding codes."""
    with hospital_context(hospital):
        return {
            instance.sop_instance_uid: (
                unseal_metadata(hospital, bytes(instance.metadata_sealed)),
                sorted(ValidationFinding.objects.filter(instance=instance).values_list("code", flat=True)),
            )
            for instance in Instance.objects.all()
        }


def test_the_helper_parses_all_but_the_first_object_and_the_result_is_the_same(client, first, parsed_here):
    hospital, token = first
    _ready_helper()
    # Objects 2 and 5 name another institution: a finding (INSTITUTION_MISMATCH) that must stay theirs.
    blobs = make_ct_series(6, PatientID="HELPER01")
    study_uid, series_uid = (dcmread(io.BytesIO(blobs[0])).get(k) for k in ("StudyInstanceUID", "SeriesInstanceUID"))
    for n in (1, 4):
        blobs[n] = make_ct_slice(
            PatientID="HELPER01", StudyInstanceUID=study_uid, SeriesInstanceUID=series_uid, InstanceNumber=n + 1,
            ImagePositionPatient=[0, 0, -5.0 * n], InstitutionName="ELSEWHERE",
        )  # fmt: skip
    response = stow(client, "first", token, blobs)
    assert response.status_code == 202  # stored, with the warnings
    first_uid = dcmread(io.BytesIO(blobs[0])).SOPInstanceUID
    assert parsed_here == [first_uid]
    stored = _stored(hospital)
    assert len(stored) == 6
    for n, blob in enumerate(blobs):
        parsed = parse_part10(io.BytesIO(blob))
        metadata, codes = stored[parsed.sop_instance_uid]
        assert metadata == json.loads(metadata_document(parsed))
        assert ("INSTITUTION_MISMATCH" in codes) == (n in (1, 4))


def test_two_helpers_take_the_objects_in_turn_and_the_result_is_the_same(
    client, first, settings, monkeypatch, parsed_here
):
    hospital, token = first
    settings.STOW_PARSE_PROCESSES = 2
    helpers = [_ready_helper(0), _ready_helper(1)]
    assert helpers[0].process.pid != helpers[1].process.pid
    sent_to: list[int] = []
    send = parse_pool.ParseHelper.send

    def recording(self, data, policy):
        sent_to.append(self._helper.process.pid)
        return send(self, data, policy)

    monkeypatch.setattr(parse_pool.ParseHelper, "send", recording)
    blobs = make_ct_series(7, PatientID="HELPER09")
    assert stow(client, "first", token, blobs).status_code == 200
    # The request parsed the first object; the two helpers the six others, one after the other.
    assert parsed_here == [dcmread(io.BytesIO(blobs[0])).SOPInstanceUID]
    assert sent_to == [helpers[0].process.pid, helpers[1].process.pid] * 3
    stored = _stored(hospital)
    assert len(stored) == 7
    for blob in blobs:
        parsed = parse_part10(io.BytesIO(blob))
        assert stored[parsed.sop_instance_uid][0] == json.loads(metadata_document(parsed))
    # Both are free again for the next request.
    checked_out = parse_pool.ParseHelper.checkout()
    try:
        assert len(checked_out) == 2
    finally:
        for helper in checked_out:
            helper.release()


def test_without_the_helper_the_request_stores_the_same(client, first, settings, parsed_here):
    hospital, token = first
    settings.STOW_PARSE_PROCESSES = 0
    blobs = make_ct_series(3, PatientID="HELPER02", InstitutionName="ELSEWHERE")
    assert stow(client, "first", token, blobs).status_code == 202
    assert len(parsed_here) == 3
    stored = _stored(hospital)
    for blob in blobs:
        parsed = parse_part10(io.BytesIO(blob))
        assert stored[parsed.sop_instance_uid] == (json.loads(metadata_document(parsed)), ["INSTITUTION_MISMATCH"])


def test_an_object_the_helper_cannot_parse_is_refused_by_the_request_as_always(client, first, parsed_here):
    hospital, token = first
    helper = _ready_helper()
    blobs = make_ct_series(3, PatientID="HELPER03")
    truncated = blobs[1][:300]
    response = stow(client, "first", token, [blobs[0], truncated, blobs[2]])
    assert response.status_code == 202
    failed = response.json()["00081198"]["Value"]
    assert [item["00081197"]["Value"] for item in failed] == [[0xC000]]
    # The request parsed the first object, and the truncated one again to find out why.
    assert len(parsed_here) == 1
    with hospital_context(hospital):
        assert Instance.objects.count() == 2
        assert StagedObject.objects.get(status=StagedObject.Status.REJECTED).error_code.startswith("DICOM_")
    assert parse_pool._started() is helper and helper.process.poll() is None  # still the same helper


def test_a_helper_that_dies_mid_request_costs_nothing_but_time(client, first, monkeypatch, caplog):
    hospital, token = first
    helper = _ready_helper()
    send = parse_pool.ParseHelper.send
    sent = []

    def killing(self, data, policy):
        sent.append(1)
        if len(sent) == 3:
            os.kill(helper.process.pid, signal.SIGKILL)
            helper.process.wait()
        return send(self, data, policy)

    monkeypatch.setattr(parse_pool.ParseHelper, "send", killing)
    blobs = make_ct_series(6, PatientID="HELPER04")
    assert stow(client, "first", token, blobs).status_code == 200
    assert "the parse helper stopped" in caplog.text
    assert len(_stored(hospital)) == 6
    # The next request starts another helper.
    replacement = _ready_helper()
    assert replacement is not helper and replacement.process.pid != helper.process.pid


def test_a_redone_request_gets_its_own_results_back(client, first, local_storage, parsed_here, caplog):
    """One UID twice with different bytes: the request is redone one object at a time, after the
    helper had been sent parts of the first attempt. Each object still gets its own metadata."""
    hospital, token = first
    _ready_helper()
    uid = generate_uid()
    series = make_ct_series(4, PatientID="HELPER05")
    study_uid = dcmread(io.BytesIO(series[0])).StudyInstanceUID
    changed = make_ct_slice(SOPInstanceUID=uid, StudyInstanceUID=study_uid, PatientID="HELPER05", ImageComments="x")
    original = make_ct_slice(SOPInstanceUID=uid, StudyInstanceUID=study_uid, PatientID="HELPER05")
    caplog.set_level("INFO", logger="apps.dicomweb.stow")
    response = stow(client, "first", token, [*series[:2], original, changed, *series[2:]])
    assert response.status_code == 202
    assert "redone one object at a time" in caplog.text
    # The helper took part in both attempts: each parsed only its first object itself.
    assert parsed_here == [dcmread(io.BytesIO(series[0])).SOPInstanceUID] * 2
    stored = _stored(hospital)
    assert len(stored) == 5
    for blob in [*series, original]:
        parsed = parse_part10(io.BytesIO(blob))
        assert stored[parsed.sop_instance_uid][0] == json.loads(metadata_document(parsed))


def test_results_out_of_order_are_never_used(client, first, monkeypatch, caplog):
    """Each result names the request it answers; one that does not match is not used (simulated)."""
    hospital, token = first
    helper = _ready_helper()
    real_send = parse_pool.ParseHelper.send

    def numbering_wrongly(self, data, policy):
        taken = real_send(self, data, policy)
        if taken:
            number, size = helper.outstanding.pop()
            helper.outstanding.append((number + 1000, size))  # the request's own idea, now wrong
        return taken

    monkeypatch.setattr(parse_pool.ParseHelper, "send", numbering_wrongly)
    blobs = make_ct_series(4, PatientID="HELPER06")
    assert stow(client, "first", token, blobs).status_code == 200
    assert "answered out of order" in caplog.text
    stored = _stored(hospital)
    for blob in blobs:
        parsed = parse_part10(io.BytesIO(blob))
        assert stored[parsed.sop_instance_uid][0] == json.loads(metadata_document(parsed))


def test_no_helper_is_started_when_none_is_configured(settings, monkeypatch):
    settings.STOW_PARSE_PROCESSES = 0
    monkeypatch.setattr(parse_pool, "_helpers", {})
    parse_pool.start_helper()
    assert parse_pool._helpers == {}
    assert parse_pool.ParseHelper.checkout() == []


def test_the_helper_is_sent_bytes_and_a_policy_only(first, monkeypatch):
    """No key, no connection, no hospital object crosses to the helper."""
    helper = _ready_helper()
    messages = []
    for name in ("send", "send_bytes"):
        real = getattr(helper.requests, name)

        def recording(message, real=real, name=name):
            messages.append((name, message))
            real(message)

        monkeypatch.setattr(helper.requests, name, recording)
    [checked_out] = parse_pool.ParseHelper.checkout()
    try:
        policy = stow_module.validation_policy(first[0])
        slice_bytes = make_ct_slice(PatientID="HELPER07")
        assert checked_out.send(slice_bytes, policy)
        assert checked_out.receive() is not None
    finally:
        checked_out.release()
    [(first_kind, (number, sent_policy)), (second_kind, data)] = messages
    assert (first_kind, second_kind) == ("send", "send_bytes")
    assert isinstance(number, int) and sent_policy == policy and data == slice_bytes


def test_the_helper_runs_without_the_workers_secrets(first, monkeypatch):
    """Its environment keeps nothing secret of the worker's (keys, passwords, database address)."""
    monkeypatch.setattr(parse_pool, "_helpers", {})
    monkeypatch.setenv("STORAGE_MASTER_KEY", "secret-in-the-worker")
    helper = _ready_helper()
    try:
        with open(f"/proc/{helper.process.pid}/environ", "rb") as environ:
            names = {entry.split(b"=", 1)[0].decode() for entry in environ.read().split(b"\0") if entry}
    finally:
        parse_pool._forget(helper)
    assert names <= set(parse_pool._HELPER_ENVIRONMENT)
    assert "STORAGE_MASTER_KEY" not in names


def test_parts_not_ingested_from_memory_do_not_shift_the_results(client, first, settings, parsed_here):
    """A large part (through staging, parsed by the request) and a part of another type between
    parts the helper parses: every object still gets its own metadata."""
    hospital, token = first
    _ready_helper()
    blobs = make_ct_series(4, PatientID="HELPER08")
    study_uid = dcmread(io.BytesIO(blobs[0])).StudyInstanceUID
    large = make_ct_slice(PatientID="HELPER08", StudyInstanceUID=study_uid, Rows=128, Columns=128)
    settings.STOW_IN_MEMORY_MAX_SIZE = (len(large) + len(blobs[0])) // 2
    body, content_type = multipart_related([blobs[0], large, blobs[1], blobs[2], blobs[3]])
    body = body.replace(b"application/dicom", b"text/plain", 1)  # the first part: not DICOM
    response = client.generic(
        "POST", "/api/first/dicom-web/studies", body, content_type=content_type, HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 202
    assert [item["00081197"]["Value"] for item in response.json()["00081198"]["Value"]] == [[0xC000]]
    # The request parsed the large part and the first small one it ingested (blobs[1]) itself.
    assert sorted(parsed_here) == sorted(dcmread(io.BytesIO(b)).SOPInstanceUID for b in (large, blobs[1]))
    stored = _stored(hospital)
    assert len(stored) == 4
    for blob in (large, *blobs[1:]):
        parsed = parse_part10(io.BytesIO(blob))
        assert stored[parsed.sop_instance_uid][0] == json.loads(metadata_document(parsed))


# The child only checks descriptors, writes its answer and exits.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_closes_its_copies_of_the_parents_helper_pipes(first):
    """A child forked from a process with helpers (gunicorn --preload) starts its own and keeps no
    descriptor of the parent's: they would leak, one pair per helper and fork."""
    helper = _ready_helper()
    inherited = {helper.requests.fileno(), helper.results.fileno()}
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report which of the parent's descriptors are still open, and go
        try:
            still_open = [fd for fd in inherited if _is_open(fd)]
            os.write(write_end, json.dumps([still_open, len(parse_pool._helpers)]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as report:
        still_open, known = json.loads(report.read() or b"null")
    os.waitpid(pid, 0)
    assert still_open == [] and known == 0
    assert helper.process.poll() is None  # the parent's helper lives on


def _is_open(descriptor: int) -> bool:
    try:
        os.fstat(descriptor)
    except OSError:
        return False
    return True


class _Planted:
    """What a subverted helper might send: a pickle that calls a function as it is read."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_result_that_is_not_data_is_refused_unread(client, first, monkeypatch, caplog, tmp_path):
    """A helper parses untrusted DICOM: what it sends is read as data of the result types only. A
    pickle naming anything else is refused before anything in it runs, the helper is given up,
    and the request stores everything as without it."""
    hospital, token = first
    helper = _ready_helper()
    marker = tmp_path / "ran"
    real_recv_bytes = helper.results.recv_bytes

    def planted(*args):
        real_recv_bytes(*args)  # the helper's real answer, swapped for a hostile one
        return pickle.dumps((helper.outstanding[0][0], helper.outstanding[0][1], _Planted(str(marker))))

    monkeypatch.setattr(helper.results, "recv_bytes", planted)
    blobs = make_ct_series(3, PatientID="HELPER10")
    assert stow(client, "first", token, blobs).status_code == 200
    assert not marker.exists()  # nothing in the pickle ran
    assert "sent something other than a result (UnpicklingError)" in caplog.text
    stored = _stored(hospital)
    assert len(stored) == 3
    for blob in blobs:
        parsed = parse_part10(io.BytesIO(blob))
        assert stored[parsed.sop_instance_uid][0] == json.loads(metadata_document(parsed))
