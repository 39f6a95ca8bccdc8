import re
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _


@dataclass(frozen=True)
class RowLevelSecurity:
    """How a table is guarded by PostgreSQL row-level security.

    ``hospital_column`` must equal the hospital set for the transaction. ``extra_policies`` are
    further permissive policies, as ``{name: (command, expression)}``; for INSERT the expression
    is a WITH CHECK clause, for the other commands a USING clause.
    """

    hospital_column: str = "hospital_id"
    extra_policies: dict[str, tuple[str, str]] = field(default_factory=dict)


HOSPITAL_CODE_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{1,30}")
hospital_code_validator = RegexValidator(
    rf"^{HOSPITAL_CODE_PATTERN.pattern}$",
    _("Use 2 to 31 lowercase letters, digits or hyphens, starting with a letter or digit."),
)


class Hospital(models.Model):
    """A tenant. Not itself tenant-scoped: its code is public and appears in URLs."""

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        SUSPENDED = "suspended", _("Suspended")

    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    code = models.CharField(_("code"), max_length=31, unique=True, validators=[hospital_code_validator])
    name_zh = models.CharField(_("name (Chinese)"), max_length=200)
    name_en = models.CharField(_("name (English)"), max_length=200, blank=True)
    institution_name = models.CharField(
        _("canonical DICOM institution name"),
        max_length=64,
        help_text=_("The Institution Name (0008,0080) every device of this hospital must send."),
    )
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        ordering = ["code"]
        verbose_name = _("hospital")
        verbose_name_plural = _("hospitals")

    def __str__(self) -> str:
        return f"{self.name_zh} ({self.code})"

    @property
    def display_name(self) -> str:
        """The name in the page's language: the English one on English pages when there is one."""
        return self.name_en if self.name_en and (get_language() or "").startswith("en") else self.name_zh

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class TenantQuerySet(models.QuerySet):
    def for_hospital(self, hospital: Hospital) -> Self:
        return self.filter(hospital=hospital)


class TenantOwnedModel(models.Model):
    """Base of every hospital-owned row; the hospital leads its indexes and uniqueness."""

    row_level_security: ClassVar[RowLevelSecurity] = RowLevelSecurity()

    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, verbose_name=_("hospital"))

    objects: ClassVar[Any] = TenantQuerySet.as_manager()

    class Meta:
        abstract = True


class ApiToken(TenantOwnedModel):
    """A bearer token for one hospital's API. Only a SHA-256 of the secret is stored."""

    class Scope(models.TextChoices):
        READ = "read", _("Read")
        WRITE = "write", _("Write")

    # The resolver sets app.token_hash to the hash presented, so a token can be found before the
    # hospital is known, and a token of another hospital is recognised as such (404, not 401).
    row_level_security = RowLevelSecurity(
        extra_policies={
            "token_lookup": ("SELECT", "token_hash = current_setting('app.token_hash', true)"),
        }
    )

    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(_("name"), max_length=100)
    prefix = models.CharField(_("prefix"), max_length=12, editable=False)
    token_hash = models.CharField(_("token hash"), max_length=64, unique=True, editable=False)
    scopes = models.JSONField(_("scopes"), default=list)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)

    class Meta:
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")
        indexes = [models.Index(fields=["hospital", "created_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def actor_name(self) -> str:
        """How the audit trail names this token when it acts (every API entry point uses this)."""
        return f"api-token:{self.prefix}"
