"""WADO-RS Retrieve Frames (PS3.18 10.4): ``.../instances/{uid}/frames/{list}``.

Native pixel data is returned as multipart/related; type="application/octet-stream", one part per
requested frame in the order asked for, each the frame's little-endian bytes (Explicit VR Little
Endian, the bulk data default). Encapsulated pixel data is returned as stored, one part per frame
with the media type of its transfer syntax (image/jpeg, image/jls, image/jp2, ...); the archive does
not transcode, so a client that accepts only another type gets 406, as do video transfer syntaxes,
whose frames are not separately addressable.

Only the bytes of the requested frames are read (apps.imaging.pixels). Frame numbers start at 1; a
malformed list or a number past Number of Frames is 400: the instance exists, so 404 would wrongly
tell the client it does not, and PS3.18 answers 400 for a request the server cannot interpret.
"""

import logging
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.http import HttpResponse, StreamingHttpResponse
from rest_framework.request import Request

from apps.dicomweb.base import DicomWebView, json_error
from apps.dicomweb.multipart import ContentType, encode_part_header, parse_content_type
from apps.imaging import selectors
from apps.imaging.dicom.part10 import EXPLICIT_VR_LITTLE_ENDIAN, NATIVE_TRANSFER_SYNTAXES
from apps.imaging.keys import hospital_key
from apps.imaging.metadata import unseal_metadata
from apps.imaging.models import Instance
from apps.imaging.objectstore import instance_stored_object
from apps.imaging.pixels import (
    ImageGeometry,
    PixelData,
    PixelDataError,
    image_geometry,
    pixel_data_at,
    pixel_data_locate,
)
from apps.tenants.models import Hospital

logger = logging.getLogger(__name__)

OCTET_STREAM = "application/octet-stream"
# Media types of compressed frames by transfer syntax (PS3.18 8.7.3, compressed bulk data).
FRAME_MEDIA_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",  # JPEG Baseline (Process 1)
    "1.2.840.10008.1.2.4.51": "image/jpeg",  # JPEG Extended (Process 2 & 4)
    "1.2.840.10008.1.2.4.57": "image/jpeg",  # JPEG Lossless, Non-Hierarchical (Process 14)
    "1.2.840.10008.1.2.4.70": "image/jpeg",  # JPEG Lossless, First-Order Prediction (Process 14 SV1)
    "1.2.840.10008.1.2.4.80": "image/jls",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81": "image/jls",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90": "image/jp2",  # JPEG 2000 (Lossless Only)
    "1.2.840.10008.1.2.4.91": "image/jp2",  # JPEG 2000
    "1.2.840.10008.1.2.4.92": "image/jpx",  # JPEG 2000 Part 2 Multi-component (Lossless Only)
    "1.2.840.10008.1.2.4.93": "image/jpx",  # JPEG 2000 Part 2 Multi-component
    "1.2.840.10008.1.2.4.201": "image/jphc",  # High-Throughput JPEG 2000 (Lossless Only)
    "1.2.840.10008.1.2.4.202": "image/jphc",  # High-Throughput JPEG 2000 with RPCL Options (Lossless Only)
    "1.2.840.10008.1.2.4.203": "image/jphc",  # High-Throughput JPEG 2000
    "1.2.840.10008.1.2.4.110": "image/jxl",  # JPEG XL Lossless
    "1.2.840.10008.1.2.4.111": "image/jxl",  # JPEG XL JPEG Recompression
    "1.2.840.10008.1.2.4.112": "image/jxl",  # JPEG XL
    "1.2.840.10008.1.2.5": "image/dicom-rle",  # RLE Lossless
}
_FRAME_LIST = re.compile(r"^[0-9]{1,10}(,[0-9]{1,10})*$")


