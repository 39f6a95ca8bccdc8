"""Staff pages whose behaviour lives in static scripts: the upload's messages and the exam slip's
print button (the Content-Security-Policy allows no inline script)."""

import pytest
from django.conf import settings
from django.urls import reverse

from tests.imaging.dicom_factory import make_ct_slice
from tests.portal.conftest import make_patient, make_published_study, patient, study  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db(transaction=True)


def _signed_in(page, live_server, client, sign_in, user):
    sign_in(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie.value, "url": live_server.url}])
    return page


def test_upload_without_files_says_so_and_shows_warnings_of_stored_files(
    desktop_page, live_server, client, sign_in, world, local_storage, tmp_path
):
    page = _signed_in(desktop_page, live_server, client, sign_in, world.first["technologist"])
    page.goto(live_server.url + reverse("imaging:upload", args=["first"]))
    page.click("#upload-form button[type=submit]")
    assert page.inner_text("#progress-text") == "请先选择文件、文件夹或 zip 压缩包。"
    dicom = tmp_path / "elsewhere.dcm"
    dicom.write_bytes(make_ct_slice(InstitutionName="ELSEWHERE"))
    page.set_input_files("#files", str(dicom))
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector('#results tr[data-state="stored"]')
    detail = page.inner_text('#results tr[data-state="stored"] td:nth-child(3)')
    assert detail.startswith("INSTITUTION_MISMATCH: ") and "机构名称" in detail


def test_exam_slip_prints_with_its_button(
    desktop_page,
    live_server,
    client,
    sign_in,
    world,
    study,  # noqa: F811 - the fixture imported above
):
    page = _signed_in(desktop_page, live_server, client, sign_in, world.first["technologist"])
    page.add_init_script("window.print = function () { window.__printed = (window.__printed || 0) + 1; };")
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text) if "Content Security" in message.text else None)
    page.goto(f"{live_server.url}{reverse('portal:staff_slip', args=['first'])}?study={study.public_id}")
    page.click("#make-qr")
    assert page.locator("#qr svg").count() == 1
    page.click("#print-slip")
    assert page.evaluate("window.__printed") == 1
    assert violations == []
