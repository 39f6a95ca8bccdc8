"""Staff report screens under ``/h/<code>/reports/`` and the public verification page ``/r/<token>``.

The views parse input, call one service or selector, and render. Every screen is audited. Text
is rendered through Django's autoescaping only (never ``safe``), so HTML or script typed into a
report shows as text.
"""

from typing import Any
from uuid import UUID

from django.contrib import messages
from django.core.exceptions import BadRequest, PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from apps.accounts.roles import HospitalRole
from apps.audit.services import audit_record
from apps.audit.vocabulary import Action
from apps.core.decorators import hospital_staff_required
from apps.imaging.models import Study
from apps.imaging.selectors import patient_identity
from apps.reports import selectors, services
from apps.reports.forms import CONTENT_LABELS, AmendForm, DiffForm, DraftForm, EnterInErrorForm, SignForm
from apps.reports.models import Report, ReportVersion
from apps.reports.printing import PdfUnavailable, print_html, printed_report, report_pdf_bytes
from apps.reports.publication import publication_for, publication_state
from apps.reports.signing import TEXT_FIELDS
from apps.reports.verification import report_verify_token

SCREEN_ROLES = services.DOCTOR_ROLES | {HospitalRole.HOSPITAL_ADMIN}


def _require_reader(request: HttpRequest) -> None:
    if not (request.hospital_roles & SCREEN_ROLES):  # type: ignore[attr-defined]
        raise PermissionDenied


def _audit(request: HttpRequest, action: Action, *, object_type: str, object_id: str, **details: Any) -> None:
    audit_record(
        action=action, request=request, hospital=request.hospital,  # type: ignore[attr-defined]
        object_type=object_type, object_id=object_id, details=details,
    )  # fmt: skip


def _study(request: HttpRequest, study_id: UUID) -> Study:
    return selectors.study_by_public_id_or_404(request.hospital, study_id)  # type: ignore[attr-defined]


def _identity(study: Study) -> Any:
    try:
        return patient_identity(study.hospital, study.patient)
    except Exception:  # noqa: BLE001 - an identity that cannot be unsealed is shown as unknown
        return None


@require_GET
@hospital_staff_required
def worklist(request: HttpRequest) -> HttpResponse:
    _require_reader(request)
    status = request.GET.get("status", "")
    if status not in {"", "none", *Report.Status.values}:
        status = ""
    studies = list(selectors.report_worklist(request.hospital, status=status)[: selectors.WORKLIST_LIMIT])  # type: ignore[attr-defined]
    rows = [
        {"study": study, "patient": _identity(study), "report": getattr(study, "report", None),
         "published": publication_state(study)[0]}
        for study in studies
    ]  # fmt: skip
    _audit(request, Action.STUDIES_QUERIED, object_type="report_worklist", object_id="", status=status,
           results=len(rows))  # fmt: skip
    return render(
        request,
        "reports/worklist.html",
        {"rows": rows, "status": status, "statuses": Report.Status.choices, "limit": selectors.WORKLIST_LIMIT},
    )


def _version_rows(report: Report | None) -> list[dict[str, Any]]:
    if report is None:
        return []
    return [
        {"version": version, "verified": services.report_verify(version)}
        for version in selectors.report_versions(report).order_by("-number")
    ]


def _initial(version: ReportVersion | None, report: Report | None) -> dict[str, Any]:
    initial: dict[str, Any] = {"version": report.current_version if report else 0}
    if version is not None:
        initial.update({name: getattr(version, name) for name in TEXT_FIELDS})
    return initial


