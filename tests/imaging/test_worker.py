"""Uploads go through Redis to a real Celery worker, which ingests them."""

import io
import threading
import time
import uuid

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_prerun
from django.urls import reverse

from config.celery import app as celery_app
from tests.imaging.dicom_factory import make_ct_series

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def redis_worker(settings):
    """A Celery worker thread consuming from the test Redis database."""
    assert settings.REDIS_URL.startswith("redis://")
    previous = (celery_app.conf.task_always_eager, celery_app.conf.broker_url)
    celery_app.conf.task_always_eager = False
    celery_app.conf.broker_url = settings.REDIS_URL
    with celery_app.connection_for_write() as connection:
        connection.default_channel.queue_purge("celery")
    with start_worker(celery_app, pool="solo", perform_ping_check=False, loglevel="WARNING"):
        yield
    celery_app.conf.task_always_eager, celery_app.conf.broker_url = previous


def test_uploaded_files_are_ingested_by_the_worker(client, sign_in, world, local_storage, redis_worker):
    ran_in: list[str] = []

    def record(task_id=None, task=None, **kwargs):
        if task is not None and task.name == "apps.imaging.tasks.ingest_staged_object":
            ran_in.append(threading.current_thread().name)

    task_prerun.connect(record, weak=False)
    sign_in(world.first["technologist"])
    batch = uuid.uuid4()
    files = []
    for index, data in enumerate(make_ct_series(2)):
        handle = io.BytesIO(data)
        handle.name = f"{index}.dcm"
        files.append(handle)
    response = client.post(reverse("imaging:upload_files", args=["first"]), {"batch": str(batch), "files": files})
    assert response.status_code == 200
    assert [item["status"] for item in response.json()["items"]] == ["received", "received"]
    deadline = time.monotonic() + 30
    statuses: list[str] = []
    while time.monotonic() < deadline:
        items = client.get(reverse("imaging:upload_status", args=["first", batch])).json()["items"]
        statuses = [item["status"] for item in items]
        if "received" not in statuses:
            break
        time.sleep(0.2)
    task_prerun.disconnect(record)
    assert statuses == ["stored", "stored"]
    # Consumed from Redis by the worker thread, not run eagerly in the request.
    assert len(ran_in) == 2
    assert threading.main_thread().name not in ran_in
