"""Back-office screens of the archive: DICOM nodes, validation settings, QC lists and conflicts."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import ActionLocation, helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.formats import localize
from django.utils.translation import get_language, ngettext
from django.utils.translation import gettext_lazy as _

from apps.audit.services import audit_record
from apps.audit.vocabulary import Action, EntryPoint
from apps.core.backoffice import BackOfficeModelAdmin, HospitalAdminScopedMixin, acting_hospital
from apps.core.timetext import time_with_offset
from apps.imaging.conflicts import ConflictNotReplaceable, ingest_conflict_replace
from apps.imaging.ingest import ingest_conflict_keep_stored
from apps.imaging.models import (
    DicomNode,
    IngestConflict,
    StagedObject,
    ValidationFinding,
    ValidationRuleSetting,
)
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


class ValidationRuleSettingForm(forms.ModelForm):
    class Meta:
        model = ValidationRuleSetting
        fields = ["code", "modality", "severity"]

    def clean_modality(self) -> str:
        # Compared as DICOM writes modalities (upper case), so "us" and "US" are one setting; the
        # uniqueness check (per hospital, see HospitalScopedFormMixin) sees the normalised value.
        return self.cleaned_data["modality"].strip().upper() or "*"


@admin.register(ValidationRuleSetting)
class ValidationRuleSettingAdmin(HospitalAdminScopedMixin, BackOfficeModelAdmin):
    """Hospital admins choose, per rule and modality, whether a finding rejects or only warns."""

    list_display = ["code", "modality", "severity", "updated_at"]
    list_filter = ["severity"]
    form = ValidationRuleSettingForm
    fields = ["code", "modality", "severity"]

    def save_model(self, request: HttpRequest, obj: ValidationRuleSetting, form: Any, change: bool) -> None:
        hospital = acting_hospital(request)
        assert hospital is not None
        obj.hospital = hospital
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
    list_display = ["code", "severity", "modality", "message", "created_at"]
    list_filter = ["code", "severity", "modality"]

    @admin.display(description=_("message"))
    def message(self, finding: ValidationFinding) -> str:
        return finding.message_en if (get_language() or "").startswith("en") else finding.message_zh


def _size_text(size: int | None) -> str:
    return "" if size is None else ngettext("%(size)s byte", "%(size)s bytes", size) % {"size": localize(size)}


# Both resolutions are final (keeping the stored version deletes the received bytes), so each
# asks for confirmation on a page that names what will happen, from the list or the detail page.
_RESOLUTION_LOCATIONS = [ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM]


@admin.register(IngestConflict)
class IngestConflictAdmin(_ReadOnlyQcAdmin):
    """Different bytes under a stored SOP Instance UID. After checking with the modality, staff
    keep the stored version (the received bytes are discarded) or replace it with the received
    one (the stored bytes are kept as a replaced version); either way the choice is audited.

    The detail shows both versions (digest, size, when they arrived) and where the instance sits
    (study and series by UID and public id); no patient data."""

    list_display = ["public_id", "sop_instance_uid", "study_instance_uid", "recorded_at", "resolution"]
    list_filter = [("resolved_at", admin.EmptyFieldListFilter)]
    actions = ["keep_stored", "replace_with_received"]
    _detail_sections: list[tuple[Any, list[str]]] = [
        (None, ["public_id", "sop_instance_uid", "recorded_at", "resolution", "resolved_at_text"]),
        (_("Stored version"), ["stored_sha256", "stored_size", "stored_at"]),
        (_("Received version"), ["received_sha256", "received_size", "received_at", "received_source"]),
        (
            _("Study and series"),
            [
                "study_instance_uid", "study_public_id", "series_instance_uid", "series_public_id", "modality",
                "instance_public_id",
            ],
        ),
    ]  # fmt: skip
    fieldsets = [(title, {"fields": tuple(names)}) for title, names in _detail_sections]
    readonly_fields = [name for _title, names in _detail_sections for name in names]
    confirmation_template = "admin/imaging/ingestconflict/confirm_resolution.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[IngestConflict]:
        return (
            super()
            .get_queryset(request)
            .select_related("staged", "existing__series__study", "replaced_version")
            .order_by("-created_at", "-id")
        )

    # What the detail shows. After a replacement the instance holds the received bytes, so the
    # stored version is then the one kept aside (ReplacedInstanceVersion).
    @staticmethod
    def _replaced(conflict: IngestConflict) -> Any:
        return getattr(conflict, "replaced_version", None)

    @admin.display(description=_("SOP Instance UID"))
    def sop_instance_uid(self, conflict: IngestConflict) -> str:
        return conflict.existing.sop_instance_uid

    @admin.display(description=_("resolution"))
    def resolution(self, conflict: IngestConflict) -> str:
        if conflict.resolved_at is None:
            return str(_("Unresolved"))
        if self._replaced(conflict) is not None:
            return str(_("Replaced with the received version"))
        return str(_("Stored version kept"))

    @admin.display(description=_("recorded at"), ordering="created_at")
    def recorded_at(self, conflict: IngestConflict) -> str:
        return time_with_offset(conflict.created_at)

    @admin.display(description=_("resolved at"))
    def resolved_at_text(self, conflict: IngestConflict) -> str:
        return time_with_offset(conflict.resolved_at)

    @admin.display(description=_("stored SHA-256"))
    def stored_sha256(self, conflict: IngestConflict) -> str:
        replaced = self._replaced(conflict)
        return replaced.sha256 if replaced is not None else conflict.existing.sha256

    @admin.display(description=_("stored size"))
    def stored_size(self, conflict: IngestConflict) -> str:
        replaced = self._replaced(conflict)
        return _size_text(replaced.size if replaced is not None else conflict.existing.size)

    @admin.display(description=_("stored at"))
    def stored_at(self, conflict: IngestConflict) -> str:
        replaced = self._replaced(conflict)
        return time_with_offset(replaced.stored_at if replaced is not None else conflict.existing.created_at)

    @admin.display(description=_("received SHA-256"))
    def received_sha256(self, conflict: IngestConflict) -> str:
        return conflict.received_sha256

    @admin.display(description=_("received size"))
    def received_size(self, conflict: IngestConflict) -> str:
        return _size_text(conflict.staged.size)

    @admin.display(description=_("received at"))
    def received_at(self, conflict: IngestConflict) -> str:
        return time_with_offset(conflict.staged.created_at)

    @admin.display(description=_("received through"))
    def received_source(self, conflict: IngestConflict) -> str:
        return conflict.staged.get_source_display()

    @admin.display(description=_("Study Instance UID"))
    def study_instance_uid(self, conflict: IngestConflict) -> str:
        return conflict.existing.series.study.study_instance_uid

    @admin.display(description=_("study public ID"))
    def study_public_id(self, conflict: IngestConflict) -> str:
        return str(conflict.existing.series.study.public_id)

    @admin.display(description=_("Series Instance UID"))
    def series_instance_uid(self, conflict: IngestConflict) -> str:
        return conflict.existing.series.series_instance_uid

    @admin.display(description=_("series public ID"))
    def series_public_id(self, conflict: IngestConflict) -> str:
        return str(conflict.existing.series.public_id)

    @admin.display(description=_("modality"))
    def modality(self, conflict: IngestConflict) -> str:
        return conflict.existing.series.modality

    @admin.display(description=_("instance public ID"))
    def instance_public_id(self, conflict: IngestConflict) -> str:
        return str(conflict.existing.public_id)

    def _confirmation(
        self, request: HttpRequest, conflicts: list[IngestConflict], action: str, title: Any, consequence: Any
    ) -> TemplateResponse:
        """The intermediate page of a resolution: what will happen to which conflicts. Its form
        posts the same action back to the list with ``confirmed``."""
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "consequence": consequence,
            "action": action,
            "conflicts": [
                {
                    "pk": conflict.pk,
                    "public_id": conflict.public_id,
                    "sop_instance_uid": self.sop_instance_uid(conflict),
                    "study_instance_uid": self.study_instance_uid(conflict),
                    "series_instance_uid": self.series_instance_uid(conflict),
                    "stored_sha256": self.stored_sha256(conflict),
                    "stored_size": self.stored_size(conflict),
                    "received_sha256": conflict.received_sha256,
                    "received_size": self.received_size(conflict),
                    "received_at": self.received_at(conflict),
                }
                for conflict in conflicts
            ],
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "changelist_url": reverse("admin:imaging_ingestconflict_changelist"),
        }
        return TemplateResponse(request, self.confirmation_template, context)

    def _pending(self, request: HttpRequest, queryset: QuerySet[IngestConflict]) -> list[IngestConflict] | None:
        """The unresolved conflicts of the selection, or None (with a message) when there are none."""
        pending = list(queryset.filter(resolved_at__isnull=True))
        if not pending:
            self.message_user(request, _("The selected conflicts are already resolved."), messages.WARNING)
            return None
        return pending

    @admin.action(description=_("Keep the stored version and discard the received one"), location=_RESOLUTION_LOCATIONS)
    def keep_stored(self, request: HttpRequest, queryset: QuerySet[IngestConflict]) -> HttpResponse | None:
        pending = self._pending(request, queryset)
        if pending is None:
            return None
        if request.POST.get("confirmed") != "yes":
            return self._confirmation(
                request, pending, "keep_stored", _("Keep the stored version?"),
                _("The stored version stays as it is. The received bytes are deleted and cannot be recovered."),
            )  # fmt: skip
        for conflict in pending:
            ingest_conflict_keep_stored(conflict=conflict, actor=request.user)
            audit_record(
                action=Action.INSTANCES_IMPORTED, request=request, hospital=conflict.hospital,
                entry_point=EntryPoint.ADMIN, object_type="ingest_conflict", object_id=str(conflict.public_id),
                details={"resolution": "keep_stored"},
            )  # fmt: skip
        self.message_user(
            request,
            ngettext("%(count)d conflict resolved.", "%(count)d conflicts resolved.", len(pending))
            % {"count": len(pending)},
            messages.SUCCESS,
        )
        return None

    @admin.action(
        description=_("Replace the stored version with the received one (the stored one is kept)"),
        location=_RESOLUTION_LOCATIONS,
    )
    def replace_with_received(self, request: HttpRequest, queryset: QuerySet[IngestConflict]) -> HttpResponse | None:
        pending = self._pending(request, queryset)
        if pending is None:
            return None
        if request.POST.get("confirmed") != "yes":
            return self._confirmation(
                request, pending, "replace_with_received", _("Replace the stored version with the received one?"),
                _(
                    "The received bytes become the instance that viewers, downloads and the DICOMweb API "
                    "serve from now on. The stored version is not deleted: it is kept as a replaced "
                    "version, and the replacement is recorded in the audit trail with both digests. A "
                    "received object that names another patient, study or series is refused."
                ),
            )  # fmt: skip
        replaced = 0
        for conflict in pending:
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
        return None
