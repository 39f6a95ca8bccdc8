"""Celery tasks of notify: they take the message's public id only (no phone, no code)."""

from celery import shared_task

from apps.notify.services import message_send

RETRY_DELAYS_SECONDS = (10, 60, 300)


@shared_task(acks_late=True)
def send_sms(message_id: str, attempt: int = 0) -> str:
    """Send one queued SMS; safe to run twice (a sent message is not sent again).

    A provider failure is recorded and tried again later, a few times, by a new task.
    """
    outcome = message_send(message_id=message_id)
    if outcome == "retry":
        delay = RETRY_DELAYS_SECONDS[min(attempt, len(RETRY_DELAYS_SECONDS) - 1)]
        send_sms.apply_async((message_id, attempt + 1), countdown=delay)
    return outcome
