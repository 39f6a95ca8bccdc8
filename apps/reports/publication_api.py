"""Publication through the hospital's RIS: ``/api/<code>/reports/studies/<study_uid>/publication``.

GET tells whether the patient can see the study; ``images-complete`` declares the images
complete (which publishes the study once its report is signed); ``withdraw`` hides it again with
a reason. The acting person is named by username, as in the report API.
"""

from typing import Any

from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.audit.vocabulary import EntryPoint
from apps.reports import publication, selectors
from apps.reports.api import ReportAPIView
from apps.reports.models import StudyPublication


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def publication_json(row: StudyPublication | None) -> dict[str, Any]:
    if row is None:
        return {"published": False, "images_complete_at": None, "published_at": None, "withdrawn_at": None}
    return {
        "published": row.is_visible,
        "images_complete_at": _iso(row.images_complete_at),
        "images_complete_source": row.images_complete_source or None,
        "report_approved_at": _iso(row.report_approved_at),
        "published_at": _iso(row.published_at),
        "approval_to_publication_seconds": row.approval_to_publication_seconds,
        "withdrawn_at": _iso(row.withdrawn_at),
        "withdrawn_reason": row.withdrawn_reason or None,
    }


class PublicationView(ReportAPIView):
    def get(self, request: Request, hospital_code: str, study_uid: str) -> Response:
        study = selectors.study_by_uid_or_404(self.hospital, study_uid)
        return Response(publication_json(publication.publication_for(study)))


class ImagesCompleteView(ReportAPIView):
    def post(self, request: Request, hospital_code: str, study_uid: str) -> Response:
        study = selectors.study_by_uid_or_404(self.hospital, study_uid)
        body = self.body(request)
        row = publication.study_images_mark_complete(
            actor=self.person(body, "actor"), study=study, request=request._request, entry_point=EntryPoint.API
        )
        return Response(publication_json(row), status=status.HTTP_200_OK)


class WithdrawView(ReportAPIView):
    def post(self, request: Request, hospital_code: str, study_uid: str) -> Response:
        study = selectors.study_by_uid_or_404(self.hospital, study_uid)
        body = self.body(request)
        row = publication.study_unpublish(
            actor=self.person(body, "actor"),
            study=study,
            reason=body.get("reason"),  # type: ignore[arg-type]
            request=request._request,
            entry_point=EntryPoint.API,
        )
        return Response(publication_json(row), status=status.HTTP_200_OK)
