from typing import Any, ClassVar

from django.http import HttpRequest

from apps.tenants.api import HospitalAPIView

DICOM_JSON = "application/dicom+json"


class DicomWebView(HospitalAPIView):
    """Every DICOMweb endpoint: hospital from URL and token; read for GET, write for POST."""

    required_scopes: ClassVar[dict[str, str]] = {"GET": "read", "HEAD": "read", "POST": "write"}

    def base_url(self, request: HttpRequest) -> str:
        return request.build_absolute_uri(f"/api/{self.hospital.code}/dicom-web")

    def study_url(self, request: HttpRequest, study_uid: str) -> str:
        return f"{self.base_url(request)}/studies/{study_uid}"

    def series_url(self, request: HttpRequest, study_uid: str, series_uid: str) -> str:
        return f"{self.study_url(request, study_uid)}/series/{series_uid}"

    def instance_url(self, request: HttpRequest, study_uid: str, series_uid: str, sop_uid: str) -> str:
        return f"{self.series_url(request, study_uid, series_uid)}/instances/{sop_uid}"

    def perform_content_negotiation(self, request: Any, force: bool = False) -> Any:
        # Successful responses are built by hand (DICOM JSON, multipart/related); errors are JSON
        # whatever the client asked for.
        return super().perform_content_negotiation(request, force=True)
