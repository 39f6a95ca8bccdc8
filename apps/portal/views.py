"""Patient pages: sign-in by code, the studies, reports, viewer hand-off, downloads, sharing,
and the access history. Thin: each view parses, calls a service or selector, and renders."""

import contextlib
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import wraps
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from apps.audit.services import audit_record
from apps.audit.vocabulary import Action, EntryPoint, Outcome
from apps.imaging.export import ExportError, study_export_chunks
from apps.imaging.models import Patient
from apps.portal import selectors, sessions
from apps.portal.forms import CodeForm, HospitalForm, LoginForm, ShareForm
from apps.portal.models import PatientAccessPolicy, Share
from apps.portal.policy import policy_for
from apps.portal.services import public_url, share_create, share_is_live, share_revoke, wechat_bind
from apps.portal.verification import CodeRefused, code_issue_for_login, code_verify
from apps.reports.printing import PdfUnavailable, report_pdf_bytes
from apps.reports.publication import study_is_published
from apps.tenants.access import get_for_hospital_or_404, hospital_by_code_or_404
from apps.tenants.context import activate_hospital
from apps.tenants.models import Hospital
from apps.viewer.grants import viewer_grant_add, viewer_url

CHALLENGE_KEY = "portal_challenge"
SHARE_CREATED_KEY = "portal_share_created"
WECHAT_OPENID_KEY = "portal_wechat_openid"


def portal_hospital(request: HttpRequest, code: str) -> Hospital:
    """The hospital of a portal URL (404 for unknown or suspended), active for the request."""
    hospital = hospital_by_code_or_404(code)
    activate_hospital(hospital)
    request.hospital = hospital  # type: ignore[attr-defined]
    return hospital


def patient_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Portal pages of a signed-in patient; others go to the sign-in page of that hospital."""

    @wraps(view)
    def wrapper(request: HttpRequest, hospital_code: str, *args: Any, **kwargs: Any) -> Any:
        hospital = portal_hospital(request, hospital_code)
        patient = sessions.portal_session_patient(request, hospital)
        if patient is None:
            return redirect("portal:login", hospital.code)
        return view(request, hospital, patient, *args, **kwargs)

    return wrapper


def _identity_label(policy: PatientAccessPolicy) -> str:
    if policy.identity_check == PatientAccessPolicy.IdentityCheck.BIRTH_DATE:
        return _("Date of birth (YYYY-MM-DD)")
    return _("Last four characters of your ID-card number")


def challenge_remember(
    request: HttpRequest, hospital: Hospital, challenge_id: str, *, study_id: str = "", entry: str
) -> None:
    request.session[CHALLENGE_KEY] = {
        "hospital": str(hospital.public_id), "challenge": challenge_id, "study": study_id, "entry": entry,
    }  # fmt: skip


def index(request: HttpRequest) -> HttpResponse:
    """Choose the hospital by its code (the form's ``?hospital=``; ``?h=`` from printed links and
    QR codes goes straight to its sign-in page too)."""
    submitted = "hospital" in request.GET or "h" in request.GET
    form = HospitalForm({"hospital": request.GET.get("hospital", request.GET.get("h", ""))} if submitted else None)
    if form.is_valid():
        try:
            hospital = hospital_by_code_or_404(form.cleaned_data["hospital"].strip().lower())
        except Http404:
            form.add_error("hospital", _("No hospital has this code."))
        else:
            return redirect("portal:login", hospital.code)
    return render(request, "portal/index.html", {"form": form})


def login(request: HttpRequest, hospital_code: str) -> HttpResponse:
    """Phone number + identity check -> a code by SMS (the same answer whether or not they match)."""
    hospital = portal_hospital(request, hospital_code)
    policy = policy_for(hospital)
    form = LoginForm(request.POST or None)
    form.fields["identity"].label = _identity_label(policy)
    error = ""
    if request.method == "POST" and form.is_valid():
        try:
            challenge = code_issue_for_login(
                request=request, hospital=hospital, phone=form.cleaned_data["phone"],
                identity=form.cleaned_data["identity"],
                entry_point="wechat" if request.session.get(WECHAT_OPENID_KEY) else "login",
            )  # fmt: skip
        except CodeRefused as refused:
            error = str(refused)
        else:
            previous = request.session.get(CHALLENGE_KEY) or {}
            challenge_remember(request, hospital, str(challenge.public_id), study_id=previous.get("study", ""),
                               entry=challenge.entry_point)  # fmt: skip
            return redirect("portal:verify", hospital.code)
    status = 429 if error else 200
    return render(request, "portal/login.html", {"hospital": hospital, "form": form, "error": error}, status=status)


def verify(request: HttpRequest, hospital_code: str) -> HttpResponse:
    """Enter the code; on success a patient session starts and the entry's study opens."""
    hospital = portal_hospital(request, hospital_code)
    pending = request.session.get(CHALLENGE_KEY)
    if not isinstance(pending, dict) or pending.get("hospital") != str(hospital.public_id):
        return redirect("portal:login", hospital.code)
    form = CodeForm(request.POST or None)
    error = ""
    if request.method == "POST":
        if not form.is_valid():
            error = _("Enter the six digits of the code.")
        else:
            result = code_verify(
                request=request, hospital=hospital, challenge_id=pending["challenge"], code=form.cleaned_data["code"]
            )
            if result.patient is not None:
                openid = request.session.get(WECHAT_OPENID_KEY)
                sessions.portal_session_start(
                    request=request, hospital=hospital, patient=result.patient, entry_point=pending.get("entry", "")
                )
                if openid:
                    wechat_bind(request=request, hospital=hospital, patient=result.patient, openid=openid)
                request.session.pop(WECHAT_OPENID_KEY, None)
                request.session.pop(CHALLENGE_KEY, None)
                study = result.study
                if study is None and pending.get("study"):
                    study = result.patient.studies.filter(public_id=pending["study"]).first()
                # Withdrawn between the code and now: the list, not a bare 404.
                if study is not None and study_is_published(study):
                    return redirect("portal:study", hospital.code, study.public_id)
                return redirect("portal:home", hospital.code)
            error = result.error
    return render(
        request, "portal/verify.html", {"hospital": hospital, "form": form, "error": error},
        status=400 if error else 200,
    )  # fmt: skip


