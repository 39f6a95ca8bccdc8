"""STOW-RS answers only once what it stored is durable: the fsyncs run while the request goes on,
and a failure among them fails the whole request with nothing committed."""

import errno
import io

import pytest
from pydicom import dcmread

from apps.audit.models import AuditEvent
from apps.audit.vocabulary import Action
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


def test_a_failed_fsync_fails_the_request_and_commits_nothing(client, first, local_storage, monkeypatch):
    """The disk reports an I/O error while an object is synced (a fault outside our code,
    simulated): 503, and no row names an object that may not be on the disk."""
    hospital, token = first
    blobs = make_ct_series(3, PatientID="DURABLE01")
    synced = durable._sync_into_place
    calls = []

    def second_fails(partial, path, new):
        calls.append(path)
        if len(calls) == 2:
            partial.unlink()
            raise OSError(errno.EIO, "Input/output error")
        synced(partial, path, new)

    monkeypatch.setattr(durable, "_sync_into_place", second_fails)
    response = stow(client, "first", token, blobs)
    assert response.status_code == 503
    assert response.json()["error"] == "storage_unavailable"
    assert "no-store" in response["Cache-Control"]
    assert len(calls) == 3  # every object was waited for, not only up to the failure
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
        for instance in Instance.objects.all():
            path = local_storage.path(instance.storage_key)
            assert open(path, "rb").read(1)  # noqa: SIM115 - in place, readable


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
