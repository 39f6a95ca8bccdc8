"""The viewer page and its data endpoints, all under ``/viewer/<code>/studies/<study public id>/``.

Every request passes the access rule of apps.viewer.grants; the data endpoints serve the archive's
WADO-RS answers (apps.dicomweb) for the granted study only, addressed by opaque public ids.
"""

import json
from collections.abc import Callable, Iterator
from functools import wraps
from typing import Any

from django.conf import settings
from django.db.models import Max
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.http import require_GET

from apps.dicomweb.base import DICOM_JSON, json_error
from apps.dicomweb.frames import (
    FRAME_MEDIA_TYPES,
    OCTET_STREAM,
    ImageInstance,
    Refused,
    bad_request,
    frame_numbers,
    frames_response,
    image_instance_open,
    not_acceptable,
    pixel_data_open,
    unreadable,
)
from apps.dicomweb.rendered import rendered_response
from apps.dicomweb.wado import metadata_documents
from apps.imaging.dicom.part10 import EXPLICIT_VR_LITTLE_ENDIAN, NATIVE_TRANSFER_SYNTAXES
from apps.imaging.models import Instance, Series
from apps.imaging.pixels import PixelData, PixelDataError
from apps.tenants.access import get_for_hospital_or_404
from apps.tenants.models import Hospital
from apps.viewer import selectors
from apps.viewer.access import decode_worker_csp, instances_access_audit, study_open_audit, viewer_csp
from apps.viewer.grants import ViewerAccess, viewer_access_resolve
from apps.viewer.strings import ui_strings

# Instances above this size are refused by the viewer (a whole-slide pathology object of gigabytes
# would exhaust the browser's memory); VIEWER_MAX_INSTANCE_BYTES overrides it.
DEFAULT_MAX_INSTANCE_BYTES = 512 * 1024 * 1024

ViewerView = Callable[..., HttpResponse | StreamingHttpResponse]


def max_instance_bytes() -> int:
    return int(getattr(settings, "VIEWER_MAX_INSTANCE_BYTES", DEFAULT_MAX_INSTANCE_BYTES))


def viewer_data(view: ViewerView) -> ViewerView:
    """A data endpoint: the access rule first; refusals are JSON (404 for no access, as for no study)."""

    @wraps(view)
    def wrapper(
        request: HttpRequest, hospital_code: str, study_id: str, *args: Any, **kwargs: Any
    ) -> HttpResponse | StreamingHttpResponse:
        response: HttpResponse | StreamingHttpResponse
        try:
            access = viewer_access_resolve(request, hospital_code, study_id)
            response = view(request, access, *args, **kwargs)
        except Http404:
            response = json_error(404, "not_found", "Not found, or the viewing session has ended.")
        except Refused as refusal:
            response = refusal.response()
        response["Cache-Control"] = "no-store, private"
        return response

    return require_GET(wrapper)


def _series_of(access: ViewerAccess, series_id: str) -> Series:
    """A series of the granted study; 404 if absent or elsewhere (the study is checked by the join)."""
    return get_for_hospital_or_404(
        Series.objects.all(), access.hospital, public_id=series_id, study__public_id=access.study_public_id
    )


def _instance_of(access: ViewerAccess, series_id: str, instance_id: str) -> Instance:
    """One image of the granted study, with its series, in one query that checks the study too; 404
    if absent or elsewhere."""
    return get_for_hospital_or_404(
        Instance.objects.select_related("series"), access.hospital,
        public_id=instance_id, series__public_id=series_id, series__study__public_id=access.study_public_id,
    )  # fmt: skip


@require_GET
def study_page(request: HttpRequest, hospital_code: str, study_id: str) -> HttpResponse:
    access = viewer_access_resolve(request, hospital_code, study_id)
    base = reverse(
        "viewer:study", kwargs={"hospital_code": access.hospital.code, "study_id": str(access.study.public_id)}
    )
    limit = max_instance_bytes()
    series_list = []
    for series in selectors.study_series(access.hospital, access.study).annotate(largest=Max("instances__size")):
        series_base = f"{base}series/{series.public_id}/"
        series_list.append({
            "id": str(series.public_id),
            "number": series.series_number,
            "modality": series.modality,
            "description": series.description,
            "count": series.number_of_instances,
            "metadataUrl": f"{series_base}metadata",
            "thumbnailUrl": f"{series_base}thumbnail",
            "largestBytes": series.largest or 0,
        })  # fmt: skip
    study_open_audit(request, access)
    config = {
        "mode": access.mode,
        "diagnostic": access.diagnostic,
        "series": series_list,
        "maxInstanceBytes": limit,
        "decodeWorkerUrl": reverse("viewer:decode_worker", kwargs={"hospital_code": access.hospital.code}),
        "strings": ui_strings(),
    }
    report = selectors.latest_signed_report(access.hospital, access.study)
    response = render(request, "viewer/study.html", {"access": access, "config": config, "report": report})
    response._csp_config = viewer_csp()  # type: ignore[attr-defined]
    return response


