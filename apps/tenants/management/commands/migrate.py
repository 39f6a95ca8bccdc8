"""``migrate`` run as the table owner, so the application role never owns a table."""

from typing import Any

from django.core.management.commands.migrate import Command as DjangoMigrateCommand

from apps.tenants.db_roles import as_table_owner


class Command(DjangoMigrateCommand):
    def handle(self, *args: Any, **options: Any) -> None:
        with as_table_owner(options.get("database") or "default"):
            super().handle(*args, **options)
