from django.db import models
from django.utils.translation import gettext_lazy as _


class HospitalRole(models.TextChoices):
    """Roles a staff member holds at one hospital."""

    TECHNOLOGIST = "technologist", _("Technologist / uploader")
    REPORTING_DOCTOR = "reporting_doctor", _("Reporting doctor")
    REVIEWING_DOCTOR = "reviewing_doctor", _("Reviewing doctor")
    CLINICIAN = "clinician", _("Clinician")
    HOSPITAL_ADMIN = "hospital_admin", _("Hospital administrator")


class PlatformRole(models.TextChoices):
    """Roles that span hospitals. The last three are the separated duties (三员分立)."""

    QC_ADMIN = "qc_admin", _("QC-centre administrator")
    VENDOR_OPERATOR = "vendor_operator", _("Vendor operator")
    SYSTEM_ADMIN = "system_admin", _("System administrator")
    SECURITY_ADMIN = "security_admin", _("Security administrator")
    AUDIT_ADMIN = "audit_admin", _("Audit administrator")


SEPARATED_DUTIES = frozenset({PlatformRole.SYSTEM_ADMIN, PlatformRole.SECURITY_ADMIN, PlatformRole.AUDIT_ADMIN})
# The platform duties that have back-office screens (the QC centre has its own, patient-free view).
BACK_OFFICE_DUTIES = SEPARATED_DUTIES | {PlatformRole.VENDOR_OPERATOR}