def _report_page(
    request: HttpRequest,
    study: Study,
    *,
    forms: dict[str, Any] | None = None,
    error: str = "",
    status: int = 200,
) -> HttpResponse:
    report = selectors.report_of_study(request.hospital, study)  # type: ignore[attr-defined]
    rows = _version_rows(report)
    current = rows[0]["version"] if rows else None
    initial = _initial(current, report)
    context: dict[str, Any] = {
        "study": study,
        "patient": _identity(study),
        "sex": study.patient.get_sex_display() if study.patient.sex else "",
        "report": report,
        "current": current,
        "current_verified": rows[0]["verified"] if rows else None,
        "rows": rows,
        "error": error,
        "draft_form": DraftForm(initial=initial),
        "sign_form": SignForm(initial=initial),
        "amend_form": AmendForm(initial=initial),
        "error_form": EnterInErrorForm(initial=initial),
        "diff_form": DiffForm(initial={"a": max(1, initial["version"] - 1), "b": initial["version"] or 1}),
        "editable": report is None or report.status in (Report.Status.DRAFT, Report.Status.PRELIMINARY),
        "signed": report is not None and report.is_signed,
        "entered_in_error": report is not None and report.status == Report.Status.ENTERED_IN_ERROR,
        "publication": publication_for(study),
    }
    context.update(forms or {})
    if report is not None:
        _audit(request, Action.REPORT_VIEWED, object_type="report", object_id=str(report.public_id),
               version=report.current_version, verified=[row["verified"] for row in rows])  # fmt: skip
    return render(request, "reports/report.html", context, status=status)


@require_GET
@hospital_staff_required
def report_page(request: HttpRequest, study_id: UUID) -> HttpResponse:
    _require_reader(request)
    return _report_page(request, _study(request, study_id))


def _error_text(error: ValidationError) -> str:
    if hasattr(error, "error_dict"):
        return " ".join(str(message) for messages_ in error.message_dict.values() for message in messages_)
    return " ".join(str(message) for message in error.messages)


def _write(request: HttpRequest, study: Study, form_name: str, form: Any, call: Any, *, done: str = "") -> HttpResponse:
    """Run one write; on success back to the report page with ``done`` (a message with
    ``%(number)s``, the new version), else the page again with the error (400 for bad input, 409
    for a stale version). The service wrote nothing in either case."""
    if not form.is_valid():
        return _report_page(request, study, forms={form_name: form}, error=_("Please correct the errors below."),
                            status=400)  # fmt: skip
    try:
        version = call(form.cleaned_data)
    except services.ReportConflict as conflict:
        message = _("Someone else changed this report meanwhile; nothing was saved. Reload and try again. (%(detail)s)")
        return _report_page(request, study, forms={form_name: form}, error=message % {"detail": conflict},
                            status=409)  # fmt: skip
    except ValidationError as invalid:
        return _report_page(request, study, forms={form_name: form}, error=_error_text(invalid), status=400)
    messages.success(request, (done or _("Saved as version %(number)s.")) % {"number": version.number})
    return redirect("reports_staff:report", request.hospital.code, study.public_id)  # type: ignore[attr-defined]


@require_POST
@hospital_staff_required
def draft_save(request: HttpRequest, study_id: UUID) -> HttpResponse:
    _require_reader(request)
    study = _study(request, study_id)
    report = selectors.report_of_study(request.hospital, study)  # type: ignore[attr-defined]
    form = DraftForm(request.POST)

    def call(data: dict[str, Any]) -> ReportVersion:
        fields = {name: data[name] for name in TEXT_FIELDS}
        if report is None:
            return services.report_create(hospital=request.hospital, study=study, actor=request.user,  # type: ignore[attr-defined]
                                          fields=fields, request=request)  # fmt: skip
        return services.report_save_draft(report=report, actor=request.user, expected_version=data["version"],
                                          fields=fields, preliminary=data["preliminary"], request=request)  # fmt: skip

    return _write(request, study, "draft_form", form, call)


def _existing_report(request: HttpRequest, study: Study) -> Report:
    report = selectors.report_of_study(request.hospital, study)  # type: ignore[attr-defined]
    if report is None:
        raise Http404
    return report


@require_POST
@hospital_staff_required
def sign(request: HttpRequest, study_id: UUID) -> HttpResponse:
    _require_reader(request)
    study = _study(request, study_id)
    report = _existing_report(request, study)
    return _write(request, study, "sign_form", SignForm(request.POST), lambda data: services.report_sign(
        report=report, actor=request.user, expected_version=data["version"], request=request),
        done=_("Signed off as final: version %(number)s."))  # fmt: skip


@require_POST
@hospital_staff_required
def amend(request: HttpRequest, study_id: UUID) -> HttpResponse:
    _require_reader(request)
    study = _study(request, study_id)
    report = _existing_report(request, study)
    form = AmendForm(request.POST)

    def call(data: dict[str, Any]) -> ReportVersion:
        current = selectors.report_version_or_404(report, report.current_version)
        changed = {name: data[name] for name in TEXT_FIELDS if data[name] != getattr(current, name)}
        return services.report_amend(report=report, actor=request.user, expected_version=data["version"],
                                     fields=changed, reason=data["reason"], request=request)  # fmt: skip

    return _write(request, study, "amend_form", form, call, done=_("Amendment signed: version %(number)s."))


