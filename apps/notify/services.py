"""The outbox: queue a message to a patient's phone, and send one queued message."""

import json
import logging

from django.db import connection, transaction
from django.utils import timezone

from apps.audit.services import audit_record
from apps.audit.vocabulary import Action, EntryPoint, Outcome
from apps.imaging.keys import field_seal, field_unseal
from apps.notify.models import OutboundMessage
from apps.notify.providers import SmsError, sms_provider, template_id
from apps.tenants.context import activate_hospital
from apps.tenants.models import Hospital

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3


def message_enqueue(*, hospital: Hospital, phone: str, template: str, params: dict[str, str]) -> OutboundMessage:
    """Queue one SMS; the Celery task ``send_sms`` is started after commit with the public id only.

    Call inside ``hospital``'s context. The phone number and the parameters are stored sealed.
    """
    from apps.notify.tasks import send_sms

    with transaction.atomic():
        message = OutboundMessage.objects.create(
            hospital=hospital,
            template=template,
            phone_sealed=field_seal(hospital, phone, field="notify-phone"),
            params_sealed=field_seal(hospital, json.dumps(params, ensure_ascii=False), field="notify-params"),
        )
        message_id = str(message.public_id)
        transaction.on_commit(lambda: send_sms.delay(message_id))
    return message


def _bind_message_id(message_id: str) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('app.message_id', %s, true)", [message_id])


def message_send(*, message_id: str) -> str:
    """Send one queued message and record the outcome (MESSAGE_SENT / MESSAGE_FAILED).

    Idempotent: a message already sent or given up is left alone. After a provider failure the
    answer is ``"retry"`` (the task tries again later) until ``MAX_ATTEMPTS``, then the message
    is marked failed.
    """
    with transaction.atomic():
        _bind_message_id(message_id)
        message = OutboundMessage.objects.select_related("hospital").filter(public_id=message_id).first()
        if message is None:
            return "absent"
        hospital = message.hospital
        activate_hospital(hospital)
        message = OutboundMessage.objects.select_for_update().get(pk=message.pk)
        if message.status != OutboundMessage.Status.QUEUED:
            return str(message.status)
        phone = field_unseal(hospital, message.phone_sealed, field="notify-phone")
        params = json.loads(field_unseal(hospital, message.params_sealed, field="notify-params") or "{}")
        message.attempts += 1
        try:
            provider = sms_provider()
            message.provider = provider.name
            message.provider_message_id = provider.send(phone, template_id(message.template), params)[:128]
        except SmsError as error:
            message.error = str(error)[:300]
            final = message.attempts >= MAX_ATTEMPTS
            if final:
                message.status = OutboundMessage.Status.FAILED
                message.params_sealed = b""
            message.save()
            audit_record(
                action=Action.MESSAGE_FAILED,
                outcome=Outcome.SERIOUS_FAILURE if final else Outcome.MINOR_FAILURE,
                hospital=hospital,
                actor_name="system",
                entry_point=EntryPoint.TASK,
                object_type="message",
                object_id=message_id,
                details={"template": message.template, "attempt": message.attempts, "error": message.error},
            )
            logger.warning("SMS %s failed (attempt %s): %s", message_id, message.attempts, message.error)
            return str(message.status) if final else "retry"
        message.status = OutboundMessage.Status.SENT
        message.sent_at = timezone.now()
        message.error = ""
        # The parameters may hold a short link's raw token or a code: not kept once sent.
        message.params_sealed = b""
        message.save()
        audit_record(
            action=Action.MESSAGE_SENT,
            hospital=hospital,
            actor_name="system",
            entry_point=EntryPoint.TASK,
            object_type="message",
            object_id=message_id,
            details={"template": message.template, "provider": message.provider},
        )
        return str(message.status)
