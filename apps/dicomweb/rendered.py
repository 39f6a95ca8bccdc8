"""WADO-RS Retrieve Rendered (PS3.18 10.4, 8.3.5): an instance or one frame as a JPEG or PNG.

``.../instances/{uid}/rendered`` renders the first frame; ``.../frames/{n}/rendered`` renders frame n
(one frame: a single image, not a multipart body). Accept (header or ``accept`` query parameter):
image/jpeg (the default) or image/png, else 406.

Grayscale follows the PS3.4 N.2 pipeline as far as the header allows: Modality LUT as Rescale Slope
and Intercept (per frame in enhanced objects), then VOI as ``window=center,width[,function]`` when
asked, else the first Window Center/Width of the header, else the frame's minimum to maximum; the
function is linear, linear-exact or sigmoid (PS3.3 C.11.2.1.2); MONOCHROME1 is inverted so that it
looks as intended. RGB is passed through (scaled to 8 bits); YBR_FULL is converted to RGB. A Modality
LUT Sequence or VOI LUT Sequence is not applied (the windows above are used instead).

``quality`` (1-100) sets JPEG quality; ``viewport=vw,vh[,sx,sy,sw,sh]`` crops to the source region
(negative sw or sh flips) and scales to fit vw x vh, keeping the aspect ratio. Compressed pixel data,
PALETTE COLOR and other photometric interpretations are not decoded here: 406.

``studies/{uid}/rendered`` and ``.../series/{uid}/rendered`` render every image instance of the
study or series (its first frame, with the same parameters), one part each, as
multipart/related; type="image/jpeg" (or image/png), in series and instance order. Instances that
are not images, or that this archive does not render, are left out; if none is left, 406.

Only the frame's bytes are read. Frames above _MAX_FRAME_BYTES are refused (406); frames above
_MAX_PIXELS are decimated before the pipeline runs, so memory stays bounded.
"""

import io
import itertools
import logging
import math
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.http import HttpResponse, QueryDict, StreamingHttpResponse
from PIL import Image
from pydicom.pixels import convert_color_space
from rest_framework.request import Request

from apps.dicomweb.base import DicomWebView
from apps.dicomweb.frames import (
    ImageInstance,
    Refused,
    accepted_media_ranges,
    bad_request,
    frame_numbers,
    image_instance_load,
    image_instance_open,
    not_acceptable,
    not_found,
    pixel_data_open,
    unreadable,
)
from apps.dicomweb.multipart import encode_part_header
from apps.imaging import selectors
from apps.imaging.dicom.part10 import NATIVE_TRANSFER_SYNTAXES
from apps.imaging.models import Instance
from apps.imaging.pixels import FrameUnsupported, PixelDataError, frame_array, json_values
from apps.tenants.models import Hospital

logger = logging.getLogger(__name__)

JPEG = "image/jpeg"
PNG = "image/png"
_DEFAULT_QUALITY = 90
_MAX_VIEWPORT = 4096
_MAX_FRAME_BYTES = 256 * 1024 * 1024
_MAX_PIXELS = 4096 * 4096
_GRAYSCALE = frozenset({"MONOCHROME1", "MONOCHROME2"})
_COLOUR = frozenset({"RGB", "YBR_FULL"})
_VOI_FUNCTIONS = frozenset({"linear", "linear-exact", "sigmoid"})
# Functional group sequences of enhanced multi-frame objects (PS3.3 C.7.6.16).
_SHARED_GROUPS = "52009229"
_PER_FRAME_GROUPS = "52009230"
_PIXEL_VALUE_TRANSFORMATION = "00289145"
_FRAME_VOI_LUT = "00289132"
_RESCALE_INTERCEPT = "00281052"
_RESCALE_SLOPE = "00281053"
_WINDOW_CENTER = "00281050"
_WINDOW_WIDTH = "00281051"
_VOI_LUT_FUNCTION = "00281056"
_PRESENTATION_LUT_SHAPE = "20500020"


@dataclass(frozen=True)
class Window:
    center: float
    width: float
    function: str = "linear"


