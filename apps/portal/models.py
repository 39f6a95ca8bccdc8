"""Patient access: the hospital's policy, verification codes, entry tokens, shares, WeChat
bindings, and the rate-limit counters that guard them.

Secrets (codes, tokens, access codes, openids) are stored only as keyed hashes.
"""

import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from apps.imaging.models import Patient, Study
from apps.tenants.models import Hospital, RowLevelSecurity, TenantOwnedModel

# Entry tokens and shares are found by the hash of the token presented, before the hospital is
# known (a short link carries no hospital code), as API tokens are.
TOKEN_LOOKUP = RowLevelSecurity(
    extra_policies={"token_lookup": ("SELECT", "token_hash = current_setting('app.token_hash', true)")}
)


class PatientAccessPolicy(TenantOwnedModel):
    """How one hospital lets its patients in. A hospital without a row uses the defaults."""

    class IdentityCheck(models.TextChoices):
        ID_LAST_FOUR = "id_last4", _("Last four characters of the ID-card number")
        BIRTH_DATE = "birth_date", _("Date of birth")

    hospital = models.OneToOneField(
        Hospital, on_delete=models.PROTECT, related_name="patient_access_policy", verbose_name=_("hospital")
    )
    identity_check = models.CharField(
        _("identity check"), max_length=16, choices=IdentityCheck.choices, default=IdentityCheck.ID_LAST_FOUR
    )
    downloads_allowed = models.BooleanField(_("downloads allowed"), default=True)
    outpatient_years = models.PositiveSmallIntegerField(_("service period, outpatient (years)"), default=15)
    inpatient_years = models.PositiveSmallIntegerField(_("service period, inpatient (years)"), default=30)
    code_ttl_seconds = models.PositiveIntegerField(_("code lifetime (seconds)"), default=300)
    sharing_allowed = models.BooleanField(_("sharing allowed"), default=True)

    class Meta:
        verbose_name = _("patient access policy")
        verbose_name_plural = _("patient access policies")

    def __str__(self) -> str:
        return str(self.hospital_id)


class EntryToken(TenantOwnedModel):
    """An opaque token that leads to one study: printed as a QR code or sent as a short link."""

    class Kind(models.TextChoices):
        QR = "qr", _("QR code on the exam slip")
        SMS = "sms", _("SMS short link")

    row_level_security = TOKEN_LOOKUP

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        indexes = [models.Index(fields=["hospital", "study"])]

    def __str__(self) -> str:
        return str(self.public_id)


class VerificationCode(TenantOwnedModel):
    """One six-digit code sent to the phone on a patient's record; only its keyed hash is kept.

    A code issued for a phone number that matches no patient has no patient and a random hash:
    it behaves like any other code to the person trying it, and never succeeds.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    patient = models.ForeignKey(Patient, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    study = models.ForeignKey(Study, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    entry_point = models.CharField(max_length=16)
    phone_key = models.CharField(max_length=64, editable=False)
    code_hash = models.CharField(max_length=64, editable=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["hospital", "created_at"])]

    def __str__(self) -> str:
        return str(self.public_id)


class Share(TenantOwnedModel):
    """A patient's link to one study for a doctor: expiry, an access code, revocable."""

    row_level_security = TOKEN_LOOKUP

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    access_code_hash = models.CharField(max_length=64, editable=False)
    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="+")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    failed_attempts = models.PositiveSmallIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["hospital", "patient", "created_at"])]

    def __str__(self) -> str:
        return str(self.public_id)


class WeChatBinding(TenantOwnedModel):
    """A WeChat openid (stored as a keyed hash) bound to a patient after a verified sign-in."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="+")
    openid_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hospital", "openid_hash"], name="wechat_binding_unique_openid")]

    def __str__(self) -> str:
        return str(self.pk)


class Throttle(models.Model):
    """A rate-limit counter for one key (a keyed hash of phone, address or token; never the value).

    Not tenant-owned: an address is counted across hospitals.
    """

    key = models.CharField(max_length=64, unique=True)
    window_started_at = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)
    locked_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.key[:12]
