"""The signed-in patient's pages: studies, amended reports, sharing, history, downloads, logout."""

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.audit.vocabulary import Action
from apps.portal.models import PatientAccessPolicy
from apps.tenants.context import hospital_context
from tests.portal.conftest import FINDINGS, PHONE, sms_to

pytestmark = pytest.mark.django_db


def _amend(world, study, impression="右肺结节，建议复查。"):
    from apps.reports.models import Report
    from apps.reports.services import report_amend

    doctor = world.first["reporting_doctor"]
    with hospital_context(world.first.hospital):
        report = Report.objects.get(study=study)
        return report_amend(report=report, actor=doctor, expected_version=report.current_version,
                            fields={**FINDINGS, "impression": impression}, reason="补充诊断")  # fmt: skip


def test_amended_report_is_marked_and_the_patient_told(
    client, world, patient, study, sign_in_patient, django_capture_on_commit_callbacks
):
    from apps.reports.publication import publication_refresh

    with django_capture_on_commit_callbacks(execute=True):
        version = _amend(world, study)
        # What report_amend does once it tells the publication (the lead's wiring); idempotent.
        with hospital_context(world.first.hospital):
            publication_refresh(study=study, amended_version=version)
    assert [m.template_code for m in sms_to(PHONE)][-1] == "report_amended"
    sign_in_patient(patient)
    html = client.get(reverse("portal:study", args=["first", study.public_id])).content.decode()
    assert "右肺结节，建议复查。" in html
    assert 'id="amended"' in html and "更正" in html


def test_publication_sends_a_short_link(world, make_patient, make_published_study, django_capture_on_commit_callbacks):
    record = make_patient(world.first.hospital, phone="13511112222")
    with django_capture_on_commit_callbacks(execute=True):
        make_published_study(record)
    messages = [m for m in sms_to("13511112222") if m.template_code == "study_published"]
    assert len(messages) == 1 and "/s/" in messages[0].params["link"]


def test_share_create_open_and_uses_are_listed(client, world, patient, study, sign_in_patient):
    from django.test import Client

    sign_in_patient(patient)
    response = client.post(reverse("portal:share_new", args=["first", study.public_id]), {"hours": 24}, follow=True)
    assert response.status_code == 200
    link = response.context["link"]
    code = response.context["access_code"]
    path = link.split("://", 1)[1].split("/", 1)[1]
    doctor = Client()
    wrong = doctor.post(f"/{path}", {"access_code": "000000" if code != "000000" else "111111"})
    assert wrong.status_code == 400
    opened = doctor.post(f"/{path}", {"access_code": code})
    assert opened.status_code == 302 and opened["Location"].startswith("/viewer/first/studies/")
    grants = doctor.session["viewer_grants"]
    assert grants[str(study.public_id)]["mode"] == "share"
    shares_page = client.get(reverse("portal:shares", args=["first"])).content.decode()
    assert shares_page.count("<li>") >= 2  # one refused, one opened
    assert "已打开" in shares_page and "被拒绝" in shares_page


def test_share_validity_must_be_one_of_the_choices(client, world, patient, study, sign_in_patient):
    sign_in_patient(patient)
    response = client.post(reverse("portal:share_new", args=["first", study.public_id]), {"hours": 100000})
    assert response.status_code == 400


def test_history_shows_staff_by_role_not_name(client, world, patient, study, sign_in_patient):
    from apps.audit.services import audit_record

    clinician = world.first["clinician"]
    with hospital_context(world.first.hospital):
        audit_record(action=Action.STUDY_OPENED, actor=clinician, actor_role="clinician", hospital=world.first.hospital,
                     object_type="study", object_id=str(study.public_id), details={"mode": "doctor"})  # fmt: skip
    sign_in_patient(patient)
    html = client.get(reverse("portal:history", args=["first"])).content.decode()
    assert ("医院工作人员" in html and "临床医生" in html) or "Clinician" in html
    assert clinician.username not in html and (clinician.display_name or "#") not in html


def test_logout_ends_the_session_and_the_viewer_grants(client, world, patient, study, sign_in_patient):
    sign_in_patient(patient)
    client.post(reverse("portal:view_images", args=["first", study.public_id]))
    assert "viewer_grants" in client.session
    response = client.post(reverse("portal:logout", args=["first"]))
    assert response.status_code == 200
    assert "viewer_grants" not in client.session
    assert client.get(reverse("portal:home", args=["first"])).status_code == 302
    with hospital_context(world.first.hospital):
        assert AuditEvent.objects.filter(action=Action.PATIENT_LOGOUT).count() == 1


