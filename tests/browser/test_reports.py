"""The staff report screens in a real browser (Debian's Chromium through Playwright).

Kept here, not under tests/reports/, so that it shares this folder's one Playwright session."""

import pytest
from django.conf import settings
from django.urls import reverse

from apps.reports.models import ReportVersion
from apps.tenants.context import hospital_context
from tests.reports.conftest import FINDINGS, make_study, study  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db(transaction=True)

SCRIPT = '<script>window.__owned = 1</script><img src=x onerror="window.__owned = 2">'


def _signed_in_page(desktop_page, live_server, client, sign_in, user):
    sign_in(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    desktop_page.context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": cookie.value, "url": live_server.url}]
    )
    dialogs: list[str] = []

    def _dialog(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    desktop_page.on("dialog", _dialog)
    return desktop_page, dialogs


def test_doctor_writes_signs_and_amends_with_script_shown_as_text(
    desktop_page,
    live_server,
    client,
    sign_in,
    world,
    study,  # noqa: F811 - the fixture imported above
):
    page, dialogs = _signed_in_page(desktop_page, live_server, client, sign_in, world.first["reporting_doctor"])
    report_url = live_server.url + reverse("reports_staff:report", args=["first", study.public_id])
    page.goto(report_url)
    for name, value in FINDINGS.items():
        page.fill(f"#draft-form [name={name}]", value)
    page.fill("#draft-form [name=findings]", SCRIPT)
    page.click("#draft-form button[type=submit]")
    page.click("#sign-form button[type=submit]")
    assert page.locator("#report-status").inner_text().count("2") >= 1
    assert page.locator("#version-2 summary").inner_text().find("验证通过") > -1
    assert SCRIPT in page.locator("#version-2 dd").nth(2).inner_text()
    assert page.evaluate("window.__owned") is None and dialogs == []

    # A second tab amends first; this tab's amendment is stale and must save nothing.
    other = page.context.new_page()
    other.goto(report_url)
    other.fill("#amend-form [name=impression]", "另一位医生的修改")
    other.fill("#amend-form [name=reason]", "复核")
    other.click("#amend-form button[type=submit]")
    page.fill("#amend-form [name=impression]", "我的修改")
    page.fill("#amend-form [name=reason]", "补充")
    page.click("#amend-form button[type=submit]")
    assert "未保存" in page.locator("#report-error").inner_text()
    with hospital_context(world.first.hospital):
        impressions = list(
            ReportVersion.objects.filter(report__study=study).order_by("number").values_list("impression", flat=True)
        )
    assert impressions[-1] == "另一位医生的修改" and len(impressions) == 3
