"""Staff report screens under /h/<code>/reports/."""

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.audit.vocabulary import Action
from apps.reports.models import Report, ReportVersion
from apps.tenants.context import hospital_context, platform_scope
from tests.reports.conftest import FINDINGS, PATIENT_NAME, tamper

SCRIPT = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def url(name: str, study, code: str = "first") -> str:
    return reverse(f"reports_staff:{name}", args=[code, study.public_id])


def _versions(world, study) -> list[ReportVersion]:
    with hospital_context(world.first.hospital):
        return list(ReportVersion.objects.filter(report__study=study).order_by("number"))


def _report(world, study) -> Report:
    with hospital_context(world.first.hospital):
        return Report.objects.get(study=study)


def _actions() -> list[str]:
    with platform_scope("audit"):
        return list(AuditEvent.objects.order_by("id").values_list("action", flat=True))


@pytest.fixture
def doctor(world, sign_in):
    return sign_in(world.first["reporting_doctor"])


def _form(version: int, **fields: str) -> dict[str, str]:
    return {"version": str(version), **{name: fields.get(name, "") for name in FINDINGS}, **{
        key: value for key, value in fields.items() if key not in FINDINGS}}  # fmt: skip


def test_worklist_lists_the_hospitals_studies_with_report_status(doctor, world, final_report, make_study):
    waiting = make_study(world.first.hospital)
    make_study(world.second.hospital)
    response = doctor.get(reverse("reports_staff:worklist", args=["first"]))
    assert response.status_code == 200
    rows = {row["study"].public_id: row for row in response.context["rows"]}
    assert set(rows) == {final_report.study.public_id, waiting.public_id}
    assert rows[final_report.study.public_id]["report"].status == "final"
    assert rows[waiting.public_id]["report"] is None
    assert PATIENT_NAME in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    assert Action.STUDIES_QUERIED in _actions()
    none = doctor.get(reverse("reports_staff:worklist", args=["first"]), {"status": "none"})
    assert [row["study"].public_id for row in none.context["rows"]] == [waiting.public_id]


def test_technologist_may_not_open_the_report_screens(client, sign_in, world, study):
    sign_in(world.first["technologist"])
    assert client.get(reverse("reports_staff:worklist", args=["first"])).status_code == 403
    assert client.get(url("report", study)).status_code == 403


def test_a_doctor_of_another_hospital_gets_404_for_this_hospitals_study(client, sign_in, world, final_report):
    sign_in(world.second["reporting_doctor"])
    study = final_report.study
    for name in ("report", "print", "print_pdf", "diff"):
        assert client.get(url(name, study, code="second")).status_code == 404, name
    response = client.post(url("sign", study, code="second"), {"version": "2"})
    assert response.status_code == 404
    # Under the first hospital's code they hold no role at all.
    assert client.get(url("report", study)).status_code == 403


def test_draft_sign_and_amend_through_the_screens(doctor, world, study):
    response = doctor.post(url("draft", study), _form(0, **FINDINGS))
    assert response.status_code == 302
    assert doctor.post(url("sign", study), {"version": "1"}).status_code == 302
    changed = {**FINDINGS, "impression": "良性结节", "reason": "复核后修正"}
    assert doctor.post(url("amend", study), _form(2, **changed)).status_code == 302
    versions = _versions(world, study)
    assert [(v.number, v.status) for v in versions] == [(1, "draft"), (2, "final"), (3, "amended")]
    assert versions[2].reason == "复核后修正" and versions[2].impression == "良性结节"
    page = doctor.get(url("report", study)).content.decode()
    assert page.count("Signature and content hash verify") + page.count("签名与内容哈希验证通过") >= 3
    assert Action.REPORT_VIEWED in _actions()


def test_amendment_without_a_reason_is_an_error_and_saves_nothing(doctor, world, final_report):
    response = doctor.post(url("amend", final_report.study), _form(2, **{**FINDINGS, "impression": "x"}))
    assert response.status_code == 400
    assert response.context["amend_form"].errors["reason"]
    assert len(_versions(world, final_report.study)) == 2


