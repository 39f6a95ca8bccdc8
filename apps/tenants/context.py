"""The hospital a unit of work acts for, in Python and in the database session.

On PostgreSQL the hospital is written with ``set_config(..., true)``, which lasts until the end
of the current transaction only, so a pooled connection never carries one request's hospital into
the next. Row-level security policies read it back; with none set they match no rows.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.db import connection, transaction

from apps.tenants.models import Hospital

_current_hospital: ContextVar[Hospital | None] = ContextVar("current_hospital", default=None)


class TenantContextError(RuntimeError):
    pass


def _set_database_setting(name: str, value: str) -> None:
    if connection.vendor != "postgresql":
        return
    if not connection.in_atomic_block:
        # Outside a transaction set_config(..., true) would be forgotten after this statement.
        raise TenantContextError(f"{name} can only be set inside transaction.atomic().")
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config(%s, %s, true)", [name, value])


def current_hospital() -> Hospital | None:
    return _current_hospital.get()


def activate_hospital(hospital: Hospital | None) -> None:
    """Make ``hospital`` the tenant of the current transaction (``None`` clears it)."""
    _current_hospital.set(hospital)
    _set_database_setting("app.hospital_id", str(hospital.pk) if hospital else "")


def bind_user(user_id: int | None) -> None:
    """Tell the database which staff user acts, so they can read their own memberships."""
    _set_database_setting("app.user_id", str(user_id) if user_id else "")


def bind_token_hash(token_hash: str) -> None:
    _set_database_setting("app.token_hash", token_hash)


def bind_ae_title(ae: str) -> None:
    """Tell the database which calling AE title asks, so the DICOM gateway can read that one
    registered node (the ``ae_lookup`` policy) before any hospital is known."""
    _set_database_setting("app.ae_title", ae)


def bind_new_row(public_id: str) -> None:
    """Let INSERT ... RETURNING read back the one row being appended to an insert-only table."""
    _set_database_setting("app.new_row", public_id)


@contextmanager
def hospital_context(hospital: Hospital | None) -> Iterator[None]:
    """Run a block in a transaction acting for ``hospital`` (for tasks, commands and tests)."""
    previous = _current_hospital.get()
    with transaction.atomic():
        activate_hospital(hospital)
        try:
            yield
        except BaseException:
            # Rolling back to this block's savepoint (or the transaction) undoes the database
            # setting; a statement here could only hide the error in an aborted transaction.
            _current_hospital.set(previous)
            raise
        # As the outermost block, its COMMIT ends the database setting: no statement to restore it
        # (one round trip fewer per task and per C-STORE).
        if len(connection.atomic_blocks) > 1 and not connection.needs_rollback:
            activate_hospital(previous)
        else:
            _current_hospital.set(previous)


def activate_platform_scope(duty: str) -> None:
    """Open one platform duty's cross-hospital view until the end of the transaction."""
    _set_database_setting("app.platform_scope", duty)


@contextmanager
def platform_scope(duty: str) -> Iterator[None]:
    """Open the cross-hospital view one platform duty needs (for example ``audit``).

    Only the policies that name that duty honour it: the audit admin reads every hospital's
    audit trail, and nothing else.
    """
    with transaction.atomic():
        _set_database_setting("app.platform_scope", duty)
        try:
            yield
        finally:
            if connection.in_atomic_block and not connection.needs_rollback:
                _set_database_setting("app.platform_scope", "")


def clear() -> None:
    """Forget hospital, user, token and platform scope, in Python and in the database session.

    Called at the end of each request's transaction, so that nothing carries over even where the
    transaction is an inner savepoint (as in tests).
    """
    _current_hospital.set(None)
    if connection.vendor == "postgresql" and connection.in_atomic_block and not connection.needs_rollback:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('app.hospital_id', '', true), set_config('app.user_id', '', true),"
                " set_config('app.token_hash', '', true), set_config('app.platform_scope', '', true),"
                " set_config('app.new_row', '', true), set_config('app.ae_title', '', true)"
            )


def reset() -> None:
    _current_hospital.set(None)
