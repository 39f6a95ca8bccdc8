"""The hospital API base: URL code plus bearer token, same 404 for absent and not yours."""

import pytest

from apps.audit.models import AuditEvent
from apps.audit.vocabulary import Action
from apps.tenants.context import platform_scope
from apps.tenants.models import ApiToken
from apps.tenants.services import api_token_issue, api_token_revoke

pytestmark = pytest.mark.django_db


def _get(client, code: str, token: str | None = None, header: str | None = None):
    headers = {}
    if header is not None:
        headers["HTTP_AUTHORIZATION"] = header
    elif token is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client.get(f"/api/{code}/", **headers)


def _failures() -> list[AuditEvent]:
    with platform_scope("audit"):
        return list(AuditEvent.objects.filter(action=Action.API_AUTH_FAILED).order_by("id"))


def test_valid_token_reaches_its_hospital(client, world):
    _token, raw = api_token_issue(hospital=world.first.hospital, name="RIS", scopes=["read"])
    response = _get(client, "first", raw)
    assert response.status_code == 200
    assert response.json()["hospital"]["code"] == "first"
    assert response.json()["token"] == {"name": "RIS", "scopes": ["read"]}
    assert "no-store" in response["Cache-Control"]
    token = ApiToken.objects.filter(prefix=raw[:12])
    assert token.count() == 0  # outside the hospital's context the row is invisible


def test_token_of_another_hospital_gets_404(client, world):
    _token, raw = api_token_issue(hospital=world.second.hospital, name="RIS", scopes=["read", "write"])
    response = _get(client, "first", raw)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    [failure] = _failures()
    assert failure.details["reason"] == "other_hospital"
    assert failure.hospital_id == world.first.hospital.pk


def test_unknown_hospital_code_gets_the_same_404(client, world):
    _token, raw = api_token_issue(hospital=world.first.hospital, name="RIS", scopes=["read"])
    absent = _get(client, "no-such-hospital", raw)
    other = _get(client, "second", raw)
    assert absent.status_code == other.status_code == 404
    assert absent.json() == other.json()


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("Basic dXNlcjpwYXNz", "missing"),
        ("Bearer not-a-token", "malformed"),
        ("Bearer yxy_" + "A" * 43, "unknown"),
    ],
)
def test_missing_or_bad_token_gets_401_json_and_is_audited(client, world, header, reason):
    response = _get(client, "first", header=header)
    assert response.status_code == 401
    assert response.json()["error"] == "authentication_failed"
    assert response["WWW-Authenticate"].startswith("Bearer")
    [failure] = _failures()
    assert failure.details["reason"] == reason
    assert failure.hospital_id == world.first.hospital.pk
    assert failure.entry_point == "api"


def test_revoked_token_gets_401(client, world):
    token, raw = api_token_issue(hospital=world.first.hospital, name="RIS", scopes=["read"])
    api_token_revoke(token=token)
    assert _get(client, "first", raw).status_code == 401
    assert _failures()[0].details["reason"] == "revoked"


def test_token_without_the_scope_gets_403(client, world):
    _token, raw = api_token_issue(hospital=world.first.hospital, name="uploader", scopes=["write"])
    response = _get(client, "first", raw)
    assert response.status_code == 403
    assert response.json()["error"] == "permission_denied"


def test_issue_api_token_command_prints_a_working_token(client, world):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("issue_api_token", "second", "--name", "PACS", "--scope", "read", stdout=out)
    raw = out.getvalue().strip()
    assert raw.startswith("yxy_")
    assert _get(client, "second", raw).status_code == 200
    assert _get(client, "first", raw).status_code == 404


def test_last_used_is_recorded_at_most_once_a_minute(client, world):
    from datetime import timedelta

    from django.utils import timezone

    from apps.tenants.context import hospital_context

    token, raw = api_token_issue(hospital=world.first.hospital, name="RIS", scopes=["read"])
    assert _get(client, "first", raw).status_code == 200
    with hospital_context(world.first.hospital):
        first_use = ApiToken.objects.get(pk=token.pk).last_used_at
    assert first_use is not None
    assert _get(client, "first", raw).status_code == 200
    with hospital_context(world.first.hospital):
        assert ApiToken.objects.get(pk=token.pk).last_used_at == first_use
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now() - timedelta(minutes=5))
    assert _get(client, "first", raw).status_code == 200
    with hospital_context(world.first.hospital):
        last_used = ApiToken.objects.get(pk=token.pk).last_used_at
        assert last_used is not None
        assert last_used > first_use
