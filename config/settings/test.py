"""Test settings: PostgreSQL with row-level security and Redis, never SQLite.

The suite runs as the application role (``yingxiang_app``), which does not own the tables;
migrations and test-database creation run as ``yingxiang_owner``. ``scripts/ensure_db_roles.py``
creates both roles.
"""

import os

os.environ.setdefault("DATABASE_URL", "postgres://yingxiang_app@127.0.0.1:5432/yingxiang")
os.environ.setdefault("DATABASE_OWNER_URL", "postgres://yingxiang_owner@127.0.0.1:5432/yingxiang")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "true")

from config.settings.base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}  # noqa: F405
VAR_DIR = BASE_DIR / "var" / "test"  # noqa: F405
STORAGES["default"]["OPTIONS"] = {"location": str(VAR_DIR / "storage")}  # noqa: F405
# Static files are served from the finders in tests; no collectstatic needed.
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True
STAGING_DIR = VAR_DIR / "staging"
# Live-server threads close their database connection after each request: a browser or HTTP
# client keeping its connection alive would otherwise hold one open into the test database's
# teardown (DROP DATABASE refuses while a session is connected).
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
# No STOW-RS parse helper unless a test asks for one (tests/dicomweb/test_stow_parse_helper.py):
# whether a request used it would otherwise depend on the order and timing of the tests.
STOW_PARSE_PROCESSES = 0
