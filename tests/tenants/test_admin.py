"""API tokens in the back office: issued and revoked with the request's address on record, shown
with their scopes' names, and named the same way in the audit trail wherever they act."""

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.audit.vocabulary import Action
from apps.tenants.context import hospital_context, platform_scope
from apps.tenants.models import ApiToken
from apps.tenants.services import api_token_issue

pytestmark = pytest.mark.django_db


def _events(action: Action) -> list[AuditEvent]:
    with platform_scope("audit"):
        return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_a_token_issued_in_the_back_office_records_the_address(client, sign_in, world):
    sign_in(world.first["hospital_admin"])

    client.post(reverse("admin:tenants_apitoken_add"), {"name": "RIS", "scopes": ["read"]}, REMOTE_ADDR="10.1.2.3")

    [issued] = _events(Action.API_TOKEN_ISSUED)
    assert issued.ip_address == "10.1.2.3"
    assert issued.actor_id == world.first["hospital_admin"].pk


def test_a_token_issued_by_the_command_has_no_address(world):
    api_token_issue(hospital=world.first.hospital, name="cli", scopes=["read"])

    [issued] = _events(Action.API_TOKEN_ISSUED)
    assert issued.ip_address is None


def test_a_token_revoked_in_the_back_office_records_the_address(client, sign_in, world):
    token, _raw = api_token_issue(hospital=world.first.hospital, name="RIS", scopes=["read"])
    sign_in(world.first["hospital_admin"])

    client.post(
        reverse("admin:tenants_apitoken_changelist"),
        {"action": "revoke", "_selected_action": [token.pk]},
        REMOTE_ADDR="10.1.2.4",
    )

    [revoked] = _events(Action.API_TOKEN_REVOKED)
    assert revoked.ip_address == "10.1.2.4"


def test_the_token_list_names_the_scopes(client, sign_in, world):
    api_token_issue(hospital=world.first.hospital, name="RIS", scopes=["read", "write"])
    sign_in(world.first["hospital_admin"])

    page = client.get(reverse("admin:tenants_apitoken_changelist"), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()

    assert "读取、写入" in page
    assert "[&quot;read&quot;, &quot;write&quot;]" not in page


def test_dicomweb_names_the_token_as_the_audit_trail_does_everywhere(client, world):
    from tests.dicomweb.helpers import token_for

    raw = token_for(world.first.hospital)
    with hospital_context(world.first.hospital):
        token = ApiToken.objects.get(prefix=raw[:12])

    client.get("/api/first/dicom-web/studies", HTTP_AUTHORIZATION=f"Bearer {raw}")

    [queried] = _events(Action.STUDIES_QUERIED)
    assert queried.actor_name == token.actor_name == f"api-token:{raw[:12]}"
