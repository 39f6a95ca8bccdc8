"""manage.py archive_verify: stored objects read back whole and checked, failures named by public id."""

import dataclasses
import io
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from pydicom.uid import generate_uid

from apps.audit.models import AuditEvent
from apps.audit.vocabulary import Action, Outcome
from apps.imaging import fixity, objectstore
from apps.imaging.conflicts import ingest_conflict_replace
from apps.imaging.crypto import TAG_SIZE, KeyUnwrapError, unwrap_key, wrap_key
from apps.imaging.fixity import VerifyScope, hospital_archive_verify
from apps.imaging.ingest import staged_object_create, staged_object_process
from apps.imaging.keys import hospital_key
from apps.imaging.models import IngestConflict, Instance, ReplacedInstanceVersion, StagedObject
from apps.imaging.objectstore import STORED_OBJECT_FIELDS, _binding, instance_stored_object, object_open
from apps.imaging.tasks import archive_verify_rolling
from apps.tenants.context import hospital_context, platform_scope
from tests.imaging.dicom_factory import make_ct_slice

pytestmark = pytest.mark.django_db

PATIENT_NAME = "Jiaoyan^Wanzheng"
PATIENT_ID = "P-FIXITY-2291"
STUDY_UID = generate_uid()
SEGMENT = 256  # several segments per object (a CT slice here is under 2 KB)


@pytest.fixture
def archive(world, settings, tmp_path):
    settings.STAGING_DIR = tmp_path / "staging"
    settings.STORAGE_SEGMENT_SIZE = SEGMENT
    return world


def _ingest(hospital, count: int, **attributes) -> list[Instance]:
    with hospital_context(hospital):
        for _ in range(count):
            blob = make_ct_slice(
                PatientName=PATIENT_NAME, PatientID=PATIENT_ID, StudyInstanceUID=STUDY_UID, **attributes
            )
            staged = staged_object_create(hospital=hospital, source="upload", chunks=[blob])
            assert staged_object_process(staged=staged).status == StagedObject.Status.STORED
        return list(Instance.objects.order_by("id"))


def _object_path(storage, key: str) -> Path:
    return Path(storage.path(key))


def _flipped(data: bytes) -> bytes:
    """One bit changed in the last segment's ciphertext, which only a read to the end sees."""
    damaged = bytearray(data)
    damaged[-(TAG_SIZE + 3)] ^= 0x01
    return bytes(damaged)


def _flip_byte(path: Path) -> None:
    path.write_bytes(_flipped(path.read_bytes()))


def _verify(*arguments: str) -> str:
    output = io.StringIO()
    call_command("archive_verify", *arguments, stdout=output)
    return output.getvalue()


def _failing(*arguments: str) -> str:
    output = io.StringIO()
    with pytest.raises(CommandError, match="failed the fixity check"):
        call_command("archive_verify", *arguments, stdout=output)
    return output.getvalue()


def _verify_events(hospital=None) -> list[AuditEvent]:
    with platform_scope("audit"):
        events = AuditEvent.objects.filter(action=Action.ARCHIVE_VERIFIED).order_by("id")
        return list(events.filter(hospital=hospital) if hospital else events)


def test_an_intact_archive_passes(archive, local_storage):
    _ingest(archive.first.hospital, 3)
    _ingest(archive.second.hospital, 2)

    output = _verify()

    assert "first: verified 3, failed 0" in output
    assert "second: verified 2, failed 0" in output
    events = _verify_events()
    assert [(event.hospital_id, event.outcome) for event in events] == [
        (archive.first.hospital.pk, Outcome.SUCCESS),
        (archive.second.hospital.pk, Outcome.SUCCESS),
    ]
    assert (events[0].event_id, events[0].action_code, events[0].details["verified"]) == ("110103", "R", 3)


def test_a_flipped_byte_is_found_and_named_by_public_id(archive, local_storage):
    instances = _ingest(archive.first.hospital, 3)
    damaged = instances[1]
    _flip_byte(_object_path(local_storage, damaged.storage_key))

    output = _failing()

    assert "first: verified 2, failed 1" in output
    assert f"failed: instance {damaged.public_id}" in output
    assert [line for line in output.splitlines() if "failed:" in line] == [f"  failed: instance {damaged.public_id}"]
    [event] = _verify_events(archive.first.hospital)
    assert event.outcome == Outcome.SERIOUS_FAILURE
    assert event.details["failed_objects"] == [f"instance {damaged.public_id}"]


def test_a_truncated_object_is_found(archive, local_storage):
    [instance] = _ingest(archive.first.hospital, 1)
    path = _object_path(local_storage, instance.storage_key)
    path.write_bytes(path.read_bytes()[:-SEGMENT])

    output = _failing()

    assert f"failed: instance {instance.public_id}" in output


