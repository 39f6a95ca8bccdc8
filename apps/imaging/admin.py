"""Back-office screens of the archive: the DICOM nodes a hospital's devices send from."""

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from apps.audit.services import audit_record
from apps.audit.vocabulary import Action, EntryPoint
from apps.core.backoffice import BackOfficeModelAdmin, HospitalAdminScopedMixin, acting_hospital
from apps.imaging.models import DicomNode
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
