"""Create the PostgreSQL roles the test suite (and a production set-up) uses, if missing.

- yingxiang_owner: owns the tables, runs migrations and creates the test database (CREATEDB);
- yingxiang_app:   what the application connects as; owns nothing, so row-level security applies.

Neither is a superuser nor may bypass row-level security. Connects with DATABASE_ADMIN_URL
(default: postgres://postgres@127.0.0.1:5432/postgres). Exits 2 with a plain message if the
server cannot be reached.
"""

import os
import sys

import psycopg
from psycopg import sql

ADMIN_URL = os.environ.get("DATABASE_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
ROLES = {
    "yingxiang_owner": "LOGIN CREATEDB NOSUPERUSER NOBYPASSRLS NOCREATEROLE",
    "yingxiang_app": "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE",
}


def main() -> int:
    try:
        connection = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        print(f"PostgreSQL is not reachable at {ADMIN_URL!r}: {error}".strip(), file=sys.stderr)
        print("Start it (see README) or set DATABASE_ADMIN_URL / DATABASE_URL.", file=sys.stderr)
        return 2
    with connection:
        for role, options in ROLES.items():
            exists = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone()
            verb = "ALTER" if exists else "CREATE"
            connection.execute(sql.SQL(f"{verb} ROLE {{}} {options}").format(sql.Identifier(role)))
        # The app role must be able to connect to databases the owner creates (the test database).
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = 'yingxiang'").fetchone()
        if not exists:
            connection.execute("CREATE DATABASE yingxiang OWNER yingxiang_owner")
    return 0


if __name__ == "__main__":
    sys.exit(main())
