"""Switching the database connection to the role that owns the tables.

Only schema work (migrate, flush, test-database set-up) runs as the owner; everything else runs
as the application role, to which row-level security applies.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import connections


@contextmanager
def as_table_owner(using: str = "default") -> Iterator[None]:
    owner = settings.DATABASE_OWNER
    connection = connections[using]
    if not owner or connection.vendor != "postgresql" or owner["USER"] == connection.settings_dict["USER"]:
        yield
        return
    saved = {key: connection.settings_dict.get(key) for key in ("USER", "PASSWORD")}
    connection.close()
    connection.settings_dict.update(owner)
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.update(saved)
