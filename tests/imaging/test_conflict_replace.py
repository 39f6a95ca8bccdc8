"""Resolving a conflict by replacing the stored instance with the received one, keeping the old bytes."""

import pytest
from django.urls import reverse
from pydicom.uid import generate_uid

from apps.audit.models import AuditEvent
from apps.audit.vocabulary import Action
from apps.imaging.conflicts import ConflictNotReplaceable, ingest_conflict_replace
from apps.imaging.keys import hospital_key
from apps.imaging.models import IngestConflict, Instance, ReplacedInstanceVersion, StagedObject
from apps.imaging.objectstore import instance_stored_object, object_open
from apps.tenants.context import hospital_context, platform_scope
from tests.dicomweb.helpers import stow, token_for
from tests.imaging.dicom_factory import make_ct_slice

pytestmark = pytest.mark.django_db


@pytest.fixture
def first(world, local_storage):
    return world.first.hospital, token_for(world.first.hospital)


def _conflict(client, token, **second_attributes) -> tuple[bytes, bytes]:
    placement = {
        "SOPInstanceUID": generate_uid(),
        "StudyInstanceUID": generate_uid(),
        "SeriesInstanceUID": generate_uid(),
        "PatientID": "REPL0001",
    }
    original = make_ct_slice(**placement, StudyDescription="one")
    received = make_ct_slice(**{**placement, **second_attributes}, StudyDescription="two")
    assert stow(client, "first", token, [original]).status_code == 200
    assert stow(client, "first", token, [received]).status_code == 409
    return original, received


def _read(hospital, stored) -> bytes:
    return b"".join(object_open(hospital_key=hospital_key(hospital), stored=stored))


def test_replace_serves_the_received_bytes_and_keeps_the_old_ones(client, first, world):
    hospital, token = first
    original, received = _conflict(client, token)
    admin = world.first["hospital_admin"]
    with hospital_context(hospital):
        conflict = IngestConflict.objects.get()
        previous = ingest_conflict_replace(conflict=conflict, actor=admin)
        instance = Instance.objects.get()
        assert _read(hospital, instance_stored_object(instance)) == received
        old = ReplacedInstanceVersion.objects.get()
        assert old.pk == previous.pk and old.instance_id == instance.pk and old.replaced_by == admin
        assert _read(hospital, instance_stored_object(old)) == original
        conflict.refresh_from_db()
        assert conflict.resolved_at is not None
        assert conflict.staged.status == StagedObject.Status.STORED
        assert conflict.staged.instance_id == instance.pk
        assert Instance.objects.count() == 1


def test_replace_is_audited_with_both_digests(client, first, world):
    hospital, token = first
    _conflict(client, token)
    with hospital_context(hospital):
        conflict = IngestConflict.objects.get()
        old_sha256 = conflict.existing.sha256
        ingest_conflict_replace(conflict=conflict, actor=world.first["hospital_admin"])
    with platform_scope("audit"):
        [event] = AuditEvent.objects.filter(action=Action.INSTANCE_REPLACED)
    assert event.hospital_id == hospital.pk
    assert event.details["previous_sha256"] == old_sha256
    assert event.details["sha256"] == conflict.received_sha256
    assert event.details["conflict"] == str(conflict.public_id)


def test_a_resolved_conflict_cannot_be_replaced_again(client, first, world):
    hospital, token = first
    _conflict(client, token)
    with hospital_context(hospital):
        conflict = IngestConflict.objects.get()
        ingest_conflict_replace(conflict=conflict, actor=world.first["hospital_admin"])
        with pytest.raises(ConflictNotReplaceable):
            ingest_conflict_replace(conflict=conflict, actor=world.first["hospital_admin"])
        assert ReplacedInstanceVersion.objects.count() == 1


def test_a_received_object_of_another_study_is_not_replaceable(client, first, world):
    hospital, token = first
    _conflict(client, token, StudyInstanceUID=generate_uid(), SeriesInstanceUID=generate_uid())
    with hospital_context(hospital):
        conflict = IngestConflict.objects.get()
        stored_before = Instance.objects.get().sha256
        with pytest.raises(ConflictNotReplaceable):
            ingest_conflict_replace(conflict=conflict, actor=world.first["hospital_admin"])
        assert Instance.objects.get().sha256 == stored_before
        assert not ReplacedInstanceVersion.objects.exists()
        assert IngestConflict.objects.get().resolved_at is None


def test_hospital_admin_replaces_from_the_back_office(client, first, world, sign_in):
    hospital, token = first
    _original, received = _conflict(client, token)
    with hospital_context(hospital):
        conflict = IngestConflict.objects.get()
    sign_in(world.first["hospital_admin"])
    response = client.post(
        reverse("admin:imaging_ingestconflict_changelist"),
        {"action": "replace_with_received", "_selected_action": [conflict.pk], "confirmed": "yes"},
    )
    assert response.status_code == 302
    with hospital_context(hospital):
        assert _read(hospital, instance_stored_object(Instance.objects.get())) == received
        assert ReplacedInstanceVersion.objects.count() == 1


def test_admin_of_another_hospital_cannot_replace(client, first, world, sign_in):
    hospital, token = first
    _conflict(client, token)
    with hospital_context(hospital):
        conflict = IngestConflict.objects.get()
    sign_in(world.second["hospital_admin"])
    client.post(
        reverse("admin:imaging_ingestconflict_changelist"),
        {"action": "replace_with_received", "_selected_action": [conflict.pk], "confirmed": "yes"},
    )
    with hospital_context(hospital):
        assert not ReplacedInstanceVersion.objects.exists()
        assert IngestConflict.objects.get().resolved_at is None
