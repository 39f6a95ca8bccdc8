"""The report API for a hospital's RIS: ``/api/<code>/reports/studies/<study_uid>/report...``.

A bearer token is not a person, so each write names the acting doctor by username (``author``
for a new draft, ``signer`` for sign-off and amendment); that user must hold the required role
at the token's hospital, else 403. Text fields are stored as given, HTML or script included:
they are data, and every renderer escapes them.
"""

import base64
from typing import Any, ClassVar

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.models import User
from apps.accounts.services import hospital_roles
from apps.audit.services import audit_record
from apps.audit.vocabulary import Action, EntryPoint
from apps.reports import selectors, services
from apps.reports.models import ReportVersion
from apps.reports.signing import TEXT_FIELDS
from apps.tenants.api import HospitalAPIView


def _username(user: Any) -> str | None:
    return user.get_username() if user is not None else None


def version_json(version: ReportVersion) -> dict[str, Any]:
    return {
        "number": version.number,
        "status": version.status,
        **{name: getattr(version, name) for name in TEXT_FIELDS},
        "reporting_doctor": _username(version.reporting_doctor),
        "reviewing_doctor": _username(version.reviewing_doctor),
        "author": _username(version.author),
        "reason": version.reason,
        "content_sha256": version.content_sha256,
        "signature": base64.b64encode(bytes(version.signature)).decode() if version.signature is not None else None,
        "signed_by": _username(version.signed_by),
        "signed_at": version.signed_at.isoformat() if version.signed_at else None,
        "created_at": version.created_at.isoformat(),
        "verified": services.report_verify(version),
    }


