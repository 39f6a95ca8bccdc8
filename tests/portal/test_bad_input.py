"""Refusals: wrong, expired, reused and over-tried codes; brute force; tokens of another hospital
and guessed ones; revoked shares; script in displayed text; no hint whether a phone exists."""

import re
from datetime import date, timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.audit.vocabulary import Action
from apps.portal.models import EntryToken, VerificationCode
from apps.portal.security import new_token
from apps.portal.services import entry_token_create, share_create, share_grant_is_valid, share_revoke
from apps.tenants.context import hospital_context
from tests.portal.conftest import ID_NUMBER, PHONE, last_code, sms_to

pytestmark = pytest.mark.django_db


def _verify(client, code, hospital_code="first"):
    return client.post(reverse("portal:verify", args=[hospital_code]), {"code": code})


def _wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


def _actions(hospital) -> list[str]:
    with hospital_context(hospital):
        return list(AuditEvent.objects.filter(hospital=hospital).order_by("sequence").values_list("action", flat=True))


def test_expired_code_is_refused(client, world, patient, request_code):
    request_code()
    code = last_code(PHONE)
    with hospital_context(world.first.hospital):
        VerificationCode.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = _verify(client, code)
    assert response.status_code == 400
    assert "过期" in response.content.decode()
    assert client.get(reverse("portal:home", args=["first"])).status_code == 302


def test_five_wrong_tries_end_a_code(client, world, patient, request_code, settings):
    settings.PORTAL_FAILURES_BEFORE_LOCK = 100
    request_code()
    code = last_code(PHONE)
    for _ in range(5):
        assert _verify(client, _wrong(code)).status_code == 400
    response = _verify(client, code)
    assert response.status_code == 400
    assert "次数过多" in response.content.decode() or "Too many" in response.content.decode()


def test_brute_force_locks_the_phone_audits_and_sends_no_more_sms(client, world, patient, request_code, settings):
    settings.PORTAL_FAILURES_BEFORE_LOCK = 3
    request_code()
    code = last_code(PHONE)
    for _ in range(4):
        _verify(client, _wrong(code))
    assert Action.PATIENT_LOCKED in _actions(world.first.hospital)
    # Even the right code is refused while locked.
    response = _verify(client, code)
    assert response.status_code == 400
    assert "锁定" in response.content.decode()
    sent = len(sms_to(PHONE))
    response = request_code()
    assert response.status_code == 429
    assert "锁定" in response.content.decode()
    assert len(sms_to(PHONE)) == sent


def test_codes_per_phone_are_limited_alike_for_known_and_unknown_numbers(
    client, world, patient, request_code, settings
):
    settings.PORTAL_CODES_PER_PHONE_PER_HOUR = 2
    for phone in (PHONE, "13900000000"):
        statuses = [request_code(phone=phone).status_code for _ in range(3)]
        assert statuses == [302, 302, 429]
    assert len(sms_to(PHONE)) == 2
    assert sms_to("13900000000") == []


def _normalise(html: str) -> str:
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", html)


def test_no_hint_whether_a_phone_exists(world, patient, request_code):
    known, unknown = Client(), Client()
    first = request_code(on=known)
    second = request_code(phone="13911112222", on=unknown)
    assert (first.status_code, first["Location"]) == (second.status_code, second["Location"])
    page_known = _normalise(known.get(first["Location"]).content.decode())
    page_unknown = _normalise(unknown.get(second["Location"]).content.decode())
    assert page_known == page_unknown
    wrong_known = _normalise(_verify(known, "123456").content.decode())
    wrong_unknown = _normalise(_verify(unknown, "123456").content.decode())
    assert wrong_known.replace("123456", "") == wrong_unknown.replace("123456", "")
    assert sms_to("13911112222") == []


