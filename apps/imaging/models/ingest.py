"""Staging and the ingest pipeline's records: what arrived, what became of it, what QC found."""

import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from apps.imaging.dicom.rules import Severity
from apps.tenants.models import RowLevelSecurity, TenantOwnedModel

FINDING_SEVERITIES = [(Severity.REJECT.value, _("Rejected")), (Severity.WARN.value, _("Warning"))]


class StagedObject(TenantOwnedModel):
    """Bytes received and written durably to staging, waiting to be (or having been) ingested."""

    class Source(models.TextChoices):
        STOW = "stow", _("STOW-RS")
        UPLOAD = "upload", _("Staff upload")
        DIMSE = "dimse", _("DICOM C-STORE")

    class Status(models.TextChoices):
        RECEIVED = "received", _("Received")
        STORED = "stored", _("Stored")
        DUPLICATE = "duplicate", _("Already stored")
        REJECTED = "rejected", _("Rejected")
        CONFLICT = "conflict", _("Conflict")

    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    source = models.CharField(_("source"), max_length=8, choices=Source.choices)
    batch = models.UUIDField(
        _("batch"), null=True, blank=True, help_text=_("Groups the objects of one request or upload.")
    )
    original_name = models.CharField(_("original file name"), max_length=255, blank=True)
    size = models.PositiveBigIntegerField(_("size (bytes)"))
    sha256 = models.CharField(
        _("SHA-256"), max_length=64, blank=True, help_text=_("Of the received bytes, taken while staging.")
    )
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.RECEIVED)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    error_code = models.CharField(_("error code"), max_length=40, blank=True)
    error_message_zh = models.CharField(_("error message (Chinese)"), max_length=300, blank=True)
    error_message_en = models.CharField(_("error message (English)"), max_length=300, blank=True)
    sop_instance_uid = models.CharField(_("SOP Instance UID"), max_length=64, blank=True)
    sop_class_uid = models.CharField(_("SOP Class UID"), max_length=64, blank=True)
    instance = models.ForeignKey(
        "imaging.Instance", null=True, blank=True, on_delete=models.SET_NULL, verbose_name=_("instance")
    )
    created_at = models.DateTimeField(_("received at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("staged object")
        verbose_name_plural = _("staged objects")
        indexes = [
            models.Index(fields=["hospital", "status", "updated_at"]),
            models.Index(fields=["hospital", "batch"]),
        ]

    def __str__(self) -> str:
        return str(self.public_id)

    @property
    def is_final(self) -> bool:
        return self.status != self.Status.RECEIVED


class IngestConflict(TenantOwnedModel):
    """Different bytes arrived under a SOP Instance UID already stored; staff decide."""

    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    staged = models.OneToOneField(
        StagedObject, on_delete=models.PROTECT, related_name="conflict", verbose_name=_("received object")
    )
    existing = models.ForeignKey(
        "imaging.Instance", on_delete=models.PROTECT, related_name="conflicts", verbose_name=_("stored instance")
    )
    received_sha256 = models.CharField(_("received SHA-256"), max_length=64)
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)
    created_at = models.DateTimeField(_("recorded at"), auto_now_add=True)

    class Meta:
        verbose_name = _("ingest conflict")
        verbose_name_plural = _("ingest conflicts")

    def __str__(self) -> str:
        return str(self.public_id)


class ValidationFinding(TenantOwnedModel):
    """One data-validation finding (数据校验) on one received object, kept for QC."""

    staged = models.ForeignKey(
        StagedObject, on_delete=models.PROTECT, related_name="findings", verbose_name=_("received object")
    )
    instance = models.ForeignKey(
        "imaging.Instance",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="findings",
        verbose_name=_("instance"),
    )
    code = models.CharField(_("rule"), max_length=40)
    severity = models.CharField(_("severity"), max_length=8, choices=FINDING_SEVERITIES)
    modality = models.CharField(_("modality"), max_length=16, blank=True)
    message_zh = models.CharField(_("message (Chinese)"), max_length=300)
    message_en = models.CharField(_("message (English)"), max_length=300)
    details = models.JSONField(_("details"), default=dict)
    created_at = models.DateTimeField(_("found at"), auto_now_add=True)

    class Meta:
        verbose_name = _("validation finding")
        verbose_name_plural = _("validation findings")
        indexes = [models.Index(fields=["hospital", "code", "created_at"])]

    def __str__(self) -> str:
        return self.code


class DicomNode(TenantOwnedModel):
    """An AE title registered to a hospital; the C-STORE gateway accepts only these."""

    # The gateway learns the hospital from the calling AE title, before any hospital is set.
    row_level_security = RowLevelSecurity(
        extra_policies={"ae_lookup": ("SELECT", "ae_title = current_setting('app.ae_title', true)")}
    )

    ae_title = models.CharField(_("AE title"), max_length=16, unique=True)
    description = models.CharField(_("description"), max_length=100, blank=True)
    created_at = models.DateTimeField(_("registered at"), auto_now_add=True)

    class Meta:
        verbose_name = _("DICOM node")
        verbose_name_plural = _("DICOM nodes")

    def __str__(self) -> str:
        return self.ae_title


class ReplacedInstanceVersion(TenantOwnedModel):
    """The stored object an instance held before a hospital admin replaced it with the bytes of a
    conflict (``ingest_conflict_replace``). The old encrypted object stays in storage, readable
    with what is kept here, so a replacement never loses the original."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    instance = models.ForeignKey("imaging.Instance", on_delete=models.PROTECT, related_name="replaced_versions")
    conflict = models.OneToOneField(IngestConflict, on_delete=models.PROTECT, related_name="replaced_version")
    transfer_syntax_uid = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    storage_key = models.CharField(max_length=80, unique=True)
    cipher = models.CharField(max_length=16)
    wrapped_data_key = models.BinaryField()
    segment_size = models.PositiveIntegerField()
    stored_size = models.PositiveBigIntegerField()
    metadata_sealed = models.BinaryField()
    stored_at = models.DateTimeField(help_text=_("When the replaced object was first stored"))
    replaced_at = models.DateTimeField(auto_now_add=True)
    replaced_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        verbose_name = _("replaced instance version")
        verbose_name_plural = _("replaced instance versions")
        indexes = [models.Index(fields=["hospital", "instance"])]

    def __str__(self) -> str:
        return str(self.public_id)

    @property
    def sop_instance_uid(self) -> str:
        """The instance's: a replaced version was stored for the same SOP Instance UID."""
        return str(self.instance.sop_instance_uid)
