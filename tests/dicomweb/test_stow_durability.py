"""STOW-RS answers only once what it stored is durable: the fsyncs run while the request goes on,
and a failure among them fails the whole request with nothing committed."""

import errno
import io
import os
import time
import uuid
from pathlib import Path

import pytest
from pydicom import dcmread

from apps.audit.models import AuditEvent
from apps.audit.vocabulary import Action
from apps.dicomweb import stow as stow_module
from apps.dicomweb.multipart import split_parts, spool
from apps.imaging import durable
from apps.imaging.models import Instance, Patient, StagedObject, Study, ValidationFinding
from apps.tenants.context import hospital_context
from tests.dicomweb.helpers import stow, token_for
from tests.imaging.dicom_factory import make_ct_series, make_ct_slice
from tests.imaging.temporary_files import temporary_files

pytestmark = pytest.mark.django_db


@pytest.fixture
def first(world, local_storage):
    return world.first.hospital, token_for(world.first.hospital)


def _object_files(storage) -> set[str]:
    root = Path(storage.location)
    return {str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()} if root.exists() else set()


def test_a_failed_fsync_fails_the_request_and_keeps_nothing(client, first, local_storage, monkeypatch):
    """The disk reports an I/O error while an object is synced (a fault outside our code,
    simulated): 503 with Retry-After, no row, and no object file left behind."""
    hospital, token = first
    blobs = make_ct_series(3, PatientID="DURABLE01")
    synced = durable._sync_into_place
    calls = []

    def second_fails(partial, descriptor, path, new):
        calls.append(path)
        if len(calls) == 2:
            os.close(descriptor)
            partial.unlink()
            raise OSError(errno.EIO, "Input/output error")
        synced(partial, descriptor, path, new)

    monkeypatch.setattr(durable, "_sync_into_place", second_fails)
    response = stow(client, "first", token, blobs)
    assert response.status_code == 503
    assert response.json()["error"] == "storage_unavailable"
    assert response["Retry-After"] == "60"
    assert "no-store" in response["Cache-Control"]
    assert len(calls) == 3
    assert _object_files(local_storage) == set()
    with hospital_context(hospital):
        assert Instance.objects.count() == 0
        assert StagedObject.objects.count() == 0
        assert Study.objects.count() == 0
        assert Patient.objects.count() == 0
        assert not AuditEvent.objects.filter(action=Action.INSTANCES_IMPORTED).exists()

    # The client, which got no success, sends again: everything is stored.
    monkeypatch.undo()
    response = stow(client, "first", token, blobs)
    assert response.status_code == 200
    with hospital_context(hospital):
        assert Instance.objects.count() == 3
        assert _object_files(local_storage) == set(Instance.objects.values_list("storage_key", flat=True))


@pytest.mark.parametrize("count", [1, 3])
def test_the_answer_waits_for_every_sync_and_rows_are_written_after(client, first, monkeypatch, count):
    """A slow disk: the last object's sync finishes well after the request has parsed everything.
    The answer comes only after it; the rows other requests wait for (counters, the audit chain's
    head) are locked only after it, and a request of several objects inserts its rows after it."""
    hospital, token = first
    synced = durable._sync_into_place
    finished: list[Path] = []

    def slow_last(partial, descriptor, path, new):
        if len(finished) == count - 1:
            time.sleep(0.3)
        synced(partial, descriptor, path, new)
        finished.append(path)

    checked = []
    objects_synced = stow_module._objects_synced

    def checking(writes):
        result = objects_synced(writes)
        assert len(finished) == count
        assert not AuditEvent.objects.filter(action=Action.INSTANCES_IMPORTED).exists()
        if count > 1:
            assert not Instance.objects.exists()
        checked.append(True)
        return result

    monkeypatch.setattr(durable, "_sync_into_place", slow_last)
    monkeypatch.setattr(stow_module, "_objects_synced", checking)
    response = stow(client, "first", token, make_ct_series(count, PatientID="DURABLE04"))
    assert response.status_code == 200
    assert checked == [True]
    with hospital_context(hospital):
        assert Instance.objects.count() == count


