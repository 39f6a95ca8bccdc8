"""Bad input in the viewer: each case ends in a clear message, never a blank screen or a spinner."""

import io

import numpy as np
import pydicom
import pytest
from django.test import Client
from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1, generate_uid

from apps.viewer.grants import viewer_url
from tests.browser.conftest import EMPTY_STORAGE, browser_storage
from tests.browser.test_viewer import _doctor_session, _session_cookie, _wait
from tests.dicomweb.helpers import encapsulated_ct
from tests.imaging.dicom_factory import make_instance, to_part10_bytes
from tests.viewer.helpers import RESCALE_INTERCEPT, ct_gradient, ct_series_parts, grant_session, study_store

pytestmark = pytest.mark.django_db(transaction=True)


def _message(page) -> dict:
    _wait(page, "window.viewer.status().message !== ''")
    status = page.evaluate("window.viewer.status()")
    assert page.locator("#message").is_visible()
    assert page.locator("#message").inner_text() == status["message"]
    return status


def _open_as_doctor(page, live_server, world, study) -> None:
    _session_cookie(page, live_server, _doctor_session(world.first["reporting_doctor"]))
    assert page.goto(live_server.url + viewer_url(study)).status == 200


def _undecodable_jpeg() -> bytes:
    return encapsulated_ct([b"\xff\xd8" + bytes(16) + b"\xff\xd9"])[0]


def test_instance_the_codecs_cannot_decode_shows_a_message(live_server, desktop_page, world, local_storage):
    study = study_store(world.first.hospital, [_undecodable_jpeg()])
    _open_as_doctor(desktop_page, live_server, world, study)
    status = _message(desktop_page)
    assert status["messageKind"] == "decode"
    assert JPEGLosslessSV1 in status["message"]
    assert status["firstImageMs"] is None


def test_one_image_series_says_scrolling_and_mpr_do_not_apply(live_server, desktop_page, world, local_storage):
    study = study_store(world.first.hospital, ct_series_parts(1, rows=32, columns=32))
    page = desktop_page
    _open_as_doctor(page, live_server, world, study)
    _wait(page, "window.viewer.status().firstImageMs !== null")
    assert page.locator(".viewport .notice").inner_text() == page.evaluate(
        "JSON.parse(document.getElementById('viewer-config').textContent).strings.singleImage"
    )
    page.click("[data-action=mpr]")
    assert _message(page)["messageKind"] == "mpr"
    assert page.evaluate("window.viewer.status().mpr") == "off"


def test_colour_ultrasound_cine_plays_and_warns_below_three_megapixels(live_server, desktop_page, world, local_storage):
    frames = np.stack([np.full((48, 48, 3), index * 20, dtype=np.uint8) for index in range(8)])
    ds = make_instance("US", Rows=48, Columns=48, NumberOfFrames=8, FrameTime=50.0, PixelData=frames.tobytes())
    ds.FrameIncrementPointer = pydicom.tag.Tag("FrameTime")
    study = study_store(world.first.hospital, [to_part10_bytes(ds)])
    page = desktop_page
    _open_as_doctor(page, live_server, world, study)
    _wait(page, "window.viewer.status().firstImageMs !== null")
    # 1920 x 1080 is 2.07 MP: enough for grayscale, not for colour.
    assert page.locator("#display-warning").is_visible()
    assert "3" in page.locator("#display-warning").inner_text()
    _wait(page, "window.viewer.status().loaded === 8")
    page.click("[data-action=cine]")
    _wait(page, "window.viewer.imageIndex() > 0", 5)
    page.click("[data-action=cine]")
    page.click("[data-action=mpr]")
    assert _message(page)["messageKind"] == "mpr"
    assert browser_storage(page) == EMPTY_STORAGE


def test_object_above_the_size_limit_is_refused_with_a_message(live_server, phone_page, world, local_storage, settings):
    study = study_store(world.first.hospital, ct_series_parts(2, rows=64, columns=64, SeriesInstanceUID=generate_uid()))
    settings.VIEWER_MAX_INSTANCE_BYTES = 4096  # stands in for a 2 GB whole-slide image
    page = phone_page
    _session_cookie(page, live_server, grant_session(Client(), study))
    page.goto(live_server.url + viewer_url(study))
    status = _message(page)
    assert status["messageKind"] == "tooLarge"
    assert "MB" in status["message"]
    assert page.locator(".viewport .notice").is_visible()


def _jpeg2000_lossless_ct() -> bytes:
    """A 16-bit CT whose frame is a lossless JPEG 2000 codestream of ct_gradient (OpenJPEG WASM codec)."""
    from PIL import Image

    codestream = io.BytesIO()
    Image.fromarray(ct_gradient(64, 64, 0)).save(codestream, format="JPEG2000", irreversible=False, no_jp2=True)
    return encapsulated_ct(
        [codestream.getvalue()], JPEG2000Lossless, Rows=64, Columns=64, BitsAllocated=16, BitsStored=16,
        HighBit=15, PixelRepresentation=0, RescaleIntercept=RESCALE_INTERCEPT, RescaleSlope=1.0,
    )[0]  # fmt: skip


def test_compressed_instance_is_decoded_by_a_wasm_codec_under_the_page_csp(
    live_server, desktop_page, world, local_storage
):
    study = study_store(world.first.hospital, [_jpeg2000_lossless_ct()])
    page = desktop_page
    _open_as_doctor(page, live_server, world, study)
    _wait(page, "window.viewer.status().firstImageMs !== null || window.viewer.status().message !== ''")
    status = page.evaluate("window.viewer.status()")
    assert (status["message"], status["loaded"], status["failed"]) == ("", 1, 0)
    page.click("[data-action=tool-probe]")
    point = page.evaluate("window.viewer.pagePoint(40, 20)")
    page.mouse.click(point["x"], point["y"])
    _wait(page, "window.viewer.measurements('Probe').length === 1", 5)
    [reading] = page.evaluate("window.viewer.measurements('Probe')")
    assert reading["value"] == int(ct_gradient(64, 64, 0)[20, 40]) + RESCALE_INTERCEPT  # lossless: exact HU
