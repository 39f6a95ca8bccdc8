"""Patients with a phone and ID number on record, and published studies of theirs."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from pydicom.uid import generate_uid

from apps.imaging.keys import blind_index, field_seal
from apps.imaging.models import Patient, Study
from apps.notify.providers import ConsoleProvider, console_phone_digest
from apps.portal.services import patient_contact_update
from apps.tenants.context import hospital_context
from apps.tenants.models import Hospital

PHONE = "13800138000"
ID_NUMBER = "110101199001011234"
FINDINGS = {
    "exam_description": "胸部CT平扫",
    "technique": "螺旋CT",
    "findings": "双肺纹理清晰。",
    "impression": "胸部CT未见异常。",
    "recommendation": "",
}


@dataclass
class PatientRecord:
    hospital: Hospital
    patient: Patient
    phone: str
    id_number: str


@pytest.fixture(autouse=True)
def _empty_outbox():
    ConsoleProvider.outbox.clear()
    yield
    ConsoleProvider.outbox.clear()


def sms_to(phone: str) -> list[Any]:
    """The messages the console provider 'sent' to ``phone`` (the SMS a patient would get)."""
    digest = console_phone_digest(phone)
    return [record for record in ConsoleProvider.outbox if record.phone_digest == digest]


def last_code(phone: str) -> str:
    codes = [record.params["code"] for record in sms_to(phone) if record.template_code == "verification_code"]
    assert codes, "no verification code was sent to this phone"
    return codes[-1]


@pytest.fixture
def make_patient(world) -> Callable[..., PatientRecord]:
    def _make(hospital: Hospital, *, phone: str = PHONE, id_number: str = ID_NUMBER, name: str = "王小明",
              birth: str = "1990-01-01") -> PatientRecord:  # fmt: skip
        with hospital_context(hospital):
            patient = Patient.objects.create(
                hospital=hospital,
                mrn_sealed=field_seal(hospital, "MRN", field="mrn"),
                mrn_index=generate_uid(),
                name_sealed=field_seal(hospital, name, field="name"),
                name_index=blind_index(hospital, name, field="name"),
                birth_date_sealed=field_seal(hospital, birth, field="birth"),
                sex="M",
            )
            patient_contact_update(actor=None, hospital=hospital, patient=patient, phone=phone, id_number=id_number)
        return PatientRecord(hospital, patient, phone, id_number)

    return _make


@pytest.fixture
def make_published_study(world) -> Callable[..., Study]:
    """A study of the patient with a signed report and complete images (so published)."""

    def _make(record: PatientRecord, *, study_date: date | None = None, encounter: str = "outpatient",
              description: str = "胸部CT", fields: dict[str, str] | None = None) -> Study:  # fmt: skip
        from apps.reports.models import StudyPublication
        from apps.reports.publication import study_images_mark_complete
        from apps.reports.services import report_create, report_sign

        hospital = record.hospital
        staff = world.first if hospital == world.first.hospital else world.second
        doctor = staff["reporting_doctor"]
        with hospital_context(hospital):
            study = Study.objects.create(
                hospital=hospital, patient=record.patient, study_instance_uid=generate_uid(), accession_number="A1",
                modalities="CT", study_date=study_date or date.today(), encounter_type=encounter,
                description=description,
            )  # fmt: skip
            version = report_create(hospital=hospital, study=study, actor=doctor, fields=fields or FINDINGS)
            report_sign(report=version.report, actor=doctor, expected_version=1)
            study_images_mark_complete(actor=None, study=study, source=StudyPublication.Source.MANIFEST)
        return study

    return _make


@pytest.fixture
def patient(world, make_patient) -> PatientRecord:
    return make_patient(world.first.hospital)


@pytest.fixture
def study(patient, make_published_study) -> Study:
    return make_published_study(patient)


@pytest.fixture
def request_code(client, django_capture_on_commit_callbacks):
    """Ask for a code as the login form does; the SMS task runs when the request commits."""

    def _request(code: str = "first", phone: str = PHONE, identity: str = ID_NUMBER[-4:], on: Any = None) -> Any:
        from django.urls import reverse

        with django_capture_on_commit_callbacks(execute=True):
            return (on or client).post(reverse("portal:login", args=[code]), {"phone": phone, "identity": identity})

    return _request


@pytest.fixture
def sign_in_patient(client, request_code):
    """Walk the portal sign-in for a patient record; returns the signed-in client."""

    def _sign_in(record: PatientRecord, on: Any = None) -> Any:
        from django.urls import reverse

        target = on or client
        response = request_code(record.hospital.code, record.phone, record.id_number[-4:], on=target)
        assert response.status_code == 302
        response = target.post(reverse("portal:verify", args=[record.hospital.code]), {"code": last_code(record.phone)})
        assert response.status_code == 302, response.content.decode()[:500]
        return target

    return _sign_in
