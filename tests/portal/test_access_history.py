"""'Who opened my images': staff, API and back-office reads of the patient's reports are listed,
by role only, next to the patient's own and shared doctors' openings."""

import pytest
from django.test import Client
from django.urls import reverse

from apps.audit.services import audit_record
from apps.audit.vocabulary import Action, EntryPoint
from apps.reports.models import Report
from apps.tenants.context import hospital_context
from tests.dicomweb.helpers import token_for

pytestmark = pytest.mark.django_db


def _report(world, study) -> Report:
    with hospital_context(world.first.hospital):
        return Report.objects.get(study=study)


def _history(sign_in_patient, patient) -> str:
    patient_client = sign_in_patient(patient, on=Client())
    response = patient_client.get(reverse("portal:history", args=["first"]))
    assert response.status_code == 200
    return response.content.decode()


def test_staff_report_views_and_prints_are_listed_by_role(client, world, patient, study, sign_in, sign_in_patient):
    doctor = world.first["reporting_doctor"]
    sign_in(doctor)
    assert client.get(reverse("reports_staff:report", args=["first", study.public_id])).status_code == 200
    assert client.get(reverse("reports_staff:print", args=["first", study.public_id])).status_code == 200
    html = _history(sign_in_patient, patient)
    assert "医院工作人员（报告医生）" in html
    assert "查看报告" in html and "打印报告" in html
    assert doctor.username not in html and (doctor.display_name or "#") not in html


def test_api_reads_of_the_report_are_listed_as_the_hospital_system(client, world, patient, study, sign_in_patient):
    token = token_for(world.first.hospital, scopes=("read",))
    response = client.get(
        reverse("reports:report", args=["first", study.study_instance_uid]), HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 200
    html = _history(sign_in_patient, patient)
    assert "医院信息系统 · 查看报告" in html
    assert "api-token" not in html


def test_back_office_reads_of_the_report_are_listed_by_role(world, patient, study, sign_in_patient):
    admin = world.first["hospital_admin"]
    report = _report(world, study)
    with hospital_context(world.first.hospital):
        audit_record(action=Action.REPORT_VIEWED, actor=admin, hospital=world.first.hospital,
                     entry_point=EntryPoint.ADMIN, object_type="report", object_id=str(report.public_id))  # fmt: skip
    html = _history(sign_in_patient, patient)
    assert "医院工作人员（医院管理员） · 查看报告" in html
    assert admin.username not in html


def test_the_exam_slip_qr_is_listed_as_a_record_look_up(client, world, patient, study, sign_in, sign_in_patient):
    sign_in(world.first["technologist"])
    assert client.post(reverse("portal:staff_slip", args=["first"]), {"study": str(study.public_id)}).status_code == 200
    html = _history(sign_in_patient, patient)
    assert "医院工作人员（技师/上传员） · 查阅检查记录（生成检查单二维码）" in html


def test_another_patients_report_reads_are_not_listed(
    client, world, patient, make_patient, make_published_study, sign_in, sign_in_patient
):
    other = make_patient(world.first.hospital, phone="13900001111", id_number="110101198001015678")
    other_study = make_published_study(other)
    sign_in(world.first["reporting_doctor"])
    assert client.get(reverse("reports_staff:print", args=["first", other_study.public_id])).status_code == 200
    html = _history(sign_in_patient, patient)
    assert "打印报告" not in html