class ReportAPIView(HospitalAPIView):
    required_scopes: ClassVar[dict[str, str]] = {"GET": "read", "HEAD": "read", "POST": "write"}

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, services.ReportConflict):
            return Response({"error": "conflict", "detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        if isinstance(exc, ValidationError):
            fields = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
            return Response(
                {"error": "invalid", "detail": _("The request is not valid."), "fields": fields},
                status=status.HTTP_400_BAD_REQUEST,
            )
        if isinstance(exc, DjangoPermissionDenied):
            detail = str(exc) or _("You may not do this.")
            return Response({"error": "permission_denied", "detail": detail}, status=status.HTTP_403_FORBIDDEN)
        return super().handle_exception(exc)

    def body(self, request: Request) -> dict[str, Any]:
        if not isinstance(request.data, dict):
            raise ValidationError(_("The body must be a JSON object."))
        return dict(request.data)

    def person(self, body: dict[str, Any], key: str) -> User:
        """The named staff user; unknown names and non-members get the same 403."""
        username = body.get(key)
        user = User.objects.filter(username=username, is_active=True).first() if isinstance(username, str) else None
        if user is None or not hospital_roles(user, self.hospital):
            raise DjangoPermissionDenied(_("The named user holds no role at this hospital."))
        return user

    @staticmethod
    def version_number(body: dict[str, Any]) -> int:
        number = body.get("version")
        if isinstance(number, bool) or not isinstance(number, int):
            raise ValidationError({"version": _("The current version number is required.")})
        return number

    @staticmethod
    def fields(body: dict[str, Any]) -> dict[str, Any]:
        return {name: body[name] for name in TEXT_FIELDS if name in body}

    def audit_read(self, request: Request, report_id: str, details: dict[str, Any]) -> None:
        audit_record(
            action=Action.REPORT_VIEWED, request=request._request, hospital=self.hospital,
            entry_point=EntryPoint.API, actor_name=self.token.actor_name, object_type="report",
            object_id=report_id, details={"token": str(self.token.public_id), **details},
        )  # fmt: skip

    def write_context(self, request: Request) -> dict[str, Any]:
        return {"request": request._request, "entry_point": EntryPoint.API}


class ReportView(ReportAPIView):
    def get(self, request: Request, hospital_code: str, study_uid: str) -> Response:
        study = selectors.study_by_uid_or_404(self.hospital, study_uid)
        report = selectors.report_for_study_or_404(self.hospital, study)
        versions = list(selectors.report_versions(report))
        self.audit_read(request, str(report.public_id), {"version": report.current_version})
        return Response(
            {
                "report": str(report.public_id),
                "study": study.study_instance_uid,
                "status": report.status,
                "current_version": report.current_version,
                "version": version_json(versions[-1]),
                "versions": [
                    {
                        "number": v.number,
                        "status": v.status,
                        "author": _username(v.author),
                        "created_at": v.created_at.isoformat(),
                        "content_sha256": v.content_sha256,
                    }
                    for v in versions
                ],
            }
        )

    def post(self, request: Request, hospital_code: str, study_uid: str) -> Response:
        study = selectors.study_by_uid_or_404(self.hospital, study_uid)
        body = self.body(request)
        version = services.report_create(
            hospital=self.hospital, study=study, actor=self.person(body, "author"), fields=self.fields(body),
            **self.write_context(request),
        )  # fmt: skip
        return Response(version_json(version), status=status.HTTP_201_CREATED)


class ReportSignView(ReportAPIView):
    def post(self, request: Request, hospital_code: str, study_uid: str) -> Response:
        report = selectors.report_for_study_or_404(
            self.hospital, selectors.study_by_uid_or_404(self.hospital, study_uid)
        )
        body = self.body(request)
        version = services.report_sign(
            report=report, actor=self.person(body, "signer"), expected_version=self.version_number(body),
            **self.write_context(request),
        )  # fmt: skip
        return Response(version_json(version), status=status.HTTP_201_CREATED)


class ReportAmendView(ReportAPIView):
    def post(self, request: Request, hospital_code: str, study_uid: str) -> Response:
        report = selectors.report_for_study_or_404(
            self.hospital, selectors.study_by_uid_or_404(self.hospital, study_uid)
        )
        body = self.body(request)
        version = services.report_amend(
            report=report, actor=self.person(body, "signer"), expected_version=self.version_number(body),
            fields=self.fields(body), reason=body.get("reason", ""), **self.write_context(request),
        )  # fmt: skip
        return Response(version_json(version), status=status.HTTP_201_CREATED)


class ReportDraftView(ReportAPIView):
    """Save a new draft (or, with ``"preliminary": true``, preliminary) version of an unsigned report."""

    def post(self, request: Request, hospital_code: str, study_uid: str) -> Response:
        report = selectors.report_for_study_or_404(
            self.hospital, selectors.study_by_uid_or_404(self.hospital, study_uid)
        )
        body = self.body(request)
        preliminary = body.get("preliminary", False)
        if not isinstance(preliminary, bool):
            raise ValidationError({"preliminary": _("Must be true or false.")})
        version = services.report_save_draft(
            report=report, actor=self.person(body, "author"), expected_version=self.version_number(body),
            fields=self.fields(body), preliminary=preliminary, **self.write_context(request),
        )  # fmt: skip
        return Response(version_json(version), status=status.HTTP_201_CREATED)


class ReportEnterInErrorView(ReportAPIView):
    def post(self, request: Request, hospital_code: str, study_uid: str) -> Response:
        report = selectors.report_for_study_or_404(
            self.hospital, selectors.study_by_uid_or_404(self.hospital, study_uid)
        )
        body = self.body(request)
        version = services.report_enter_in_error(
            report=report, actor=self.person(body, "signer"), expected_version=self.version_number(body),
            reason=body.get("reason", ""), **self.write_context(request),
        )  # fmt: skip
        return Response(version_json(version), status=status.HTTP_201_CREATED)


class ReportVersionView(ReportAPIView):
    def get(self, request: Request, hospital_code: str, study_uid: str, number: int) -> Response:
        report = selectors.report_for_study_or_404(
            self.hospital, selectors.study_by_uid_or_404(self.hospital, study_uid)
        )
        version = selectors.report_version_or_404(report, number)
        self.audit_read(request, str(report.public_id), {"version": number})
        return Response(version_json(version))


class ReportDiffView(ReportAPIView):
    def get(self, request: Request, hospital_code: str, study_uid: str) -> Response:
        report = selectors.report_for_study_or_404(
            self.hospital, selectors.study_by_uid_or_404(self.hospital, study_uid)
        )
        numbers = {}
        for key in ("a", "b"):
            raw = request.query_params.get(key, "")
            if not raw.isdigit():
                raise ValidationError({key: _("A version number is required.")})
            numbers[key] = int(raw)
        old = selectors.report_version_or_404(report, numbers["a"])
        new = selectors.report_version_or_404(report, numbers["b"])
        self.audit_read(request, str(report.public_id), {"diff": [old.number, new.number]})
        changes = services.version_diff(old, new)
        return Response(
            {"a": old.number, "b": new.number, "changes": {k: {"old": o, "new": n} for k, (o, n) in changes.items()}}
        )
