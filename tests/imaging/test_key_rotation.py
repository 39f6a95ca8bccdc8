"""Rotating the master key: the old one as a fallback, then manage.py storage_keys_rewrap."""

import base64
import io
import logging
import os

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

from apps.audit.models import AuditEvent
from apps.audit.vocabulary import Action
from apps.imaging import keys
from apps.imaging.crypto import KeyUnwrapError
from apps.imaging.keys import hospital_key
from apps.imaging.models import HospitalKey, Instance
from apps.imaging.objectstore import instance_stored_object, object_open
from apps.tenants.context import hospital_context, platform_scope
from tests.dicomweb.helpers import stow, token_for
from tests.imaging.dicom_factory import make_ct_slice

pytestmark = pytest.mark.django_db


def _new_master() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def rotation(client, world, settings, local_storage):
    """One instance stored by hospital "first" and a key for "second", both under master key A."""
    settings.STORAGE_MASTER_KEY = old = _new_master()
    settings.STORAGE_MASTER_KEY_FALLBACKS = []
    blob = make_ct_slice()
    assert stow(client, "first", token_for(world.first.hospital), [blob]).status_code == 200
    with hospital_context(world.second.hospital):
        hospital_key(world.second.hospital)
    return {"old": old, "blob": blob}


def _forget_unwrapped() -> None:
    """What a restarted process knows: no hospital key unwrapped yet."""
    keys._unwrapped.clear()


def _read_instance(hospital) -> bytes:
    with hospital_context(hospital):
        instance = Instance.objects.get()
        return b"".join(object_open(hospital_key=hospital_key(hospital), stored=instance_stored_object(instance)))


def _rewrap(*arguments: str) -> str:
    output = io.StringIO()
    call_command("storage_keys_rewrap", *arguments, stdout=output)
    return output.getvalue()


def _events() -> list[AuditEvent]:
    with platform_scope("audit"):
        return list(AuditEvent.objects.filter(action=Action.STORAGE_KEY_REWRAPPED).order_by("id"))


def test_a_new_master_key_reads_the_archive_through_the_fallback_then_without_it(world, settings, rotation, caplog):
    settings.STORAGE_MASTER_KEY = _new_master()
    settings.STORAGE_MASTER_KEY_FALLBACKS = [rotation["old"]]
    _forget_unwrapped()

    with caplog.at_level(logging.WARNING, logger="apps.imaging.keys"):
        assert _read_instance(world.first.hospital) == rotation["blob"]
    assert "previous master key" in caplog.text and "storage_keys_rewrap" in caplog.text

    output = _rewrap()

    assert "first: wrapped under the current master key" in output
    assert "second: wrapped under the current master key" in output
    assert "hospital keys re-wrapped: 2" in output
    events = _events()
    assert [(event.hospital_id, event.object_type, event.event_id) for event in events] == [
        (world.first.hospital.pk, "hospital_key", "110113"),
        (world.second.hospital.pk, "hospital_key", "110113"),
    ]
    settings.STORAGE_MASTER_KEY_FALLBACKS = []
    _forget_unwrapped()
    assert _read_instance(world.first.hospital) == rotation["blob"]
    # Run again: nothing left to do, nothing recorded.
    assert "hospital keys re-wrapped: 0" in _rewrap()
    assert len(_events()) == 2


def test_without_the_old_key_as_a_fallback_nothing_is_readable_and_nothing_changes(world, settings, rotation):
    settings.STORAGE_MASTER_KEY = _new_master()
    _forget_unwrapped()
    with hospital_context(world.first.hospital):
        before = bytes(HospitalKey.objects.get().wrapped_key)

    with pytest.raises(KeyUnwrapError):
        _read_instance(world.first.hospital)
    with pytest.raises(CommandError, match="STORAGE_MASTER_KEY_FALLBACKS"):
        _rewrap("--hospital", "first")

    with hospital_context(world.first.hospital):
        assert bytes(HospitalKey.objects.get().wrapped_key) == before
    assert _events() == []


def test_one_hospital_at_a_time(world, settings, rotation):
    settings.STORAGE_MASTER_KEY = _new_master()
    settings.STORAGE_MASTER_KEY_FALLBACKS = [rotation["old"]]
    _forget_unwrapped()

    assert "hospital keys re-wrapped: 1" in _rewrap("--hospital", "second")
    assert [event.hospital_id for event in _events()] == [world.second.hospital.pk]
    with pytest.raises(CommandError, match="No hospital"):
        _rewrap("--hospital", "nowhere")


def test_a_malformed_fallback_is_a_configuration_error(settings, rotation):
    settings.STORAGE_MASTER_KEY_FALLBACKS = ["not base64!"]

    with pytest.raises(ImproperlyConfigured, match="STORAGE_MASTER_KEY_FALLBACKS"):
        _rewrap()
