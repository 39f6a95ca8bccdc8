"""Uploads go through Redis to a real Celery worker, which ingests them."""

import io
import threading
import time
import uuid

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun, task_prerun
from django.db import connection, connections
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


def _upload_and_wait(client, batch: uuid.UUID, data: bytes) -> str:
    handle = io.BytesIO(data)
    handle.name = "slice.dcm"
    response = client.post(reverse("imaging:upload_files", args=["first"]), {"batch": str(batch), "files": [handle]})
    assert response.status_code == 200
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        items = client.get(reverse("imaging:upload_status", args=["first", batch])).json()["items"]
        statuses = [item["status"] for item in items]
        if "received" not in statuses:
            return statuses[-1]
        time.sleep(0.1)
    raise AssertionError("not ingested within 30 s")


@pytest.fixture
def worker_connections(monkeypatch):
    """Every task's backend pid, in order. The suite's settings close connections after each use
    (CONN_MAX_AGE 0); a deployment keeps them for DB_CONN_MAX_AGE seconds, as here. Set up before
    the worker and torn down after it stops, when the worker thread's connections are closed, so
    none is open at the test database's teardown."""
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 60)
    backends: list[tuple[str, int]] = []
    wrappers = []

    def record(task=None, **kwargs):
        wrappers.append(connections["default"])  # the worker thread's own wrapper, not the proxy
        pid = connection.connection.info.backend_pid if connection.connection else 0
        backends.append((task.name if task else "", pid))

    task_postrun.connect(record, weak=False)
    yield backends
    task_postrun.disconnect(record)
    for wrapper in wrappers:
        wrapper.inc_thread_sharing()
        wrapper.close()
        wrapper.dec_thread_sharing()


def test_a_worker_keeps_its_database_connection_between_tasks_and_replaces_a_dead_one(
    worker_connections, client, sign_in, world, local_storage, redis_worker
):
    """Celery's Django fixup would close the worker's connection after every task (a new
    PostgreSQL session per ingested object); CELERY_DB_REUSE_MAX keeps it, and the check before
    each task replaces one that died in between."""

    def ingest_backends() -> list[int]:
        return [pid for name, pid in worker_connections if name == "apps.imaging.tasks.ingest_staged_object"]

    sign_in(world.first["technologist"])
    batch = uuid.uuid4()
    first, second, third = make_ct_series(3)
    assert _upload_and_wait(client, batch, first) == "stored"
    assert _upload_and_wait(client, batch, second) == "stored"
    kept = ingest_backends()
    assert len(kept) == 2 and kept[0] != 0 and kept[0] == kept[1]
    # The session dies between two tasks (a database restart, an idle timeout): the next task is
    # not lost to it.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [kept[1]])
    assert _upload_and_wait(client, batch, third) == "stored"
    assert ingest_backends()[2] not in (0, kept[1])
