"""The viewer's measuring tools, cine, the 1x2 layout and changing series on a phone, in a real browser.

ROI statistics are checked against numpy on the HU pydicom computes from the same slices, over the
pixels Cornerstone counts: the rectangle's corners floored to pixel indices (inclusive), and the
ellipse's pixel centres inside it. Both are taken from the annotation's own handles, so the checks
do not depend on where the mouse landed to a fraction of a pixel; that it landed where intended is
checked separately.
"""

import io
import math

import numpy as np
import pydicom
import pytest
from django.test import Client
from playwright.sync_api import expect
from pydicom.uid import generate_uid

from apps.viewer.grants import viewer_url
from tests.browser.test_viewer import _doctor_session, _first_image, _session_cookie, _wait
from tests.viewer.helpers import ct_series_parts, grant_session, study_store

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ct(world, local_storage):
    parts = ct_series_parts(12, rows=64, columns=64)
    return {"study": study_store(world.first.hospital, parts), "parts": parts}


def _open(page, live_server, world, study) -> None:
    _session_cookie(page, live_server, _doctor_session(world.first["reporting_doctor"]))
    page.goto(live_server.url + viewer_url(study))
    _first_image(page)


def _dataset(part10: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(part10))


def _hounsfield(ds: pydicom.Dataset) -> np.ndarray:
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def _to_index(ds: pydicom.Dataset, world: list[float]) -> tuple[float, float]:
    """(column, row) index of a patient-space point on this axial slice; pixel centres are integers."""
    origin = [float(v) for v in ds.ImagePositionPatient]
    row_spacing, column_spacing = (float(v) for v in ds.PixelSpacing)
    return (world[0] - origin[0]) / column_spacing, (world[1] - origin[1]) / row_spacing


def _corner(page, column: float, row: float) -> dict:
    """The page position of the corner shared by pixels (column, row) and (column + 1, row + 1).

    In Cornerstone's index space (pixel centres at integers) that is (column + 0.5, row + 0.5), which
    floors to (column, row) whatever the mouse's rounding to a fraction of a pixel.
    """
    return page.evaluate(f"window.viewer.pagePoint({column} + 0.5, {row} + 0.5)")


def _drag(page, start: dict, end: dict) -> None:
    page.mouse.move(start["x"], start["y"])
    page.mouse.down()
    page.mouse.move((start["x"] + end["x"]) / 2, (start["y"] + end["y"]) / 2, steps=4)
    page.mouse.move(end["x"], end["y"], steps=4)
    page.wait_for_timeout(200)  # Cornerstone throttles drags; the last move must land before the release
    page.mouse.move(end["x"], end["y"])
    page.wait_for_timeout(200)
    page.mouse.up()


def _stat(measurement: dict, name: str) -> float:
    return next(item["value"] for item in measurement["statsArray"] if item["name"] == name)


def test_rectangle_roi_mean_and_sd_in_hu_match_numpy(live_server, desktop_page, world, ct):
    page = desktop_page
    _open(page, live_server, world, ct["study"])
    page.click("[data-action=tool-rectangle]")
    _drag(page, _corner(page, 8, 12), _corner(page, 30, 40))
    [roi] = page.evaluate("window.viewer.measurements('RectangleROI')")

    ds = _dataset(ct["parts"][0])
    (c1, r1), (c2, r2) = (
        tuple(math.floor(v) for v in _to_index(ds, roi["points"][i])) for i in (0, 3)
    )  # fmt: skip
    assert (min(c1, c2), max(c1, c2), min(r1, r2), max(r1, r2)) == (8, 30, 12, 40)
    region = _hounsfield(ds)[12:41, 8:31]
    assert roi["modalityUnit"] == "HU"
    assert _stat(roi, "count") == region.size
    assert roi["mean"] == pytest.approx(region.mean(), abs=1e-6)
    assert roi["stdDev"] == pytest.approx(region.std(), abs=1e-6)  # population SD, as Cornerstone's
    assert roi["mean"] == pytest.approx(100 - 1024 + 3 * 19 + 2 * 26)  # centre of the gradient


