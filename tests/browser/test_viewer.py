"""The viewer in a real browser: Cornerstone3D loads a seeded CT through the viewer's endpoints.

The CT slices hold a known gradient (tests.viewer.helpers.ct_gradient), so the probe's reading at a
pixel can be compared with what pydicom computes from the same bytes.
"""

import time
from datetime import timedelta
from pathlib import Path

import pydicom
import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone
from django_otp import DEVICE_ID_SESSION_KEY

from apps.viewer.grants import viewer_url
from tests.browser.conftest import EMPTY_STORAGE, browser_storage
from tests.factories import confirmed_totp_device
from tests.viewer.helpers import (
    PIXEL_SPACING,
    WINDOW,
    ct_series_parts,
    grant_session,
    grants_revoke,
    study_store,
)

pytestmark = pytest.mark.django_db(transaction=True)
BUNDLE = Path(settings.BASE_DIR) / "static" / "viewer" / "dist" / "viewer.js"


@pytest.fixture(autouse=True)
def _bundle_built():
    if not BUNDLE.exists():
        pytest.fail("The viewer bundle is missing: run `make bundle` (npm ci + vite build) first")


def _session_cookie(page, live_server, session_key: str) -> None:
    page.context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": session_key, "url": live_server.url}])


def _doctor_session(user) -> str:
    client = Client()
    device = confirmed_totp_device(user)
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return str(session.session_key)


def _wait(page, expression: str, timeout: float = 20.0) -> None:
    """Poll `expression` until true. (wait_for_function evaluates strings, which the page's CSP forbids.)"""
    deadline = time.monotonic() + timeout
    while not page.evaluate(f"Boolean(window.viewer && ({expression}))"):
        if time.monotonic() > deadline:
            status = page.evaluate("window.viewer ? window.viewer.status() : null")
            pytest.fail(f"Timed out waiting for {expression}; viewer status {status}")
        page.wait_for_timeout(50)


def _first_image(page) -> dict:
    _wait(page, "window.viewer.status().firstImageMs !== null || window.viewer.status().message")
    status = page.evaluate("window.viewer.status()")
    assert status["message"] == "", status
    return status


def _hounsfield(part10: bytes, column: int, row: int) -> float:
    import io

    ds = pydicom.dcmread(io.BytesIO(part10))
    return float(ds.pixel_array[row, column]) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


@pytest.fixture
def ct(world, local_storage):
    parts = ct_series_parts(12, rows=64, columns=64)
    return {"study": study_store(world.first.hospital, parts), "parts": parts}


def test_doctor_reads_ct_probe_preset_length_and_mpr(live_server, desktop_page, world, ct):
    page = desktop_page
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    _session_cookie(page, live_server, _doctor_session(world.first["reporting_doctor"]))
    response = page.goto(live_server.url + viewer_url(ct["study"]))
    assert response.status == 200
    _first_image(page)

    # Windowed from the header: centre 40, width 400.
    voi = page.evaluate("window.viewer.voi()")
    assert abs((voi["upper"] + voi["lower"]) / 2 - WINDOW[0]) <= 1 and abs(voi["upper"] - voi["lower"] - WINDOW[1]) <= 2
    assert page.locator("#display-warning").is_hidden()  # 1920x1080 is 2 MP, enough for grayscale

    # Pixel probe at known points of the first slice, against pydicom's HU.
    page.click("[data-action=tool-probe]")
    for column, row in [(10, 20), (50, 5)]:
        point = page.evaluate(f"window.viewer.pagePoint({column}, {row})")
        page.mouse.click(point["x"], point["y"])
        page.wait_for_timeout(600)  # two clicks closer than this are one double click to Cornerstone
    readings = page.evaluate("window.viewer.measurements('Probe')")
    assert [reading["value"] for reading in readings] == [
        _hounsfield(ct["parts"][0], 10, 20),
        _hounsfield(ct["parts"][0], 50, 5),
    ]
    assert readings[0]["modalityUnit"] == "HU"

    # A CT preset sets the window: lung is centre -600, width 1500.
    page.click("[data-action=preset-lung]")
    voi = page.evaluate("window.viewer.voi()")
    # Cornerstone keeps DICOM's linear window as the range [c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2].
    assert (voi["lower"], voi["upper"]) == (-1350, 149)
    assert "W 1500 L -600" in page.locator(".viewport .overlay.br").first.inner_text()

    # A length drawn between two known pixels, 40 pixels apart at 0.7 mm.
    page.click("[data-action=tool-length]")
    start, end = page.evaluate("[window.viewer.pagePoint(5, 30), window.viewer.pagePoint(45, 30)]")
    page.mouse.move(start["x"], start["y"])
    page.mouse.down()
    page.mouse.move((start["x"] + end["x"]) / 2, start["y"], steps=4)
    page.mouse.move(end["x"], end["y"], steps=4)
    page.wait_for_timeout(200)  # Cornerstone throttles drags; the last move must land before the release
    page.mouse.move(end["x"], end["y"])
    page.wait_for_timeout(200)
    page.mouse.up()
    [length] = page.evaluate("window.viewer.measurements('Length')")
    assert length["length"] == pytest.approx(40 * PIXEL_SPACING, abs=0.1)
    assert length["unit"] == "mm"

    # Keyboard: the down arrow scrolls the stack.
    page.locator(".viewport").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("ArrowDown")
    _wait(page, "window.viewer.imageIndex() === 1", 5)

    # MPR: three orthographic viewports of the volume.
    page.click("[data-action=mpr]")
    _wait(page, "['ready', 'failed'].includes(window.viewer.status().mpr) || window.viewer.status().message", 60)
    assert page.evaluate("window.viewer.status().mpr") == "ready", page.evaluate("window.viewer.status()")
    assert page.evaluate("window.viewer.viewportKinds()") == ["orthographic"] * 3

    assert browser_storage(page) == EMPTY_STORAGE
    assert errors == []