@dataclass(frozen=True)
class Viewport:
    width: int
    height: int
    source: tuple[int, int, int, int] | None = None  # sx, sy, sw, sh


@dataclass(frozen=True)
class Rendering:
    media_type: str
    window: Window | None
    quality: int
    viewport: Viewport | None


def _numbers(text: str, name: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise bad_request(f"{name} must be numbers separated by commas.") from None
    if not all(math.isfinite(value) for value in values):
        raise bad_request(f"{name} must be finite numbers.")
    return values


def _width_valid(width: float, function: str) -> bool:
    # Linear needs a width of at least 1 (its formula divides by width - 1); the others above 0.
    return width >= 1 if function == "linear" else width > 0


def _window(text: str) -> Window:
    center_text, _sep, rest = text.partition(",")
    width_text, _sep, function = rest.partition(",")
    function = function.strip().lower() or "linear"
    if function not in _VOI_FUNCTIONS:
        raise bad_request("The window function must be linear, linear-exact or sigmoid.")
    center, width = _numbers(f"{center_text},{width_text}", "window")
    if not _width_valid(width, function):
        raise bad_request("The window width must be at least 1 for linear, above 0 otherwise.")
    return Window(center, width, function)


def _viewport(text: str) -> Viewport:
    values = _numbers(text, "viewport")
    if len(values) not in (2, 6) or not all(value.is_integer() for value in values):
        raise bad_request("viewport must be vw,vh or vw,vh,sx,sy,sw,sh in whole pixels.")
    width, height, *source = (int(value) for value in values)
    if not (1 <= width <= _MAX_VIEWPORT and 1 <= height <= _MAX_VIEWPORT):
        raise bad_request(f"The viewport must be between 1 and {_MAX_VIEWPORT} pixels wide and high.")
    if source and (source[0] < 0 or source[1] < 0 or source[2] == 0 or source[3] == 0):
        raise bad_request("The viewport source region must start inside the image and not be empty.")
    return Viewport(width, height, (source[0], source[1], source[2], source[3]) if source else None)


def _media_type(accept: str, *, multipart: bool) -> str:
    """The image type to render, by preference (q); ``multipart``: for the parts of a multipart
    answer, where a multipart/related range names it in its ``type`` (image types alone do too)."""
    if not accept.strip():
        return JPEG
    for media_range in accepted_media_ranges(accept):
        media_type = media_range.media_type
        if multipart and media_type in {"multipart/related", "multipart/*"}:
            media_type = media_range.params.get("type", JPEG).lower()
        if media_type in {"*/*", "image/*"}:
            return JPEG
        if media_type in {JPEG, PNG}:
            return media_type
    if multipart:
        raise not_acceptable('Rendered images are available as multipart/related; type="image/jpeg" or "image/png".')
    raise not_acceptable("Rendered images are available as image/jpeg or image/png.")


def rendering_parse(query: QueryDict, accept_header: str, *, multipart: bool = False) -> Rendering:
    """The rendering asked for; Refused 406 for an unavailable media type, 400 for a malformed parameter.
    The ``accept`` query parameter, if given, stands for the Accept header (PS3.18 8.3.3.1).

    Unknown parameters are ignored (PS3.18 8.3.5.1: not every parameter need be supported).
    """
    media_type = _media_type(query.get("accept") or accept_header, multipart=multipart)
    quality = _DEFAULT_QUALITY
    if (quality_text := query.get("quality")) is not None:
        if not quality_text.isdigit() or not 1 <= int(quality_text) <= 100:
            raise bad_request("quality must be a whole number from 1 to 100.")
        quality = int(quality_text)
    window = _window(window_text) if (window_text := query.get("window")) else None
    viewport = _viewport(viewport_text) if (viewport_text := query.get("viewport")) else None
    return Rendering(media_type, window, quality, viewport)


def _frame_values(document: dict[str, Any], frame_index: int, macro: str, attribute: str) -> list[Any]:
    """An attribute from the frame's functional groups (per-frame, then shared), else from the top level."""
    for groups, index in ((_PER_FRAME_GROUPS, frame_index), (_SHARED_GROUPS, 0)):
        items = json_values(document, groups)
        if index < len(items) and isinstance(items[index], dict):
            for item in json_values(items[index], macro)[:1]:
                if values := json_values(item, attribute):
                    return values
    return json_values(document, attribute)


def _first_number(values: list[Any], default: float | None) -> float | None:
    try:
        return float(values[0]) if values and values[0] is not None else default
    except (TypeError, ValueError):
        return default


def _header_window(document: dict[str, Any], frame_index: int) -> Window | None:
    center = _first_number(_frame_values(document, frame_index, _FRAME_VOI_LUT, _WINDOW_CENTER), None)
    width = _first_number(_frame_values(document, frame_index, _FRAME_VOI_LUT, _WINDOW_WIDTH), None)
    function_values = _frame_values(document, frame_index, _FRAME_VOI_LUT, _VOI_LUT_FUNCTION)
    function = str(function_values[0]).strip().lower().replace("_", "-") if function_values else "linear"
    if center is None or width is None or function not in _VOI_FUNCTIONS:
        return None
    if not _width_valid(width, function):
        return None
    return Window(center, width, function)


def voi_apply(values: np.ndarray, window: Window) -> np.ndarray:
    """Map modality values to 0..255 with a VOI window (PS3.3 C.11.2.1.2.1-C.11.2.1.3.2)."""
    center, width = window.center, window.width
    if window.function == "sigmoid":
        scaled = 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    elif window.function == "linear-exact":
        scaled = np.clip((values - center) / width + 0.5, 0.0, 1.0)
    elif width == 1:
        scaled = np.where(values <= center - 0.5, 0.0, 1.0)
    else:
        scaled = np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)
    return np.rint(scaled * 255.0).astype(np.uint8)