def test_stale_amendment_shows_a_conflict_and_saves_nothing(doctor, world, final_report):
    doctor.post(url("amend", final_report.study), _form(2, **{**FINDINGS, "impression": "一改", "reason": "r"}))
    response = doctor.post(url("amend", final_report.study),
                           _form(2, **{**FINDINGS, "impression": "二改", "reason": "r"}))  # fmt: skip
    assert response.status_code == 409
    assert 'id="report-error"' in response.content.decode()
    assert "nothing was saved" in response.context["error"] or "未保存" in response.context["error"]
    assert [v.impression for v in _versions(world, final_report.study)][-1] == "一改"


def test_sign_with_empty_impression_is_an_error_and_saves_nothing(doctor, world, study):
    doctor.post(url("draft", study), _form(0, findings="所见"))
    response = doctor.post(url("sign", study), {"version": "1"})
    assert response.status_code == 400
    assert response.context["error"]
    assert [v.status for v in _versions(world, study)] == ["draft"]


def test_amending_a_draft_is_refused_on_the_screen(doctor, world, study):
    doctor.post(url("draft", study), _form(0, **FINDINGS))
    response = doctor.post(url("amend", study), _form(1, **{**FINDINGS, "impression": "x", "reason": "r"}))
    assert response.status_code == 400
    assert len(_versions(world, study)) == 1


def test_entered_in_error_through_the_screen(doctor, world, final_report):
    missing = doctor.post(url("entered_in_error", final_report.study), {"version": "2", "reason": ""})
    assert missing.status_code == 400
    response = doctor.post(url("entered_in_error", final_report.study), {"version": "2", "reason": "错患者"})
    assert response.status_code == 302
    assert _report(world, final_report.study).status == "entered_in_error"
    page = doctor.get(url("report", final_report.study))
    assert 'id="amend-form"' not in page.content.decode() and 'id="error-form"' not in page.content.decode()


def test_script_in_every_field_is_rendered_inert(doctor, world, study):
    doctor.post(url("draft", study), _form(0, **dict.fromkeys(FINDINGS, SCRIPT)))
    doctor.post(url("sign", study), {"version": "1"})
    doctor.post(url("amend", study), _form(2, **{**dict.fromkeys(FINDINGS, SCRIPT), "impression": "ok",
                                                 "reason": SCRIPT}))  # fmt: skip
    for response in (
        doctor.get(url("report", study)),
        doctor.get(url("diff", study), {"a": "2", "b": "3"}),
        doctor.get(url("print", study)),
        doctor.get(url("print", study), {"v": "2"}),
    ):
        body = response.content.decode()
        assert response.status_code == 200
        assert "<script>alert" not in body and "<img src=x" not in body
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in body


def test_diff_screen_names_exactly_the_changed_fields(doctor, world, final_report):
    doctor.post(url("amend", final_report.study),
                _form(2, **{**FINDINGS, "findings": "新所见", "recommendation": "", "reason": "r"}))  # fmt: skip
    response = doctor.get(url("diff", final_report.study), {"a": "2", "b": "3"})
    assert [change["field"] for change in response.context["changes"]] == ["findings", "recommendation"]
    assert doctor.get(url("diff", final_report.study), {"a": "2", "b": "9"}).status_code == 404
    assert doctor.get(url("diff", final_report.study), {"a": "x"}).status_code == 400


@pytest.mark.django_db(transaction=True)
def test_a_tampered_version_is_flagged_on_the_screen(client, sign_in, world, study, owner_connection):
    sign_in(world.first["reporting_doctor"])
    client.post(url("draft", study), _form(0, **FINDINGS))
    client.post(url("sign", study), {"version": "1"})
    tamper(owner_connection, _report(world, study), findings="篡改后的所见")
    response = client.get(url("report", study))
    assert response.context["current_verified"] is False
    assert [row["verified"] for row in response.context["rows"]] == [False, True]
    body = response.content.decode()
    assert "Does NOT verify" in body or "验证不通过" in body


