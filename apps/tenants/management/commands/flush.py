"""``flush`` run as the table owner: the application role may not truncate the audit trail."""

from typing import Any

from django.core.management.commands.flush import Command as DjangoFlushCommand

from apps.tenants.db_roles import as_table_owner


class Command(DjangoFlushCommand):
    def handle(self, **options: Any) -> None:
        with as_table_owner(options.get("database") or "default"):
            super().handle(**options)
