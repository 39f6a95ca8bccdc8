from django.db import models
from django.utils.translation import gettext_lazy as _

from apps.tenants.models import TenantOwnedModel


class HospitalKey(TenantOwnedModel):
    """A hospital's key, wrapped by the master key. It wraps the data key of every stored object
    and keys the hospital's patient-field encryption and blind indexes."""

    wrapped_key = models.BinaryField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("hospital key")
        verbose_name_plural = _("hospital keys")
        constraints = [models.UniqueConstraint(fields=["hospital"], name="hospital_key_one_per_hospital")]

    def __str__(self) -> str:
        return f"key of hospital {self.hospital_id}"
