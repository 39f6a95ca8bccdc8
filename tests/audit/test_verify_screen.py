"""The back office's integrity check of the audit trail: what `manage.py verify_audit_chain` does,
for a regulator or hospital admin who has no shell."""

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from apps.audit.vocabulary import Action
from apps.tenants.context import platform_scope
from tests.audit.test_chain import TABLE, _tamper

ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}
URL = "admin:audit_auditevent_verify"


def _record(hospital, count: int = 3) -> list[AuditEvent]:
    return [audit_record(action=Action.LOGIN, hospital=hospital, actor_name=f"user{i}") for i in range(count)]


@pytest.mark.django_db
def test_the_audit_admin_sees_every_chain_intact(client, sign_in, world):
    _record(world.first.hospital)
    _record(world.second.hospital)
    sign_in(world.platform["audit_admin"])
    response = client.get(reverse(URL), **ZH)
    assert response.status_code == 200
    page = response.content.decode()
    assert "所有链均已验证" in page
    assert "第一人民医院" in page and "第二人民医院" in page
    assert "已损坏" not in page
    with platform_scope("audit"):
        used = AuditEvent.objects.filter(action=Action.AUDIT_LOG_VIEWED).last()
    assert used is not None and used.details["broken"] == 0 and used.details["verified_chains"] >= 2


@pytest.mark.django_db(transaction=True)
def test_a_tampered_event_is_named_on_the_screen(client, sign_in, world, owner_connection):
    events = _record(world.first.hospital)
    _tamper(owner_connection, f"UPDATE {TABLE} SET actor_name = 'someone else' WHERE id = %s", [events[1].pk])
    sign_in(world.platform["audit_admin"])
    page = client.get(reverse(URL), **ZH).content.decode()
    assert "1 条链已损坏" in page
    assert str(events[1].public_id) in page
    assert "内容被篡改" in page


@pytest.mark.django_db
def test_a_hospital_admin_checks_their_own_chain_only(client, sign_in, world):
    _record(world.first.hospital)
    _record(world.second.hospital)
    sign_in(world.first["hospital_admin"])
    page = client.get(reverse(URL), **ZH).content.decode()
    assert "第一人民医院" in page and "第二人民医院" not in page


@pytest.mark.django_db
def test_staff_without_the_back_office_cannot_check(client, sign_in, world):
    sign_in(world.first["reporting_doctor"])
    response = client.get(reverse(URL))
    assert response.status_code in {302, 403}
