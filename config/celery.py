import os
from typing import Any

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_init
from django.db import close_old_connections

from apps.core.hardening import harden_process

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

app = Celery("yingxiang")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _harden_worker(**_kwargs: Any) -> None:
    """A worker decrypts what it ingests and sends: no core dumps, no new privileges (its pool's
    processes fork from it and keep both)."""
    harden_process()


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(task: Any = None, **_kwargs: Any) -> None:
    """As Django does around each request: a connection past DB_CONN_MAX_AGE, or one left unusable
    by an error, is closed; a kept one is health-checked before its next use (CONN_HEALTH_CHECKS).
    Celery itself closes them only every CELERY_DB_REUSE_MAX tasks. Not for a task run in-process
    (eager), whose caller's transaction holds the connection."""
    if task is not None and getattr(task.request, "is_eager", False):
        return
    close_old_connections()
