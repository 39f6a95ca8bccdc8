"""Fail fast, with a plain message, when PostgreSQL or Redis for the test suite is unreachable."""

import os
import sys

import psycopg
import redis

DATABASE_URL = os.environ.get("DATABASE_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


def main() -> int:
    failures = []
    try:
        psycopg.connect(DATABASE_URL, connect_timeout=5).close()
    except psycopg.OperationalError as error:
        failures.append(f"PostgreSQL is not reachable at {DATABASE_URL}: {str(error).strip()}")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5).ping()
    except redis.RedisError as error:
        failures.append(f"Redis is not reachable at {REDIS_URL}: {error}")
    for failure in failures:
        print(failure, file=sys.stderr)
    if failures:
        print("The test suite needs both; start them (see README) or set DATABASE_URL / REDIS_URL.", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
