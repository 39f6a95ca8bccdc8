"""Findings of the security review of patient access, each pinned by a test: odd characters
never give a 500 (nor a hint that a phone exists), the per-address lock holds, locks run out
cleanly, refusals are audited, and withdrawal or the end of the service period closes shares
and open viewer grants at once."""

from datetime import date, timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.audit.vocabulary import Action
from apps.portal.models import PatientAccessPolicy
from apps.portal.security import Limit, throttle_hit, throttle_locked
from apps.portal.services import share_create, share_grant_is_valid
from apps.tenants.context import hospital_context
from apps.viewer.grants import viewer_url
from tests.portal.conftest import PHONE, last_code, sms_to

pytestmark = pytest.mark.django_db

# What a Chinese keyboard in full-width mode types for 0-9.
FULL_WIDTH = str.maketrans("0123456789", "".join(chr(0xFF10 + digit) for digit in range(10)))


def _verify(client, code, hospital_code="first"):
    return client.post(reverse("portal:verify", args=[hospital_code]), {"code": code})


def _wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


def _events(hospital, action) -> list[AuditEvent]:
    with hospital_context(hospital):
        return list(AuditEvent.objects.filter(hospital=hospital, action=action).order_by("sequence"))


@pytest.mark.parametrize("check", ["id_last4", "birth_date"])
@pytest.mark.parametrize(
    "answer", ["王小明王", "9999".translate(FULL_WIDTH), "1990-01-02".translate(FULL_WIDTH), "é234"]
)
def test_non_ascii_identity_answer_is_a_wrong_answer_not_a_500(client, world, patient, request_code, check, answer):
    with hospital_context(world.first.hospital):
        PatientAccessPolicy.objects.create(hospital=world.first.hospital, identity_check=check)
    known = request_code(identity=answer)
    unknown = request_code(phone="13911112222", identity=answer, on=Client())
    assert known.status_code == unknown.status_code == 302
    assert sms_to(PHONE) == []


def test_full_width_digits_from_a_chinese_keyboard_are_understood(client, world, patient, request_code):
    assert request_code(phone=PHONE.translate(FULL_WIDTH), identity="1234".translate(FULL_WIDTH)).status_code == 302
    code = last_code(PHONE)
    response = _verify(client, code.translate(FULL_WIDTH))
    assert response.status_code == 302
    assert response["Location"] == reverse("portal:home", args=["first"])


def test_non_ascii_wechat_state_is_refused_cleanly(client, world, settings):
    settings.WECHAT_APP_ID, settings.WECHAT_APP_SECRET = "wx123", "wx-secret"
    settings.WECHAT_AUTHORIZE_URL = "http://127.0.0.1:9/authorize"
    assert client.get(reverse("portal:wechat_start", args=["first"])).status_code == 302
    response = client.get(reverse("portal:wechat_callback", args=["first"]), {"code": "c", "state": "状态"})
    assert response.status_code == 400


def test_wrong_codes_from_one_address_lock_that_address(world, make_patient, request_code, settings):
    """Spreading guesses over many phones (each below its own lock) still locks the address."""
    settings.PORTAL_FAILURES_BEFORE_LOCK = 2  # per phone
    settings.PORTAL_FAILURES_PER_IP_BEFORE_LOCK = 6
    record = make_patient(world.first.hospital, phone="13600000000", id_number="11010119800101999X")
    waiting = Client()
    assert request_code(phone=record.phone, identity="999X", on=waiting).status_code == 302
    guesser = Client()
    for index in range(4):
        request_code(phone=f"1370000000{index}", on=guesser)
        for _ in range(2):
            _verify(guesser, "000000")
    assert _events(world.first.hospital, Action.PATIENT_LOCKED)
    # The right code is refused at the locked address, and no code is sent from it.
    response = _verify(waiting, last_code(record.phone))
    assert response.status_code == 400
    assert waiting.session.get("portal_patient") is None
    sent = len(sms_to(record.phone))
    assert request_code(phone=record.phone, identity="999X", on=Client()).status_code == 429
    assert len(sms_to(record.phone)) == sent
    # Another address is not affected.
    assert request_code(phone=record.phone, identity="999X", on=Client(REMOTE_ADDR="127.0.0.8")).status_code == 302