def test_a_missing_object_is_found(archive, local_storage):
    [instance] = _ingest(archive.first.hospital, 1)
    _object_path(local_storage, instance.storage_key).unlink()

    assert f"failed: instance {instance.public_id}" in _failing()


def test_a_damaged_object_on_s3_is_found(archive, s3_storage, s3_server):
    instances = _ingest(archive.first.hospital, 2)
    client = s3_server.client()
    damaged = instances[0]
    body = client.get_object(Bucket=s3_server.bucket, Key=damaged.storage_key)["Body"].read()
    client.put_object(Bucket=s3_server.bucket, Key=damaged.storage_key, Body=_flipped(body))

    output = _failing()

    assert "first: verified 1, failed 1" in output
    assert f"failed: instance {damaged.public_id}" in output
    for instance in instances:
        s3_storage.delete(instance.storage_key)


def test_the_output_and_the_audit_trail_name_no_patient(archive, local_storage):
    instances = _ingest(archive.first.hospital, 2)
    _flip_byte(_object_path(local_storage, instances[0].storage_key))

    output = _failing()

    [event] = _verify_events(archive.first.hospital)
    for text in (output, str(event.details)):
        for secret in (PATIENT_NAME, "Jiaoyan", PATIENT_ID, STUDY_UID, instances[0].sop_instance_uid):
            assert secret not in text


def _replaced_version(archive) -> ReplacedInstanceVersion:
    """An instance of hospital "first" replaced by a conflicting object: its earlier version kept."""
    hospital = archive.first.hospital
    placement = {"SOPInstanceUID": generate_uid(), "SeriesInstanceUID": generate_uid()}
    _ingest(hospital, 1, StudyDescription="one", **placement)
    with hospital_context(hospital):
        blob = make_ct_slice(
            PatientName=PATIENT_NAME, PatientID=PATIENT_ID, StudyInstanceUID=STUDY_UID, StudyDescription="two",
            **placement,
        )  # fmt: skip
        staged = staged_object_create(hospital=hospital, source="upload", chunks=[blob])
        assert staged_object_process(staged=staged).status == StagedObject.Status.CONFLICT
        ingest_conflict_replace(
            conflict=IngestConflict.objects.get(staged=staged), actor=archive.first["hospital_admin"]
        )
        return ReplacedInstanceVersion.objects.get()


def test_a_replaced_version_is_checked_too(archive, local_storage):
    version = _replaced_version(archive)
    _flip_byte(_object_path(local_storage, version.storage_key))

    output = _failing("--hospital", "first")

    assert "first: verified 1, failed 1" in output
    assert f"failed: replaced-version {version.public_id}" in output


def test_an_intact_replaced_version_verifies_under_its_instances_uid(archive, local_storage):
    _replaced_version(archive)

    assert "first: verified 2, failed 0" in _verify("--hospital", "first")


def test_hospital_limit_and_since_days_narrow_the_check(archive, local_storage):
    instances = _ingest(archive.first.hospital, 3)
    _ingest(archive.second.hospital, 3)
    with hospital_context(archive.first.hospital):
        Instance.objects.filter(pk=instances[0].pk).update(created_at=timezone.now() - timedelta(days=10))
    _flip_byte(_object_path(local_storage, instances[0].storage_key))  # outside the last week

    assert _verify("--hospital", "first", "--since-days", "7").strip() == "first: verified 2, failed 0"
    assert _verify("--hospital", "second", "--limit", "2").strip() == "second: verified 2, failed 0"
    with pytest.raises(CommandError, match="No hospital"):
        call_command("archive_verify", "--hospital", "nowhere")


def test_the_rolling_slices_cover_every_object_once(archive, local_storage, settings):
    hospital = archive.first.hospital
    _ingest(hospital, 5)
    checked = [
        hospital_archive_verify(hospital=hospital, scope=VerifyScope(slice_of=(index, 3))).verified
        for index in range(3)
    ]
    assert sum(checked) == 5


def test_the_daily_task_reports_failures_per_hospital(archive, local_storage, settings):
    settings.ARCHIVE_VERIFY_CYCLE_DAYS = 1  # one slice: everything, today
    instances = _ingest(archive.first.hospital, 2)
    _ingest(archive.second.hospital, 1)
    _flip_byte(_object_path(local_storage, instances[1].storage_key))

    assert archive_verify_rolling.delay().get() == {"first": 1, "second": 0}


