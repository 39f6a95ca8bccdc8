"""The report screens' wording and links: labelled diffs, what a write did, malformed print
versions, and the way to the exam slip QR code of a published study."""

import pytest
from django.urls import reverse

from apps.tenants.context import hospital_context
from tests.reports.conftest import FINDINGS

pytestmark = pytest.mark.django_db


def url(name: str, study, code: str = "first") -> str:
    return reverse(f"reports_staff:{name}", args=[code, study.public_id])


@pytest.fixture
def doctor(world, sign_in):
    return sign_in(world.first["reporting_doctor"])


def _publish(world, study) -> None:
    from apps.reports.models import StudyPublication
    from apps.reports.publication import study_images_mark_complete

    with hospital_context(world.first.hospital):
        study_images_mark_complete(actor=None, study=study, source=StudyPublication.Source.MANIFEST)


def test_diff_names_fields_as_the_report_form_does(doctor, world, final_report):
    changed = {**FINDINGS, "technique": "增强CT", "impression": "良性结节", "reason": "复核"}
    form = {"version": "2", **changed}
    assert doctor.post(url("amend", final_report.study), form).status_code == 302
    response = doctor.get(url("diff", final_report.study), {"a": "2", "b": "3"})
    html = response.content.decode()
    assert '<tr data-field="technique"><th>检查方法</th>' in html
    assert '<tr data-field="impression"><th>诊断意见</th>' in html
    assert "<th>impression</th>" not in html and "<th>technique</th>" not in html
    # The same words as the form's labels.
    from apps.reports.forms import AmendForm

    labels = {name: str(field.label) for name, field in AmendForm().fields.items()}
    assert (labels["technique"], labels["impression"]) == ("检查方法", "诊断意见")


def test_signing_says_it_was_signed(doctor, world, study):
    assert doctor.post(url("draft", study), {"version": "0", **FINDINGS}).status_code == 302
    response = doctor.post(url("sign", study), {"version": "1"}, follow=True)
    html = response.content.decode()
    assert "已签发为终审报告：第 2 版。" in html and "已保存为第 2 版" not in html


def test_print_refuses_a_malformed_version_like_the_diff(doctor, final_report):
    study = final_report.study
    assert doctor.get(url("print", study), {"v": "abc"}).status_code == 400
    assert doctor.get(url("print_pdf", study), {"v": "1.5"}).status_code == 400
    assert doctor.get(url("diff", study), {"a": "x"}).status_code == 400
    assert doctor.get(url("print", study), {"v": "1"}).status_code == 200
    assert doctor.get(url("print", study)).status_code == 200


def test_published_study_links_to_its_exam_slip_by_public_id(doctor, world, final_report):
    study = final_report.study
    slip = f"{reverse('portal:staff_slip', args=['first'])}?study={study.public_id}"
    assert slip not in doctor.get(url("report", study)).content.decode()
    assert slip not in doctor.get(reverse("reports_staff:worklist", args=["first"])).content.decode()
    _publish(world, study)
    report_page = doctor.get(url("report", study)).content.decode()
    worklist = doctor.get(reverse("reports_staff:worklist", args=["first"])).content.decode()
    assert f'id="slip-link" href="{slip}"' in report_page
    assert f'class="slip-link" href="{slip}"' in worklist
    assert study.study_instance_uid not in slip
    page = doctor.get(slip)
    assert page.status_code == 200 and 'id="make-qr"' in page.content.decode()
    assert 'id="not-published"' not in page.content.decode()