def test_a_lock_that_ran_out_starts_a_fresh_count(world):
    """Otherwise the first wrong code after the lock ends locks the phone again at once."""
    from apps.portal.models import Throttle

    limit = Limit("test-lock", 2, 3600, 600)
    assert [throttle_hit(limit, "v") for _ in range(3)] == [True, True, False]
    assert throttle_locked(limit.scope, "v")
    Throttle.objects.update(locked_until=timezone.now() - timedelta(seconds=1))
    assert throttle_hit(limit, "v") is True
    assert not throttle_locked(limit.scope, "v")


def test_refused_code_requests_are_audited(world, patient, request_code, settings):
    settings.PORTAL_CODES_PER_PHONE_PER_HOUR = 1
    request_code()
    assert request_code().status_code == 429
    issued = _events(world.first.hospital, Action.CODE_ISSUED)
    assert len(issued) == 2
    assert issued[-1].outcome != 0 and issued[-1].details.get("refused") == "phone_limit"
    assert PHONE not in str(issued[-1].details)


def test_share_of_a_withdrawn_study_stops_working(client, world, patient, study):
    from apps.reports.publication import study_unpublish

    hospital = world.first.hospital
    with hospital_context(hospital):
        share, raw, access_code = share_create(
            request=None, hospital=hospital, patient=patient.patient, study=study, hours=24
        )
    grant = {"hospital": "first", "study": str(study.public_id), "mode": "share", "share": str(share.public_id)}
    assert share_grant_is_valid(hospital, grant) is True
    with hospital_context(hospital):
        study_unpublish(actor=world.first["reporting_doctor"], study=study, reason="报告录入错误")
    assert share_grant_is_valid(hospital, grant) is False
    # As for an unknown link (the patient no longer sees the study either).
    response = client.post(reverse("portal:share_open", args=["first", raw]), {"access_code": access_code})
    assert response.status_code == 404
    assert "viewer_grants" not in client.session


def test_share_grant_ends_with_the_service_period(world, patient, make_published_study):
    hospital = world.first.hospital
    day = date.today()
    study = make_published_study(patient, study_date=day.replace(year=day.year - 15) + timedelta(days=1))
    with hospital_context(hospital):
        share, _raw, _code = share_create(
            request=None, hospital=hospital, patient=patient.patient, study=study, hours=72
        )
    grant = {"hospital": "first", "study": str(study.public_id), "mode": "share", "share": str(share.public_id)}
    assert share_grant_is_valid(hospital, grant) is True
    with hospital_context(hospital):
        study.study_date = day.replace(year=day.year - 15)
        study.save(update_fields=["study_date"])
    assert share_grant_is_valid(hospital, grant) is False


def test_patient_viewer_grant_ends_when_the_study_is_withdrawn(client, world, patient, study, sign_in_patient):
    from apps.reports.publication import study_unpublish

    sign_in_patient(patient)
    assert client.post(reverse("portal:view_images", args=["first", study.public_id])).status_code == 302
    assert client.get(viewer_url(study)).status_code == 200
    with hospital_context(world.first.hospital):
        study_unpublish(actor=world.first["reporting_doctor"], study=study, reason="报告录入错误")
    assert client.get(viewer_url(study)).status_code == 404


def test_sign_in_gives_a_new_session_key(client, world, patient, request_code):
    """Session fixation: a key known before the code was entered is worthless after."""
    request_code()
    before = client.session.session_key
    assert _verify(client, last_code(PHONE)).status_code == 302
    assert client.session.session_key != before
    fixed = Client()
    fixed.cookies["sessionid"] = before
    assert fixed.get(reverse("portal:home", args=["first"])).status_code == 302