@pytest.mark.django_db(transaction=True)
def test_a_signature_by_the_wrong_doctors_key_is_flagged(client, sign_in, world, study, owner_connection):
    from apps.reports.models import DoctorSigningKey
    from apps.reports.signing import signing_key_for

    sign_in(world.first["reporting_doctor"])
    client.post(url("draft", study), _form(0, **FINDINGS))
    client.post(url("sign", study), {"version": "1"})
    with hospital_context(world.first.hospital):
        other: DoctorSigningKey = signing_key_for(hospital=world.first.hospital, user=world.first["reviewing_doctor"])
    tamper(owner_connection, _report(world, study), signing_key_id=other.pk)
    response = client.get(url("report", study))
    assert response.context["current_verified"] is False


def test_print_page_and_pdf(doctor, final_report):
    page = doctor.get(url("print", final_report.study))
    assert page.status_code == 200
    body = page.content.decode()
    assert FINDINGS["impression"] in body and 'src="data:image/png;base64,' in body
    pdf = doctor.get(url("print_pdf", final_report.study))
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")
    assert PATIENT_NAME not in pdf["Content-Disposition"]
    assert "no-store" in pdf["Cache-Control"]
    assert _actions().count(Action.REPORT_PRINTED) == 2


def test_junk_ids_and_numbers_are_4xx(doctor, final_report):
    study = final_report.study
    assert doctor.get("/h/first/reports/s/not-a-uuid/").status_code == 404
    assert doctor.get(url("print", study), {"v": "99"}).status_code == 404
    assert doctor.post(url("sign", study), {"version": "abc"}).status_code == 400
    assert doctor.post(url("draft", study), {"version": "2", "findings": "x" * 20_001}).status_code == 400


def test_marking_images_complete_publishes_a_signed_report(doctor, world, final_report):
    from apps.reports.models import StudyPublication

    page = doctor.get(url("report", final_report.study)).content.decode()
    assert 'id="images-complete-form"' in page
    assert doctor.post(url("images_complete", final_report.study)).status_code == 302
    with hospital_context(world.first.hospital):
        publication = StudyPublication.objects.get(study=final_report.study)
    assert publication.is_visible
    page = doctor.get(url("report", final_report.study)).content.decode()
    assert 'id="images-complete-form"' not in page and "发布给患者" in page


def test_without_the_pdf_library_the_pdf_is_503_with_what_to_install(doctor, final_report, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "weasyprint", None)  # as on a machine without Pango
    response = doctor.get(url("print_pdf", final_report.study))
    assert response.status_code == 503
    assert "libpango" in response.content.decode()
    assert doctor.get(url("print", final_report.study)).status_code == 200


def test_report_screens_link_to_the_studys_images_in_the_viewer(doctor, world, final_report):
    study = final_report.study
    viewer = reverse("viewer:study", args=["first", study.public_id])
    assert viewer in doctor.get(reverse("reports_staff:worklist", args=["first"])).content.decode()
    assert viewer in doctor.get(url("report", study)).content.decode()


def test_names_stored_in_dicom_form_are_shown_as_written(doctor, world, study):
    """DICOM keeps 'Wang^Xiaoming=王^小明'; the worklist and the report page show 王小明."""
    from apps.imaging.keys import field_seal

    with hospital_context(world.first.hospital):
        patient = study.patient
        patient.name_sealed = field_seal(world.first.hospital, "Wang^Xiaoming=王^小明", field="name")
        patient.save(update_fields=["name_sealed"])
    for page in (reverse("reports_staff:worklist", args=["first"]), url("report", study)):
        content = doctor.get(page).content.decode()
        assert "王小明" in content and "Wang^Xiaoming" not in content and "王^小明" not in content
