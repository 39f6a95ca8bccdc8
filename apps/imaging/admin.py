"""Back-office screens of the archive: DICOM nodes, validation settings, QC lists and conflicts."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from apps.audit.services import audit_record
from apps.audit.vocabulary import Action, EntryPoint
from apps.core.backoffice import BackOfficeModelAdmin, HospitalAdminScopedMixin, acting_hospital
from apps.imaging.conflicts import ConflictNotReplaceable, ingest_conflict_replace
from apps.imaging.ingest import ingest_conflict_keep_stored
from apps.imaging.models import DicomNode, IngestConflict, StagedObject, ValidationFinding, ValidationRuleSetting
from apps.tenants.context import bind_ae_title


class DicomNodeForm(forms.ModelForm):
    class Meta:
        model = DicomNode
        fields = ["ae_title", "description"]

    def clean_ae_title(self) -> str:
        ae_title = self.cleaned_data["ae_title"].strip()
        # PS3.5 6.2: the default character repertoire without backslash or control characters.
        if not ae_title or "\\" in ae_title or not all(" " <= character <= "~" for character in ae_title):
            raise forms.ValidationError(_("Use 1 to 16 ASCII letters, digits, spaces or symbols other than \\."))
        # AE titles are unique across hospitals, and row-level security hides other hospitals'
        # nodes from Django's own uniqueness check; ask for this one title as the gateway does.
        bind_ae_title(ae_title)
        try:
            taken = DicomNode.objects.filter(ae_title=ae_title).exclude(pk=self.instance.pk).exists()
        finally:
            bind_ae_title("")
        if taken:
            raise forms.ValidationError(_("This AE title is already registered."))
        return ae_title


@admin.register(DicomNode)
class DicomNodeAdmin(HospitalAdminScopedMixin, BackOfficeModelAdmin):
    """Hospital admins register the AE titles their devices send from; the DICOM gateway accepts
    associations from these only, and files what they send under this hospital."""

    list_display = ["ae_title", "description", "created_at"]
    search_fields = ["ae_title", "description"]
    form = DicomNodeForm

    def save_model(self, request: HttpRequest, obj: DicomNode, form: Any, change: bool) -> None:
        hospital = acting_hospital(request)
        assert hospital is not None
        if not change:
            obj.hospital = hospital
        super().save_model(request, obj, form, change)
        details: dict[str, Any] = {"fields": sorted(form.changed_data)}
        if change and "ae_title" in form.changed_data:
            details["previous_ae_title"] = form.initial.get("ae_title", "")
        self._audit(request, Action.DICOM_NODE_CHANGED if change else Action.DICOM_NODE_REGISTERED, obj, details)

    def delete_model(self, request: HttpRequest, obj: DicomNode) -> None:
        super().delete_model(request, obj)
        self._audit(request, Action.DICOM_NODE_REMOVED, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[DicomNode]) -> None:
        for node in queryset:
            self.delete_model(request, node)

    def _audit(
        self, request: HttpRequest, action: Action, node: DicomNode, details: dict[str, Any] | None = None
    ) -> None:
        audit_record(
            action=action,
            request=request,
            hospital=acting_hospital(request),
            entry_point=EntryPoint.ADMIN,
            object_type="dicom_node",
            object_id=node.ae_title,
            details=details,
        )


@admin.register(ValidationRuleSetting)
class ValidationRuleSettingAdmin(HospitalAdminScopedMixin, BackOfficeModelAdmin):
    """Hospital admins choose, per rule and modality, whether a finding rejects or only warns."""

    list_display = ["code", "modality", "severity", "updated_at"]
    list_filter = ["severity"]
    fields = ["code", "modality", "severity"]

    def save_model(self, request: HttpRequest, obj: ValidationRuleSetting, form: Any, change: bool) -> None:
        hospital = acting_hospital(request)
        assert hospital is not None
        obj.hospital = hospital
        obj.modality = obj.modality.strip().upper() or "*"
        super().save_model(request, obj, form, change)
        audit_record(
            action=Action.HOSPITAL_CHANGED, request=request, hospital=hospital, entry_point=EntryPoint.ADMIN,
            object_type="validation_rule_setting", object_id=f"{obj.code}/{obj.modality}",
            details={"severity": obj.severity},
        )  # fmt: skip


class _ReadOnlyQcAdmin(HospitalAdminScopedMixin, BackOfficeModelAdmin):
    """QC lists for hospital admins: what arrived and what validation found. No patient data."""

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(StagedObject)
class StagedObjectAdmin(_ReadOnlyQcAdmin):
    list_display = ["public_id", "source", "status", "error_code", "size", "attempts", "created_at"]
    list_filter = ["status", "source", "error_code"]
    search_fields = ["=public_id", "=sop_instance_uid"]
    exclude = ["original_name"]


@admin.register(ValidationFinding)
class ValidationFindingAdmin(_ReadOnlyQcAdmin):
    list_display = ["code", "severity", "modality", "message_zh", "created_at"]
    list_filter = ["code", "severity", "modality"]


@admin.register(IngestConflict)
class IngestConflictAdmin(_ReadOnlyQcAdmin):
    """Different bytes under a stored SOP Instance UID. After checking with the modality, staff
    keep the stored version (the received bytes are discarded) or replace it with the received
    one (the stored bytes are kept as a replaced version); either way the choice is audited."""

    list_display = ["public_id", "existing", "received_sha256", "created_at", "resolved_at"]
    list_filter = [("resolved_at", admin.EmptyFieldListFilter)]
    actions = ["keep_stored", "replace_with_received"]

    @admin.action(description=_("Keep the stored version and discard the received one"))
    def keep_stored(self, request: HttpRequest, queryset: QuerySet[IngestConflict]) -> None:
        for conflict in queryset.filter(resolved_at__isnull=True).select_related("staged"):
            ingest_conflict_keep_stored(conflict=conflict, actor=request.user)
            audit_record(
                action=Action.INSTANCES_IMPORTED, request=request, hospital=conflict.hospital,
                entry_point=EntryPoint.ADMIN, object_type="ingest_conflict", object_id=str(conflict.public_id),
                details={"resolution": "keep_stored"},
            )  # fmt: skip

    @admin.action(description=_("Replace the stored version with the received one (the stored one is kept)"))
    def replace_with_received(self, request: HttpRequest, queryset: QuerySet[IngestConflict]) -> None:
        replaced = 0
        for conflict in queryset.filter(resolved_at__isnull=True):
            try:
                ingest_conflict_replace(conflict=conflict, actor=request.user, request=request)
            except ConflictNotReplaceable as refusal:
                self.message_user(request, f"{conflict.public_id}: {refusal}", messages.ERROR)
            else:
                replaced += 1
        if replaced:
            self.message_user(
                request,
                ngettext("%(count)d instance replaced.", "%(count)d instances replaced.", replaced)
                % {"count": replaced},
                messages.SUCCESS,
            )
