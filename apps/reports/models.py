"""Diagnostic reports: one per study, every change a new immutable, hashed (and when final,
signed) version. The ``Report`` row only points at its latest version."""

import uuid
from typing import Any, ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from apps.imaging.models import Study
from apps.tenants.models import RowLevelSecurity, TenantOwnedModel, TenantQuerySet


class ImmutableVersionError(RuntimeError):
    pass


class DoctorSigningKey(TenantOwnedModel):
    """A doctor's signing key (Ed25519, or SM2 where national cryptography is required) at one
    hospital. The private key is sealed with the hospital's field key
    (``apps.imaging.keys.field_seal``), bound to the user's public id."""

    class Algorithm(models.TextChoices):
        ED25519 = "ed25519", "Ed25519"
        SM2 = "sm2", "SM2 (GB/T 32918)"

    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="signing_keys", verbose_name=_("user")
    )
    algorithm = models.CharField(_("algorithm"), max_length=16, choices=Algorithm.choices, default=Algorithm.ED25519)
    public_key = models.BinaryField(editable=False)
    private_key_sealed = models.BinaryField(editable=False)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("doctor signing key")
        verbose_name_plural = _("doctor signing keys")
        constraints = [
            models.UniqueConstraint(
                fields=["hospital", "user"], condition=Q(is_active=True), name="signing_key_one_active_per_user"
            )
        ]

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.public_id}"


class Report(TenantOwnedModel):
    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        PRELIMINARY = "preliminary", _("Preliminary")
        FINAL = "final", _("Final")
        AMENDED = "amended", _("Amended")
        ENTERED_IN_ERROR = "entered_in_error", _("Entered in error")

    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    study = models.OneToOneField(Study, on_delete=models.PROTECT, related_name="report", verbose_name=_("study"))
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.DRAFT)
    current_version = models.PositiveIntegerField(_("current version"), default=0)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("report")
        verbose_name_plural = _("reports")
        indexes = [models.Index(fields=["hospital", "status", "updated_at"])]

    def __str__(self) -> str:
        return str(self.public_id)

    @property
    def is_signed(self) -> bool:
        return self.status in (self.Status.FINAL, self.Status.AMENDED)


class ReportVersionQuerySet(TenantQuerySet):
    def update(self, **kwargs: Any) -> int:
        raise ImmutableVersionError("Report versions cannot be changed.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise ImmutableVersionError("Report versions cannot be deleted.")


class ReportVersion(TenantOwnedModel):
    """One immutable state of a report. The app role has no UPDATE or DELETE on this table."""

    append_only: ClassVar[bool] = True

    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    report = models.ForeignKey(
        Report, on_delete=models.PROTECT, related_name="versions", editable=False, verbose_name=_("report")
    )
    number = models.PositiveIntegerField(_("version"), editable=False)
    status = models.CharField(_("status"), max_length=20, choices=Report.Status.choices, editable=False)
    exam_description = models.TextField(_("examination"), blank=True, editable=False)
    technique = models.TextField(_("technique"), blank=True, editable=False)
    findings = models.TextField(_("findings (影像所见)"), blank=True, editable=False)
    impression = models.TextField(_("impression (诊断意见)"), blank=True, editable=False)
    recommendation = models.TextField(_("recommendation"), blank=True, editable=False)
    reporting_doctor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        editable=False,
        verbose_name=_("reporting doctor"),
    )
    reviewing_doctor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        editable=False,
        verbose_name=_("reviewing doctor"),
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", editable=False, verbose_name=_("author")
    )
    reason = models.TextField(_("reason for change"), blank=True, editable=False)
    content_sha256 = models.CharField(_("content SHA-256"), max_length=64, editable=False)
    signature = models.BinaryField(_("signature"), null=True, blank=True, editable=False)
    signing_key = models.ForeignKey(
        DoctorSigningKey,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        editable=False,
        verbose_name=_("signing key"),
    )
    signed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        editable=False,
        verbose_name=_("signed by"),
    )
    signed_at = models.DateTimeField(_("signed at"), null=True, blank=True, editable=False)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)

    objects: ClassVar[Any] = ReportVersionQuerySet.as_manager()

    class Meta:
        ordering = ["report", "number"]
        verbose_name = _("report version")
        verbose_name_plural = _("report versions")
        constraints = [
            models.UniqueConstraint(fields=["hospital", "report", "number"], name="report_version_unique_number")
        ]

    def __str__(self) -> str:
        # The report's public id, never its database key (which is no business of the reader).
        return _("Report %(report)s, version %(number)s") % {"report": self.report.public_id, "number": self.number}

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ImmutableVersionError("Report versions cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise ImmutableVersionError("Report versions cannot be deleted.")


class StudyPublication(TenantOwnedModel):
    """Whether a study's images and report are visible to its patient, and since when.

    A study is published once its report is signed (final or amended) and its images are
    complete (by manifest or a staff action). ``approval_to_publication_seconds`` is the QC
    timeliness figure. A withdrawal (report entered in error) keeps the history and hides the
    study again.
    """

    class Source(models.TextChoices):
        STAFF = "staff", _("Staff action")
        MANIFEST = "manifest", _("Manifest")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    study = models.OneToOneField(Study, on_delete=models.PROTECT, related_name="publication", verbose_name=_("study"))
    images_complete_at = models.DateTimeField(_("images complete at"), null=True, blank=True)
    images_complete_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    images_complete_source = models.CharField(max_length=16, choices=Source.choices, blank=True)
    report_approved_at = models.DateTimeField(_("report approved at"), null=True, blank=True)
    published_at = models.DateTimeField(_("published at"), null=True, blank=True)
    approval_to_publication_seconds = models.PositiveIntegerField(null=True, blank=True)
    withdrawn_at = models.DateTimeField(_("withdrawn at"), null=True, blank=True)
    withdrawn_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    withdrawn_reason = models.TextField(_("reason for withdrawal"), blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("study publication")
        verbose_name_plural = _("study publications")
        indexes = [models.Index(fields=["hospital", "published_at"])]

    def __str__(self) -> str:
        return str(self.public_id)

    @property
    def is_visible(self) -> bool:
        return self.published_at is not None and self.withdrawn_at is None


class ReportVerificationToken(TenantOwnedModel):
    """The opaque token a printed report's QR code carries, for the public verification page.

    Only the SHA-256 of the token is stored. The page finds the row by that hash before any
    hospital is known (the ``token_lookup`` policy, as for API tokens), then reads the version in
    its hospital's context. The token is derived from the version's public id with a keyed hash,
    so every print of one version carries the same QR code.
    """

    append_only: ClassVar[bool] = True
    row_level_security = RowLevelSecurity(
        extra_policies={
            "token_lookup": ("SELECT", "token_hash = current_setting('app.token_hash', true)"),
        }
    )

    version = models.ForeignKey(ReportVersion, on_delete=models.PROTECT, related_name="+", editable=False)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name = _("report verification token")
        verbose_name_plural = _("report verification tokens")
        indexes = [models.Index(fields=["hospital", "version"])]

    def __str__(self) -> str:
        return self.token_hash[:12]
