"""The idle timeout: a session in use is moved on at most once a minute, and ends after 30 idle minutes."""

from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.core.middleware import IDLE_REFRESHED_KEY

pytestmark = pytest.mark.django_db


def _session_writes(context: CaptureQueriesContext) -> list[str]:
    return [
        q["sql"]
        for q in context.captured_queries
        if q["sql"].startswith(("UPDATE", "INSERT")) and "django_session" in q["sql"]
    ]


def _expiry(client) -> timedelta:
    return Session.objects.get(session_key=client.session.session_key).expire_date - timezone.now()


def _mark_refreshed(client, seconds_ago: int) -> None:
    session = client.session
    session[IDLE_REFRESHED_KEY] = int(timezone.now().timestamp()) - seconds_ago
    session.save()
    Session.objects.filter(session_key=session.session_key).update(expire_date=timezone.now() + timedelta(minutes=5))


def test_settings_give_a_30_minute_idle_timeout_refreshed_each_minute(settings):
    assert settings.SESSION_COOKIE_AGE == 30 * 60
    assert settings.SESSION_IDLE_REFRESH_SECONDS == 60
    assert "apps.core.middleware.SessionIdleRefreshMiddleware" in settings.MIDDLEWARE


def test_a_request_after_a_minute_moves_the_expiry_to_30_minutes_ahead(client, sign_in, world):
    sign_in(world.first["clinician"])
    _mark_refreshed(client, seconds_ago=61)
    with CaptureQueriesContext(connection) as context:
        assert client.get(reverse("core:home")).status_code in (200, 302)
    assert len(_session_writes(context)) == 1
    assert timedelta(minutes=29) < _expiry(client) <= timedelta(minutes=30)


def test_requests_within_the_minute_do_not_write_the_session(client, sign_in, world):
    sign_in(world.first["clinician"])
    _mark_refreshed(client, seconds_ago=5)
    with CaptureQueriesContext(connection) as context:
        for _ in range(3):
            client.get(reverse("core:home"))
    assert _session_writes(context) == []
    assert _expiry(client) <= timedelta(minutes=5)


def test_a_session_idle_past_its_expiry_is_signed_out(client, sign_in, world):
    sign_in(world.first["clinician"])
    Session.objects.filter(session_key=client.session.session_key).update(
        expire_date=timezone.now() - timedelta(seconds=1)
    )
    response = client.get(reverse("core:hospital_home", kwargs={"hospital_code": "first"}))
    assert response.status_code == 302
    assert reverse("accounts:login") in response["Location"]


def test_anonymous_requests_create_no_session(client, world):
    with CaptureQueriesContext(connection) as context:
        client.get("/healthz")
        client.get(reverse("accounts:login"))
    assert _session_writes(context) == []
