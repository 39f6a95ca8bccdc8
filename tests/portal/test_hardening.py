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


def _verify(client, code, hospital_code="first"):
    return client.post(reverse("portal:verify", args=[hospital_code]), {"code": code})


def _wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


def _events(hospital, action) -> list[AuditEvent]:
    with hospital_context(hospital):
        return list(AuditEvent.objects.filter(hospital=hospital, action=action).order_by("sequence"))


@pytest.mark.parametrize("check", ["id_last4", "birth_date"])
@pytest.mark.parametrize("answer", ["王小明王", "１２３４", "1990-01-0１", "é234"])
def test_non_ascii_identity_answer_is_a_wrong_answer_not_a_500(client, world, patient, request_code, check, answer):
    with hospital_context(world.first.hospital):
        PatientAccessPolicy.objects.create(hospital=world.first.hospital, identity_check=check)
    known = request_code(identity=answer)
    unknown = request_code(phone="13911112222", identity=answer, on=Client())
    assert known.status_code == unknown.status_code == 302
    assert sms_to(PHONE) == []


def test_full_width_digits_from_a_chinese_keyboard_are_understood(client, world, patient, request_code):
    full_width = str.maketrans("0123456789", "０１２３４５６７８９")
    assert request_code(phone=PHONE.translate(full_width)).status_code == 302
    code = last_code(PHONE)
    response = _verify(client, code.translate(full_width))
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
    settings.PORTAL_FAILURES_BEFORE_LOCK = 2  # per phone; an address may fail 3 times as often
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
    assert issued[-1].outcome != 0 and issued[-1].details.get("refused") == "rate_limit"
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
    response = client.post(reverse("portal:share_open", args=["first", raw]), {"access_code": access_code})
    assert response.status_code == 410
    assert "viewer_grants" not in client.session


def test_share_grant_ends_with_the_service_period(world, patient, make_published_study):
    hospital = world.first.hospital
    day = date.today()
    study = make_published_study(patient, study_date=day.replace(year=day.year - 15) + timedelta(days=1))
    with hospital_context(hospital):
        share, _raw, _code = share_create(request=None, hospital=hospital, patient=patient.patient, study=study, hours=72)
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