def test_ellipse_roi_mean_and_sd_in_hu_match_numpy(live_server, desktop_page, world, ct):
    page = desktop_page
    _open(page, live_server, world, ct["study"])
    page.click("[data-action=tool-ellipse]")
    # Drawn from its centre (pixel 32, 30) out to a corner 12.3 x 7.3 pixels away.
    centre = page.evaluate("window.viewer.pagePoint(32, 30)")
    corner = page.evaluate("window.viewer.pagePoint(32 + 12.3, 30 + 7.3)")
    _drag(page, centre, corner)
    [roi] = page.evaluate("window.viewer.measurements('EllipticalROI')")

    ds = _dataset(ct["parts"][0])
    bottom, top, left, right = (_to_index(ds, point) for point in roi["points"])
    centre_column, centre_row = (left[0] + right[0]) / 2, (bottom[1] + top[1]) / 2
    radius_columns, radius_rows = abs(right[0] - left[0]) / 2, abs(top[1] - bottom[1]) / 2
    assert (centre_column, centre_row) == (pytest.approx(32, abs=0.1), pytest.approx(30, abs=0.1))
    assert (radius_columns, radius_rows) == (pytest.approx(12.3, abs=0.1), pytest.approx(7.3, abs=0.1))
    rows, columns = np.mgrid[0 : ds.Rows, 0 : ds.Columns]
    distance = ((columns - centre_column) / radius_columns) ** 2 + ((rows - centre_row) / radius_rows) ** 2
    inside = distance <= 1
    assert np.abs(distance - 1).min() > 1e-6  # no pixel centre on the edge, where rounding could flip it
    values = _hounsfield(ds)[inside]
    assert roi["modalityUnit"] == "HU"
    assert _stat(roi, "count") == values.size
    assert roi["mean"] == pytest.approx(values.mean(), abs=1e-6)
    assert roi["stdDev"] == pytest.approx(values.std(), abs=1e-6)


def test_angle_between_three_points(live_server, desktop_page, world, ct):
    page = desktop_page
    _open(page, live_server, world, ct["study"])
    page.click("[data-action=tool-angle]")
    first, vertex, last = (
        page.evaluate(f"window.viewer.pagePoint({c}, {r})") for c, r in [(45, 30), (15, 30), (35, 10)]
    )
    # The first arm is dragged; the mouse then carries the third point until a click places it.
    _drag(page, first, vertex)
    page.mouse.move(last["x"], last["y"], steps=6)
    page.wait_for_timeout(600)  # not a double click with the release that ended the first arm
    page.mouse.click(last["x"], last["y"])
    [angle] = page.evaluate("window.viewer.measurements('Angle')")

    a, b, c = (np.array(point, dtype=float) for point in angle["points"])
    expected = math.degrees(math.acos(np.dot(a - b, c - b) / np.linalg.norm(a - b) / np.linalg.norm(c - b)))
    assert angle["angle"] == pytest.approx(expected, abs=1e-6)
    assert angle["angle"] == pytest.approx(45, abs=0.5)  # (30, 0) against (20, -20) pixels, square pixels


def test_cine_advances_through_the_stack_and_stops(live_server, desktop_page, world, ct):
    page = desktop_page
    _open(page, live_server, world, ct["study"])
    _wait(page, "window.viewer.status().stackLoadedMs !== null")
    assert page.evaluate("window.viewer.imageIndex()") == 0
    page.click("[data-action=cine]")
    assert "active" in page.locator("[data-action=cine]").get_attribute("class")
    _wait(page, "window.viewer.imageIndex() >= 3", 5)
    seen = page.evaluate("window.viewer.imageIndex()")
    _wait(page, f"window.viewer.imageIndex() !== {seen}", 5)  # still advancing

    page.click("[data-action=cine]")
    assert "active" not in (page.locator("[data-action=cine]").get_attribute("class") or "")
    stopped = page.evaluate("window.viewer.imageIndex()")
    page.wait_for_timeout(500)  # several frames at 15 per second
    assert page.evaluate("window.viewer.imageIndex()") == stopped


@pytest.fixture
def two_series(world, local_storage):
    """One CT study of two series: 12 slices and 23 slices over the same length."""
    study_uid = generate_uid()
    parts = ct_series_parts(12, rows=32, columns=32, study_uid=study_uid)
    parts += ct_series_parts(23, rows=32, columns=32, study_uid=study_uid, SeriesNumber=2)
    return study_store(world.first.hospital, parts)


