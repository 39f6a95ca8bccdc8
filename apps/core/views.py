from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from apps.accounts.models import Membership
from apps.accounts.roles import HospitalRole
from apps.accounts.services import platform_roles
from apps.core.decorators import hospital_staff_required, is_fully_signed_in
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
    roles = platform_roles(request.user)
    return render(request, "core/home.html", {"hospitals": list(hospitals.values()), "platform_roles": roles})


@require_GET
@hospital_staff_required
def hospital_home(request: HttpRequest) -> HttpResponse:
    roles = request.hospital_roles  # type: ignore[attr-defined]
    can_upload = bool(roles & {HospitalRole.TECHNOLOGIST, HospitalRole.HOSPITAL_ADMIN})
    can_report = bool(
        roles & {HospitalRole.REPORTING_DOCTOR, HospitalRole.REVIEWING_DOCTOR, HospitalRole.HOSPITAL_ADMIN}
    )
    return render(
        request,
        "core/hospital_home.html",
        {"roles": sorted(roles), "can_upload": can_upload, "can_report": can_report},
    )
