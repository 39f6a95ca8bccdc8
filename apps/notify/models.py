import uuid

from django.db import models
from django.utils.translation import gettext_lazy as _

from apps.tenants.models import RowLevelSecurity, TenantOwnedModel


class OutboundMessage(TenantOwnedModel):
    """One SMS to a patient, queued in the outbox and sent by ``apps.notify.tasks.send_sms``.

    The phone number and the template parameters (which may hold a verification code) are sealed
    with the hospital's field key, and the parameters are emptied once the message is sent or
    given up; the task is given only the public id.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")

    # The task knows only the message's public id; it reads that one row to learn the hospital.
    row_level_security = RowLevelSecurity(
        extra_policies={
            "message_lookup": ("SELECT", "public_id::text = current_setting('app.message_id', true)"),
        }
    )

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    template = models.CharField(_("template"), max_length=40)
    phone_sealed = models.BinaryField(editable=False)
    params_sealed = models.BinaryField(editable=False, default=b"")
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.QUEUED)
    provider = models.CharField(_("provider"), max_length=40, blank=True)
    provider_message_id = models.CharField(max_length=128, blank=True)
    error = models.CharField(_("error"), max_length=300, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("outbound message")
        verbose_name_plural = _("outbound messages")
        indexes = [models.Index(fields=["hospital", "created_at"])]

    def __str__(self) -> str:
        return str(self.public_id)
