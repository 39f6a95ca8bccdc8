"""The one choke point for loading tenant-owned objects and resolving a request's hospital."""

from typing import Any

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest

from apps.tenants.context import activate_hospital
from apps.tenants.models import HOSPITAL_CODE_PATTERN, Hospital


def get_for_hospital_or_404[ModelT: Model](queryset: QuerySet[ModelT], hospital: Hospital, **lookup: Any) -> ModelT:
    """Load one object of ``hospital``; absent and belonging to another hospital look the same.

    Every view that loads a tenant-owned object by an id from the request goes through here. The
    404 says nothing about whether the object exists elsewhere.
    """
    try:
        return queryset.filter(hospital=hospital).get(**lookup)
    except (ObjectDoesNotExist, ValidationError, ValueError) as error:
        raise Http404 from error


def hospital_by_code_or_404(code: str) -> Hospital:
    """An active hospital by its URL code; unknown and suspended codes give the same 404."""
    if not HOSPITAL_CODE_PATTERN.fullmatch(code):
        raise Http404
    try:
        return Hospital.objects.get(code=code, status=Hospital.Status.ACTIVE)
    except Hospital.DoesNotExist as error:
        raise Http404 from error


def staff_hospital_resolve(request: HttpRequest, code: str) -> Hospital:
    """Resolve the hospital of a staff screen from the URL code and the user's memberships.

    Unknown code: 404. A signed-in user without any role there: 403. On success the hospital is
    active for the rest of the request's transaction and stored on ``request.hospital``.
    """
    from apps.accounts.services import hospital_roles

    hospital = hospital_by_code_or_404(code)
    roles = hospital_roles(request.user, hospital)
    if not roles:
        raise PermissionDenied
    activate_hospital(hospital)
    request.hospital = hospital  # type: ignore[attr-defined]
    request.hospital_roles = roles  # type: ignore[attr-defined]
    request.session["hospital_code"] = hospital.code
    return hospital
