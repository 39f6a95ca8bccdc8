from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views import defaults
from django.views.decorators.http import require_GET

from apps.accounts.models import Membership
from apps.accounts.roles import HospitalRole, PlatformRole
from apps.accounts.services import platform_roles
from apps.core.decorators import hospital_staff_required, is_fully_signed_in, may_use_back_office
from apps.core.health import health_report


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    report = health_report()
    healthy = all(value in {"ok", "in-process"} for value in report.values())
    return JsonResponse({"status": "ok" if healthy else "error", **report}, status=200 if healthy else 503)


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """The staff start page: the hospitals where the user has a role, and platform duties."""
    if not is_fully_signed_in(request):
        return redirect("accounts:login")
    memberships = (
        Membership.objects.filter(user_id=request.user.pk or 0).select_related("hospital").order_by("hospital__code")
    )
    hospitals: dict[str, dict] = {}
    for membership in memberships:
        entry = hospitals.setdefault(membership.hospital.code, {"hospital": membership.hospital, "roles": []})
        entry["roles"].append(membership.get_role_display())
    held = platform_roles(request.user)
    duties = [str(role.label) for role in PlatformRole if role in held]
    context = {"hospitals": list(hospitals.values()), "platform_roles": duties,
               "back_office": may_use_back_office(request)}  # fmt: skip
    return render(request, "core/home.html", context)


@require_GET
@hospital_staff_required
def hospital_home(request: HttpRequest) -> HttpResponse:
    roles = request.hospital_roles  # type: ignore[attr-defined]
    can_upload = bool(roles & {HospitalRole.TECHNOLOGIST, HospitalRole.HOSPITAL_ADMIN})
    can_report = bool(
        roles & {HospitalRole.REPORTING_DOCTOR, HospitalRole.REVIEWING_DOCTOR, HospitalRole.HOSPITAL_ADMIN}
    )
    context = {
        "roles": [str(role.label) for role in HospitalRole if role in roles],
        "can_upload": can_upload,
        "can_report": can_report,
        "back_office": may_use_back_office(request),
    }
    return render(request, "core/hospital_home.html", context)


# Patients' and shared doctors' pages: their errors stay in the portal's layout, with the way back
# to the portal rather than to the staff start page.
PATIENT_PATH_PREFIXES = ("/portal/", "/s/")
STAFF_PATH_PREFIXES = ("/portal/staff/",)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """The 404 page: the portal's for patient-facing URLs, else Django's (``404.html``). The
    same text whatever was not found, so it says nothing about what exists."""
    if request.path.startswith("/api/"):
        # API clients get JSON, as every other API answer is.
        return JsonResponse({"error": "not_found", "detail": _("Not found.")}, status=404)
    if request.path.startswith(PATIENT_PATH_PREFIXES) and not request.path.startswith(STAFF_PATH_PREFIXES):
        hospital = getattr(request, "hospital", None)
        return render(request, "portal/not_found.html", {"hospital": hospital}, status=404)
    return defaults.page_not_found(request, exception)
