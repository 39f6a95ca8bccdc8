"""Portal sign-in: phone + identity check -> SMS code -> a patient session."""

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.audit.vocabulary import Action
from apps.tenants.context import hospital_context
from tests.portal.conftest import ID_NUMBER, PHONE, last_code, sms_to

pytestmark = pytest.mark.django_db


def _verify(client, code, hospital_code="first"):
    return client.post(reverse("portal:verify", args=[hospital_code]), {"code": code})


def test_code_sent_to_the_phone_on_record_signs_the_patient_in(client, world, patient, study, request_code):
    response = request_code()
    assert response.status_code == 302
    assert response["Location"] == reverse("portal:verify", args=["first"])
    code = last_code(PHONE)
    assert len(code) == 6 and code.isdigit()
    response = _verify(client, code)
    assert response.status_code == 302
    assert response["Location"] == reverse("portal:home", args=["first"])
    home = client.get(reverse("portal:home", args=["first"]))
    assert home.status_code == 200
    assert "胸部CT" in home.content.decode()
    assert "no-store" in home["Cache-Control"]
    with hospital_context(world.first.hospital):
        actions = list(AuditEvent.objects.filter(hospital=world.first.hospital).values_list("action", flat=True))
    assert Action.CODE_ISSUED in actions and Action.CODE_ACCEPTED in actions and Action.PATIENT_LOGIN in actions


def test_wrong_identity_sends_nothing_and_answers_the_same(client, world, patient, request_code):
    response = request_code(identity="9999")
    assert response.status_code == 302
    assert response["Location"] == reverse("portal:verify", args=["first"])
    assert sms_to(PHONE) == []


def test_wrong_code_is_refused_with_a_clear_message(client, world, patient, request_code):
    request_code()
    real = last_code(PHONE)
    wrong = "000000" if real != "000000" else "111111"
    response = _verify(client, wrong)
    assert response.status_code == 400
    assert "验证码不正确" in response.content.decode() or "not right" in response.content.decode()
    assert client.get(reverse("portal:home", args=["first"])).status_code == 302


def test_reused_code_is_refused(client, world, patient, request_code):
    request_code()
    code = last_code(PHONE)
    assert _verify(client, code).status_code == 302
    other = client.__class__()
    other.post(reverse("portal:login", args=["first"]), {"phone": PHONE, "identity": ID_NUMBER[-4:]})
    # The first client's challenge is gone with its old session; replay the same code on a new challenge.
    session_challenge = client.session.get("portal_challenge")
    assert session_challenge is None
    from apps.portal.models import VerificationCode
    from apps.portal.verification import code_verify

    with hospital_context(world.first.hospital):
        used = VerificationCode.objects.filter(used_at__isnull=False).get()
        from django.test import RequestFactory

        result = code_verify(request=RequestFactory().post("/"), hospital=world.first.hospital,
                             challenge_id=str(used.public_id), code=code)  # fmt: skip
    assert result.patient is None
    assert "already been used" in result.error or "已使用" in result.error