def _unbind(hospital, instance: Instance) -> bytes:
    """Make ``instance``'s object look stored before 30 November 2026: its data key wrapped under
    its storage key alone. Returns that wrapped key."""
    with hospital_context(hospital):
        key, stored = hospital_key(hospital), instance_stored_object(instance)
        binding = _binding(key=stored.key, sop_instance_uid=stored.sop_instance_uid, sha256=stored.sha256)
        data_key = unwrap_key(kek=key, wrapped=stored.wrapped_data_key, context=binding)
        legacy = wrap_key(kek=key, key=data_key, context=stored.key.encode())
        Instance.objects.filter(pk=instance.pk).update(wrapped_data_key=legacy)
    return legacy


def test_an_object_stored_before_the_binding_is_bound_once_it_verifies(archive, local_storage):
    hospital = archive.first.hospital
    old, current = _ingest(hospital, 2)
    legacy = _unbind(hospital, old)

    output = _verify("--hospital", "first")

    assert "first: verified 2, failed 0, keys bound to their instance 1" in output
    assert _verify_events(hospital)[-1].details["rebound"] == 1
    with hospital_context(hospital):
        old.refresh_from_db()
        key, stored = hospital_key(hospital), instance_stored_object(old)
        assert bytes(old.wrapped_data_key) != legacy
        # Now bound: a row claiming another digest no longer falls back to the storage key alone.
        with pytest.raises(KeyUnwrapError):
            object_open(hospital_key=key, stored=dataclasses.replace(stored, sha256=current.sha256))
        assert b"".join(object_open(hospital_key=key, stored=stored))[128:132] == b"DICM"
    assert "keys bound" not in _verify("--hospital", "first")


def test_an_object_stored_before_the_binding_that_fails_keeps_its_key(archive, local_storage):
    hospital = archive.first.hospital
    [old] = _ingest(hospital, 1)
    legacy = _unbind(hospital, old)
    with hospital_context(hospital):
        # Tags intact, digest wrong: only the rehash can tell, and it must before any re-binding.
        Instance.objects.filter(pk=old.pk).update(sha256="0" * 64)

    output = _failing("--hospital", "first")

    assert "first: verified 0, failed 1" in output
    with hospital_context(hospital):
        assert bytes(Instance.objects.get(pk=old.pk).wrapped_data_key) == legacy


def test_a_row_pointing_at_another_legacy_object_fails_and_is_not_bound(archive, local_storage):
    """Before the binding only the digest tied a row to its bytes: a row given every stored-object
    column of another instance's object passes the rehash, but the object names another instance."""
    hospital = archive.first.hospital
    theirs, ours = _ingest(hospital, 2)
    _unbind(hospital, theirs)
    with hospital_context(hospital):
        theirs.refresh_from_db()
        columns = {field: getattr(theirs, field) for field in STORED_OBJECT_FIELDS}
        Instance.objects.filter(pk=theirs.pk).update(storage_key="objects/00/" + "0" * 32)
        Instance.objects.filter(pk=ours.pk).update(**columns)
        pointing = bytes(Instance.objects.get(pk=ours.pk).wrapped_data_key)

    output = _failing("--hospital", "first")

    assert f"failed: instance {ours.public_id}" in output and "keys bound" not in output
    with hospital_context(hospital):
        assert bytes(Instance.objects.get(pk=ours.pk).wrapped_data_key) == pointing


def test_a_legacy_object_whose_header_is_too_large_to_read_stays_unbound(archive, local_storage, monkeypatch):
    hospital = archive.first.hospital
    [old] = _ingest(hospital, 1)
    legacy = _unbind(hospital, old)
    monkeypatch.setattr(objectstore, "VERIFY_HEAD_SIZE", 200)  # cut inside the header

    assert "first: verified 1, failed 0, older keys left unbound 1\n" in _verify("--hospital", "first")
    assert _verify_events(hospital)[-1].details["left_unbound"] == 1
    with hospital_context(hospital):
        assert bytes(Instance.objects.get(pk=old.pk).wrapped_data_key) == legacy


def test_a_row_changed_while_its_object_was_checked_is_not_rebound(archive, local_storage, monkeypatch):
    """The re-wrapped key is recorded only if the row still holds the key that was checked (a
    conflict's replacement may swap the object in between)."""
    hospital = archive.first.hospital
    [old] = _ingest(hospital, 1)
    _unbind(hospital, old)
    swapped = b"a key written by a concurrent replacement"
    real_verify = fixity.object_verify

    def verify_then_swap(**arguments):
        verified = real_verify(**arguments)
        with hospital_context(hospital):
            Instance.objects.filter(pk=old.pk).update(wrapped_data_key=swapped)
        return verified

    monkeypatch.setattr(fixity, "object_verify", verify_then_swap)

    output = _verify("--hospital", "first")

    assert "first: verified 1, failed 0, older keys left unbound 1\n" in output
    assert _verify_events(hospital)[-1].details["rebound"] == 0
    with hospital_context(hospital):
        assert bytes(Instance.objects.get(pk=old.pk).wrapped_data_key) == swapped
