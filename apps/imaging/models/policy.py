from django.db import models
from django.utils.translation import gettext_lazy as _

from apps.imaging.dicom.rules import RULES, Severity
from apps.tenants.models import TenantOwnedModel


class ValidationRuleSetting(TenantOwnedModel):
    """A hospital's severity for one validation rule, for one modality or all ("*").

    Allowing lossy originals for ultrasound is, for example, LOSSY_TRANSFER_SYNTAX / US / warn.
    """

    class Level(models.TextChoices):
        REJECT = Severity.REJECT.value, _("Reject")
        WARN = Severity.WARN.value, _("Warn")

    code = models.CharField(
        _("rule"), max_length=40, choices=sorted((code, f"{code} · {rule.title_zh}") for code, rule in RULES.items())
    )
    modality = models.CharField(_("modality"), max_length=16, default="*", help_text=_('"*" for every modality'))
    severity = models.CharField(_("severity"), max_length=8, choices=Level.choices)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("validation rule setting")
        verbose_name_plural = _("validation rule settings")
        constraints = [
            models.UniqueConstraint(
                fields=["hospital", "code", "modality"],
                name="validation_setting_unique",
                violation_error_message=_(
                    "This hospital already has a setting for this rule and modality; change that one instead."
                ),
            )
        ]

    def __str__(self) -> str:
        return f"{self.code}/{self.modality}: {self.severity}"
