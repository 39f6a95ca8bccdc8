"""Each patient entry point in a phone-sized real browser (WeChat's user agent): SMS link, QR
token, portal sign-in, WeChat (OAuth against a local fake WeChat) and a doctor's share link,
through the code to the study and its first image in the viewer; every application response
no-store, nothing left in browser storage."""

import json
import secrets
import time
import urllib.parse
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.imaging.models import Study
from apps.portal.models import EntryToken
from apps.portal.services import entry_token_create, entry_token_url, patient_contact_update
from apps.tenants.context import hospital_context
from tests.browser.conftest import EMPTY_STORAGE, browser_storage
from tests.portal.conftest import FINDINGS, ID_NUMBER, PHONE, last_code, sms_to
from tests.portal.fake_wechat import fake_wechat_server
from tests.viewer.helpers import ct_series_parts, study_store

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def published(world, local_storage, live_server, settings) -> Study:
    """A stored CT study of a patient with a phone on record, reported, signed and published
    (which sends the patient an SMS with a short link)."""
    from apps.notify.providers import ConsoleProvider
    from apps.reports.models import StudyPublication
    from apps.reports.publication import study_images_mark_complete
    from apps.reports.services import report_create, report_sign

    ConsoleProvider.outbox.clear()
    settings.PORTAL_PUBLIC_ORIGIN = live_server.url
    hospital = world.first.hospital
    study = study_store(hospital, ct_series_parts(3, rows=32, columns=32))
    doctor = world.first["reporting_doctor"]
    with hospital_context(hospital):
        patient_contact_update(actor=None, hospital=hospital, patient=study.patient, phone=PHONE, id_number=ID_NUMBER)
        version = report_create(hospital=hospital, study=study, actor=doctor, fields=FINDINGS)
        report_sign(report=version.report, actor=doctor, expected_version=1)
        study_images_mark_complete(actor=None, study=study, source=StudyPublication.Source.MANIFEST)
    return study


class ResponseLog:
    def __init__(self, page: Any, origin: str) -> None:
        self.seen: list[tuple[str, int, str]] = []
        page.on("response", self._record)
        self.origin = origin

    def _record(self, response: Any) -> None:
        if response.url.startswith(self.origin) and "/static/" not in response.url:
            self.seen.append((response.url, response.status, response.headers.get("cache-control", "")))

    def assert_no_store(self) -> None:
        assert self.seen
        missing = [(url, status) for url, status, cache in self.seen if "no-store" not in cache]
        assert missing == []


def _first_image(page: Any) -> dict[str, Any]:
    """Wait for the viewer to draw its first image (its status API; the page's CSP forbids eval)."""
    deadline = time.monotonic() + 30
    expression = (
        "Boolean(window.viewer && (window.viewer.status().firstImageMs !== null || window.viewer.status().message))"
    )
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            pytest.fail("the viewer drew no image")
        page.wait_for_timeout(50)
    status = page.evaluate("window.viewer.status()")
    assert status["message"] == "", status
    return status


def _enter_code_and_open(page: Any, study: Study) -> None:
    page.fill("#id_code", last_code(PHONE))
    page.click("#verify")
    assert page.url.endswith(reverse("portal:study", args=["first", study.public_id]))
    assert "胸部CT未见异常" in page.inner_text("#impression")
    page.click("#view-images")
    assert "/viewer/first/studies/" in page.url
    status = _first_image(page)
    assert status["firstImageMs"] >= 0


def test_sms_link_to_first_image(phone_page, live_server, published):
    links = [m.params["link"] for m in sms_to(PHONE) if m.template_code == "study_published"]
    assert len(links) == 1 and links[0].startswith(f"{live_server.url}/s/")
    log = ResponseLog(phone_page, live_server.url)
    phone_page.goto(links[0])
    phone_page.click("#send-code")
    assert phone_page.url.endswith(reverse("portal:verify", args=["first"]))
    _enter_code_and_open(phone_page, published)
    log.assert_no_store()
    assert browser_storage(phone_page) == EMPTY_STORAGE