def test_patient_on_a_phone_swipes_and_pinches(live_server, phone_page, world, ct):
    page = phone_page
    client = Client()
    _session_cookie(page, live_server, grant_session(client, ct["study"], mode="patient"))
    page.goto(live_server.url + viewer_url(ct["study"]))
    _first_image(page)
    assert page.locator("#reference-banner").is_visible()
    assert "仅供参考" in page.locator("#reference-banner").inner_text()

    box = page.locator(".viewport .element").first.bounding_box()
    cdp = page.context.new_cdp_session(page)
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

    def touch(kind: str, points: list[tuple[float, float]]) -> None:
        cdp.send("Input.dispatchTouchEvent", {
            "type": kind, "touchPoints": [{"x": px, "y": py, "id": index} for index, (px, py) in enumerate(points)],
        })  # fmt: skip

    # A one-finger swipe down moves forward through the stack.
    touch("touchStart", [(x, y - 150)])
    for step in range(1, 11):
        touch("touchMove", [(x, y - 150 + step * 30)])
    touch("touchEnd", [])
    _wait(page, "window.viewer.imageIndex() > 0", 5)

    # Two-finger pinch apart zooms in.
    zoom = page.evaluate("window.viewer.camera().zoom")
    touch("touchStart", [(x - 30, y), (x + 30, y)])
    for step in range(1, 11):
        touch("touchMove", [(x - 30 - step * 10, y), (x + 30 + step * 10, y)])
    touch("touchEnd", [])
    assert page.evaluate("window.viewer.camera().zoom") > zoom * 1.2

    assert browser_storage(page) == EMPTY_STORAGE


def test_user_of_the_other_hospital_gets_404(live_server, desktop_page, world, ct):
    _session_cookie(desktop_page, live_server, _doctor_session(world.second["reporting_doctor"]))
    response = desktop_page.goto(live_server.url + viewer_url(ct["study"]))
    assert response.status == 404


def test_ended_grant_shows_session_expired(live_server, desktop_page, world, local_storage):
    parts = ct_series_parts(2, rows=32, columns=32)
    study_uid = pydicom.dcmread(__import__("io").BytesIO(parts[0])).StudyInstanceUID
    parts += ct_series_parts(2, rows=32, columns=32, study_uid=study_uid, SeriesNumber=2)
    study = study_store(world.first.hospital, parts)
    page = desktop_page
    session_key = grant_session(Client(), study, mode="patient", expires_at=timezone.now() + timedelta(minutes=5))
    _session_cookie(page, live_server, session_key)
    page.goto(live_server.url + viewer_url(study))
    _first_image(page)
    grants_revoke(session_key)
    page.locator(".series-browser button").nth(1).click()
    _wait(page, "window.viewer.status().messageKind === 'expired'")
    assert page.locator("#message").is_visible()
    assert page.locator("#message").inner_text().startswith("会话已过期")


