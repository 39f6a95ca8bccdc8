import os
from typing import Any

from celery import Celery
from celery.signals import worker_init

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
