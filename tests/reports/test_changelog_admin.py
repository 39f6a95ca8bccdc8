"""The report change log in the back office: scoped to the hospital admin's hospital, read-only,
with field diffs, CSV and PDF exports, every view audited."""

import csv
import io

import pytest
from django.urls import reverse
from pypdf import PdfReader

from apps.audit.models import AuditEvent
from apps.audit.vocabulary import Action
from apps.reports.models import Report, ReportVersion
from apps.reports.services import report_amend, report_create, report_sign
from apps.tenants.context import hospital_context, platform_scope
from tests.reports.conftest import FINDINGS

CHANGELIST = "admin:reports_reportversion_changelist"
FORMULA = '=HYPERLINK("x")'


def _events(action: Action) -> list[AuditEvent]:
    with platform_scope("audit"):
        return list(AuditEvent.objects.filter(action=action).order_by("id"))


def _amend(world, report: Report, **fields: str) -> ReportVersion:
    with hospital_context(world.first.hospital):
        report = Report.objects.get(pk=report.pk)
        return report_amend(
            report=report,
            actor=world.first["reporting_doctor"],
            expected_version=report.current_version,
            fields=fields,
            reason=FORMULA,
        )


@pytest.fixture
def amended(world, final_report) -> Report:
    _amend(world, final_report, impression="良性结节", recommendation="")
    return final_report


@pytest.fixture
def foreign(world, make_study) -> Report:
    study = make_study(world.second.hospital)
    doctor = world.second["reporting_doctor"]
    with hospital_context(world.second.hospital):
        version = report_create(hospital=world.second.hospital, study=study, actor=doctor, fields=FINDINGS)
        report_sign(report=version.report, actor=doctor, expected_version=1)
        return version.report


def test_hospital_admin_lists_only_their_hospitals_versions(client, sign_in, world, amended, foreign):
    sign_in(world.first["hospital_admin"])
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    rows = response.context["cl"].result_list
    assert {version.hospital_id for version in rows} == {world.first.hospital.pk}
    assert sorted(version.number for version in rows) == [1, 2, 3]
    assert _events(Action.REPORT_VIEWED)[-1].hospital_id == world.first.hospital.pk


def test_change_log_filters_by_status_and_study(client, sign_in, world, amended, make_study):
    sign_in(world.first["hospital_admin"])
    response = client.get(reverse(CHANGELIST), {"status__exact": "amended"})
    assert [version.number for version in response.context["cl"].result_list] == [3]
    response = client.get(reverse(CHANGELIST), {"q": amended.study.study_instance_uid})
    assert len(response.context["cl"].result_list) == 3


def test_other_hospitals_version_is_404(client, sign_in, world, foreign):
    sign_in(world.first["hospital_admin"])
    with hospital_context(world.second.hospital):
        version = ReportVersion.objects.filter(report=foreign).first()
    change = reverse("admin:reports_reportversion_change", args=[version.pk])
    assert client.get(change).status_code == 404
    diff = reverse("admin:reports_reportversion_diff", args=[foreign.public_id])
    assert client.get(diff).status_code == 404


def test_the_change_log_is_read_only(client, sign_in, world, amended):
    sign_in(world.first["hospital_admin"])
    with hospital_context(world.first.hospital):
        version = ReportVersion.objects.get(report=amended, number=3)
    change = reverse("admin:reports_reportversion_change", args=[version.pk])
    response = client.get(change)
    assert response.status_code == 200
    assert [change.field for change in response.context["changes"]] == ["impression", "recommendation"]
    client.post(change, {"impression": "被改"})
    with hospital_context(world.first.hospital):
        assert ReportVersion.objects.get(pk=version.pk).impression == "良性结节"
    assert client.get(reverse("admin:reports_reportversion_add")).status_code == 403


def test_diff_of_any_two_versions_with_who_when_why(client, sign_in, world, amended):
    _amend(world, amended, findings="第三次")
    sign_in(world.first["hospital_admin"])
    diff = reverse("admin:reports_reportversion_diff", args=[amended.public_id])
    response = client.get(diff, {"a": "2", "b": "4"})
    assert response.status_code == 200
    assert [change.field for change in response.context["changes"]] == ["findings", "impression", "recommendation"]
    assert response.context["new"].reason == '=HYPERLINK("x")'
    assert client.get(diff, {"a": "1", "b": "9"}).status_code == 404
    [event] = [e for e in _events(Action.REPORT_VIEWED) if e.details.get("diff")]
    assert event.details["diff"] == [2, 4]
    assert event.details["sha256_after"] == response.context["new"].content_sha256


def test_csv_export_has_one_row_per_changed_field_and_is_audited(client, sign_in, world, amended, foreign):
    sign_in(world.first["hospital_admin"])
    response = client.get(reverse("admin:reports_reportversion_export_csv"), {"status__exact": "amended"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert [(row["version"], row["field"]) for row in rows] == [("3", "impression"), ("3", "recommendation")]
    assert rows[0]["before"] == FINDINGS["impression"] and rows[0]["after"] == "良性结节"
    assert rows[0]["reason"] == '\'=HYPERLINK("x")'  # inert in a spreadsheet
    assert rows[0]["verified"] == "yes"
    [event] = _events(Action.REPORT_EXPORTED)
    assert (event.details["format"], event.details["count"]) == ("csv", 1)
    assert event.hospital_id == world.first.hospital.pk


def test_pdf_export_holds_the_changes(client, sign_in, world, amended):
    sign_in(world.first["hospital_admin"])
    response = client.get(reverse("admin:reports_reportversion_export_pdf"))
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)
    assert "良性结节" in text.replace("\n", "")
    assert _events(Action.REPORT_EXPORTED)[-1].details["format"] == "pdf"


@pytest.mark.parametrize("role", ["audit_admin", "vendor_operator", "system_admin"])
def test_platform_duties_do_not_see_report_text(client, sign_in, world, amended, role):
    sign_in(world.platform[role])
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 403


def test_doctor_without_admin_role_is_refused(client, sign_in, world, amended):
    sign_in(world.first["reporting_doctor"])
    assert client.get(reverse(CHANGELIST)).status_code == 403


def test_junk_filters_are_400_not_500(client, sign_in, world, amended):
    sign_in(world.first["hospital_admin"])
    response = client.get(reverse("admin:reports_reportversion_export_csv"), {"created_at__gte": "notadate"})
    assert response.status_code == 400
    assert client.get(reverse("admin:reports_reportversion_change", args=["abc"])).status_code == 404


def test_script_in_report_text_is_inert_in_the_back_office(client, sign_in, world, final_report):
    script = "<script>alert(1)</script>"
    with hospital_context(world.first.hospital):
        version = report_amend(report=final_report, actor=world.first["reporting_doctor"], expected_version=2,
                               fields={"findings": script}, reason=script)  # fmt: skip
    sign_in(world.first["hospital_admin"])
    pages = [
        client.get(reverse(CHANGELIST)),
        client.get(reverse("admin:reports_reportversion_change", args=[version.pk])),
        client.get(reverse("admin:reports_reportversion_diff", args=[final_report.public_id]), {"a": "2", "b": "3"}),
    ]
    for response in pages:
        assert response.status_code == 200
        assert script not in response.content.decode()
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.content.decode()
