"""Reading and exporting the audit trail for dispute resolution. Nobody edits it.

The audit admin reads every hospital's trail; a hospital admin reads their own hospital's. Each
list, detail and export is itself an audit event (110101 Audit Log Used).
"""

import csv
import json
from collections.abc import Iterator
from datetime import UTC
from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import BadRequest, PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.functional import lazy
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from apps.accounts.roles import PlatformRole
from apps.audit.chain import all_chains, chain_hospital_id, chain_name, verify_chain
from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from apps.audit.vocabulary import Action, EntryPoint
from apps.core.backoffice import BackOfficeModelAdmin, acting_hospital, has_platform_role
from apps.core.timetext import time_with_offset
from apps.tenants.context import platform_scope
from apps.tenants.models import Hospital

EXPORT_FIELDS = [
    "public_id", "chain", "sequence", "occurred_at", "hospital_id", "actor_name", "actor_role", "action",
    "event_id", "event_type", "action_code", "outcome", "object_type", "object_id", "entry_point",
    "ip_address", "user_agent", "details", "previous_hash", "hash",
]  # fmt: skip
EXPORT_LIMIT = 100_000
DETAIL_FIELDS: list[str] = [
    "public_id", "time_in_zone", "time_utc", "hospital", "actor", "actor_name", "actor_role_label", "action",
    "outcome", "entry_point", "object_type", "object_id", "ip_address", "user_agent", "details", "event_id",
    "event_type", "action_code", "chain", "sequence", "previous_hash", "hash",
]  # fmt: skip


def _export_row(event: AuditEvent) -> dict[str, Any]:
    row = {field: getattr(event, field) for field in EXPORT_FIELDS}
    row["public_id"] = str(event.public_id)
    row["occurred_at"] = event.occurred_at.isoformat()
    return row


def _time_in_zone_label() -> str:
    return _("time (%(zone)s)") % {"zone": timezone.get_current_timezone_name()}


# The zone the back office shows times in (TIME_ZONE, Asia/Shanghai), named in the label: stored
# times are UTC, and a reader comparing the screen with an export (UTC) must see which is which.
TIME_IN_ZONE_LABEL = lazy(_time_in_zone_label, str)()

# Roles recorded for actors who are not staff (staff events carry the user instead).
_NON_STAFF_ROLES = {
    "patient": gettext_lazy("Patient"),
    "share": gettext_lazy("Holder of a share link"),
    "anonymous": gettext_lazy("Anonymous"),
}


def _chain_row(chain: str, label: str) -> dict[str, Any]:
    """One chain's verification, under its label (its hospital, or the platform)."""
    return {"label": label, "events": AuditEvent.objects.filter(chain=chain).count(), "problem": verify_chain(chain)}


def _chain_rows(chains: list[str]) -> list[dict[str, Any]]:
    hospitals = Hospital.objects.in_bulk([i for i in map(chain_hospital_id, chains) if i is not None])
    rows = []
    for chain in chains:
        hospital_id = chain_hospital_id(chain)
        hospital = hospitals.get(hospital_id) if hospital_id is not None else None
        label = str(hospital) if hospital else (_("Platform") if hospital_id is None else chain)
        rows.append(_chain_row(chain, label))
    return rows


class _Echo:
    def write(self, value: str) -> str:
        return value