@require_POST
def logout(request: HttpRequest, hospital_code: str) -> HttpResponse:
    hospital = portal_hospital(request, hospital_code)
    sessions.portal_session_end(request=request, hospital=hospital)
    return render(request, "portal/signed_out.html", {"hospital": hospital})


@patient_required
def home(request: HttpRequest, hospital: Hospital, patient: Patient) -> HttpResponse:
    policy = policy_for(hospital)
    rows = selectors.patient_studies(hospital=hospital, patient=patient, policy=policy)
    return render(request, "portal/home.html", {"hospital": hospital, "rows": rows, "policy": policy})


def _expired_response(
    request: HttpRequest, hospital: Hospital, patient: Patient, row: selectors.PatientStudy
) -> HttpResponse:
    audit_record(
        action=Action.STUDY_ACCESS_EXPIRED, request=request, hospital=hospital,
        actor_name=f"patient:{patient.public_id}", actor_role="patient", entry_point=EntryPoint.PORTAL,
        outcome=Outcome.MINOR_FAILURE, object_type="study", object_id=str(row.study.public_id),
        details={"period_end": row.period_end.isoformat()},
    )  # fmt: skip
    return render(request, "portal/expired.html", {"hospital": hospital, "row": row}, status=410)


def _row(hospital: Hospital, patient: Patient, study_id: Any) -> selectors.PatientStudy:
    return selectors.patient_study_or_404(
        hospital=hospital, patient=patient, study_id=str(study_id), policy=policy_for(hospital)
    )


@patient_required
def study(request: HttpRequest, hospital: Hospital, patient: Patient, study_id: Any) -> HttpResponse:
    row = _row(hospital, patient, study_id)
    if row.expired:
        return _expired_response(request, hospital, patient, row)
    policy = policy_for(hospital)
    audit_record(
        action=Action.REPORT_VIEWED, request=request, hospital=hospital, actor_name=f"patient:{patient.public_id}",
        actor_role="patient", entry_point=EntryPoint.PORTAL, object_type="study", object_id=str(row.study.public_id),
        details={"version": row.report.number if row.report else None},
    )  # fmt: skip
    context = {"hospital": hospital, "row": row, "policy": policy, "share_form": ShareForm()}
    return render(request, "portal/study.html", context)


def _session_expiry(request: HttpRequest) -> datetime:
    data = request.session.get(sessions.SESSION_KEY) or {}
    return datetime.fromtimestamp(int(data.get("expires", 0)), tz=timezone.get_current_timezone())


@require_POST
@patient_required
def view_images(request: HttpRequest, hospital: Hospital, patient: Patient, study_id: Any) -> HttpResponse:
    """Grant this session the study in the viewer (until the patient session ends) and go there."""
    row = _row(hospital, patient, study_id)
    if row.expired:
        return _expired_response(request, hospital, patient, row)
    viewer_grant_add(request, study=row.study, mode="patient", expires_at=_session_expiry(request))
    return HttpResponseRedirect(viewer_url(row.study))


DOWNLOAD_SALT = "portal-download"


@require_POST
@patient_required
def download_link(request: HttpRequest, hospital: Hospital, patient: Patient, study_id: Any) -> HttpResponse:
    """A time-limited download URL for this patient's session (policy permitting)."""
    row = _row(hospital, patient, study_id)
    if row.expired:
        return _expired_response(request, hospital, patient, row)
    if not policy_for(hospital).downloads_allowed:
        return render(
            request,
            "portal/message.html",
            {"hospital": hospital, "message": _("This hospital does not offer downloads.")},
            status=403,
        )
    signed = signing.dumps({"s": str(row.study.public_id), "p": str(patient.public_id)}, salt=DOWNLOAD_SALT)
    return redirect("portal:download_file", hospital.code, signed)