def test_qr_token_to_first_image(phone_page, live_server, published):
    with hospital_context(published.hospital):
        entry, raw = entry_token_create(
            actor=None, hospital=published.hospital, study=published, kind=EntryToken.Kind.QR
        )
        url = entry_token_url(published.hospital, entry, raw)
    log = ResponseLog(phone_page, live_server.url)
    phone_page.goto(url)
    phone_page.click("#send-code")
    _enter_code_and_open(phone_page, published)
    log.assert_no_store()
    assert browser_storage(phone_page) == EMPTY_STORAGE


def test_portal_login_to_first_image(phone_page, live_server, published):
    log = ResponseLog(phone_page, live_server.url)
    phone_page.goto(f"{live_server.url}/portal/")
    manifest = phone_page.get_attribute("link[rel=manifest]", "href")
    assert manifest == reverse("portal:manifest")
    phone_page.fill("#id_hospital", "first")
    phone_page.click("button[type=submit]")
    phone_page.fill("#id_phone", PHONE)
    phone_page.fill("#id_identity", ID_NUMBER[-4:])
    phone_page.click("#send-code")
    phone_page.fill("#id_code", last_code(PHONE))
    phone_page.click("#verify")
    assert phone_page.url.endswith(reverse("portal:home", args=["first"]))
    phone_page.click("a.button")
    phone_page.click("#view-images")
    _first_image(phone_page)
    # The page fits the phone: nothing wider than the viewport on the portal pages.
    phone_page.goto(f"{live_server.url}{reverse('portal:history', args=['first'])}")
    assert phone_page.evaluate("document.documentElement.scrollWidth") <= 390
    assert "您本人" in phone_page.inner_text("ul.history")
    log.assert_no_store()
    assert browser_storage(phone_page) == EMPTY_STORAGE


def test_share_link_to_first_image(browser, phone_page, live_server, published):
    from tests.browser.conftest import PHONE as PHONE_CONTEXT

    phone_page.goto(f"{live_server.url}{reverse('portal:login', args=['first'])}")
    phone_page.fill("#id_phone", PHONE)
    phone_page.fill("#id_identity", ID_NUMBER[-4:])
    phone_page.click("#send-code")
    phone_page.fill("#id_code", last_code(PHONE))
    phone_page.click("#verify")
    phone_page.goto(f"{live_server.url}{reverse('portal:study', args=['first', published.public_id])}")
    phone_page.select_option("#id_hours", "24")
    phone_page.click("#share")
    link = phone_page.input_value("#share-link")
    access_code = phone_page.inner_text("#access-code").strip()
    assert link.startswith(f"{live_server.url}/portal/first/share/") and len(access_code) == 6

    doctor_context = browser.new_context(locale="zh-CN", **PHONE_CONTEXT)
    doctor = doctor_context.new_page()
    try:
        log = ResponseLog(doctor, live_server.url)
        doctor.goto(link)
        doctor.fill("#id_access_code", access_code)
        doctor.click("#open-share")
        assert "/viewer/first/studies/" in doctor.url
        _first_image(doctor)
        log.assert_no_store()
        assert browser_storage(doctor) == EMPTY_STORAGE
    finally:
        doctor_context.close()
    # The patient sees the use.
    phone_page.goto(f"{live_server.url}{reverse('portal:shares', args=['first'])}")
    assert "已打开" in phone_page.inner_text("ul.uses")
    assert browser_storage(phone_page) == EMPTY_STORAGE


OPENID = "oWx-browser-0123456789abcdef"


@pytest.fixture
def fake_wechat(settings) -> Iterator[list[dict[str, str]]]:
    """A local stand-in for WeChat's snsapi_base OAuth: the authorize page sends the browser
    straight back (snsapi_base asks the user nothing) with a fresh single-use code, which the
    token endpoint exchanges for OPENID. Returns what the authorize page saw (query and UA)."""
    seen: list[dict[str, str]] = []
    codes: set[str] = set()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _json(self, document: dict[str, Any]) -> None:
            body = json.dumps(document).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            if url.path == "/connect/oauth2/authorize":
                seen.append({**query, "user_agent": self.headers.get("User-Agent", "")})
                code = secrets.token_urlsafe(12)
                codes.add(code)
                back = f"{query['redirect_uri']}?{urllib.parse.urlencode({'code': code, 'state': query['state']})}"
                self.send_response(302)
                self.send_header("Location", back)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif url.path == "/sns/oauth2/access_token" and query.get("secret") == "wx-secret":
                known = query.get("code", "") in codes
                codes.discard(query.get("code", ""))
                self._json({"openid": OPENID, "scope": "snsapi_base"} if known else {"errcode": 40029})
            else:
                self._json({"errcode": 40013})

    with fake_wechat_server(settings, Handler):
        yield seen


