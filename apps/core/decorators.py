from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse

from apps.tenants.access import staff_hospital_resolve


def is_fully_signed_in(request: HttpRequest) -> bool:
    """Signed in, and past the second factor where it is required."""
    user = request.user
    if not user.is_authenticated or not user.is_active:
        return False
    return not settings.STAFF_OTP_REQUIRED or bool(user.is_verified())  # type: ignore[union-attr,attr-defined]


def may_use_back_office(request: HttpRequest) -> bool:
    """Whether the back office (``/admin/``) lets this user in: as ``BackOfficeSite`` decides it,
    a platform duty with back-office screens, or hospital admin at an active hospital. Used to
    show the back-office link only to those it does not answer 403."""
    from apps.accounts.models import Membership
    from apps.accounts.roles import BACK_OFFICE_DUTIES, HospitalRole
    from apps.accounts.services import platform_roles
    from apps.tenants.models import Hospital

    if not is_fully_signed_in(request):
        return False
    if platform_roles(request.user) & BACK_OFFICE_DUTIES:
        return True
    return Membership.objects.filter(
        user_id=request.user.pk or 0, role=HospitalRole.HOSPITAL_ADMIN, hospital__status=Hospital.Status.ACTIVE
    ).exists()


def staff_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not is_fully_signed_in(request):
            return redirect_to_login(request.get_full_path())
        return view(request, *args, **kwargs)

    return wrapper


def hospital_staff_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """For views under ``/h/<hospital_code>/``: signed in, and a role at that hospital."""

    @wraps(view)
    def wrapper(request: HttpRequest, hospital_code: str, *args: Any, **kwargs: Any) -> HttpResponse:
        if not is_fully_signed_in(request):
            return redirect_to_login(request.get_full_path())
        staff_hospital_resolve(request, hospital_code)
        return view(request, *args, **kwargs)

    return wrapper