class Refused(Exception):
    """A request answered with a JSON error, in the shape the other DICOMweb endpoints use."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail

    def response(self) -> HttpResponse:
        return json_error(self.status, self.code, self.detail)


def not_found() -> Refused:
    return Refused(404, "not_found", "Not found.")


def bad_request(detail: str) -> Refused:
    return Refused(400, "bad_request", detail)


def not_acceptable(detail: str) -> Refused:
    return Refused(406, "not_acceptable", detail)


def unreadable(error: PixelDataError) -> Refused:
    # The object passed ingest checks, so this is damage or a bug: logged, and a 500 the client can read.
    logger.error("Stored pixel data cannot be read: %s", error)
    return Refused(500, "pixel_data_unreadable", "The stored pixel data of this instance cannot be read.")


@dataclass(frozen=True)
class ImageInstance:
    instance: Instance
    document: dict[str, Any]
    geometry: ImageGeometry


def image_instance_load(hospital: Hospital, study_uid: str, series_uid: str, sop_uid: str) -> ImageInstance:
    """The instance (of `hospital` only) with its sealed header opened; Refused 404 if absent, 400 if not an image."""
    matching = selectors.instances_matching(hospital, {"SOPInstanceUID": sop_uid}, study_uid, series_uid)
    # The selector reads a list of UIDs; a path segment names exactly one.
    instance = next((i for i in matching if i.sop_instance_uid == sop_uid), None)
    if instance is None:
        raise not_found()
    return image_instance_open(hospital, instance)


def image_instance_open(hospital: Hospital, instance: Instance) -> ImageInstance:
    """An instance already loaded for `hospital`, with its sealed header opened; Refused 400 if not an image."""
    document = unseal_metadata(hospital, bytes(instance.metadata_sealed))
    geometry = image_geometry(document)
    if geometry is None:
        raise bad_request("The instance is not an image; it has no frames.")
    return ImageInstance(instance, document, geometry)


def pixel_data_open(hospital: Hospital, loaded: ImageInstance) -> PixelData:
    """The instance's Pixel Data in its stored object: where ingest recorded it, or else found by
    walking the element headers (rows stored before the offset was recorded, rare encodings)."""
    instance = loaded.instance
    key, stored = hospital_key(hospital), instance_stored_object(instance)
    syntax, geometry = instance.transfer_syntax_uid, loaded.geometry
    try:
        if instance.pixel_data_offset is not None:
            return pixel_data_at(
                hospital_key=key, stored=stored, transfer_syntax_uid=syntax, geometry=geometry,
                value_position=instance.pixel_data_offset, value_length=instance.pixel_data_length,
            )  # fmt: skip
        pixel_data = pixel_data_locate(hospital_key=key, stored=stored, transfer_syntax_uid=syntax, geometry=geometry)
    except PixelDataError as error:
        raise unreadable(error) from error
    if pixel_data is None:
        raise bad_request("The instance has no Pixel Data; it has no frames.")
    return pixel_data


def frame_numbers(frame_list: str, number_of_frames: int) -> list[int]:
    """The frame numbers of a ``frames/{list}`` path segment, in order; Refused 400 if any is invalid."""
    if not _FRAME_LIST.match(frame_list):
        raise bad_request("The frame list must be frame numbers (from 1) separated by commas, e.g. frames/1,3.")
    numbers = [int(number) for number in frame_list.split(",")]
    for number in numbers:
        if not 1 <= number <= number_of_frames:
            raise bad_request(f"Frame {number} does not exist; the instance has {number_of_frames} frame(s).")
    return numbers


def accepted_media_ranges(accept: str) -> list[ContentType]:
    """The media ranges of an Accept header, most preferred first (by q, then order); q=0 dropped."""
    ranked: list[tuple[float, int, ContentType]] = []
    for index, item in enumerate(accept.split(",")):
        if not item.strip():
            continue
        content_type = parse_content_type(item)
        try:
            quality = float(content_type.params.get("q", "1"))
        except ValueError:
            quality = 1.0
        if quality > 0:
            ranked.append((-quality, index, content_type))
    return [content_type for _quality, _index, content_type in sorted(ranked, key=lambda entry: entry[:2])]


def _accepts_frames(accept: str, media_type: str, transfer_syntax: str) -> bool:
    if not accept.strip():
        return True
    for media_range in accepted_media_ranges(accept):
        if media_range.media_type in {"*/*", "multipart/*"}:
            return True
        if media_range.media_type != "multipart/related":
            continue
        part_type = media_range.params.get("type", "*/*").lower()
        if part_type not in {"*/*", media_type, media_type.split("/")[0] + "/*"}:
            continue
        if media_range.params.get("transfer-syntax", "*") in {"*", transfer_syntax}:
            return True
    return False


def _frames_stream(pixel_data: PixelData, numbers: list[int], boundary: str, part_type: str) -> Iterator[bytes]:
    for number in numbers:
        yield encode_part_header(boundary, part_type)
        if pixel_data.encapsulated:
            yield pixel_data.encapsulated_frame(number)
        else:
            yield from pixel_data.frame_chunks(number)
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def frames_response(
    hospital: Hospital, loaded: ImageInstance, frame_list: str, accept: str
) -> HttpResponse | StreamingHttpResponse:
    """The Retrieve Frames answer for `loaded` (of `hospital`): the frames as multipart, or a JSON error.

    Shared by the DICOMweb API and the viewer's session-authenticated endpoints.
    """
    try:
        numbers = frame_numbers(frame_list, loaded.geometry.number_of_frames)
        stored_syntax = loaded.instance.transfer_syntax_uid
        if stored_syntax in NATIVE_TRANSFER_SYNTAXES:
            media_type, transfer_syntax = OCTET_STREAM, EXPLICIT_VR_LITTLE_ENDIAN
        elif stored_syntax in FRAME_MEDIA_TYPES:
            media_type, transfer_syntax = FRAME_MEDIA_TYPES[stored_syntax], stored_syntax
        else:
            raise not_acceptable(f"Frames of transfer syntax {stored_syntax} cannot be returned separately.")
        if not _accepts_frames(accept, media_type, transfer_syntax):
            raise not_acceptable(
                f'These frames are available as multipart/related; type="{media_type}"; '
                f"transfer-syntax={transfer_syntax}; the archive does not transcode."
            )
        pixel_data = pixel_data_open(hospital, loaded)
        try:
            pixel_data.frames_check(numbers)
        except PixelDataError as error:
            raise unreadable(error) from error
    except Refused as refusal:
        return refusal.response()
    boundary = uuid.uuid4().hex
    part_type = f"{media_type}; transfer-syntax={transfer_syntax}"
    return StreamingHttpResponse(
        _frames_stream(pixel_data, numbers, boundary, part_type),
        content_type=f'multipart/related; type="{media_type}"; boundary={boundary}',
    )


class FramesView(DicomWebView):
    def get(self, request: Request, hospital_code: str, study_uid: str, series_uid: str, sop_uid: str,
            frame_list: str) -> HttpResponse | StreamingHttpResponse:  # fmt: skip
        try:
            loaded = image_instance_load(self.hospital, study_uid, series_uid, sop_uid)
        except Refused as refusal:
            return refusal.response()
        response = frames_response(self.hospital, loaded, frame_list, request.META.get("HTTP_ACCEPT", ""))
        if response.status_code == 200:
            self.audit_access(request, study_uid, series_uid, 1, "frames")
        return response
