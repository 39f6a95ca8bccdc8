"""Row-level security and privileges on PostgreSQL, applied after every migrate.

Every model with a ``row_level_security`` declaration (all tenant-owned models, and the audit
trail) gets RLS ENABLEd and FORCEd with a policy matching the hospital set for the transaction.
The application role gets data privileges on every table but owns none; append-only tables lose
UPDATE, DELETE and TRUNCATE.
"""

from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import connections

CURRENT_HOSPITAL_FUNCTION = """
CREATE OR REPLACE FUNCTION app_current_hospital() RETURNS bigint
LANGUAGE sql STABLE AS $$ SELECT NULLIF(current_setting('app.hospital_id', true), '')::bigint $$;
"""


def guarded_models() -> list[Any]:
    return [
        model
        for model in apps.get_models()
        if getattr(model, "row_level_security", None) is not None and not model._meta.abstract
    ]


def policy_statements(model: Any) -> list[str]:
    table = connections["default"].ops.quote_name(model._meta.db_table)
    rls = model.row_level_security
    tenant_match = f"{rls.hospital_column} = app_current_hospital()"
    statements = [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"DROP POLICY IF EXISTS tenant_isolation ON {table}",
        f"CREATE POLICY tenant_isolation ON {table} USING ({tenant_match}) WITH CHECK ({tenant_match})",
    ]
    for name, (command, expression) in rls.extra_policies.items():
        clause = "WITH CHECK" if command == "INSERT" else "USING"
        statements.append(f"DROP POLICY IF EXISTS {name} ON {table}")
        statements.append(f"CREATE POLICY {name} ON {table} FOR {command} {clause} ({expression})")
    return statements


def privilege_statements(app_role: str) -> list[str]:
    role = connections["default"].ops.quote_name(app_role)
    statements = [
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
    ]
    for model in apps.get_models():
        if getattr(model, "append_only", False):
            table = connections["default"].ops.quote_name(model._meta.db_table)
            statements.append(f"REVOKE UPDATE, DELETE, TRUNCATE ON {table} FROM {role}")
    return statements


def apply_database_policies(sender: Any, using: str = "default", **kwargs: Any) -> None:
    """post_migrate receiver: (re)apply policies and grants, idempotently."""
    if sender.name != "apps.tenants":
        return
    connection = connections[using]
    if connection.vendor != "postgresql":
        return
    statements = [CURRENT_HOSPITAL_FUNCTION]
    for model in guarded_models():
        statements.extend(policy_statements(model))
    app_role = settings.DATABASE_APP_ROLE
    if app_role and app_role != connection.settings_dict["USER"]:
        statements.extend(privilege_statements(app_role))
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
