"""What a sender says a study should hold, for the completeness check (检查完整性)."""

import uuid

from django.db import models
from django.utils.translation import gettext_lazy as _

from apps.tenants.models import TenantOwnedModel


class StudyManifest(TenantOwnedModel):
    """The expected series of one study and the number of instances in each (optional: without a
    manifest only the sender knows how many instances it meant to send). It may arrive before,
    during or after the images, so it is keyed by the Study Instance UID, not by a Study row."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    study_instance_uid = models.CharField(max_length=64)
    series_counts = models.JSONField(default=dict, help_text="Series Instance UID -> expected instances")
    incomplete_reported_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("study manifest")
        verbose_name_plural = _("study manifests")
        constraints = [models.UniqueConstraint(fields=["hospital", "study_instance_uid"], name="manifest_unique_study")]

    def __str__(self) -> str:
        return str(self.public_id)

    @property
    def expected_instances(self) -> int:
        return sum(int(count) for count in self.series_counts.values())
