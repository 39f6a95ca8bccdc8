"""Health of the parts the service depends on, for ``/healthz``."""

import uuid

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import connection


def database_health() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return "ok"


def broker_health() -> str:
    if settings.CELERY_TASK_ALWAYS_EAGER and not settings.REDIS_URL:
        return "in-process"
    from config.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
    return "ok"


def storage_health() -> str:
    storage = storages["default"]
    name = storage.save(f"healthz/{uuid.uuid4().hex}", ContentFile(b"ok"))
    try:
        with storage.open(name) as handle:
            if handle.read() != b"ok":
                return "error"
    finally:
        storage.delete(name)
    return "ok"


def health_report() -> dict[str, str]:
    report = {}
    for name, check in (("database", database_health), ("broker", broker_health), ("storage", storage_health)):
        try:
            report[name] = check()
        except Exception:  # noqa: BLE001 - a health check reports any failure as such
            report[name] = "error"
    return report
