import json
import logging
from typing import Any, ClassVar

from django.http import HttpRequest, HttpResponse

from apps.audit.services import audit_record
from apps.audit.vocabulary import Action, EntryPoint, Outcome
from apps.imaging.crypto import CryptoIntegrityError
from apps.tenants.api import HospitalAPIView

DICOM_JSON = "application/dicom+json"

logger = logging.getLogger(__name__)


def json_error(status: int, code: str, detail: str) -> HttpResponse:
    """The error shape of every API endpoint: ``{"error": code, "detail": message}``."""
    return HttpResponse(json.dumps({"error": code, "detail": detail}), status=status, content_type="application/json")


class DicomWebView(HospitalAPIView):
    """Every DICOMweb endpoint: hospital from URL and token; read for GET, write for POST."""

    required_scopes: ClassVar[dict[str, str]] = {"GET": "read", "HEAD": "read", "POST": "write"}

    def audit(self, request: Any, action: Action, *, object_type: str = "", object_id: str = "",
              details: dict[str, Any] | None = None, outcome: Outcome = Outcome.SUCCESS) -> None:  # fmt: skip
        """Record an access by this token. Details carry counts and keys, never patient values."""
        audit_record(
            action=action, request=request._request, hospital=self.hospital, entry_point=EntryPoint.API,
            actor_name=self.token.actor_name, object_type=object_type, object_id=object_id,
            details={"token": str(self.token.public_id), **(details or {})}, outcome=outcome,
        )  # fmt: skip

    def audit_access(self, request: Any, study_uid: str, series_uid: str | None, instances: int, retrieve: str) -> None:
        """Record a retrieval (WADO-RS: instances, metadata, frames, rendered) of ``instances``
        instances of a study, or of one of its series."""
        self.audit(
            request, Action.INSTANCES_ACCESSED, object_type="study", object_id=study_uid,
            details={"series": series_uid or "", "instances": instances, "retrieve": retrieve},
        )  # fmt: skip

    def base_url(self, request: HttpRequest) -> str:
        return request.build_absolute_uri(f"/api/{self.hospital.code}/dicom-web")

    def study_url(self, request: HttpRequest, study_uid: str) -> str:
        return f"{self.base_url(request)}/studies/{study_uid}"

    def series_url(self, request: HttpRequest, study_uid: str, series_uid: str) -> str:
        return f"{self.study_url(request, study_uid)}/series/{series_uid}"

    def instance_url(self, request: HttpRequest, study_uid: str, series_uid: str, sop_uid: str) -> str:
        return f"{self.series_url(request, study_uid, series_uid)}/instances/{sop_uid}"

    def handle_exception(self, exc: Exception) -> Any:
        request = getattr(self, "request", None)
        if isinstance(exc, CryptoIntegrityError) and request is not None and request.method in {"GET", "HEAD"}:
            # A stored object that fails its checks before the response starts (a row that does not
            # name its own object, a damaged file): a server fault, said plainly, and recorded as a
            # failed access. The log names the hospital and the view, never the object's UIDs.
            logger.error("%s for %s: a stored object failed its integrity check (%s)", type(self).__name__,
                         getattr(self, "hospital", None), type(exc).__name__)  # fmt: skip
            kwargs = self.kwargs or {}
            self.audit(
                request, Action.INSTANCES_ACCESSED, object_type="study", object_id=kwargs.get("study_uid", ""),
                outcome=Outcome.SERIOUS_FAILURE,
                details={"series": kwargs.get("series_uid") or "", "reason": "stored_object_damaged"},
            )  # fmt: skip
            response = json_error(500, "stored_object_damaged", "A stored object failed its integrity check.")
            # A read writes nothing but audit events: keep this one although the answer is a 5xx.
            response.commit_despite_error = True  # type: ignore[attr-defined]
            return response
        return super().handle_exception(exc)

    def perform_content_negotiation(self, request: Any, force: bool = False) -> Any:
        # Successful responses are built by hand (DICOM JSON, multipart/related); errors are JSON
        # whatever the client asked for.
        return super().perform_content_negotiation(request, force=True)