def _grayscale(values: np.ndarray, loaded: ImageInstance, frame_index: int, window: Window | None) -> np.ndarray:
    document = loaded.document
    pixel_transformation = (_PIXEL_VALUE_TRANSFORMATION, _RESCALE_SLOPE)
    slope = _first_number(_frame_values(document, frame_index, *pixel_transformation), 1.0) or 1.0
    intercept_values = _frame_values(document, frame_index, _PIXEL_VALUE_TRANSFORMATION, _RESCALE_INTERCEPT)
    intercept = _first_number(intercept_values, 0.0) or 0.0
    modality = values.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    window = window or _header_window(document, frame_index)
    if window is None:
        low, high = float(modality.min()), float(modality.max())
        window = Window((low + high) / 2, max(high - low, 1.0), "linear-exact")
    shown = voi_apply(modality, window)
    shape = json_values(document, _PRESENTATION_LUT_SHAPE)
    if loaded.geometry.photometric_interpretation == "MONOCHROME1" or (shape and shape[0] == "INVERSE"):
        shown = 255 - shown
    return shown


def _colour(values: np.ndarray, loaded: ImageInstance) -> np.ndarray:
    bits = loaded.geometry.bits_stored
    if bits > 8:
        values = values >> (bits - 8)
    rgb = np.clip(values, 0, 255).astype(np.uint8)
    if loaded.geometry.photometric_interpretation == "YBR_FULL":
        rgb = convert_color_space(rgb, "YBR_FULL", "RGB")
    return rgb


def _decimated(values: np.ndarray) -> np.ndarray:
    pixels = values.shape[0] * values.shape[1]
    if pixels <= _MAX_PIXELS:
        return values
    step = math.ceil(math.sqrt(pixels / _MAX_PIXELS))
    return values[::step, ::step]


