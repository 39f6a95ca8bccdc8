"""A PostgreSQL trigger that refuses UPDATE and DELETE on a table, even by its owner.

Used by migrations of append-only tables (the audit trail, report versions). The application
role also lacks those privileges (apps/tenants/rls.py); the trigger covers the owner and anyone
granted them later.
"""

from collections.abc import Callable
from typing import Any


def append_only_trigger(
    *, table: str, trigger: str, function: str, message: str
) -> tuple[Callable[[Any, Any], None], Callable[[Any, Any], None]]:
    """``(forwards, backwards)`` for ``migrations.RunPython``; no-ops on other databases."""
    create = f"""
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '{message} (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
DROP TRIGGER IF EXISTS {trigger} ON {table};
CREATE TRIGGER {trigger} BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION {function}();
"""
    drop = f"""
DROP TRIGGER IF EXISTS {trigger} ON {table};
DROP FUNCTION IF EXISTS {function}();
"""

    def forwards(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(create, params=None)

    def backwards(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(drop, params=None)

    return forwards, backwards