def test_rows_of_a_request_are_inserted_together_and_link_their_findings(client, first):
    hospital, token = first
    series = make_ct_series(3, PatientID="DURABLE02", InstitutionName="SOME OTHER NAME", StationName="CT07")
    response = stow(client, "first", token, series)
    assert response.status_code == 202  # stored, with the institution warning
    again = stow(client, "first", token, [*series[:2], make_ct_slice(PatientID="DURABLE03")])
    assert again.status_code == 202
    with hospital_context(hospital):
        stored = StagedObject.objects.filter(status="stored").select_related("instance")
        assert stored.count() == 4
        for staged in stored:
            assert staged.instance.sop_instance_uid == staged.sop_instance_uid
            assert staged.sha256 == staged.instance.sha256
        uids = {dcmread(io.BytesIO(blob)).SOPInstanceUID for blob in series}
        for staged in stored.filter(sop_instance_uid__in=uids):
            [finding] = ValidationFinding.objects.filter(staged=staged, code="INSTITUTION_MISMATCH")
            assert finding.instance_id == staged.instance_id
        duplicates = StagedObject.objects.filter(status="duplicate")
        assert sorted(d.sop_instance_uid for d in duplicates) == sorted(
            dcmread(io.BytesIO(blob)).SOPInstanceUID for blob in series[:2]
        )
        assert all(d.instance.sop_instance_uid == d.sop_instance_uid for d in duplicates)
        # A duplicate's findings stay with the first arrival: none recorded twice.
        assert ValidationFinding.objects.filter(code="INSTITUTION_MISMATCH").count() == 3


def test_a_body_that_fits_in_memory_reaches_no_temporary_file(settings, tmp_path):
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    head = b"--b\r\nContent-Type: application/dicom\r\n\r\n"
    data = head + b"\1" * 300_000 + b"\r\n--b--\r\n"
    body = spool(io.BytesIO(data), max_size=len(data), memory_max_size=len(data), chunk_size=65536)
    with body:
        assert temporary_files(tmp_path) == []
        [part] = split_parts(body, "b")
        assert (part.start, part.end) == (len(head), len(head) + 300_000)
        body.seek(0)
        assert body.read() == data


def test_a_body_past_the_memory_limit_is_spooled_sealed_and_whole(settings, tmp_path):
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    marker = b"PATIENT^MEMORY^LIMIT"
    data = b"--b\r\n\r\n" + marker + b"\2" * 300_000 + b"\r\n--b--\r\n"
    body = spool(io.BytesIO(data), max_size=len(data), memory_max_size=100_000, chunk_size=65536)
    with body:
        [spooled] = temporary_files(tmp_path)
        assert marker not in spooled.read_bytes()
        body.seek(0)
        assert body.read() == data


@pytest.mark.parametrize(("limit_offset", "in_memory"), [(0, True), (-1, False)])
def test_the_memory_limit_is_inclusive(settings, tmp_path, limit_offset, in_memory):
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    data = b"--b\r\n\r\n" + os.urandom(200_000) + b"\r\n--b--\r\n"
    body = spool(io.BytesIO(data), max_size=len(data), memory_max_size=len(data) + limit_offset, chunk_size=4096)
    with body:
        assert (temporary_files(tmp_path) == []) is in_memory
        body.seek(0)
        assert body.read() == data


@pytest.mark.parametrize("failing", ["objects", "everything"])
def test_large_objects_leave_no_staged_file_when_the_disk_fails(
    client, first, local_storage, settings, monkeypatch, failing
):
    """Objects too large to ingest from memory go through staging first. When the stored objects'
    fsync fails, or the staging's own, the request answers 503 and its staged files go with it
    (their rows were rolled back). A fault outside our code, simulated."""
    hospital, token = first
    settings.STOW_IN_MEMORY_MAX_SIZE = 100  # every object is "large"
    settings.STAGING_DIR = settings.VAR_DIR / f"staging-{uuid.uuid4().hex}"
    synced, failures = durable._sync_into_place, []

    def sync(partial, descriptor, path, new):
        if failing == "everything" or "objects" in path.parts:
            failures.append(path)
            os.close(descriptor)
            partial.unlink()
            raise OSError(errno.EIO, "Input/output error")
        synced(partial, descriptor, path, new)

    monkeypatch.setattr(durable, "_sync_into_place", sync)
    response = stow(client, "first", token, make_ct_series(3, PatientID="DURABLE05"))
    assert response.status_code == 503
    assert response.json()["error"] == "storage_unavailable"
    assert failures
    assert [path for path in Path(settings.STAGING_DIR).rglob("*") if path.is_file()] == []
    assert _object_files(local_storage) == set()
    with hospital_context(hospital):
        assert StagedObject.objects.count() == 0
