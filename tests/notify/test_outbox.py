"""The outbox: sealed rows, the task by public id, outcomes audited; a real Celery worker once."""

import time

import pytest
from celery.contrib.testing.worker import start_worker

from apps.audit.models import AuditEvent
from apps.audit.vocabulary import Action
from apps.notify.models import OutboundMessage
from apps.notify.providers import ConsoleProvider, console_phone_digest
from apps.notify.services import message_enqueue, message_send
from apps.tenants.context import hospital_context
from config.celery import app as celery_app
from tests.notify.fake_servers import fake_sms_server

PHONE = "13800138000"


@pytest.mark.django_db
def test_phone_and_code_are_stored_sealed_and_the_message_sent(world, django_capture_on_commit_callbacks):
    ConsoleProvider.outbox.clear()
    hospital = world.first.hospital
    with django_capture_on_commit_callbacks(execute=True):
        with hospital_context(hospital):
            message = message_enqueue(
                hospital=hospital, phone=PHONE, template="verification_code", params={"code": "135790"}
            )
    with hospital_context(hospital):
        row = OutboundMessage.objects.get(pk=message.pk)
        actions = list(AuditEvent.objects.filter(object_id=str(message.public_id)).values_list("action", flat=True))
    assert PHONE.encode() not in bytes(row.phone_sealed) and b"135790" not in bytes(row.params_sealed)
    assert row.status == OutboundMessage.Status.SENT and row.provider == "console"
    assert actions == [Action.MESSAGE_SENT]
    assert ConsoleProvider.outbox[-1].phone_digest == console_phone_digest(PHONE)
    # Sending again changes nothing (idempotent).
    assert message_send(message_id=str(message.public_id)) == "sent"
    assert len(ConsoleProvider.outbox) == 1


@pytest.mark.django_db
def test_provider_failure_is_retried_then_recorded_failed(world, settings, django_capture_on_commit_callbacks):
    with fake_sms_server("aliyun", "s") as (url, state):
        state.fail_with = "isv.MOBILE_NUMBER_ILLEGAL"
        settings.SMS_PROVIDER = "aliyun"
        settings.SMS_ALIYUN_ENDPOINT, settings.SMS_ALIYUN_ACCESS_KEY_ID = url, "id"
        settings.SMS_ALIYUN_ACCESS_KEY_SECRET, settings.SMS_SIGN_NAME = "s", "影像云"
        hospital = world.first.hospital
        with django_capture_on_commit_callbacks(execute=True):
            with hospital_context(hospital):
                message = message_enqueue(hospital=hospital, phone=PHONE, template="study_published", params={})
    with hospital_context(hospital):
        row = OutboundMessage.objects.get(pk=message.pk)
        events = list(AuditEvent.objects.filter(object_id=str(message.public_id)).values_list("action", "details"))
    assert row.status == OutboundMessage.Status.FAILED and row.attempts == 3
    assert "isv.MOBILE_NUMBER_ILLEGAL" in row.error and PHONE not in row.error
    assert [action for action, _details in events] == [Action.MESSAGE_FAILED] * 3
    assert bytes(row.params_sealed) == b""  # given up: nothing left to send
    assert len(state.received) == 3


@pytest.fixture
def redis_worker(settings):
    assert settings.REDIS_URL.startswith("redis://")
    previous = (celery_app.conf.task_always_eager, celery_app.conf.broker_url)
    celery_app.conf.task_always_eager = False
    celery_app.conf.broker_url = settings.REDIS_URL
    with celery_app.connection_for_write() as connection:
        connection.default_channel.queue_purge("celery")
    with start_worker(celery_app, pool="solo", perform_ping_check=False, loglevel="WARNING"):
        yield
    celery_app.conf.task_always_eager, celery_app.conf.broker_url = previous


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_sends_the_queued_message(world, redis_worker):
    ConsoleProvider.outbox.clear()
    hospital = world.first.hospital
    with hospital_context(hospital):
        message = message_enqueue(
            hospital=hospital, phone=PHONE, template="verification_code", params={"code": "112233"}
        )
    deadline = time.monotonic() + 30
    status = "queued"
    while time.monotonic() < deadline:
        with hospital_context(hospital):
            status = OutboundMessage.objects.get(pk=message.pk).status
        if status != "queued":
            break
        time.sleep(0.2)
    assert status == "sent"
    assert ConsoleProvider.outbox[-1].params == {"code": "112233"}


@pytest.mark.django_db
def test_a_sent_message_forgets_its_parameters(world, django_capture_on_commit_callbacks):
    """A short link's raw token (kept only as a hash by the portal) and a code are not kept at
    rest, even sealed, once the message is out."""
    hospital = world.first.hospital
    with django_capture_on_commit_callbacks(execute=True):
        with hospital_context(hospital):
            message = message_enqueue(
                hospital=hospital, phone=PHONE, template="study_published", params={"link": "https://x/s/secret"}
            )
    with hospital_context(hospital):
        row = OutboundMessage.objects.get(pk=message.pk)
    assert row.status == OutboundMessage.Status.SENT
    assert bytes(row.params_sealed) == b""
