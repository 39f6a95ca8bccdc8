"""QR tokens from the staff screen and the hospital API; SMS short links."""

import base64
from datetime import date

import pytest
from django.urls import reverse

from apps.portal.models import EntryToken
from tests.dicomweb.helpers import token_for
from tests.portal.conftest import PHONE, last_code

pytestmark = pytest.mark.django_db


def test_api_issues_a_qr_token_that_leads_to_the_study(
    client, world, patient, study, django_capture_on_commit_callbacks
):
    token = token_for(world.first.hospital)
    url = reverse("portal_api:entry_token", args=["first", study.study_instance_uid])
    response = client.post(url, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 201
    body = response.json()
    assert body["qr_svg"].startswith("<svg") or "<svg" in body["qr_svg"][:200]
    assert base64.b64decode(body["qr_png_base64"]).startswith(b"\x89PNG")
    path = "/" + body["url"].split("://", 1)[1].split("/", 1)[1]
    assert path.startswith("/portal/first/q/") and len(path.rstrip("/").rsplit("/", 1)[1]) >= 32
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(path).status_code == 302
    response = client.post(reverse("portal:verify", args=["first"]), {"code": last_code(PHONE)})
    assert response["Location"] == reverse("portal:study", args=["first", study.public_id])


def test_api_says_until_when_the_qr_token_works(client, world, patient, make_published_study):
    """The end of the study's service period (30 years for an inpatient exam), as an ISO date."""
    study = make_published_study(patient, study_date=date(2026, 3, 2), encounter="inpatient")
    token = token_for(world.first.hospital)
    url = reverse("portal_api:entry_token", args=["first", study.study_instance_uid])
    response = client.post(url, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 201
    assert response.json()["expires_on"] == "2056-03-01"


def test_api_token_of_another_hospital_is_404(client, world, study):
    token = token_for(world.second.hospital)
    url = reverse("portal_api:entry_token", args=["first", study.study_instance_uid])
    assert client.post(url, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 404
    assert client.post(url).status_code == 401


def test_api_unknown_study_is_404(client, world):
    token = token_for(world.first.hospital)
    url = reverse("portal_api:entry_token", args=["first", "1.2.3.4"])
    assert client.post(url, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 404


def test_api_read_only_token_cannot_issue(client, world, study):
    token = token_for(world.first.hospital, scopes=("read",))
    url = reverse("portal_api:entry_token", args=["first", study.study_instance_uid])
    assert client.post(url, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 403


def test_staff_screen_prints_a_qr(client, world, study, sign_in):
    sign_in(world.first["technologist"])
    url = reverse("portal:staff_slip", args=["first"])
    assert client.get(url, {"uid": study.study_instance_uid}).status_code == 200
    response = client.post(url, {"study": str(study.public_id)})
    html = response.content.decode()
    # The QR once, as SVG (it prints sharply at any size), with a print button.
    assert response.status_code == 200 and html.count("<svg") == 1 and "data:image/png;base64," not in html
    assert 'id="print-slip"' in html and "js/slip.js" in html
    assert EntryToken.objects.model  # the token row exists only as a hash
    from apps.tenants.context import hospital_context

    with hospital_context(world.first.hospital):
        entry = EntryToken.objects.get()
    raw = html.split("/portal/first/q/", 1)[1].split("/", 1)[0]
    assert raw not in entry.token_hash and len(raw) >= 32


@pytest.mark.parametrize(
    ("language", "sentence"),
    [
        ("zh-hans", "此二维码有效期至2041-03-01（含当日）。"),
        ("en", "This code can be used until 2041-03-01 (inclusive)."),
    ],
    ids=["zh", "en"],
)
def test_staff_slip_says_until_when_the_qr_works(client, world, patient, make_published_study, sign_in,
                                                 language, sentence):  # fmt: skip
    """An outpatient exam: the code works for the 15-year service period, to the day before."""
    study = make_published_study(patient, study_date=date(2026, 3, 2))
    sign_in(world.first["technologist"])
    response = client.post(
        reverse("portal:staff_slip", args=["first"]), {"study": str(study.public_id)}, HTTP_ACCEPT_LANGUAGE=language
    )
    assert response.status_code == 200
    assert f'<p id="qr-expires">{sentence}</p>' in response.content.decode()


def test_staff_of_another_hospital_gets_403_or_404(client, world, study, sign_in):
    sign_in(world.second["technologist"])
    url = reverse("portal:staff_slip", args=["first"])
    assert client.post(url, {"study": str(study.public_id)}).status_code == 403
    sign_in(world.second["hospital_admin"])
    url = reverse("portal:staff_slip", args=["second"])
    assert client.post(url, {"study": str(study.public_id)}).status_code == 404


def test_short_link_without_a_phone_on_record_sends_nothing(client, world, make_patient, make_published_study,
                                                           django_capture_on_commit_callbacks):  # fmt: skip
    from apps.portal.services import entry_token_create
    from apps.tenants.context import hospital_context

    record = make_patient(world.first.hospital, phone="13000000000")
    study = make_published_study(record)
    with hospital_context(world.first.hospital):
        record.patient.phone_sealed, record.patient.phone_index = b"", ""
        record.patient.save()
        _entry, raw = entry_token_create(
            actor=None, hospital=world.first.hospital, study=study, kind=EntryToken.Kind.SMS
        )
    from apps.notify.providers import ConsoleProvider

    before = len(ConsoleProvider.outbox)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("short_link", args=[raw]))
    assert response.status_code == 302
    assert len(ConsoleProvider.outbox) == before


def test_hospital_system_records_a_patients_contact(client, world, request_code):
    import json

    from apps.imaging.keys import blind_index, field_seal
    from apps.imaging.models import Patient
    from apps.tenants.context import hospital_context
    from tests.portal.conftest import sms_to

    hospital = world.first.hospital
    with hospital_context(hospital):
        Patient.objects.create(
            hospital=hospital, mrn_sealed=field_seal(hospital, "MRN-77", field="mrn"),
            mrn_index=blind_index(hospital, "MRN-77", field="mrn"), name_sealed=b"",
        )  # fmt: skip
    url = reverse("portal_api:patient_contact", args=["first"])
    body = json.dumps({"patient_id": "MRN-77", "phone": "+86 139-0000-1111", "id_number": "11010119900101777x"})
    token = token_for(hospital)
    response = client.post(url, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    request_code(phone="13900001111", identity="777X")
    assert len(sms_to("13900001111")) == 1
    other = token_for(world.second.hospital)
    assert (
        client.post(url, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {other}").status_code == 404
    )
    unknown = json.dumps({"patient_id": "nobody", "phone": "13900001111"})
    assert (
        client.post(url, unknown, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}").status_code
        == 404
    )
    bad = json.dumps({"patient_id": "MRN-77", "phone": "12"})
    assert (
        client.post(url, bad, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 400
    )


def test_staff_slip_says_why_a_study_is_not_published(client, world, patient, sign_in):
    from pydicom.uid import generate_uid

    from apps.imaging.models import Study
    from apps.reports.services import report_create
    from apps.tenants.context import hospital_context

    with hospital_context(world.first.hospital):
        study = Study.objects.create(hospital=world.first.hospital, patient=patient.patient,
                                     study_instance_uid=generate_uid(), modalities="CT")  # fmt: skip
    sign_in(world.first["technologist"])
    url = reverse("portal:staff_slip", args=["first"])
    html = client.get(url, {"study": str(study.public_id)}).content.decode()
    assert 'id="not-published"' in html
    assert "报告尚未签发。" in html and "影像尚未标记为完整。" in html
    assert "此处没有内容" not in html
    with hospital_context(world.first.hospital):
        report_create(hospital=world.first.hospital, study=study, actor=world.first["reporting_doctor"],
                      fields={"impression": "x"})  # fmt: skip
    html = client.get(url, {"study": str(study.public_id)}).content.decode()
    assert "报告尚未签发。" in html  # a draft is not signed


def test_staff_slip_of_a_published_study_has_no_warning(client, world, study, sign_in):
    sign_in(world.first["technologist"])
    html = client.get(reverse("portal:staff_slip", args=["first"]), {"study": str(study.public_id)}).content.decode()
    assert 'id="not-published"' not in html and 'id="make-qr"' in html


def test_hospital_page_links_the_exam_slip(client, world, sign_in):
    sign_in(world.first["technologist"])
    html = client.get(reverse("core:hospital_home", args=["first"])).content.decode()
    assert f'id="exam-slip" href="{reverse("portal:staff_slip", args=["first"])}"' in html
