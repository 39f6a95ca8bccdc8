"""The report change log in the back office, for settling disputes. Nobody edits it here.

Hospital admins see their own hospital's report versions only (the hospital is active in the
database session, so row-level security backs the filter up). Platform duties see none: report
text is patient information, and the audit admin's cross-hospital view covers the audit trail
only. Every list, comparison and export is itself an audit event.
"""

from typing import Any
from uuid import UUID

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import BadRequest, PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from apps.audit.services import audit_record
from apps.audit.vocabulary import Action, EntryPoint
from apps.core.backoffice import BackOfficeModelAdmin, acting_hospital
from apps.reports import selectors
from apps.reports.changelog import change_entries, change_log_csv, change_log_pdf, field_changes
from apps.reports.models import Report, ReportVersion
from apps.reports.printing import PdfUnavailable
from apps.reports.signing import version_verify
from apps.tenants.access import get_for_hospital_or_404

EXPORT_LIMIT = 5_000
VERSION_FIELDS: list[str] = [
    "number", "status", "exam_description", "technique", "findings", "impression", "recommendation",
    "reporting_doctor", "reviewing_doctor", "author", "reason", "content_sha256", "signed_by", "signed_at",
    "created_at",
]  # fmt: skip


@admin.register(ReportVersion)
class ReportChangeLogAdmin(BackOfficeModelAdmin):
    list_display = ["created_at", "study_uid", "number", "status", "author", "signed_by", "short_reason"]
    list_filter = [
        "status",
        ("author", admin.RelatedOnlyFieldListFilter),
        ("signed_by", admin.RelatedOnlyFieldListFilter),
        ("created_at", admin.DateFieldListFilter),
    ]
    search_fields = ["=report__study__study_instance_uid", "=report__study__accession_number", "=report__public_id"]
    date_hierarchy = "created_at"
    list_select_related = ["report__study", "author", "signed_by", "hospital"]
    ordering = ["-created_at", "-id"]
    change_list_template = "admin/reports/reportversion/change_list.html"
    change_form_template = "admin/reports/reportversion/change_form.html"
    fields = tuple(VERSION_FIELDS)
    readonly_fields = VERSION_FIELDS

    @admin.display(description=gettext_lazy("study"))
    def study_uid(self, version: ReportVersion) -> str:
        return version.report.study.study_instance_uid

    @admin.display(description=gettext_lazy("reason for change"))
    def short_reason(self, version: ReportVersion) -> str:
        return version.reason[:80]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ReportVersion]:
        queryset = super().get_queryset(request)
        hospital = acting_hospital(request)
        return queryset.filter(hospital=hospital) if hospital is not None else queryset.none()

    def has_module_permission(self, request: HttpRequest) -> bool:
        return acting_hospital(request) is not None

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def _audit(self, request: HttpRequest, action: Action, *, object_id: str = "", **details: Any) -> None:
        audit_record(
            action=action, request=request, hospital=acting_hospital(request), entry_point=EntryPoint.ADMIN,
            object_type="report" if object_id else "report_change_log", object_id=object_id, details=details,
        )  # fmt: skip

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        if isinstance(response, TemplateResponse):
            self._audit(request, Action.REPORT_VIEWED, filters=dict(request.GET.items()))
        return response

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        version = self.get_object(request, object_id)
        if version is None:
            raise Http404
        previous = ReportVersion.objects.filter(
            hospital_id=version.hospital_id, report_id=version.report_id, number=version.number - 1
        ).first()
        context = {
            **(extra_context or {}),
            "verified": version_verify(version, version.report),
            "changes": field_changes(previous, version) if previous is not None else [],
            "previous": previous,
            "report_public_id": version.report.public_id,
        }
        response = super().change_view(request, object_id, form_url, context)
        if response.status_code == 200:
            self._audit(request, Action.REPORT_VIEWED, object_id=str(version.report.public_id), version=version.number)
        return response

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        extra = [
            path("export.csv", view(self.export_csv), name="reports_reportversion_export_csv"),
            path("export.pdf", view(self.export_pdf), name="reports_reportversion_export_pdf"),
            path("diff/<uuid:report_id>/", view(self.diff_view), name="reports_reportversion_diff"),
        ]
        return extra + super().get_urls()

    def _filtered(self, request: HttpRequest, fmt: str) -> list[Any]:
        """The versions the list shows, with the same filters and search, oldest first; audited."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except (IncorrectLookupParameters, ValidationError) as error:
            raise BadRequest(_("The filters are not valid.")) from error
        queryset = (
            changelist.get_queryset(request)
            .select_related(*selectors.VERSION_RELATIONS, "report__study", "hospital")
            .order_by("created_at", "id")
        )
        versions = list(queryset[:EXPORT_LIMIT])
        self._audit(request, Action.REPORT_EXPORTED, format=fmt, filters=dict(request.GET.items()),
                    count=len(versions), sha256=[v.content_sha256 for v in versions])  # fmt: skip
        return change_entries(versions)

    def export_csv(self, request: HttpRequest) -> HttpResponse:
        response = HttpResponse(change_log_csv(self._filtered(request, "csv")), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="report-change-log.csv"'
        return response

    def export_pdf(self, request: HttpRequest) -> HttpResponse:
        entries = self._filtered(request, "pdf")
        try:
            pdf = change_log_pdf(entries, title=_("Report change log"))
        except PdfUnavailable as unavailable:
            return HttpResponse(str(unavailable), status=503, content_type="text/plain; charset=utf-8")
        response = HttpResponse(pdf, content_type="application/pdf")
        response["Content-Disposition"] = 'attachment; filename="report-change-log.pdf"'
        return response

    def diff_view(self, request: HttpRequest, report_id: UUID) -> HttpResponse:
        """A field-by-field comparison of versions ``a`` and ``b`` of one report, with who, when and why."""
        hospital = acting_hospital(request)
        if not self.has_view_permission(request) or hospital is None:
            raise PermissionDenied
        report = get_for_hospital_or_404(Report.objects.select_related("study"), hospital, public_id=report_id)
        versions = list(selectors.report_versions(report))
        numbers = [v.number for v in versions]
        a, b = request.GET.get("a", ""), request.GET.get("b", "")
        old_number = int(a) if a.isdigit() else max(1, report.current_version - 1)
        new_number = int(b) if b.isdigit() else report.current_version
        by_number = {v.number: v for v in versions}
        if old_number not in by_number or new_number not in by_number:
            raise Http404
        old, new = by_number[old_number], by_number[new_number]
        changes = field_changes(old, new)
        self._audit(request, Action.REPORT_VIEWED, object_id=str(report.public_id), diff=[old.number, new.number],
                    sha256_before=old.content_sha256, sha256_after=new.content_sha256)  # fmt: skip
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Compare report versions"),
            "report": report,
            "numbers": numbers,
            "old": old,
            "new": new,
            "old_verified": version_verify(old, report),
            "new_verified": version_verify(new, report),
            "changes": changes,
        }
        return TemplateResponse(request, "admin/reports/reportversion/diff.html", context)
