"""Entered in error, and the draft-update endpoint of the RIS API."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from apps.audit.models import AuditEvent
from apps.audit.vocabulary import Action
from apps.reports.models import Report, ReportVersion, StudyPublication
from apps.reports.services import (
    StaleVersion,
    report_amend,
    report_create,
    report_enter_in_error,
    report_save_draft,
    report_sign,
    report_verify,
)
from apps.tenants.context import hospital_context, platform_scope
from tests.dicomweb.helpers import token_for
from tests.reports.conftest import FINDINGS


def _rows(report) -> list[tuple]:
    return list(
        ReportVersion.objects.filter(report=report)
        .order_by("number")
        .values_list("number", "status", "content_sha256", "signature", "impression")
    )


def _fresh(report) -> Report:
    return Report.objects.get(pk=report.pk)


def test_entered_in_error_appends_a_signed_version_and_keeps_the_others(world, final_report):
    with hospital_context(world.first.hospital):
        before = _rows(final_report)
        version = report_enter_in_error(actor=world.first["reporting_doctor"], report=final_report, reason=" 错患者 ")
        assert (version.number, version.status, version.reason) == (3, Report.Status.ENTERED_IN_ERROR, "错患者")
        assert version.impression == FINDINGS["impression"]
        assert report_verify(version)
        assert _rows(final_report)[:2] == before
        assert _fresh(final_report).status == Report.Status.ENTERED_IN_ERROR


def test_entered_in_error_withdraws_the_study(world, final_report):
    from apps.reports.publication import study_images_mark_complete

    with hospital_context(world.first.hospital):
        published = study_images_mark_complete(actor=world.first["technologist"], study=final_report.study)
        assert published.is_visible
        report_enter_in_error(actor=world.first["hospital_admin"], report=final_report, reason="错患者")
        publication = StudyPublication.objects.get(study=final_report.study)
        assert publication.withdrawn_at is not None and not publication.is_visible
        assert publication.withdrawn_reason == "错患者"
    with platform_scope("audit"):
        actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert Action.REPORT_ENTERED_IN_ERROR in actions and Action.STUDY_UNPUBLISHED in actions


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_entered_in_error_needs_a_reason(world, final_report, reason):
    with hospital_context(world.first.hospital):
        with pytest.raises(ValidationError) as error:
            report_enter_in_error(actor=world.first["reporting_doctor"], report=final_report, reason=reason)
        assert "reason" in error.value.message_dict
        assert ReportVersion.objects.filter(report=final_report).count() == 2
        assert not StudyPublication.objects.filter(study=final_report.study, withdrawn_at__isnull=False).exists()


@pytest.mark.parametrize("role", ["technologist", "clinician", "reviewing_doctor"])
def test_entered_in_error_only_by_the_reports_doctors_or_an_admin(world, final_report, role):
    # The reviewing doctor of the world did not take part in this report.
    with hospital_context(world.first.hospital):
        with pytest.raises(PermissionDenied):
            report_enter_in_error(actor=world.first[role], report=final_report, reason="r")
        assert _fresh(final_report).status == Report.Status.FINAL
        assert ReportVersion.objects.filter(report=final_report).count() == 2


def test_entered_in_error_twice_is_refused(world, final_report):
    with hospital_context(world.first.hospital):
        report_enter_in_error(actor=world.first["hospital_admin"], report=final_report, reason="r")
        with pytest.raises(ValidationError, match="已被标记为录入错误"):
            report_enter_in_error(actor=world.first["hospital_admin"], report=_fresh(final_report), reason="r")


def test_entered_in_error_with_a_stale_version_is_refused(world, final_report):
    with hospital_context(world.first.hospital):
        with pytest.raises(StaleVersion):
            report_enter_in_error(actor=world.first["hospital_admin"], report=final_report, reason="r",
                                  expected_version=1)  # fmt: skip
        assert _fresh(final_report).status == Report.Status.FINAL


def test_an_entered_in_error_report_cannot_be_amended_signed_or_redrafted(world, final_report):
    doctor = world.first["reporting_doctor"]
    with hospital_context(world.first.hospital):
        report_enter_in_error(actor=doctor, report=final_report, reason="r")
        report = _fresh(final_report)
        with pytest.raises(ValidationError, match="已标记为录入错误，不能修改"):
            report_amend(report=report, actor=doctor, expected_version=3, fields={"impression": "x"}, reason="r")
        with pytest.raises(ValidationError):
            report_sign(report=report, actor=doctor, expected_version=3)
        with pytest.raises(ValidationError, match="已标记为录入错误，不能更改"):
            report_save_draft(report=report, actor=doctor, expected_version=3, fields={"impression": "x"})
        assert ReportVersion.objects.filter(report=report).count() == 3


def test_amending_a_draft_says_to_sign_it_instead(world, study):
    doctor = world.first["reporting_doctor"]
    with hospital_context(world.first.hospital):
        draft = report_create(hospital=world.first.hospital, study=study, actor=doctor, fields=FINDINGS)
        with pytest.raises(ValidationError, match="尚未签署"):
            report_amend(report=draft.report, actor=doctor, expected_version=1, fields={"impression": "x"},
                         reason="r")  # fmt: skip


# The RIS API


@pytest.fixture
def api(client, world):
    token = token_for(world.first.hospital)

    def _post(path: str, body: dict, *, bearer: str | None = None, code: str = "first"):
        return client.post(f"/api/{code}/reports/{path}", body, content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {bearer or token}")  # fmt: skip

    return _post


@pytest.fixture
def draft_path(api, study):
    path = f"studies/{study.study_instance_uid}/report"
    assert api(path, {"author": "first-reporting_doctor", "findings": "初稿"}).status_code == 201
    return path


def test_api_saves_a_draft_and_a_preliminary_version(api, draft_path):
    response = api(f"{draft_path}/draft", {"author": "first-reporting_doctor", "version": 1, **FINDINGS})
    assert response.status_code == 201
    assert (response.json()["number"], response.json()["status"]) == (2, "draft")
    assert response.json()["findings"] == FINDINGS["findings"]
    response = api(f"{draft_path}/draft", {"author": "first-reporting_doctor", "version": 2, "preliminary": True})
    assert (response.json()["number"], response.json()["status"]) == (3, "preliminary")


def test_api_draft_with_a_stale_version_gets_409(api, draft_path, world, study):
    api(f"{draft_path}/draft", {"author": "first-reporting_doctor", "version": 1, "findings": "二稿"})
    response = api(f"{draft_path}/draft", {"author": "first-reporting_doctor", "version": 1, "findings": "三稿"})
    assert response.status_code == 409
    with hospital_context(world.first.hospital):
        assert ReportVersion.objects.filter(report__study=study).count() == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"author": "first-reporting_doctor", "findings": "x"}, "version"),
        ({"author": "first-reporting_doctor", "version": 1, "findings": 5}, "findings"),
        ({"author": "first-reporting_doctor", "version": 1, "preliminary": "yes"}, "preliminary"),
    ],
)
def test_api_draft_bad_input_is_400(api, draft_path, body, field):
    response = api(f"{draft_path}/draft", body)
    assert response.status_code == 400
    assert field in response.json()["fields"]


def test_api_draft_by_a_technologist_is_403(api, draft_path):
    response = api(f"{draft_path}/draft", {"author": "first-technologist", "version": 1, "findings": "x"})
    assert response.status_code == 403


def test_api_draft_of_a_signed_report_is_400(api, draft_path):
    api(f"{draft_path}/draft", {"author": "first-reporting_doctor", "version": 1, **FINDINGS})
    assert api(f"{draft_path}/sign", {"signer": "first-reporting_doctor", "version": 2}).status_code == 201
    response = api(f"{draft_path}/draft", {"author": "first-reporting_doctor", "version": 3, "findings": "x"})
    assert response.status_code == 400
    assert "status" in response.json()["fields"]


def test_api_marks_entered_in_error(api, draft_path):
    response = api(f"{draft_path}/entered-in-error", {"signer": "first-hospital_admin", "version": 1, "reason": "重复"})
    assert response.status_code == 201
    assert response.json()["status"] == "entered_in_error"
    missing = api(f"{draft_path}/entered-in-error", {"signer": "first-hospital_admin", "version": 2})
    assert missing.status_code == 400


def test_api_draft_with_the_other_hospitals_token_is_404(api, draft_path, world):
    response = api(f"{draft_path}/draft", {"author": "second-reporting_doctor", "version": 1, "findings": "x"},
                   bearer=token_for(world.second.hospital))  # fmt: skip
    assert response.status_code == 404
