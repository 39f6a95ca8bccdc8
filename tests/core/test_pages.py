"""Staff pages: hospital resolution, no-store, language, health."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_healthz_reports_database_broker_and_storage(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok", "storage": "ok"}


def test_healthz_reports_an_unreachable_broker(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    from config.celery import app

    app.conf.broker_url = settings.REDIS_URL
    try:
        response = client.get("/healthz")
    finally:
        app.conf.broker_url = settings.CELERY_BROKER_URL
    assert response.status_code == 503
    assert response.json()["broker"] == "error"
    assert response.json()["database"] == "ok"


def test_staff_see_their_hospital_page(client, sign_in, world):
    sign_in(world.first["clinician"])
    response = client.get(reverse("core:hospital_home", args=["first"]))
    assert response.status_code == 200
    assert response.context["hospital"] == world.first.hospital
    assert response.context["roles"] == ["临床医生"]


def test_unknown_hospital_code_is_404(client, sign_in, world):
    sign_in(world.first["clinician"])
    assert client.get(reverse("core:hospital_home", args=["nowhere"])).status_code == 404


def test_staff_of_the_other_hospital_get_the_403_page(client, sign_in, world):
    sign_in(world.second["hospital_admin"])
    response = client.get(reverse("core:hospital_home", args=["first"]))
    assert response.status_code == 403
    assert "第一人民医院" not in response.content.decode()


def test_signed_out_visitor_is_sent_to_login(client, world):
    response = client.get(reverse("core:hospital_home", args=["first"]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))


def test_pages_are_no_store_and_carry_security_headers(client, sign_in, world):
    sign_in(world.first["clinician"])
    response = client.get(reverse("core:home"))
    assert "no-store" in response["Cache-Control"]
    assert "default-src 'self'" in response["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"


def test_chinese_is_the_default_language_and_english_the_second(client):
    chinese = client.get(reverse("accounts:login"))
    assert "员工登录" in chinese.content.decode()
    english = client.get(reverse("accounts:login"), HTTP_ACCEPT_LANGUAGE="en")
    assert "Staff sign-in" in english.content.decode()


def test_home_lists_only_the_users_own_hospitals(client, sign_in, world):
    sign_in(world.first["reporting_doctor"])
    response = client.get(reverse("core:home"))
    codes = [entry["hospital"].code for entry in response.context["hospitals"]]
    assert codes == ["first"]


def test_hospital_page_links_doctors_to_the_report_worklist_only(client, sign_in, world):
    worklist = reverse("reports_staff:worklist", args=["first"])
    sign_in(world.first["reporting_doctor"])
    assert worklist in client.get(reverse("core:hospital_home", args=["first"])).content.decode()
    client.logout()
    sign_in(world.first["clinician"])
    assert worklist not in client.get(reverse("core:hospital_home", args=["first"])).content.decode()


def test_the_favicon_browsers_ask_for_exists(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    icon = client.get(response["Location"])
    assert icon.status_code == 200
    assert b"".join(icon.streaming_content if icon.streaming else [icon.content])[:4] == b"\x00\x00\x01\x00"