@require_POST
@hospital_staff_required
def enter_in_error(request: HttpRequest, study_id: UUID) -> HttpResponse:
    _require_reader(request)
    study = _study(request, study_id)
    report = _existing_report(request, study)
    return _write(request, study, "error_form", EnterInErrorForm(request.POST), lambda data: (
        services.report_enter_in_error(report=report, actor=request.user, expected_version=data["version"],
                                       reason=data["reason"], request=request)),
        done=_("Marked entered in error: version %(number)s."))  # fmt: skip


@require_POST
@hospital_staff_required
def images_complete(request: HttpRequest, study_id: UUID) -> HttpResponse:
    """The staff "images complete" action; publishes the study if its report is signed."""
    from apps.reports.publication import study_images_mark_complete

    _require_reader(request)
    study = _study(request, study_id)
    study_images_mark_complete(actor=request.user, study=study, request=request)
    messages.success(request, _("The study's images are marked complete."))
    return redirect("reports_staff:report", request.hospital.code, study.public_id)  # type: ignore[attr-defined]


@require_GET
@hospital_staff_required
def diff(request: HttpRequest, study_id: UUID) -> HttpResponse:
    _require_reader(request)
    study = _study(request, study_id)
    report = _existing_report(request, study)
    form = DiffForm(request.GET)
    if not form.is_valid():
        return _report_page(request, study, forms={"diff_form": form}, error=_("Choose two version numbers."),
                            status=400)  # fmt: skip
    old = selectors.report_version_or_404(report, form.cleaned_data["a"])
    new = selectors.report_version_or_404(report, form.cleaned_data["b"])
    changes = services.version_diff(old, new)
    _audit(request, Action.REPORT_VIEWED, object_type="report", object_id=str(report.public_id),
           diff=[old.number, new.number], changed=sorted(changes))  # fmt: skip
    return render(request, "reports/diff.html", {
        "study": study, "report": report, "old": old, "new": new,
        "old_verified": services.report_verify(old), "new_verified": services.report_verify(new),
        "changes": [
            {"field": name, "label": CONTENT_LABELS.get(name, name), "old": before, "new": after}
            for name, (before, after) in changes.items()
        ],
    })  # fmt: skip


def _print_version(request: HttpRequest, study_id: UUID) -> ReportVersion:
    study = _study(request, study_id)
    report = _existing_report(request, study)
    raw = request.GET.get("v", "")
    if raw and not raw.isdigit():
        raise BadRequest(_("The version must be a number."))
    number = int(raw) if raw else report.current_version
    return selectors.report_version_or_404(report, number)


@require_GET
@hospital_staff_required
def print_page(request: HttpRequest, study_id: UUID) -> HttpResponse:
    _require_reader(request)
    version = _print_version(request, study_id)
    html = print_html(printed=printed_report(version=version), for_pdf=False, request=request)
    _audit(request, Action.REPORT_PRINTED, object_type="report", object_id=str(version.report.public_id),
           version=version.number, format="html")  # fmt: skip
    return HttpResponse(html)


@require_GET
@hospital_staff_required
def print_pdf(request: HttpRequest, study_id: UUID) -> HttpResponse:
    _require_reader(request)
    version = _print_version(request, study_id)
    try:
        pdf = report_pdf_bytes(version=version)
    except PdfUnavailable as unavailable:
        return HttpResponse(str(unavailable), status=503, content_type="text/plain; charset=utf-8")
    _audit(request, Action.REPORT_PRINTED, object_type="report", object_id=str(version.report.public_id),
           version=version.number, format="pdf")  # fmt: skip
    response = HttpResponse(pdf, content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="report-{version.report.public_id}-v{version.number}.pdf"'
    return response


@require_GET
def verify_page(request: HttpRequest, token: str) -> HttpResponse:
    """The page a printed report's QR code opens; anyone holding the printout may see it."""
    result = report_verify_token(token=token, request=request)
    if result is None:
        raise Http404
    response = render(request, "reports/verify.html", {"result": result, "version": result.version})
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response