def test_known_and_unknown_numbers_cost_the_same_database_work(world, patient, settings):
    """No useful timing oracle: the SMS goes out from a task after commit, so the request does
    nearly the same work either way (a lookup, a challenge row, throttles, an audit event); a known
    number adds only its outbox row (one INSERT in a savepoint). Counted in statements, not timed,
    so the test does not depend on how busy the machine is."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.PORTAL_CODES_PER_PHONE_PER_HOUR = 1000
    settings.PORTAL_CODES_PER_IP_PER_HOUR = 1000
    client = Client()
    counts: dict[str, list[int]] = {"known": [], "unknown": []}
    for _ in range(2):
        for label, phone in (("known", PHONE), ("unknown", "13722223333")):
            with CaptureQueriesContext(connection) as queries:
                client.post(reverse("portal:login", args=["first"]), {"phone": phone, "identity": ID_NUMBER[-4:]})
            counts[label].append(len(queries))
    # The first round warms caches; compare the second.
    assert 0 <= counts["known"][1] - counts["unknown"][1] <= 3, counts


def test_qr_token_of_another_hospital_is_404(client, world, make_patient, make_published_study):
    record = make_patient(world.second.hospital)
    study = make_published_study(record)
    with hospital_context(world.second.hospital):
        _entry, raw = entry_token_create(
            actor=None, hospital=world.second.hospital, study=study, kind=EntryToken.Kind.QR
        )
    assert client.get(reverse("portal:qr_entry", args=["first", raw])).status_code == 404
    assert client.get(reverse("portal:qr_entry", args=["second", raw])).status_code == 200
    # An SMS-link token is not a QR token, and the reverse.
    assert client.get(reverse("short_link", args=[raw])).status_code == 404


def test_guessing_tokens_locks_the_address_out(client, world, patient, study, settings):
    with hospital_context(world.first.hospital):
        _entry, raw = entry_token_create(
            actor=None, hospital=world.first.hospital, study=study, kind=EntryToken.Kind.SMS
        )
    for _ in range(21):
        assert client.get(reverse("short_link", args=[new_token()])).status_code == 404
    response = client.get(reverse("short_link", args=[raw]))
    assert response.status_code == 429
    assert Client(REMOTE_ADDR="127.0.0.9").get(reverse("short_link", args=[raw])).status_code == 200


def test_malformed_tokens_are_404_not_500(client, world):
    for token in ["x", "a" * 300, "%00", "../../etc"]:
        assert client.get(f"/s/{token}").status_code == 404


def test_another_patients_study_is_404(
    client, world, patient, study, make_patient, make_published_study, sign_in_patient
):
    other = make_published_study(
        make_patient(world.first.hospital, phone="13600000000", id_number="11010119800101999X")
    )
    sign_in_patient(patient)
    assert client.get(reverse("portal:study", args=["first", study.public_id])).status_code == 200
    assert client.get(reverse("portal:study", args=["first", other.public_id])).status_code == 404
    assert client.post(reverse("portal:view_images", args=["first", other.public_id])).status_code == 404
    assert client.post(reverse("portal:share_new", args=["first", other.public_id]), {"hours": 24}).status_code == 404


def test_a_session_of_one_hospital_opens_nothing_at_another(client, world, patient, study, sign_in_patient):
    sign_in_patient(patient)
    assert client.get(reverse("portal:home", args=["second"])).status_code == 302
    assert client.get(reverse("portal:study", args=["second", study.public_id])).status_code == 302


def test_revoked_share_stops_working(client, world, patient, study):
    with hospital_context(world.first.hospital):
        share, raw, access_code = share_create(
            request=None, hospital=world.first.hospital, patient=patient.patient, study=study, hours=24
        )
        grant = {"hospital": "first", "study": str(study.public_id), "mode": "share", "share": str(share.public_id)}
    assert share_grant_is_valid(world.first.hospital, grant) is True
    with hospital_context(world.first.hospital):
        share_revoke(request=None, share=share)
    assert share_grant_is_valid(world.first.hospital, grant) is False
    response = client.post(reverse("portal:share_open", args=["first", raw]), {"access_code": access_code})
    assert response.status_code == 410
    assert "撤回" in response.content.decode() or "withdrawn" in response.content.decode()
    assert client.get(reverse("portal:share_open", args=["second", raw])).status_code == 404


def test_script_in_displayed_text_is_inert(client, world, make_patient, make_published_study, sign_in_patient):
    record = make_patient(world.first.hospital)
    script = "<script>alert(1)</script>"
    fields = {"exam_description": script, "technique": "", "findings": f"<img src=x onerror=alert(2)>{script}",
              "impression": script, "recommendation": ""}  # fmt: skip
    study = make_published_study(record, description=script, fields=fields)
    sign_in_patient(record)
    for url in (reverse("portal:home", args=["first"]), reverse("portal:study", args=["first", study.public_id])):
        html = client.get(url).content.decode()
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_service_period_ends_access_with_a_clear_message(client, world, patient, make_published_study, sign_in_patient):
    old_day = date.today().replace(year=date.today().year - 16)
    outpatient = make_published_study(patient, study_date=old_day, encounter="outpatient")
    inpatient = make_published_study(patient, study_date=old_day, encounter="inpatient")
    sign_in_patient(patient)
    response = client.get(reverse("portal:study", args=["first", outpatient.public_id]))
    assert response.status_code == 410
    assert "服务期" in response.content.decode()
    assert client.post(reverse("portal:view_images", args=["first", outpatient.public_id])).status_code == 410
    assert client.get(reverse("portal:study", args=["first", inpatient.public_id])).status_code == 200
    assert Action.STUDY_ACCESS_EXPIRED in _actions(world.first.hospital)


def test_old_counters_are_pruned_but_running_locks_kept(world):
    from apps.portal.models import Throttle
    from apps.portal.security import throttles_prune

    long_ago = timezone.now() - timedelta(days=2)
    Throttle.objects.create(key="a" * 64, window_started_at=long_ago, count=3)
    Throttle.objects.create(
        key="b" * 64, window_started_at=long_ago, count=9, locked_until=timezone.now() + timedelta(hours=1)
    )
    Throttle.objects.create(key="c" * 64, window_started_at=timezone.now(), count=1)
    assert throttles_prune() == 1
    assert sorted(Throttle.objects.values_list("key", flat=True)) == ["b" * 64, "c" * 64]


def test_codes_per_token_are_limited_then_the_token_locks(client, world, patient, study, settings):
    settings.PORTAL_CODES_PER_TOKEN_PER_HOUR = 2
    settings.PORTAL_CODES_PER_PHONE_PER_HOUR = 100
    with hospital_context(world.first.hospital):
        _entry, raw = entry_token_create(
            actor=None, hospital=world.first.hospital, study=study, kind=EntryToken.Kind.QR
        )
    url = reverse("portal:qr_entry", args=["first", raw])
    assert [client.post(url).status_code for _ in range(3)] == [302, 302, 429]
    # Locked: a new hour's window does not reopen it while the lock runs.
    from apps.portal.models import Throttle

    Throttle.objects.update(window_started_at=timezone.now() - timedelta(hours=2))
    assert client.post(url).status_code == 429


def test_codes_per_address_are_limited(world, patient, request_code, settings):
    settings.PORTAL_CODES_PER_IP_PER_HOUR = 3
    statuses = [request_code(phone=f"1390000000{index}").status_code for index in range(4)]
    assert statuses == [302, 302, 302, 429]
    # Another address is not affected.
    assert request_code(phone="13900000009", on=Client(REMOTE_ADDR="127.0.0.7")).status_code == 302
