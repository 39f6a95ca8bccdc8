import uuid
from typing import Any, ClassVar

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from apps.audit.vocabulary import Action, EntryPoint, Outcome
from apps.core.timetext import time_with_offset
from apps.tenants.models import Hospital, RowLevelSecurity


class AppendOnlyError(RuntimeError):
    pass


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    def update(self, **kwargs: Any) -> int:
        raise AppendOnlyError("Audit events cannot be changed.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("Audit events cannot be deleted.")


class AuditEvent(models.Model):
    """One entry of the append-only audit trail.

    Events form a chain per hospital (and one for platform events without a hospital): each
    stores the HMAC of its predecessor and its own, so ``verify_audit_chain`` finds any row that
    was altered, deleted or reordered.
    """

    append_only: ClassVar[bool] = True
    # Appending needs the event's hospital to be the one set for the transaction (the
    # tenant_isolation policy), or, for the platform chain, no hospital set at all: a unit of
    # work acting for one hospital cannot write into another's chain or the platform's. Reading
    # needs the event's hospital or the audit admin's platform scope.
    row_level_security = RowLevelSecurity(
        extra_policies={
            "audit_append": ("INSERT", "hospital_id IS NULL AND app_current_hospital() IS NULL"),
            "audit_admin_read": ("SELECT", "current_setting('app.platform_scope', true) = 'audit'"),
            "audit_append_returning": ("SELECT", "public_id::text = current_setting('app.new_row', true)"),
        }
    )

    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    chain = models.CharField(_("chain"), max_length=40, editable=False)
    sequence = models.PositiveBigIntegerField(_("sequence number"), editable=False)
    # Stored in UTC like every datetime; screens show it in the server's time zone and say which.
    occurred_at = models.DateTimeField(_("time"), editable=False)
    hospital = models.ForeignKey(
        Hospital, null=True, blank=True, on_delete=models.PROTECT, editable=False, verbose_name=_("hospital")
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        editable=False,
        verbose_name=_("actor"),
    )
    actor_name = models.CharField(_("actor name"), max_length=150, blank=True, editable=False)
    actor_role = models.CharField(_("role"), max_length=32, blank=True, editable=False)
    action = models.CharField(_("action"), max_length=40, choices=Action.choices, editable=False)
    event_id = models.CharField(_("DICOM event ID"), max_length=16, editable=False)
    event_type = models.CharField(_("DICOM event type"), max_length=16, blank=True, editable=False)
    action_code = models.CharField(_("DICOM event action code"), max_length=1, editable=False)
    outcome = models.PositiveSmallIntegerField(_("outcome"), choices=Outcome.choices, editable=False)
    object_type = models.CharField(_("object type"), max_length=40, blank=True, editable=False)
    object_id = models.CharField(_("object ID"), max_length=80, blank=True, editable=False)
    entry_point = models.CharField(_("entry point"), max_length=16, choices=EntryPoint.choices, editable=False)
    ip_address = models.GenericIPAddressField(_("IP address"), null=True, blank=True, editable=False)
    user_agent = models.CharField(_("user agent"), max_length=300, blank=True, editable=False)
    details = models.JSONField(_("details"), default=dict, editable=False)
    previous_hash = models.CharField(_("previous event's hash"), max_length=64, editable=False)
    hash = models.CharField(_("hash"), max_length=64, editable=False)

    objects: ClassVar[Any] = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-occurred_at", "-id"]
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")
        constraints = [models.UniqueConstraint(fields=["chain", "sequence"], name="audit_chain_sequence_unique")]
        indexes = [
            models.Index(fields=["hospital", "occurred_at"]),
            models.Index(fields=["hospital", "action", "occurred_at"]),
            models.Index(fields=["hospital", "object_type", "object_id"]),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} · {time_with_offset(self.occurred_at)}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise AppendOnlyError("Audit events cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("Audit events cannot be deleted.")


class AuditChainHead(models.Model):
    """The last sequence number and hash of each chain; locking it serialises appends, and it
    reveals an event removed from the end of a chain."""

    chain = models.CharField(max_length=40, unique=True)
    sequence = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="")
    # HMAC over (chain, sequence, hash): rewinding the head to hide removed events needs the key.
    signature = models.CharField(max_length=64, default="")

    def __str__(self) -> str:
        return f"{self.chain}#{self.sequence}"