def _path(page: Any) -> str:
    """The page's path: the browser carries the authorize URL's "#wechat_redirect" fragment
    through the redirects and the forms that post back to the same page."""
    return urllib.parse.urlsplit(page.url).path


def _wechat_visit_to_first_image(page: Any, live_server: Any, study: Study, *, bound: bool) -> None:
    """From the official account's menu to the first image: WeChat and back, the code (typed
    after phone and identity the first time; sent to the phone on record once bound)."""
    sent = len(sms_to(PHONE))
    page.goto(f"{live_server.url}{reverse('portal:wechat_start', args=['first'])}")
    if bound:
        assert _path(page) == reverse("portal:verify", args=["first"])
        assert len(sms_to(PHONE)) == sent + 1
    else:
        assert _path(page) == reverse("portal:login", args=["first"])
        page.fill("#id_phone", PHONE)
        page.fill("#id_identity", ID_NUMBER[-4:])
        page.click("#send-code")
        assert _path(page) == reverse("portal:verify", args=["first"])
    page.fill("#id_code", last_code(PHONE))
    page.click("#verify")
    assert _path(page) == reverse("portal:home", args=["first"])
    page.click("a.button")
    assert _path(page) == reverse("portal:study", args=["first", study.public_id])
    assert "胸部CT未见异常" in page.inner_text("#impression")
    page.click("#view-images")
    assert "/viewer/first/studies/" in page.url
    assert _first_image(page)["firstImageMs"] >= 0


def test_wechat_entry_to_first_image_then_bound_visit(browser, phone_page, live_server, published, fake_wechat):
    from apps.portal.models import WeChatBinding
    from tests.browser.conftest import PHONE as PHONE_CONTEXT

    assert "MicroMessenger" in phone_page.evaluate("navigator.userAgent")
    log = ResponseLog(phone_page, live_server.url)
    _wechat_visit_to_first_image(phone_page, live_server, published, bound=False)
    assert len(fake_wechat) == 1
    assert fake_wechat[0]["scope"] == "snsapi_base" and fake_wechat[0]["appid"] == "wx123"
    assert "MicroMessenger" in fake_wechat[0]["user_agent"]
    assert fake_wechat[0]["redirect_uri"] == f"{live_server.url}{reverse('portal:wechat_callback', args=['first'])}"
    log.assert_no_store()
    assert any("/wechat/callback/" in url for url, _status, _cache in log.seen)
    assert browser_storage(phone_page) == EMPTY_STORAGE
    with hospital_context(published.hospital):
        assert WeChatBinding.objects.count() == 1

    # Another day, WeChat's browser opens fresh (no cookies): the bound openid needs only the code.
    later = browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai", **PHONE_CONTEXT)
    try:
        page = later.new_page()
        later_log = ResponseLog(page, live_server.url)
        _wechat_visit_to_first_image(page, live_server, published, bound=True)
        assert len(fake_wechat) == 2
        later_log.assert_no_store()
        assert browser_storage(page) == EMPTY_STORAGE
    finally:
        later.close()


def test_expired_sms_link_offers_the_sign_in(phone_page, live_server, published, settings):
    """An old SMS link sends no code; the patient is offered the sign-in and gets there."""
    links = [m.params["link"] for m in sms_to(PHONE) if m.template_code == "study_published"]
    with hospital_context(published.hospital):
        EntryToken.objects.update(created_at=timezone.now() - timedelta(days=settings.PORTAL_SMS_LINK_TTL_DAYS + 1))
    log = ResponseLog(phone_page, live_server.url)
    response = phone_page.goto(links[0])
    assert response is not None and response.status == 410
    assert "此链接已失效" in phone_page.inner_text("#entry-refused")
    assert phone_page.locator("#send-code").count() == 0
    phone_page.click("#portal-login")
    assert phone_page.url.endswith(reverse("portal:login", args=["first"]))
    assert [m.template_code for m in sms_to(PHONE)] == ["study_published"]
    log.assert_no_store()
    assert browser_storage(phone_page) == EMPTY_STORAGE
