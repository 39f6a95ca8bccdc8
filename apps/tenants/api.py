"""The base of every hospital API endpoint: ``/api/<code>/...`` with a bearer token.

One base view resolves the hospital from the URL and the token and checks a per-method scope map
(after Sentry's OrganizationEndpoint). Missing or malformed token: 401 with a JSON error. A valid
token of another hospital, or an unknown hospital code: 404.
"""

import re
from datetime import timedelta
from typing import Any, ClassVar

from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext as _
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from apps.tenants.access import hospital_by_code_or_404
from apps.tenants.context import activate_hospital, bind_token_hash
from apps.tenants.models import ApiToken, Hospital
from apps.tenants.services import token_hash

LAST_USED_RESOLUTION = timedelta(minutes=1)
_TOKEN_PATTERN = re.compile(r"^yxy_[A-Za-z0-9_-]{40,64}$")


class ApiAuthenticationFailed(exceptions.AuthenticationFailed):
    pass


class HospitalAPIView(APIView):
    """Subclasses declare ``required_scopes`` per HTTP method and use ``self.hospital``."""

    required_scopes: ClassVar[dict[str, str]] = {"GET": "read", "HEAD": "read", "OPTIONS": "read"}
    hospital: Hospital
    token: ApiToken

    def get_authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self.hospital, self.token = self._resolve(request, kwargs["hospital_code"])

    def _audit_failure(self, request: Request, hospital: Hospital | None, reason: str) -> None:
        from apps.audit.services import audit_record
        from apps.audit.vocabulary import Action, EntryPoint, Outcome

        audit_record(
            action=Action.API_AUTH_FAILED,
            request=request._request,
            hospital=hospital,
            entry_point=EntryPoint.API,
            outcome=Outcome.MINOR_FAILURE,
            details={"reason": reason, "path": request.path},
        )

    def _refuse(self, request: Request, hospital: Hospital | None, reason: str) -> None:
        self._audit_failure(request, hospital, reason)
        raise ApiAuthenticationFailed(_("A valid bearer token is required."))

    def _resolve(self, request: Request, code: str) -> tuple[Hospital, ApiToken]:
        hospital = hospital_by_code_or_404(code)
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _sep, raw = header.partition(" ")
        if scheme.lower() != "bearer" or not raw:
            self._refuse(request, hospital, "missing")
        if not _TOKEN_PATTERN.match(raw.strip()):
            self._refuse(request, hospital, "malformed")
        digest = token_hash(raw.strip())
        bind_token_hash(digest)
        token = ApiToken.objects.filter(token_hash=digest).first()
        if token is None or token.revoked_at is not None:
            self._refuse(request, hospital, "unknown" if token is None else "revoked")
        assert token is not None
        if token.hospital_id != hospital.pk:
            # A real token of another hospital: the same 404 as an absent hospital, and a record.
            self._audit_failure(request, hospital, "other_hospital")
            raise Http404
        activate_hospital(hospital)
        method = (request.method or "GET").lower()
        if method not in self.http_method_names or not hasattr(self, method):
            # Not a right the token lacks: the resource has no such method.
            raise exceptions.MethodNotAllowed(request.method or "")
        needed = self.required_scopes.get(request.method or "GET")
        if needed is None or needed not in token.scopes:
            raise exceptions.PermissionDenied(_("This token does not allow this operation."))
        # At most once a minute: the row stays locked until the request commits, and every
        # concurrent request with this token would otherwise queue behind it.
        now = timezone.now()
        if token.last_used_at is None or token.last_used_at < now - LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return hospital, token


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF errors as ``{"error": code, "detail": message}``; 404 without detail."""
    if isinstance(exc, RequestDataTooBig):
        # Django's own answer would be its HTML 400 page.
        return Response(
            {"error": "too_large", "detail": _("The request is larger than this server accepts.")},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if response.status_code == status.HTTP_404_NOT_FOUND:
        response.data = {"error": "not_found", "detail": _("Not found.")}
    elif isinstance(exc, exceptions.APIException):
        response.data = {"error": exc.default_code, "detail": response.data.get("detail", response.data)}
    return response
