"""The staff screen that prints an exam slip's QR code (a new opaque token per print)."""

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_http_methods

from apps.audit.services import audit_record
from apps.audit.vocabulary import Action, EntryPoint
from apps.core.decorators import hospital_staff_required
from apps.imaging.models import Study
from apps.portal.models import EntryToken
from apps.portal.policy import policy_for
from apps.portal.qr import qr_svg
from apps.portal.services import entry_token_create, entry_token_expires_on, entry_token_url
from apps.reports.publication import unpublished_reasons
from apps.tenants.access import get_for_hospital_or_404


def _study(request: HttpRequest) -> Study:
    hospital = request.hospital  # type: ignore[attr-defined]
    values = request.POST if request.method == "POST" else request.GET
    uid, public_id = values.get("uid", "").strip(), values.get("study", "").strip()
    if public_id:
        return get_for_hospital_or_404(Study.objects.all(), hospital, public_id=public_id)
    if uid:
        return get_for_hospital_or_404(Study.objects.all(), hospital, study_instance_uid=uid)
    raise Http404


@hospital_staff_required
@require_http_methods(["GET", "POST"])
def slip(request: HttpRequest) -> HttpResponse:
    """GET: find the study (``?study=<public id>``, as the report screens link it, or
    ``?uid=<StudyInstanceUID>``) and say whether it is published, and if not why; POST: a new QR
    token for it, shown once (SVG, for printing) with the last day it works."""
    hospital = request.hospital  # type: ignore[attr-defined]
    if request.method == "GET" and not (request.GET.get("uid") or request.GET.get("study")):
        return render(request, "portal/staff_slip.html", {"hospital": hospital})
    study = _study(request)
    context = {"hospital": hospital, "study": study, "unpublished_reasons": unpublished_reasons(study)}
    if request.method == "POST":
        entry, raw = entry_token_create(actor=request.user, hospital=hospital, study=study, kind=EntryToken.Kind.QR)
        url = entry_token_url(hospital, entry, raw)
        audit_record(
            action=Action.PATIENT_RECORD_VIEWED, request=request, hospital=hospital, entry_point=EntryPoint.WEB,
            object_type="study", object_id=str(study.public_id), details={"qr_token": str(entry.public_id)},
        )  # fmt: skip
        # The SVG is generated here from our own URL; nothing in it comes from the user.
        context.update(
            url=url,
            svg=mark_safe(qr_svg(url)),  # noqa: S308 (our own markup from our own URL)
            expires_on=entry_token_expires_on(entry, policy_for(hospital)),
        )
    return render(request, "portal/staff_slip.html", context)
