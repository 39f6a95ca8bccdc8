"""A reused database connection carries no hospital, user or token from the request before."""

import pytest
from django.db import connection

from apps.tenants.services import api_token_issue

pytestmark = pytest.mark.django_db(transaction=True)


def _settings() -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('app.hospital_id', true), current_setting('app.token_hash', true),"
            " current_setting('app.user_id', true)"
        )
        return cursor.fetchone()


def test_nothing_survives_the_request_on_a_persistent_connection(client, world):
    _token, raw = api_token_issue(hospital=world.first.hospital, name="RIS", scopes=["read"])
    response = client.get("/api/first/", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200
    # Same thread, same (persistent) connection the request used.
    assert all(value in (None, "") for value in _settings())
    from apps.tenants.models import ApiToken

    assert ApiToken.objects.count() == 0