def test_birth_date_policy(client, world, make_patient, request_code):
    with hospital_context(world.first.hospital):
        PatientAccessPolicy.objects.create(hospital=world.first.hospital, identity_check="birth_date")
    make_patient(world.first.hospital, birth="1985-06-30")
    assert "出生日期" in client.get(reverse("portal:login", args=["first"])).content.decode()
    request_code(identity="1985-06-30")
    assert len(sms_to(PHONE)) == 1
    request_code(identity="1985-06-29")
    assert len(sms_to(PHONE)) == 1


def test_downloads_off_by_policy(client, world, patient, study, sign_in_patient):
    with hospital_context(world.first.hospital):
        PatientAccessPolicy.objects.create(hospital=world.first.hospital, downloads_allowed=False)
    sign_in_patient(patient)
    assert 'id="download"' not in client.get(reverse("portal:study", args=["first", study.public_id])).content.decode()
    assert client.post(reverse("portal:download", args=["first", study.public_id])).status_code == 403


def test_manifest_and_no_service_worker(client):
    response = client.get(reverse("portal:manifest"))
    assert response.status_code == 200 and response.json()["start_url"] == "/portal/"
    html = client.get(reverse("portal:index")).content.decode()
    assert "serviceWorker" not in html and "<script" not in html


def test_study_page_shows_the_last_viewable_day_inclusive(client, world, patient, make_published_study,
                                                          sign_in_patient):  # fmt: skip
    """Outpatient, 15 years: the period ends (exclusively) on 2041-11-30, so 2041-11-29 is the last
    day, as on the staff slip."""
    from datetime import date

    study = make_published_study(patient, study_date=date(2026, 11, 30))
    sign_in_patient(patient)
    html = client.get(reverse("portal:study", args=["first", study.public_id])).content.decode()
    assert '<p class="hint" id="available-until">可在线查看至2041-11-29（含当日）。</p>' in html
    assert "2041-11-30" not in html


def test_expired_study_names_its_last_viewable_day(client, world, patient, make_published_study, sign_in_patient):
    from datetime import date, timedelta

    today = date.today()
    ended = make_published_study(patient, study_date=today.replace(year=today.year - 15))
    sign_in_patient(patient)
    last_day = (today - timedelta(days=1)).isoformat()
    response = client.get(reverse("portal:study", args=["first", ended.public_id]))
    assert response.status_code == 410
    assert f"最后可在线查看日为{last_day}" in response.content.decode()
    assert f"最后可在线查看日为{last_day}" in client.get(reverse("portal:home", args=["first"])).content.decode()


def test_share_creation_redirects_and_shows_the_code_once(client, world, patient, study, sign_in_patient):
    from apps.portal.models import Share

    sign_in_patient(patient)
    response = client.post(reverse("portal:share_new", args=["first", study.public_id]), {"hours": 24})
    with hospital_context(world.first.hospital):
        share = Share.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("portal:share_created", args=["first", share.public_id])
    first = client.get(response["Location"]).content.decode()
    assert 'id="access-code"' in first and 'id="share-link"' in first
    again = client.get(response["Location"]).content.decode()
    assert 'id="access-code"' not in again and 'id="shown-once"' in again
    with hospital_context(world.first.hospital):
        assert Share.objects.count() == 1


def test_share_created_page_of_another_patient_is_404(client, world, patient, study, make_patient, sign_in_patient):
    from django.test import Client

    sign_in_patient(patient)
    location = client.post(reverse("portal:share_new", args=["first", study.public_id]), {"hours": 24})["Location"]
    other = make_patient(world.first.hospital, phone="13900001111", id_number="110101198001015678")
    other_client = sign_in_patient(other, on=Client())
    assert other_client.get(location).status_code == 404


def test_revoking_a_share_asks_for_confirmation(client, world, patient, study, sign_in_patient):
    sign_in_patient(patient)
    client.post(reverse("portal:share_new", args=["first", study.public_id]), {"hours": 24})
    html = client.get(reverse("portal:shares", args=["first"])).content.decode()
    assert '<details class="confirm">' in html and "确定撤销此链接？" in html and "确定撤销</button>" in html