@admin.register(AuditEvent)
class AuditEventAdmin(BackOfficeModelAdmin):
    list_display = [
        "time_in_zone",
        "hospital",
        "actor_name",
        "action",
        "outcome",
        "entry_point",
        "object_type",
        "ip_address",
    ]
    list_filter = ["action", "outcome", "entry_point", ("occurred_at", admin.DateFieldListFilter)]
    search_fields = ["actor_name", "object_id", "=public_id"]
    date_hierarchy = "occurred_at"
    list_select_related = ["hospital"]
    fields = tuple(DETAIL_FIELDS)
    readonly_fields = DETAIL_FIELDS
    change_list_template = "admin/audit/auditevent/change_list.html"

    @admin.display(description=TIME_IN_ZONE_LABEL, ordering="occurred_at")
    def time_in_zone(self, event: AuditEvent) -> str:
        return time_with_offset(event.occurred_at)

    @admin.display(description=gettext_lazy("time (UTC)"))
    def time_utc(self, event: AuditEvent) -> str:
        return time_with_offset(event.occurred_at, UTC)

    @admin.display(description=gettext_lazy("role"))
    def actor_role_label(self, event: AuditEvent) -> str:
        return str(_NON_STAFF_ROLES.get(event.actor_role, event.actor_role))

    def _auditor(self, request: HttpRequest) -> bool:
        return has_platform_role(request, PlatformRole.AUDIT_ADMIN)

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditEvent]:
        queryset = super().get_queryset(request)
        if self._auditor(request):
            return queryset
        hospital = acting_hospital(request)
        return queryset.filter(hospital=hospital) if hospital else queryset.none()

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._auditor(request) or acting_hospital(request) is not None

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def _log_use(self, request: HttpRequest, action: Action, details: dict[str, Any]) -> None:
        audit_record(
            action=action, request=request, hospital=acting_hospital(request), entry_point=EntryPoint.ADMIN,
            object_type="audit_log", details=details,
        )  # fmt: skip

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        if isinstance(response, TemplateResponse):
            self._log_use(request, Action.AUDIT_LOG_VIEWED, {"filters": dict(request.GET.items())})
        return response

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        response = super().change_view(request, object_id, form_url, extra_context)
        if response.status_code == 200:
            self._log_use(request, Action.AUDIT_LOG_VIEWED, {"event": object_id})
        return response

    def get_urls(self) -> list[URLPattern]:
        extra = [
            path("export.csv", self.admin_site.admin_view(self.export_csv), name="audit_auditevent_export_csv"),
            path("export.json", self.admin_site.admin_view(self.export_json), name="audit_auditevent_export_json"),
            path("verify/", self.admin_site.admin_view(self.verify_view), name="audit_auditevent_verify"),
        ]
        return extra + super().get_urls()

    def verify_view(self, request: HttpRequest) -> HttpResponse:
        """Check the hash chains the reader may see (the audit admin: every chain; a hospital
        admin: their hospital's) and show, per chain, how many events verified or the first broken
        one. The same check as ``manage.py verify_audit_chain``, for those who have no shell."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        if self._auditor(request):
            with platform_scope("audit"):
                rows = _chain_rows(all_chains())
        else:
            hospital = acting_hospital(request)
            assert hospital is not None  # has_view_permission
            rows = [_chain_row(chain_name(hospital.pk), str(hospital))]
        broken = [row for row in rows if row["problem"] is not None]
        self._log_use(request, Action.AUDIT_LOG_VIEWED, {"verified_chains": len(rows), "broken": len(broken)})
        context = {
            **self.admin_site.each_context(request),
            "title": _("Audit trail integrity"),
            "opts": self.model._meta,
            "rows": rows,
            "broken": len(broken),
            "checked_at": time_with_offset(timezone.now()),
        }
        return TemplateResponse(request, "admin/audit/auditevent/verify.html", context)

    def _filtered(self, request: HttpRequest) -> QuerySet[AuditEvent]:
        """The events the list shows with the same filters and search, oldest first."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except (IncorrectLookupParameters, ValidationError) as error:
            raise BadRequest(_("The filters are not valid.")) from error
        queryset = changelist.get_queryset(request).order_by("occurred_at", "id")
        count = queryset.count()
        self._log_use(request, Action.AUDIT_LOG_EXPORTED, {"filters": dict(request.GET.items()), "count": count})
        return queryset[:EXPORT_LIMIT]

    def export_csv(self, request: HttpRequest) -> StreamingHttpResponse:
        events = list(self._filtered(request))

        def rows() -> Iterator[str]:
            writer = csv.writer(_Echo())
            yield "\ufeff"  # So spreadsheet programs read the Chinese text as UTF-8.
            yield writer.writerow(EXPORT_FIELDS)
            for event in events:
                row = _export_row(event)
                row["details"] = json.dumps(row["details"], ensure_ascii=False, sort_keys=True)
                yield writer.writerow([row[field] for field in EXPORT_FIELDS])

        response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="audit-events.csv"'
        return response

    def export_json(self, request: HttpRequest) -> HttpResponse:
        events = [_export_row(event) for event in self._filtered(request)]
        response = HttpResponse(
            json.dumps({"events": events}, ensure_ascii=False, default=str), content_type="application/json"
        )
        response["Content-Disposition"] = 'attachment; filename="audit-events.json"'
        return response
