"""Staff screens of the archive: upload with live progress and a per-file result table."""

import uuid

from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.translation import get_language
from django.views.decorators.http import require_GET, require_POST

from apps.accounts.roles import HospitalRole
from apps.audit.services import audit_record
from apps.audit.vocabulary import Action
from apps.core.decorators import hospital_staff_required
from apps.imaging.dicom.rules import Severity
from apps.imaging.models import StagedObject, ValidationFinding
from apps.imaging.upload import UploadItem, upload_receive

UPLOAD_ROLES = {HospitalRole.TECHNOLOGIST, HospitalRole.HOSPITAL_ADMIN}
MAX_FILES_PER_REQUEST = 100


def _require_uploader(request: HttpRequest) -> None:
    if not (request.hospital_roles & UPLOAD_ROLES):  # type: ignore[attr-defined]
        raise PermissionDenied


def _chinese() -> bool:
    return (get_language() or "zh-hans").startswith("zh")


def _item_json(item: UploadItem) -> dict[str, str]:
    if item.staged is None:
        message = item.error_zh if _chinese() else item.error_en
        return {"name": item.name, "id": "", "status": "rejected", "code": item.error_code, "message": message}
    return {"name": item.name, "id": str(item.staged.public_id), "status": item.staged.status, "code": "",
            "message": ""}  # fmt: skip


@require_GET
@hospital_staff_required
def upload_page(request: HttpRequest) -> HttpResponse:
    _require_uploader(request)
    return render(request, "imaging/upload.html", {"batch": uuid.uuid4()})


@require_POST
@hospital_staff_required
def upload_files(request: HttpRequest) -> JsonResponse:
    """Receive up to 100 files (the page sends them a few at a time, for progress)."""
    _require_uploader(request)
    try:
        batch = uuid.UUID(request.POST.get("batch", ""))
    except ValueError:
        return JsonResponse({"error": "bad_batch"}, status=400)
    files = request.FILES.getlist("files")
    if not files or len(files) > MAX_FILES_PER_REQUEST:
        return JsonResponse({"error": "bad_file_count"}, status=400)
    items = upload_receive(
        hospital=request.hospital,  # type: ignore[attr-defined]
        files=[(f.name or "file", f) for f in files],
        batch=batch,
    )
    audit_record(
        action=Action.INSTANCES_IMPORTED, request=request, hospital=request.hospital,  # type: ignore[attr-defined]
        object_type="upload", object_id=str(batch),
        details={"files": len(items), "staged": sum(1 for item in items if item.staged is not None)},
    )  # fmt: skip
    return JsonResponse({"items": [_item_json(item) for item in items]})


@require_GET
@hospital_staff_required
def upload_status(request: HttpRequest, batch: uuid.UUID) -> JsonResponse:
    """The current result of every file of one upload, for the result table."""
    _require_uploader(request)
    staged = list(
        StagedObject.objects.filter(hospital=request.hospital, batch=batch)  # type: ignore[attr-defined]
        .prefetch_related(
            Prefetch(
                "findings",
                queryset=ValidationFinding.objects.filter(
                    hospital=request.hospital,  # type: ignore[attr-defined]
                    severity=Severity.WARN,
                ).order_by("id"),
                to_attr="warnings",
            )
        )
        .order_by("id")
    )
    if not staged:
        raise Http404  # Unknown and another hospital's upload look the same.
    chinese = _chinese()
    return JsonResponse(
        {
            "items": [
                {
                    "id": str(s.public_id),
                    "status": s.status,
                    "status_label": s.get_status_display(),
                    "code": s.error_code,
                    "message": s.error_message_zh if chinese else s.error_message_en,
                    # Stored, with data-validation warnings the uploader should know of.
                    "warnings": [
                        {"code": w.code, "message": w.message_zh if chinese else w.message_en} for w in s.warnings
                    ],
                }
                for s in staged
            ]
        }
    )
