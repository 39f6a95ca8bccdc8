"""Junk in paths, queries and forms gets a 4xx or a form error, never a 500."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

JUNK_PATHS = [
    "/h/%00/",
    "/h/" + "x" * 300 + "/",
    "/h/第一/",
    "/api/first/",
    "/api/%E2%80%AE/",
    "/admin/accounts/user/abc/change/",
    "/admin/accounts/user/-1/change/",
    "/admin/audit/auditevent/abc/change/",
    "/admin/audit/auditevent/?occurred_at__gte=notadate",
    "/admin/audit/auditevent/?nonsense=1",
    "/admin/audit/auditevent/export.csv?occurred_at__gte=notadate",
    "/admin/audit/auditevent/export.json?nonsense=1",
    "/admin/tenants/apitoken/%27%3B/change/",
    "/accounts/login/verify/",
    "/accounts/login/enrol/",
    "/healthz?x=%00",
]


@pytest.mark.parametrize("role", [None, "hospital_admin", "audit_admin"])
def test_junk_requests_never_give_a_server_error(client, sign_in, world, role):
    if role == "hospital_admin":
        sign_in(world.first["hospital_admin"])
    elif role == "audit_admin":
        sign_in(world.platform["audit_admin"])
    for path in JUNK_PATHS:
        response = client.get(path, HTTP_AUTHORIZATION="Bearer \x00\x01")
        assert response.status_code < 500, path


@pytest.mark.parametrize(
    "data",
    [
        {"username": "a\x00b", "password": "x"},
        {"username": "x" * 10_000, "password": "y"},
        {"username": "<script>alert(1)</script>", "password": "p" * 5000},
        {"password": "only"},
    ],
)
def test_junk_sign_in_forms_are_refused_cleanly(client, data):
    response = client.post(reverse("accounts:login"), data)
    assert response.status_code == 400
    assert b"<script>alert(1)</script>" not in response.content


def test_junk_totp_codes_are_refused_cleanly(client, world):
    from tests.factories import DEFAULT_PASSWORD, confirmed_totp_device

    user = world.first["clinician"]
    confirmed_totp_device(user)
    client.post(reverse("accounts:login"), {"username": user.username, "password": DEFAULT_PASSWORD})
    for token in ["", "abcdef", "1" * 50, "\x00\x00\x00\x00\x00\x00"]:
        response = client.post(reverse("accounts:otp_verify"), {"token": token})
        assert response.status_code == 400