@viewer_data
def series_metadata(request: HttpRequest, access: ViewerAccess, series_id: str) -> HttpResponse:
    series = _series_of(access, series_id)
    instances = list(selectors.series_instances(access.hospital, series))
    if not instances:
        raise Http404
    instances_access_audit(request, access, series, len(instances))
    base = reverse("viewer:study", kwargs={"hospital_code": access.hospital.code, "study_id": access.study_public_id})

    def instance_url(instance: Instance) -> str:
        return f"{base}series/{series.public_id}/instances/{instance.public_id}"

    documents = metadata_documents(access.hospital, instances, instance_url)
    for instance, document in zip(instances, documents, strict=True):
        # The archive's headers leave Pixel Data out; the viewer's loader finds the frames here.
        if instance.rows and instance.columns:
            document["7FE00010"] = {"vr": "OW", "BulkDataURI": instance_url(instance)}
    return HttpResponse(json.dumps(documents, ensure_ascii=False), content_type=DICOM_JSON)


@viewer_data
def instance_frames(
    request: HttpRequest, access: ViewerAccess, series_id: str, instance_id: str, frame_list: str
) -> HttpResponse | StreamingHttpResponse:
    instance = _instance_of(access, series_id, instance_id)
    series = instance.series
    if instance.size > max_instance_bytes():
        return json_error(413, "too_large", "This instance is too large to open in the viewer.")
    instances_access_audit(request, access, series, series.number_of_instances)
    loaded = image_instance_open(access.hospital, instance)
    # The viewer takes frames as stored (its codecs decode every syntax the archive accepts).
    return frames_response(access.hospital, loaded, frame_list, "")


def _single_frame_stream(pixel_data: PixelData, number: int) -> Iterator[bytes]:
    if pixel_data.encapsulated:
        yield pixel_data.encapsulated_frame(number)
    else:
        yield from pixel_data.frame_chunks(number)


def single_frame_response(hospital: Hospital, loaded: ImageInstance, frame: str) -> StreamingHttpResponse:
    """One frame as its bare bytes, the media type and transfer syntax in Content-Type (the viewer's
    image loader reads both): native frames little endian, compressed frames as stored.

    The same bytes as one part of the archive's Retrieve Frames answer, without the multipart
    framing, which the browser would otherwise search through on its main thread for every image
    (a boundary scan and a copy of each 512 KB CT slice). Raises Refused as frames_response answers.
    """
    numbers = frame_numbers(frame, loaded.geometry.number_of_frames)
    if len(numbers) != 1:
        raise bad_request("One frame number, from 1.")
    [number] = numbers
    stored_syntax = loaded.instance.transfer_syntax_uid
    if stored_syntax in NATIVE_TRANSFER_SYNTAXES:
        media_type, transfer_syntax = OCTET_STREAM, EXPLICIT_VR_LITTLE_ENDIAN
    elif stored_syntax in FRAME_MEDIA_TYPES:
        media_type, transfer_syntax = FRAME_MEDIA_TYPES[stored_syntax], stored_syntax
    else:
        raise not_acceptable(f"Frames of transfer syntax {stored_syntax} cannot be returned separately.")
    pixel_data = pixel_data_open(hospital, loaded)
    try:
        pixel_data.frames_check([number])
    except PixelDataError as error:
        raise unreadable(error) from error
    return StreamingHttpResponse(
        _single_frame_stream(pixel_data, number), content_type=f"{media_type}; transfer-syntax={transfer_syntax}"
    )


@viewer_data
def instance_frame(
    request: HttpRequest, access: ViewerAccess, series_id: str, instance_id: str, frame: str
) -> HttpResponse | StreamingHttpResponse:
    """One frame, single part: what the viewer's own image loader fetches (see single_frame_response)."""
    instance = _instance_of(access, series_id, instance_id)
    if instance.size > max_instance_bytes():
        return json_error(413, "too_large", "This instance is too large to open in the viewer.")
    instances_access_audit(request, access, instance.series, instance.series.number_of_instances)
    return single_frame_response(access.hospital, image_instance_open(access.hospital, instance), frame)


@viewer_data
def series_thumbnail(request: HttpRequest, access: ViewerAccess, series_id: str) -> HttpResponse:
    series = _series_of(access, series_id)
    instances = list(selectors.series_instances(access.hospital, series))
    if not instances:
        raise Http404
    instance = instances[len(instances) // 2]
    if instance.size > max_instance_bytes():
        return json_error(413, "too_large", "This instance is too large to open in the viewer.")
    instances_access_audit(request, access, series, len(instances))
    loaded = image_instance_open(access.hospital, instance)
    query = request.GET.copy()
    query.clear()
    query["viewport"] = "128,128"
    query["quality"] = "80"
    return rendered_response(access.hospital, loaded, None, query, "image/jpeg")


@require_GET
def decode_worker(request: HttpRequest, hospital_code: str) -> HttpResponse:
    """The start of each image decoder worker: imports the bundled decoder, under decode_worker_csp().

    Static content (no patient data), so no access check; it exists for its Content-Security-Policy.
    """
    module = static("viewer/dist/assets/decodeImageFrameWorker.js")
    response = HttpResponse(f"import {json.dumps(module)};\n", content_type="text/javascript; charset=utf-8")
    response._csp_config = decode_worker_csp()  # type: ignore[attr-defined]
    return response
