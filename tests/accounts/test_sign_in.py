"""Staff sign-in: password plus TOTP, lockout, audit of every attempt."""

import pytest
from django.urls import reverse
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.accounts.models import User
from apps.audit.models import AuditEvent
from apps.audit.vocabulary import Action
from apps.tenants.context import platform_scope
from tests.factories import DEFAULT_PASSWORD, UserFactory, confirmed_totp_device

pytestmark = pytest.mark.django_db
LOGIN = reverse("accounts:login")
VERIFY = reverse("accounts:otp_verify")
ENROL = reverse("accounts:otp_enrol")


def _code(device: TOTPDevice) -> str:
    return str(TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift).token()).zfill(6)


def _events(action: Action) -> list[AuditEvent]:
    with platform_scope("audit"):
        return list(AuditEvent.objects.filter(action=action).order_by("sequence"))


def _password_step(client, username: str, password: str = DEFAULT_PASSWORD):
    return client.post(LOGIN, {"username": username, "password": password})


def test_password_then_totp_signs_in_and_audits(client):
    user = UserFactory()
    device = confirmed_totp_device(user)
    response = _password_step(client, user.username)
    assert response.status_code == 302
    assert response["Location"] == VERIFY
    # Not signed in yet: the second factor is pending.
    assert client.get(reverse("core:home"))["Location"] == LOGIN
    response = client.post(VERIFY, {"token": _code(device)})
    assert response.status_code == 302
    assert client.get(reverse("core:home")).status_code == 200
    [login] = _events(Action.LOGIN)
    assert login.actor_id == user.pk
    assert login.details == {"second_factor": True}


def test_wrong_totp_is_refused_and_audited(client):
    user = UserFactory()
    device = confirmed_totp_device(user)
    _password_step(client, user.username)
    wrong = str((int(_code(device)) + 1) % 1_000_000).zfill(6)
    response = client.post(VERIFY, {"token": wrong})
    assert response.status_code == 400
    assert client.get(reverse("core:home")).status_code == 302
    [failure] = _events(Action.SECOND_FACTOR_FAILED)
    assert failure.actor_id == user.pk
    assert failure.outcome == 4
    assert _events(Action.LOGIN) == []


def test_first_sign_in_enrols_a_totp_device(client):
    user = UserFactory()
    response = _password_step(client, user.username)
    assert response["Location"] == ENROL
    page = client.get(ENROL)
    assert page.status_code == 200
    assert page.context["qr_data_uri"].startswith("data:image/svg+xml;base64,")
    device = TOTPDevice.objects.get(user=user)
    assert not device.confirmed
    response = client.post(ENROL, {"token": _code(device)})
    assert response.status_code == 302
    device.refresh_from_db()
    assert device.confirmed
    assert len(_events(Action.SECOND_FACTOR_ENROLLED)) == 1
    assert client.get(reverse("core:home")).status_code == 200


def test_wrong_password_gives_the_same_message_as_unknown_user(client):
    user = UserFactory()
    wrong = _password_step(client, user.username, "Wrong-Password-1")
    unknown = _password_step(client, "nobody-here", "Wrong-Password-1")
    assert wrong.status_code == unknown.status_code == 400
    assert wrong.context["error"] == unknown.context["error"]
    failures = _events(Action.LOGIN_FAILED)
    assert [f.actor_name for f in failures] == [user.username, ""]
    assert failures[1].details["reason"] == "unknown_user"
    assert "nobody-here" not in str(failures[1].details)
    assert len(failures[1].details["username_hmac"]) == 32


def test_repeated_failures_lock_the_account(client, settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    user = UserFactory()
    for _ in range(3):
        _password_step(client, user.username, "Wrong-Password-1")
    user.refresh_from_db()
    assert user.is_locked()
    assert len(_events(Action.ACCOUNT_LOCKED)) == 1
    # The right password is refused while locked, and that is audited too.
    response = _password_step(client, user.username)
    assert response.status_code == 400
    assert _events(Action.LOGIN_FAILED)[-1].details == {"reason": "locked"}


def test_wrong_totp_codes_count_toward_the_lockout(client, settings):
    settings.LOGIN_FAILURE_LIMIT = 2
    user = UserFactory()
    device = confirmed_totp_device(user)
    _password_step(client, user.username)
    wrong = str((int(_code(device)) + 7) % 1_000_000).zfill(6)
    client.post(VERIFY, {"token": wrong})
    client.post(VERIFY, {"token": wrong})
    user.refresh_from_db()
    assert user.is_locked()
    # Even the right code is refused now.
    assert client.post(VERIFY, {"token": _code(device)}).status_code == 400


def test_second_factor_can_be_switched_off_for_the_demo(client, settings):
    settings.STAFF_OTP_REQUIRED = False
    user = UserFactory()
    response = _password_step(client, user.username)
    assert response.status_code == 302
    assert client.get(reverse("core:home")).status_code == 200
    assert _events(Action.LOGIN)[0].details == {"second_factor": False}


def test_open_redirect_is_refused(client, settings):
    settings.STAFF_OTP_REQUIRED = False
    user = UserFactory()
    response = client.post(
        LOGIN + "?next=https://evil.example/", {"username": user.username, "password": DEFAULT_PASSWORD}
    )
    assert response["Location"] == reverse("core:home")


def test_logout_is_audited(client, sign_in):
    user = UserFactory()
    sign_in(user)
    response = client.post(reverse("accounts:logout"))
    assert response.status_code == 302
    assert [e.actor_id for e in _events(Action.LOGOUT)] == [user.pk]


def test_empty_form_is_a_clear_error_not_a_crash(client):
    response = client.post(LOGIN, {})
    assert response.status_code == 400
    assert response.context["error"]


def test_password_policy_rejects_simple_passwords():
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError

    for weak in ("short1A!", "alllowercaseletters", "1234567890123"):
        with pytest.raises(ValidationError):
            validate_password(weak, User(username="someone"))
    validate_password("Stronger-Pass-2026", User(username="someone"))


def test_sessions_expire_after_idle_time(settings):
    # Moved on at most once a minute by apps.core.middleware.SessionIdleRefreshMiddleware
    # (tests/core/test_session_idle.py), not saved on every request.
    assert settings.SESSION_COOKIE_AGE == 30 * 60
    assert "apps.core.middleware.SessionIdleRefreshMiddleware" in settings.MIDDLEWARE
