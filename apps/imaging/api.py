"""The study manifest API for hospital systems: ``/api/<code>/studies/<study_uid>/manifest``.

Not a PS3.18 resource, so it sits beside ``dicom-web/`` rather than under it. PUT records (or
replaces) the series a study should hold and how many instances each, for the completeness check
(``apps.imaging.manifest``); GET reads it back with what is still missing. The study need not have
arrived yet: a manifest may come before its images.
"""

from typing import Any, ClassVar

from django.http import Http404
from django.utils.translation import gettext as _
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.request import Request
from rest_framework.response import Response

from apps.audit.services import audit_record
from apps.audit.vocabulary import Action, EntryPoint
from apps.imaging.manifest import ManifestError, manifest_shortfall, study_manifest_set
from apps.imaging.models import StudyManifest
from apps.tenants.api import HospitalAPIView


class ManifestInvalid(APIException):
    """400 with ``{"error": "invalid_manifest", "detail": <why>}``."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_manifest"


def manifest_json(manifest: StudyManifest, shortfall: dict[str, tuple[int, int]]) -> dict[str, Any]:
    return {
        "study_instance_uid": manifest.study_instance_uid,
        "series": manifest.series_counts,
        "expected_instances": manifest.expected_instances,
        "complete": not shortfall,
        "missing": {
            uid: {"expected": expected, "received": received} for uid, (expected, received) in shortfall.items()
        },
        "updated_at": manifest.updated_at.isoformat(),
    }


def _series_counts(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict) or set(data) != {"series"} or not isinstance(data["series"], dict):
        raise ManifestInvalid(
            _('Send a JSON object {"series": {"<Series Instance UID>": <number of instances>, ...}}.')
        )
    return data["series"]


class StudyManifestView(HospitalAPIView):
    required_scopes: ClassVar[dict[str, str]] = {"GET": "read", "HEAD": "read", "PUT": "write"}

    def get(self, request: Request, hospital_code: str, study_uid: str) -> Response:
        manifest = StudyManifest.objects.filter(hospital=self.hospital, study_instance_uid=study_uid).first()
        if manifest is None:
            raise Http404
        return Response(manifest_json(manifest, manifest_shortfall(hospital=self.hospital, manifest=manifest)))

    def put(self, request: Request, hospital_code: str, study_uid: str) -> Response:
        try:
            data = request.data
        except ParseError:
            raise ManifestInvalid(_("The request body is not valid JSON.")) from None
        try:
            manifest = study_manifest_set(
                hospital=self.hospital,
                study_instance_uid=study_uid,
                series_counts=_series_counts(data),
                actor=self.token,
            )
        except ManifestError as error:
            raise ManifestInvalid(str(error)) from None
        audit_record(
            action=Action.STUDY_MANIFEST_SET,
            request=request._request,
            hospital=self.hospital,
            entry_point=EntryPoint.API,
            object_type="study_manifest",
            object_id=str(manifest.public_id),
            details={
                "token": str(self.token.public_id),
                "series": len(manifest.series_counts),
                "expected_instances": manifest.expected_instances,
            },
        )
        shortfall = manifest_shortfall(hospital=self.hospital, manifest=manifest)
        return Response(manifest_json(manifest, shortfall), status=status.HTTP_200_OK)