@patient_required
def download_file(
    request: HttpRequest, hospital: Hospital, patient: Patient, signed: str
) -> HttpResponse | StreamingHttpResponse:
    """Stream the study as a zip (DICOM file-set + DICOMDIR + REPORT.PDF); audited."""
    try:
        data = signing.loads(signed, salt=DOWNLOAD_SALT, max_age=settings.PORTAL_DOWNLOAD_LINK_SECONDS)
    except signing.SignatureExpired:
        return render(
            request,
            "portal/message.html",
            {"hospital": hospital, "message": _("This download link has expired. Please start the download again.")},
            status=410,
        )
    except signing.BadSignature as error:
        raise Http404 from error
    if data.get("p") != str(patient.public_id):
        raise Http404
    row = _row(hospital, patient, data.get("s"))
    if row.expired:
        return _expired_response(request, hospital, patient, row)
    if not policy_for(hospital).downloads_allowed:
        raise Http404
    extra: dict[str, bytes] = {}
    if row.report is not None:
        # Without Pango on the machine the images still download, without the PDF.
        with contextlib.suppress(PdfUnavailable):
            extra["REPORT.PDF"] = report_pdf_bytes(version=row.report)
    try:
        chunks: Iterator[bytes] = study_export_chunks(study=row.study, extra_files=extra)
    except ExportError:
        return render(
            request,
            "portal/message.html",
            {"hospital": hospital, "message": _("The images of this study are not available for download yet.")},
            status=409,
        )
    audit_record(
        action=Action.STUDY_DOWNLOADED, request=request, hospital=hospital, actor_name=f"patient:{patient.public_id}",
        actor_role="patient", entry_point=EntryPoint.PORTAL, object_type="study", object_id=str(row.study.public_id),
        details={"report_pdf": "REPORT.PDF" in extra},
    )  # fmt: skip
    response = StreamingHttpResponse(chunks, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="YX-{row.study.public_id.hex[:12]}.zip"'
    return response


@require_POST
@patient_required
def share_new(request: HttpRequest, hospital: Hospital, patient: Patient, study_id: Any) -> HttpResponse:
    row = _row(hospital, patient, study_id)
    if row.expired:
        return _expired_response(request, hospital, patient, row)
    if not policy_for(hospital).sharing_allowed:
        return render(
            request,
            "portal/message.html",
            {"hospital": hospital, "message": _("This hospital does not offer sharing.")},
            status=403,
        )
    form = ShareForm(request.POST)
    if not form.is_valid():
        return render(
            request,
            "portal/message.html",
            {"hospital": hospital, "message": _("Choose how long the link stays valid.")},
            status=400,
        )
    try:
        share, raw, access_code = share_create(
            request=request, hospital=hospital, patient=patient, study=row.study, hours=form.cleaned_data["hours"]
        )
    except ValidationError:
        return render(
            request,
            "portal/message.html",
            {"hospital": hospital, "message": _("Choose how long the link stays valid.")},
            status=400,
        )
    # Post/redirect/get: a reload must not create a second share. The link and the code are
    # kept in the (server-side) session only until the next page shows them, once.
    request.session[SHARE_CREATED_KEY] = {
        "share": str(share.public_id),
        "link": public_url(reverse("portal:share_open", args=[hospital.code, raw])),
        "access_code": access_code,
    }
    return redirect("portal:share_created", hospital.code, share.public_id)


@patient_required
def share_created(request: HttpRequest, hospital: Hospital, patient: Patient, share_id: Any) -> HttpResponse:
    """The new share's link and access code, shown once; shown again, the page says so."""
    share = get_for_hospital_or_404(
        Share.objects.filter(patient=patient).select_related("study"), hospital, public_id=share_id
    )
    created = request.session.get(SHARE_CREATED_KEY)
    shown: dict[str, str] = {}
    if isinstance(created, dict) and created.get("share") == str(share.public_id):
        shown = request.session.pop(SHARE_CREATED_KEY)
    return render(
        request,
        "portal/share_created.html",
        {"hospital": hospital, "share": share, "link": shown.get("link", ""),
         "access_code": shown.get("access_code", "")},
    )  # fmt: skip


@patient_required
def shares(request: HttpRequest, hospital: Hospital, patient: Patient) -> HttpResponse:
    items = [
        (share, selectors.share_uses(hospital=hospital, share=share))
        for share in selectors.patient_shares(hospital=hospital, patient=patient)
    ]
    return render(
        request,
        "portal/shares.html",
        {"hospital": hospital, "items": [(s, uses, share_is_live(s)) for s, uses in items]},
    )


@require_POST
@patient_required
def share_withdraw(request: HttpRequest, hospital: Hospital, patient: Patient, share_id: Any) -> HttpResponse:
    share = get_for_hospital_or_404(
        Share.objects.filter(patient=patient).select_related("study", "patient"), hospital, public_id=share_id
    )
    share_revoke(request=request, share=share)
    return redirect("portal:shares", hospital.code)


@patient_required
def history(request: HttpRequest, hospital: Hospital, patient: Patient) -> HttpResponse:
    entries = selectors.access_history(hospital=hospital, patient=patient)
    return render(request, "portal/history.html", {"hospital": hospital, "entries": entries})
