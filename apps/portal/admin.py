"""Hospital admins set their hospital's patient-access policy in the back office."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from apps.audit.services import audit_record
from apps.audit.vocabulary import Action, EntryPoint
from apps.core.backoffice import BackOfficeModelAdmin, HospitalAdminScopedMixin, acting_hospital
from apps.portal.models import PatientAccessPolicy


@admin.register(PatientAccessPolicy)
class PatientAccessPolicyAdmin(HospitalAdminScopedMixin, BackOfficeModelAdmin):
    list_display = ["identity_check", "downloads_allowed", "sharing_allowed", "outpatient_years", "inpatient_years"]
    policy_fields = (
        "identity_check",
        "downloads_allowed",
        "sharing_allowed",
        "outpatient_years",
        "inpatient_years",
        "code_ttl_seconds",
    )
    fields = list(policy_fields)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        hospital = acting_hospital(request)
        return hospital is not None and not PatientAccessPolicy.objects.filter(hospital=hospital).exists()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: PatientAccessPolicy, form: Any, change: bool) -> None:
        hospital = acting_hospital(request)
        assert hospital is not None
        obj.hospital = hospital
        obj.code_ttl_seconds = min(max(obj.code_ttl_seconds, 60), 600)
        super().save_model(request, obj, form, change)
        audit_record(
            action=Action.HOSPITAL_CHANGED,
            request=request,
            hospital=hospital,
            entry_point=EntryPoint.ADMIN,
            object_type="patient_access_policy",
            object_id=str(hospital.public_id),
            details={name: str(getattr(obj, name)) for name in self.policy_fields},
        )
