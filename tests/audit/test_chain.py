"""The audit trail is append-only and its hash chain reveals altered, deleted and reordered rows."""

import itertools

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from apps.audit.models import AppendOnlyError, AuditEvent
from apps.audit.services import audit_chains_verify, audit_record
from apps.audit.vocabulary import Action
from apps.tenants.context import platform_scope
from tests.factories import HospitalFactory

TABLE = "audit_auditevent"


def _record_five(hospital):
    return [
        audit_record(action=Action.LOGIN, hospital=hospital, actor_name=f"user{i}", details={"n": i, "名": "张三"})
        for i in range(5)
    ]


def _tamper(owner_connection, statement, params):
    """Change one row as the table owner, acting for the hospital (row-level security binds the
    owner too), with the append-only trigger briefly switched off."""
    owner_connection.execute("SELECT set_config('app.platform_scope', 'audit', false)")
    owner_connection.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER audit_event_append_only")
    try:
        hospital_id = owner_connection.execute(
            f"SELECT hospital_id FROM {TABLE} WHERE id = %s", [params[-1]]
        ).fetchone()[0]
        owner_connection.execute("SELECT set_config('app.hospital_id', %s, false)", [str(hospital_id)])
        assert owner_connection.execute(statement, params).rowcount == 1
    finally:
        owner_connection.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER audit_event_append_only")


def _verify_output():
    with pytest.raises(CommandError) as raised:
        call_command("verify_audit_chain", stderr=(buffer := __import__("io").StringIO()))
    return str(raised.value), buffer.getvalue()


@pytest.mark.django_db
def test_intact_chain_verifies():
    hospital = HospitalFactory()
    _record_five(hospital)
    audit_record(action=Action.LOGIN_FAILED, actor_name="nobody")  # platform chain
    assert audit_chains_verify() == []
    call_command("verify_audit_chain")  # exits 0


@pytest.mark.django_db(transaction=True)
def test_altered_event_is_named(owner_connection):
    events = _record_five(HospitalFactory())
    _tamper(owner_connection, f"UPDATE {TABLE} SET actor_name = 'someone else' WHERE id = %s", [events[2].pk])
    _message, output = _verify_output()
    assert str(events[2].public_id) in output
    assert "altered" in output


@pytest.mark.django_db(transaction=True)
def test_altered_details_are_caught(owner_connection):
    events = _record_five(HospitalFactory())
    _tamper(owner_connection, f"UPDATE {TABLE} SET details = '{{\"n\": 99}}' WHERE id = %s", [events[1].pk])
    _message, output = _verify_output()
    assert str(events[1].public_id) in output


@pytest.mark.django_db(transaction=True)
def test_deleted_event_is_caught_at_its_successor(owner_connection):
    events = _record_five(HospitalFactory())
    _tamper(owner_connection, f"DELETE FROM {TABLE} WHERE id = %s", [events[2].pk])
    _message, output = _verify_output()
    assert str(events[3].public_id) in output
    assert "missing (sequence 3..3)" in output


@pytest.mark.django_db(transaction=True)
def test_deleted_last_event_is_caught(owner_connection):
    events = _record_five(HospitalFactory())
    _tamper(owner_connection, f"DELETE FROM {TABLE} WHERE id = %s", [events[4].pk])
    _message, output = _verify_output()
    assert str(events[3].public_id) in output
    assert "events after it are missing" in output


@pytest.mark.django_db(transaction=True)
def test_reordered_events_are_caught(owner_connection):
    events = _record_five(HospitalFactory())
    first, second = events[1], events[2]
    # Swap the positions of two events (via a free sequence number, the pair being unique).
    _tamper(owner_connection, f"UPDATE {TABLE} SET sequence = 1000 WHERE id = %s", [first.pk])
    _tamper(owner_connection, f"UPDATE {TABLE} SET sequence = %s WHERE id = %s", [first.sequence, second.pk])
    _tamper(owner_connection, f"UPDATE {TABLE} SET sequence = %s WHERE id = %s", [second.sequence, first.pk])
    _message, output = _verify_output()
    assert str(second.public_id) in output
    assert "does not follow its predecessor" in output


@pytest.mark.django_db(transaction=True)
def test_owner_cannot_update_or_delete_while_trigger_is_on(owner_connection):
    hospital = HospitalFactory()
    event = _record_five(hospital)[0]
    owner_connection.execute("SELECT set_config('app.hospital_id', %s, false)", [str(hospital.pk)])
    with pytest.raises(Exception, match="append-only"):
        owner_connection.execute(f"UPDATE {TABLE} SET actor_name = 'x' WHERE id = %s", [event.pk])
    with pytest.raises(Exception, match="append-only"):
        owner_connection.execute(f"DELETE FROM {TABLE} WHERE id = %s", [event.pk])
    assert audit_chains_verify() == []


@pytest.mark.django_db
def test_application_role_has_no_update_or_delete_privilege():
    hospital = HospitalFactory()
    event = _record_five(hospital)[0]
    with platform_scope("audit"):
        for statement in (f"UPDATE {TABLE} SET actor_name = 'x' WHERE id = %s", f"DELETE FROM {TABLE} WHERE id = %s"):
            with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute(statement, [event.pk])
        with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(f"TRUNCATE {TABLE}")


@pytest.mark.django_db
def test_orm_refuses_update_and_delete():
    event = _record_five(HospitalFactory())[0]
    event.actor_name = "changed"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with platform_scope("audit"):
        with pytest.raises(AppendOnlyError):
            AuditEvent.objects.filter(pk=event.pk).update(actor_name="x")
        with pytest.raises(AppendOnlyError):
            AuditEvent.objects.filter(pk=event.pk).delete()


@pytest.mark.django_db
def test_events_carry_dicom_codes_and_chain_links():
    hospital = HospitalFactory()
    events = _record_five(hospital)
    assert events[0].event_id == "110114"
    assert events[0].event_type == "110122"
    assert events[0].previous_hash == ""
    assert [e.sequence for e in events] == [1, 2, 3, 4, 5]
    assert all(later.previous_hash == earlier.hash for earlier, later in itertools.pairwise(events))
    viewed = audit_record(action=Action.AUDIT_LOG_VIEWED, hospital=hospital)
    assert (viewed.event_id, viewed.action_code) == ("110101", "R")


@pytest.mark.django_db
def test_ipv4_mapped_ipv6_clients_verify():
    from django.test import RequestFactory

    request = RequestFactory().get("/", REMOTE_ADDR="::ffff:10.0.0.1")
    audit_record(action=Action.LOGIN_FAILED, request=request, actor_name="x")
    audit_record(
        action=Action.LOGIN_FAILED, request=RequestFactory().get("/", REMOTE_ADDR="2001:DB8::1"), actor_name="y"
    )
    assert audit_chains_verify() == []


@pytest.mark.django_db(transaction=True)
def test_a_rewound_chain_head_is_caught(owner_connection):
    events = _record_five(HospitalFactory())
    # Remove the last event and rewind the head to the one before, as an intruder would.
    _tamper(owner_connection, f"DELETE FROM {TABLE} WHERE id = %s", [events[4].pk])
    owner_connection.execute(
        "UPDATE audit_auditchainhead SET sequence = %s, hash = %s WHERE chain = %s",
        [events[3].sequence, events[3].hash, events[3].chain],
    )
    _message, output = _verify_output()
    assert "the chain head was altered" in output