def test_patient_session_ends_after_its_lifetime(client, world, patient, study, sign_in_patient):
    sign_in_patient(patient)
    assert client.get(reverse("portal:home", args=["first"])).status_code == 200
    session = client.session
    session["portal_patient"] = {**session["portal_patient"], "expires": int(timezone.now().timestamp()) - 1}
    session.save()
    assert client.get(reverse("portal:home", args=["first"])).status_code == 302
    assert client.get(reverse("portal:study", args=["first", study.public_id])).status_code == 302


ODD_VALUES = ["", "x" * 5000, "\x00", "123".translate(FULL_WIDTH), "<script>", "../../", "%ff", "9" * 40]


def _odd_requests(hospital_code: str, study_id: str) -> list[tuple[str, str, dict[str, str]]]:
    paths = [
        "/portal/", f"/portal/{hospital_code}/", f"/portal/{hospital_code}/login/",
        f"/portal/{hospital_code}/verify/",
        f"/portal/{hospital_code}/q/{'a' * 30}/", f"/portal/{hospital_code}/share/{'a' * 30}/",
        f"/portal/{hospital_code}/wechat/callback/", f"/portal/{hospital_code}/studies/{study_id}/",
        f"/portal/{hospital_code}/studies/{study_id}/view/", f"/portal/{hospital_code}/studies/{study_id}/download/",
        f"/portal/{hospital_code}/studies/{study_id}/share/", f"/portal/{hospital_code}/download/{'a' * 40}/",
        f"/portal/{hospital_code}/shares/", f"/portal/{hospital_code}/history/", "/s/" + "a" * 30,
        "/portal/%00/", "/portal/%ff/login/",
        f"/portal/{hospital_code}/logout/",  # last: it ends the session
    ]  # fmt: skip
    fields = ["h", "phone", "identity", "code", "hours", "access_code", "state"]
    requests = []
    for path in paths:
        for value in ODD_VALUES:
            data = dict.fromkeys(fields, value)
            requests += [("get", path, data), ("post", path, data)]
        requests += [("put", path, {}), ("delete", path, {})]
    return requests


def test_odd_input_on_every_portal_page_is_never_a_500(world, patient, study, sign_in_patient, settings):
    settings.PORTAL_CODES_PER_IP_PER_HOUR = 10_000
    settings.PORTAL_CODES_PER_PHONE_PER_HOUR = 10_000
    anonymous, signed_in = Client(), sign_in_patient(patient, on=Client())
    for browser in (anonymous, signed_in):
        statuses = set()
        for method, path, data in _odd_requests("first", str(study.public_id)):
            response = getattr(browser, method)(path, data)
            assert response.status_code < 500, (method, path, data)
            statuses.add(response.status_code)
        assert 200 in statuses and 404 in statuses
        # Raw bytes that are not UTF-8.
        response = browser.post(
            "/portal/first/login/", b"phone=%ff%fe&identity=\xff\xfe", content_type="application/x-www-form-urlencoded"
        )
        assert response.status_code < 500


def test_a_phone_gets_at_most_ten_codes_a_day(world, patient, request_code):
    """The hourly limit alone would let a found exam slip send 120 codes a day to the patient."""
    from apps.portal.models import Throttle

    statuses = []
    for _hour in range(3):
        statuses += [request_code().status_code for _ in range(5)]
        Throttle.objects.update(window_started_at=timezone.now() - timedelta(hours=1, minutes=1))
    assert statuses == [302] * 10 + [429] * 5
    assert len(sms_to(PHONE)) == 10


def test_an_address_locked_for_guessing_tokens_is_audited(client, world):
    from apps.tenants.context import platform_scope

    for _ in range(21):
        assert client.get(reverse("short_link", args=["g" * 32])).status_code == 404
    assert client.get(reverse("short_link", args=["g" * 32])).status_code == 429
    with platform_scope("audit"):
        locks = list(AuditEvent.objects.filter(action=Action.PATIENT_LOCKED))
    assert len(locks) == 1
    assert locks[0].details == {"scope": "address", "reason": "token_guessing"}
    assert locks[0].ip_address == "127.0.0.1"
