"""The per-address limits on code requests and wrong codes: one address is often a whole
hospital's Wi-Fi, so the defaults let a busy hour through, and past the limit every phone number,
known or not, gets the same clear message."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.audit.vocabulary import Action
from apps.portal.models import EntryToken
from apps.portal.services import entry_token_create
from apps.tenants.context import hospital_context
from tests.portal.conftest import PHONE, sms_to

pytestmark = pytest.mark.django_db

NETWORK_MESSAGE = "当前网络"


def _without_form_values(html: str) -> str:
    """The page minus the CSRF token and the phone number typed (echoed in the form)."""
    return re.sub(r'name="(csrfmiddlewaretoken|phone)"( [a-z-]+="[^"]*")*', "", html)


def test_a_busy_hour_on_one_address_is_not_refused(world, patient, request_code):
    """Sixty patients signing in from the hospital's Wi-Fi within the hour (the old default of 30
    locked the whole hospital out for half an hour)."""
    wifi = "10.20.30.40"
    statuses = {
        request_code(phone=f"1390000{index:04d}", on=Client(REMOTE_ADDR=wifi)).status_code for index in range(59)
    }
    assert statuses == {302}
    assert request_code(on=Client(REMOTE_ADDR=wifi)).status_code == 302
    assert len(sms_to(PHONE)) == 1


def test_over_the_address_limit_the_answer_is_the_same_for_every_phone(world, patient, request_code, settings):
    settings.PORTAL_CODES_PER_IP_PER_HOUR = 2
    wifi = "10.20.30.41"
    for index in range(2):
        assert request_code(phone=f"1390000000{index}", on=Client(REMOTE_ADDR=wifi)).status_code == 302
    known = request_code(on=Client(REMOTE_ADDR=wifi))
    unknown = request_code(phone="13911112222", on=Client(REMOTE_ADDR=wifi))
    assert known.status_code == unknown.status_code == 429
    page_known, page_unknown = known.content.decode(), unknown.content.decode()
    assert NETWORK_MESSAGE in page_known and "移动数据" in page_known
    assert _without_form_values(page_known) == _without_form_values(page_unknown)
    assert sms_to(PHONE) == []
    with hospital_context(world.first.hospital):
        refused = AuditEvent.objects.filter(action=Action.CODE_ISSUED, details__refused="address_limit")
        assert refused.count() == 2
        assert all(PHONE not in str(event.details) for event in refused)
    # Another address is not affected.
    assert request_code(on=Client(REMOTE_ADDR="10.20.30.42")).status_code == 302


def test_address_limit_also_holds_for_qr_tokens(world, patient, study, settings, django_capture_on_commit_callbacks):
    settings.PORTAL_CODES_PER_IP_PER_HOUR = 1
    with hospital_context(world.first.hospital):
        _entry, raw = entry_token_create(
            actor=None, hospital=world.first.hospital, study=study, kind=EntryToken.Kind.QR
        )
    url = reverse("portal:qr_entry", args=["first", raw])
    wifi = Client(REMOTE_ADDR="10.20.30.43")
    with django_capture_on_commit_callbacks(execute=True):
        assert wifi.post(url).status_code == 302
        response = wifi.post(url)
    assert response.status_code == 429 and NETWORK_MESSAGE in response.content.decode()
    assert len(sms_to(PHONE)) == 1


def test_wrong_codes_per_address_before_a_lock_is_a_setting(world, make_patient, request_code, settings):
    settings.PORTAL_FAILURES_PER_IP_BEFORE_LOCK = 2
    settings.PORTAL_FAILURES_BEFORE_LOCK = 100
    wifi = Client(REMOTE_ADDR="10.20.30.44")
    request_code(on=wifi)
    for _ in range(3):
        wifi.post(reverse("portal:verify", args=["first"]), {"code": "000000"})
    with hospital_context(world.first.hospital):
        locks = AuditEvent.objects.filter(action=Action.PATIENT_LOCKED, details__scope="address")
        assert locks.count() == 1
    response = request_code(phone="13900000001", on=wifi)
    assert response.status_code == 429 and NETWORK_MESSAGE in response.content.decode()
