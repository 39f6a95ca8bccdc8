"""The audit trail's INSERT policy: the database takes an event only for the hospital the
transaction acts for, or for the platform chain when it acts for none. Raw SQL as the app role."""

import uuid

import pytest
from django.db import DatabaseError, connection, transaction

from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from apps.audit.vocabulary import Action
from apps.tenants.context import current_hospital, hospital_context, platform_scope
from tests.factories import HospitalFactory

pytestmark = pytest.mark.django_db

TABLE = "audit_auditevent"
RLS_REFUSAL = "row-level security"


def _insert(hospital_id: int | None, *, acting_for: int | None, scope: str = "") -> None:
    """INSERT one event as the application role, acting for ``acting_for`` (or no hospital)."""
    with transaction.atomic(), connection.cursor() as cursor:
        assert cursor.connection.info.user == "yingxiang_app"
        cursor.execute(
            "SELECT set_config('app.hospital_id', %s, true), set_config('app.platform_scope', %s, true)",
            [str(acting_for) if acting_for else "", scope],
        )
        cursor.execute(
            f"INSERT INTO {TABLE} (public_id, chain, sequence, occurred_at, hospital_id, actor_name,"
            " actor_role, action, event_id, event_type, action_code, outcome, object_type, object_id,"
            " entry_point, user_agent, details, previous_hash, hash)"
            " VALUES (%s, %s, 999, now(), %s, 'forger', '', 'login', '110114', '110122', 'E', 0, '', '',"
            " 'web', '', '{}', '', '')",
            [str(uuid.uuid4()), f"hospital:{hospital_id}" if hospital_id else "platform", hospital_id],
        )


@pytest.fixture
def hospitals():
    return HospitalFactory(), HospitalFactory()


def test_insert_for_another_hospital_than_the_acting_one_is_refused(hospitals):
    first, second = hospitals
    with pytest.raises(DatabaseError, match=RLS_REFUSAL):
        _insert(second.pk, acting_for=first.pk)


def test_insert_for_a_hospital_while_acting_for_none_is_refused(hospitals):
    first, _second = hospitals
    with pytest.raises(DatabaseError, match=RLS_REFUSAL):
        _insert(first.pk, acting_for=None)


def test_insert_for_a_hospital_under_platform_scope_is_refused(hospitals):
    first, _second = hospitals
    with pytest.raises(DatabaseError, match=RLS_REFUSAL):
        _insert(first.pk, acting_for=None, scope="audit")


def test_insert_into_the_platform_chain_while_acting_for_a_hospital_is_refused(hospitals):
    first, _second = hospitals
    with pytest.raises(DatabaseError, match=RLS_REFUSAL):
        _insert(None, acting_for=first.pk)


def test_insert_for_the_acting_hospital_is_accepted(hospitals):
    first, _second = hospitals
    _insert(first.pk, acting_for=first.pk)
    with hospital_context(first):
        assert AuditEvent.objects.filter(actor_name="forger", hospital=first).count() == 1


def test_insert_into_the_platform_chain_acting_for_no_hospital_is_accepted(hospitals):
    _insert(None, acting_for=None)
    with platform_scope("audit"):
        assert AuditEvent.objects.filter(actor_name="forger", hospital__isnull=True).count() == 1


def test_audit_record_writes_a_home_hospital_event_before_any_hospital_is_chosen(hospitals):
    """As a staff sign-in does: no hospital yet, the event goes to the user's home chain."""
    first, _second = hospitals
    with transaction.atomic():
        event = audit_record(action=Action.LOGIN, hospital=first, actor_name="staff")
        assert current_hospital() is None
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('app.hospital_id', true)")
            assert cursor.fetchone()[0] in ("", None)
    assert (event.chain, event.hospital_id) == (f"hospital:{first.pk}", first.pk)


def test_audit_record_keeps_the_acting_hospital_after_recording_for_another(hospitals):
    first, second = hospitals
    with hospital_context(first):
        audit_record(action=Action.API_AUTH_FAILED, hospital=second, details={"reason": "other_hospital"})
        audit_record(action=Action.LOGIN_FAILED, hospital=None)
        assert current_hospital() == first
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('app.hospital_id', true)")
            assert cursor.fetchone()[0] == str(first.pk)
    with platform_scope("audit"):
        assert AuditEvent.objects.filter(hospital=second, action=Action.API_AUTH_FAILED).count() == 1