def test_overlays_orientation_layouts_in_sync_and_view_changes(live_server, desktop_page, world, ct):
    page = desktop_page
    _session_cookie(page, live_server, _doctor_session(world.first["reporting_doctor"]))
    page.goto(live_server.url + viewer_url(ct["study"]))
    _first_image(page)
    overlay = page.locator(".viewport .overlay.tl").first.inner_text()
    assert "Ceshi Huanzhe" in overlay and "^" not in overlay and "TEST0001" in overlay
    # An axial slice seen from the feet: the patient's left on the screen's right, anterior at the top.
    markers = {side: page.locator(f".viewport .orientation.{side}").first.inner_text() for side in ("right", "top")}
    assert markers == {"right": "L", "top": "A"}
    assert "W 400 L 40" in page.locator(".viewport .overlay.br").first.inner_text()

    page.click("[data-action=rotate]")
    assert page.evaluate("window.viewer.camera().rotation") == 90
    # Turned a quarter clockwise: what was at the top (anterior) is now on the right.
    assert page.locator(".viewport .orientation.right").first.inner_text() == "A"
    page.click("[data-action=flipH]")
    assert page.evaluate("window.viewer.camera().flipHorizontal") is True
    page.click("[data-action=invert]")
    page.click("[data-action=reset]")
    assert page.evaluate("window.viewer.camera().rotation") == 0

    page.click("[data-action=layout-2x2]")
    _wait(page, "window.viewer.status().layout === '2x2' && window.viewer.imageIndex(3) !== null")
    assert page.locator(".viewport").count() == 4
    page.locator(".viewport").first.click(position={"x": 5, "y": 5})
    for _ in range(6):
        page.keyboard.press("ArrowDown")
    _wait(page, "window.viewer.imageIndex(0) === 6", 5)
    # The other viewports follow (same series here, so the same slice).
    _wait(page, "[1, 2, 3].every(index => window.viewer.imageIndex(index) === 6)", 5)
    assert browser_storage(page) == EMPTY_STORAGE


def test_the_viewer_draws_under_its_csp_without_violations(live_server, desktop_page, world, ct):
    """Cornerstone styles its SVG annotations (scale bar, measurement labels) through style
    attributes: the viewer's policy allows inline style attributes, and nothing else inline."""
    page = desktop_page
    refused: list[str] = []
    page.on(
        "console",
        lambda message: refused.append(message.text) if "Content Security Policy" in message.text else None,
    )
    _session_cookie(page, live_server, _doctor_session(world.first["reporting_doctor"]))
    response = page.goto(live_server.url + viewer_url(ct["study"]))
    policy = response.headers["content-security-policy"]
    assert "style-src-attr 'unsafe-inline'" in policy
    assert "style-src 'self'" in policy and "style-src 'self' 'unsafe-inline'" not in policy
    _first_image(page)
    page.wait_for_timeout(500)  # the scale bar is drawn just after the first image
    assert page.locator("svg [style]").count() > 0, "no SVG annotation was styled: nothing was checked"
    assert refused == []


def test_on_a_phone_the_signed_report_opens_over_the_images(live_server, phone_page, world, ct):
    from apps.reports.services import report_create, report_sign
    from apps.tenants.context import hospital_context

    doctor = world.first["reporting_doctor"]
    with hospital_context(world.first.hospital):
        version = report_create(
            hospital=world.first.hospital, study=ct["study"], actor=doctor,
            fields={"findings": "右肺上叶结节", "impression": "建议随访"},
        )  # fmt: skip
        report_sign(report=version.report, actor=doctor, expected_version=1)
    page = phone_page
    _session_cookie(page, live_server, grant_session(Client(), ct["study"], mode="patient"))
    page.goto(live_server.url + viewer_url(ct["study"]))
    _first_image(page)
    panel = page.locator("#report-panel")
    assert panel.is_hidden()  # no room beside the images
    page.locator("#report-toggle").tap()
    assert panel.is_visible() and "右肺上叶结节" in panel.inner_text()
    assert page.locator("#report-toggle").get_attribute("aria-expanded") == "true"
    assert panel.locator("[data-report-close]").inner_text() == "关闭"
    panel.locator("[data-report-close]").tap()
    assert panel.is_hidden()


def test_on_a_phone_the_toolbar_shows_the_common_tools_and_the_rest_on_request(
    live_server, phone_page, desktop_page, world, ct
):
    session = _doctor_session(world.first["reporting_doctor"])
    for page in (phone_page, desktop_page):
        _session_cookie(page, live_server, session)
        page.goto(live_server.url + viewer_url(ct["study"]))
        _first_image(page)
    phone, desktop = phone_page.locator("#toolbar"), desktop_page.locator("#toolbar")
    assert phone.locator("[data-action=tool-windowLevel]").is_visible()
    assert phone.locator("[data-action=mpr]").is_hidden() and phone.locator("[data-action=tool-angle]").is_hidden()
    more = phone.locator("[data-action=more-tools]")
    assert more.inner_text() == "更多工具"
    more.tap()
    assert phone.locator("[data-action=mpr]").is_visible() and more.inner_text() == "收起"
    # A desktop has room for everything: no such button.
    assert desktop.locator("[data-action=mpr]").is_visible() and desktop.locator("[data-action=more-tools]").is_hidden()
