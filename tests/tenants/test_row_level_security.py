"""Row-level security on PostgreSQL: the database itself keeps hospitals apart."""

import pytest
from django.db import DatabaseError, DataError, connection, transaction
from django.test.utils import CaptureQueriesContext

from apps.accounts.models import Membership
from apps.audit.models import AuditEvent
from apps.tenants.context import activate_hospital, hospital_context, reset
from apps.tenants.models import ApiToken
from apps.tenants.rls import guarded_models
from apps.tenants.services import api_token_issue

pytestmark = pytest.mark.django_db


def _raw_count(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table}")
        return cursor.fetchone()[0]


def test_with_no_hospital_set_a_query_returns_zero_rows(world):
    api_token_issue(hospital=world.first.hospital, name="ris", scopes=["read"])
    api_token_issue(hospital=world.second.hospital, name="ris", scopes=["read"])
    activate_hospital(None)

    assert ApiToken.objects.count() == 0
    assert Membership.objects.count() == 0
    assert _raw_count("tenants_apitoken") == 0
    assert _raw_count("accounts_membership") == 0
    with hospital_context(world.first.hospital):
        assert ApiToken.objects.count() == 1
        assert Membership.objects.count() == 5


def test_hospital_a_context_never_returns_hospital_b_rows(world):
    api_token_issue(hospital=world.first.hospital, name="first-ris", scopes=["read"])
    api_token_issue(hospital=world.second.hospital, name="second-ris", scopes=["read"])

    with hospital_context(world.first.hospital):
        assert list(ApiToken.objects.values_list("name", flat=True)) == ["first-ris"]
        # Even a query that asks for B's rows by name gets none.
        assert ApiToken.objects.filter(hospital=world.second.hospital).count() == 0
        assert Membership.objects.filter(hospital=world.second.hospital).count() == 0
        assert _raw_count("tenants_apitoken") == 1


def test_inserting_a_row_for_another_hospital_is_refused(world):
    with hospital_context(world.first.hospital):
        with pytest.raises(DatabaseError, match="row-level security"), transaction.atomic():
            ApiToken.objects.create(hospital=world.second.hospital, name="x", prefix="x", token_hash="0" * 64)


def test_moving_a_row_to_another_hospital_is_refused(world):
    token, _ = api_token_issue(hospital=world.first.hospital, name="ris", scopes=["read"])
    with hospital_context(world.first.hospital):
        with pytest.raises(DatabaseError, match="row-level security"), transaction.atomic():
            ApiToken.objects.filter(pk=token.pk).update(hospital=world.second.hospital)


def test_every_tenant_table_has_forced_rls_and_is_not_owned_by_the_app_role():
    tables = [model._meta.db_table for model in guarded_models()]
    assert {"tenants_apitoken", "accounts_membership", "audit_auditevent"} <= set(tables)
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        app_role = cursor.fetchone()[0]
        cursor.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        assert cursor.fetchone() == (False, False)
        cursor.execute(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, pg_get_userbyid(c.relowner)"
            " FROM pg_class c WHERE c.relname = ANY(%s)",
            [tables],
        )
        rows = cursor.fetchall()
    assert len(rows) == len(tables)
    for name, enabled, forced, owner in rows:
        assert enabled and forced, name
        assert owner != app_role, name


def test_audit_events_of_another_hospital_are_invisible(world):
    from apps.audit.services import audit_record
    from apps.audit.vocabulary import Action

    audit_record(action=Action.LOGIN, actor=world.first["clinician"], hospital=world.first.hospital)
    audit_record(action=Action.LOGIN, actor=world.second["clinician"], hospital=world.second.hospital)
    with hospital_context(world.first.hospital):
        assert set(AuditEvent.objects.values_list("hospital_id", flat=True)) == {world.first.hospital.pk}
    assert AuditEvent.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_an_outermost_hospital_context_ends_with_its_transaction_and_no_statement_to_clear_it(world):
    """Outside any transaction (a task, a C-STORE) the block's COMMIT ends the setting; nested in
    another, the block clears it itself, since the outer transaction goes on."""
    api_token_issue(hospital=world.first.hospital, name="ris", scopes=["read"])
    reset()  # no hospital before the blocks
    with CaptureQueriesContext(connection) as queries, hospital_context(world.first.hospital):
        assert ApiToken.objects.count() == 1
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["BEGIN", "SELECT", "SELECT", "COMMIT"]
    assert _raw_count("tenants_apitoken") == 0
    with transaction.atomic():
        with hospital_context(world.first.hospital):
            assert _raw_count("tenants_apitoken") == 1
        assert _raw_count("tenants_apitoken") == 0


def test_a_database_error_inside_a_nested_hospital_context_is_the_error_raised(world):
    """The block's savepoint rollback undoes its setting: no statement after the error, which in
    an aborted transaction would replace it with 'current transaction is aborted'."""
    with transaction.atomic(), pytest.raises(DataError):
        with hospital_context(world.first.hospital), connection.cursor() as cursor:
            cursor.execute("SELECT 1 / 0")