def test_1x2_layout_scrolls_both_series_in_step(live_server, desktop_page, world, two_series):
    page = desktop_page
    _open(page, live_server, world, two_series)
    page.click("[data-action=layout-1x2]")
    _wait(page, "window.viewer.status().layout === '1x2' && window.viewer.imageIndex(1) !== null")
    assert page.locator(".viewport").count() == 2
    # The overlay of the second viewport is drawn just after its first image: wait for it.
    overlays = page.locator(".viewport .overlay.br")
    expect(overlays.nth(0)).to_contain_text("1/12")
    expect(overlays.nth(1)).to_contain_text("1/23")

    # Scrolling the left viewport moves the right one to the same fraction of its stack.
    page.locator(".viewport").nth(0).click(position={"x": 5, "y": 5})
    for _ in range(6):
        page.keyboard.press("ArrowDown")
    _wait(page, "window.viewer.imageIndex(0) === 6 && window.viewer.imageIndex(1) === 12", 5)

    # And the other way round.
    page.locator(".viewport").nth(1).click(position={"x": 5, "y": 5})
    for _ in range(4):
        page.keyboard.press("ArrowUp")
    _wait(page, "window.viewer.imageIndex(1) === 8 && window.viewer.imageIndex(0) === 4", 5)


def _open_on_phone(page, live_server, study) -> None:
    """The study as a patient opens it from the portal, on a phone."""
    _session_cookie(page, live_server, grant_session(Client(), study, mode="patient"))
    page.goto(live_server.url + viewer_url(study))
    _first_image(page)


def _swipe(page, start: tuple[float, float], end: tuple[float, float], moves: int = 4) -> None:
    """One finger from start to end in a few touch moves, at once (well within a quick swipe's time)."""
    cdp = page.context.new_cdp_session(page)
    (x0, y0), (x1, y1) = start, end
    points = [(x0 + (x1 - x0) * step / moves, y0 + (y1 - y0) * step / moves) for step in range(moves + 1)]
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x0, "y": y0}]})
    for x, y in points[1:]:
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


def test_phone_swipe_left_and_right_changes_series_and_vertical_drag_still_scrolls(
    live_server, phone_page, world, two_series
):
    page = phone_page
    _open_on_phone(page, live_server, two_series)
    overlay = page.locator(".viewport .overlay.br")
    expect(overlay).to_contain_text("影像 1/12")
    box = page.locator(".viewport .element").first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

    # A quick swipe to the left, slightly off the horizontal, shows the next series from its start.
    _swipe(page, (x + 100, y), (x - 100, y + 20))
    expect(overlay).to_contain_text("影像 1/23")
    assert page.evaluate("window.viewer.imageIndex()") == 0

    # A vertical drag still scrolls through the stack, and stays in the series.
    _swipe(page, (x, y - 150), (x, y + 150), moves=10)
    _wait(page, "window.viewer.imageIndex() > 0", 5)
    expect(overlay).to_contain_text("/23")

    # A quick swipe to the right goes back to the first series.
    _swipe(page, (x - 100, y), (x + 100, y))
    expect(overlay).to_contain_text("影像 1/12")


def test_phone_series_buttons_step_through_the_series_in_chinese(live_server, phone_page, world, two_series):
    page = phone_page
    _open_on_phone(page, live_server, two_series)
    nav = page.locator("#series-nav")
    previous, following = nav.locator("[data-action=series-previous]"), nav.locator("[data-action=series-next]")
    expect(nav).to_be_visible()
    expect(nav).to_contain_text("序列 1/2")
    expect(following).to_contain_text("下一序列")
    expect(previous).to_be_disabled()

    following.tap()
    expect(page.locator(".viewport .overlay.br")).to_contain_text("影像 1/23")
    expect(nav).to_contain_text("序列 2/2")
    expect(following).to_be_disabled()

    previous.tap()
    expect(page.locator(".viewport .overlay.br")).to_contain_text("影像 1/12")
    expect(previous).to_be_disabled()
