"""Permitted downloads: a streamed zip of the DICOM file-set, DICOMDIR and REPORT.PDF, from a
time-limited URL, audited."""

import io
import zipfile

import pytest
from django.core import signing
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.audit.vocabulary import Action
from apps.portal.services import patient_contact_update
from apps.tenants.context import hospital_context
from tests.portal.conftest import FINDINGS, ID_NUMBER, PHONE, PatientRecord
from tests.viewer.helpers import ct_series_parts, study_store

pytestmark = pytest.mark.django_db


@pytest.fixture
def stored(world, local_storage):
    from apps.reports.models import StudyPublication
    from apps.reports.publication import study_images_mark_complete
    from apps.reports.services import report_create, report_sign

    hospital = world.first.hospital
    study = study_store(hospital, ct_series_parts(2, rows=16, columns=16))
    doctor = world.first["reporting_doctor"]
    with hospital_context(hospital):
        patient_contact_update(actor=None, hospital=hospital, patient=study.patient, phone=PHONE, id_number=ID_NUMBER)
        version = report_create(hospital=hospital, study=study, actor=doctor, fields=FINDINGS)
        report_sign(report=version.report, actor=doctor, expected_version=1)
        study_images_mark_complete(actor=None, study=study, source=StudyPublication.Source.MANIFEST)
    return PatientRecord(hospital, study.patient, PHONE, ID_NUMBER), study


def test_download_streams_dicom_dicomdir_and_report_pdf(client, world, stored, sign_in_patient):
    record, study = stored
    sign_in_patient(record)
    link = client.post(reverse("portal:download", args=["first", study.public_id]))
    assert link.status_code == 302 and "/download/" in link["Location"]
    response = client.get(link["Location"])
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert "no-store" in response["Cache-Control"]
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    names = archive.namelist()
    assert "DICOMDIR" in names and "REPORT.PDF" in names
    assert sum(1 for name in names if name.startswith("DICOM/")) == 2
    assert archive.read("REPORT.PDF").startswith(b"%PDF")
    with hospital_context(world.first.hospital):
        assert AuditEvent.objects.filter(action=Action.STUDY_DOWNLOADED, object_id=str(study.public_id)).count() == 1


def test_expired_download_link_is_refused(client, world, stored, sign_in_patient, settings):
    record, study = stored
    sign_in_patient(record)
    link = client.post(reverse("portal:download", args=["first", study.public_id]))["Location"]
    settings.PORTAL_DOWNLOAD_LINK_SECONDS = -1
    assert client.get(link).status_code == 410


def test_download_link_is_bound_to_the_patient_session(client, world, stored, sign_in_patient):
    from django.test import Client

    record, study = stored
    sign_in_patient(record)
    link = client.post(reverse("portal:download", args=["first", study.public_id]))["Location"]
    # Without the session: back to sign-in; forged: 404.
    assert Client().get(link).status_code == 302
    forged = signing.dumps({"s": str(study.public_id), "p": "someone-else"}, salt="portal-download")
    assert client.get(reverse("portal:download_file", args=["first", forged])).status_code == 404
    assert client.get(reverse("portal:download_file", args=["first", "garbage"])).status_code == 404