def _fit(image: Image.Image, viewport: Viewport) -> Image.Image:
    if viewport.source is not None:
        sx, sy, sw, sh = viewport.source
        # A negative width or height selects the region the other way from (sx, sy), flipped.
        left, right = sorted((sx, sx + sw))
        top, bottom = sorted((sy, sy + sh))
        left, top = max(left, 0), max(top, 0)
        right, bottom = min(right, image.width), min(bottom, image.height)
        if right <= left or bottom <= top:
            raise bad_request("The viewport source region lies outside the image.")
        image = image.crop((left, top, right, bottom))
        if sw < 0:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if sh < 0:
            image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    scale = min(viewport.width / image.width, viewport.height / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image if size == image.size else image.resize(size, Image.Resampling.LANCZOS)


def frame_render(values: np.ndarray, loaded: ImageInstance, frame_index: int, rendering: Rendering) -> bytes:
    """One frame's stored values as an encoded JPEG or PNG."""
    values = _decimated(values)
    if loaded.geometry.photometric_interpretation in _GRAYSCALE:
        shown = _grayscale(values, loaded, frame_index, rendering.window)
    else:
        shown = _colour(values, loaded)
    image = Image.fromarray(np.ascontiguousarray(shown))
    if rendering.viewport is not None:
        image = _fit(image, rendering.viewport)
    output = io.BytesIO()
    if rendering.media_type == PNG:
        image.save(output, format="PNG")
    else:
        image.save(output, format="JPEG", quality=rendering.quality)
    return output.getvalue()


def _first_frame(hospital: Hospital, loaded: ImageInstance, frame_number: int, rendering: Rendering) -> bytes:
    """One frame of a renderable instance, encoded; Refused if its pixel data cannot be read or rendered."""
    pixel_data = pixel_data_open(hospital, loaded)
    try:
        values = frame_array(pixel_data, pixel_data.frame_bytes(frame_number))
    except PixelDataError as error:
        raise unreadable(error) from error
    except FrameUnsupported as error:
        raise not_acceptable(str(error)) from error
    return frame_render(values, loaded, frame_number - 1, rendering)


def rendered_response(hospital: Hospital, loaded: ImageInstance, frame_list: str | None, query: QueryDict,
                      accept: str) -> HttpResponse:  # fmt: skip
    """The Retrieve Rendered answer for `loaded` (of `hospital`): one JPEG or PNG, or a JSON error.

    Shared by the DICOMweb API and the viewer's thumbnails.
    """
    try:
        numbers = frame_numbers(frame_list, loaded.geometry.number_of_frames) if frame_list else [1]
        if len(numbers) != 1:
            raise bad_request("Rendered frames are returned one at a time: ask for a single frame.")
        rendering = rendering_parse(query, accept)
        _check_renderable(loaded)
        content = _first_frame(hospital, loaded, numbers[0], rendering)
    except Refused as refusal:
        return refusal.response()
    return HttpResponse(content, content_type=rendering.media_type)


class RenderedView(DicomWebView):
    def get(self, request: Request, hospital_code: str, study_uid: str, series_uid: str, sop_uid: str,
            frame_list: str | None = None) -> HttpResponse:  # fmt: skip
        try:
            loaded = image_instance_load(self.hospital, study_uid, series_uid, sop_uid)
        except Refused as refusal:
            return refusal.response()
        response = rendered_response(
            self.hospital, loaded, frame_list, request.GET, request.META.get("HTTP_ACCEPT", "")
        )
        if response.status_code == 200:
            self.audit_access(request, study_uid, series_uid, 1, "rendered")
        return response


class ResourceRenderedView(DicomWebView):
    """Study or series rendered: each image instance's first frame, one part each, at most
    ``RENDERED_MAX_INSTANCES`` of them. An answer that leaves instances out for reasons known before
    it starts (compressed pixel data, the cap) is 206 Partial Content with a Warning saying why."""

    def get(self, request: Request, hospital_code: str, study_uid: str,
            series_uid: str | None = None) -> HttpResponse | StreamingHttpResponse:  # fmt: skip
        matching = selectors.instances_matching(self.hospital, {}, study_uid, series_uid)
        # Images only (no Rows: a key object, a report, a presentation state), and not those with
        # compressed pixel data, which are not rendered here; then the cap. Only the rows rendered
        # are read, however large the study.
        images = matching.filter(rows__isnull=False)
        native = images.filter(transfer_syntax_uid__in=NATIVE_TRANSFER_SYNTAXES)
        cap = settings.RENDERED_MAX_INSTANCES
        instances = list(native[: cap + 1])
        native_count = len(instances) if len(instances) <= cap else native.count()
        instances = instances[:cap]
        try:
            rendering = rendering_parse(request.GET, request.META.get("HTTP_ACCEPT", ""), multipart=True)
        except Refused as refusal:
            return refusal.response()
        # The first part is rendered before answering, so that a resource with nothing to render
        # gets an error status rather than an empty 200.
        parts = _rendered_parts(self.hospital, instances, rendering, lambda i: self._instance_url(request, i))
        first = next(parts, None)
        if first is None:
            if not matching.exists():
                return not_found().response()
            return not_acceptable("No instance here is an image this archive renders.").response()
        self.audit_access(request, study_uid, series_uid, len(instances), "rendered")
        boundary = uuid.uuid4().hex
        response = StreamingHttpResponse(
            _multipart(itertools.chain([first], parts), rendering.media_type, boundary),
            content_type=f'multipart/related; type="{rendering.media_type}"; boundary={boundary}',
        )
        # PS3.18 10.4: what is known to be left out before the answer starts makes it partial.
        warnings = []
        if compressed := images.exclude(transfer_syntax_uid__in=NATIVE_TRANSFER_SYNTAXES).count():
            warnings.append(f"{compressed} instance(s) with compressed pixel data were not rendered")
        if native_count > len(instances):
            warnings.append(
                f"Only the first {len(instances)} of {native_count} images were rendered; ask for each series "
                "or instance"
            )
        if warnings:
            response.status_code = 206
            response["Warning"] = ", ".join(f'299 {request.get_host()} "{text}"' for text in warnings)
        return response

    def _instance_url(self, request: Request, instance: Instance) -> str:
        series = instance.series
        return self.instance_url(
            request, series.study.study_instance_uid, series.series_instance_uid, instance.sop_instance_uid
        )


def _rendered_parts(
    hospital: Hospital, instances: list[Instance], rendering: Rendering, url: Callable[[Instance], str]
) -> Iterator[tuple[str, bytes]]:
    """(Content-Location, image) for each instance that renders, one at a time: its header is
    unsealed only when its turn comes. Instances that are not images this archive renders, or
    whose pixel data fail now, are left out and logged (the answer may have started)."""
    for instance in instances:
        try:
            loaded = image_instance_open(hospital, instance)
            _check_renderable(loaded)
            yield f"{url(instance)}/rendered", _first_frame(hospital, loaded, 1, rendering)
        except Refused as refusal:
            if refusal.status >= 500:
                logger.warning("rendered: instance %s left out (%s)", instance.pk, refusal.code)
        except Exception as error:  # noqa: BLE001 - one broken object must not cut the others' answer
            logger.error("rendered: instance %s left out (%s)", instance.pk, type(error).__name__)


def _multipart(parts: Iterator[tuple[str, bytes]], media_type: str, boundary: str) -> Iterator[bytes]:
    for location, content in parts:
        yield encode_part_header(boundary, media_type, extra={"Content-Location": location})
        yield content
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def _check_renderable(loaded: ImageInstance) -> None:
    geometry = loaded.geometry
    if loaded.instance.transfer_syntax_uid not in NATIVE_TRANSFER_SYNTAXES:
        raise not_acceptable(
            "Compressed pixel data is not rendered by this archive; retrieve the frames as stored instead."
        )
    photometric = geometry.photometric_interpretation
    if not (photometric in _GRAYSCALE and geometry.samples_per_pixel == 1) and not (
        photometric in _COLOUR and geometry.samples_per_pixel == 3
    ):
        raise not_acceptable(f"Images of photometric interpretation {photometric} are not rendered.")
    if geometry.frame_bits // 8 > _MAX_FRAME_BYTES:
        raise not_acceptable("The frame is too large to render.")
