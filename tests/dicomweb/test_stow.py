"""STOW-RS: PS3.18 statuses and per-instance results; one pipeline; nothing half-indexed."""

import json

import pytest
from pydicom.uid import generate_uid

from apps.imaging.models import IngestConflict, Instance, Patient, StagedObject, Study, ValidationFinding
from apps.tenants.context import hospital_context
from tests.dicomweb.helpers import stow, token_for
from tests.imaging.dicom_factory import make_ct_series, make_ct_slice

pytestmark = pytest.mark.django_db

REFERENCED = "00081199"
FAILED = "00081198"
FAILURE_REASON = "00081197"
WARNING_REASON = "00081196"
SOP_INSTANCE = "00081155"
RETRIEVE_URL = "00081190"


def _items(response, sequence: str) -> list[dict]:
    return response.json().get(sequence, {}).get("Value", [])


@pytest.fixture
def first(world, local_storage):
    return world.first.hospital, token_for(world.first.hospital)


def test_a_series_is_stored_and_indexed(client, first):
    hospital, token = first
    series = make_ct_series(3, PatientName="张三", PatientID="MRN-001")
    response = stow(client, "first", token, series)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/dicom+json"
    items = _items(response, REFERENCED)
    assert len(items) == 3
    assert all(
        item[RETRIEVE_URL]["Value"][0].startswith("http://testserver/api/first/dicom-web/studies/") for item in items
    )
    with hospital_context(hospital):
        study = Study.objects.get()
        assert (study.number_of_series, study.number_of_instances, study.modalities) == (1, 3, "CT")
        assert Instance.objects.count() == 3
        assert set(StagedObject.objects.values_list("status", flat=True)) == {"stored"}


def test_patient_identifiers_are_not_stored_in_clear(client, first):
    hospital, token = first
    stow(client, "first", token, [make_ct_slice(PatientName="张三", PatientID="MRN-SECRET-42")])
    with hospital_context(hospital):
        patient = Patient.objects.get()
        for column in (patient.mrn_sealed, patient.name_sealed, patient.mrn_index, patient.name_index):
            raw = bytes(column) if not isinstance(column, str) else column.encode()
            assert b"MRN-SECRET-42" not in raw
            assert "张三".encode() not in raw
        instance = Instance.objects.get()
        assert b"MRN-SECRET-42" not in bytes(instance.metadata_sealed)
        assert "MRN" not in instance.storage_key


def test_the_same_bytes_again_is_a_success_without_a_second_copy(client, first):
    hospital, token = first
    slice_ = make_ct_slice()
    stow(client, "first", token, [slice_])
    again = stow(client, "first", token, [slice_])
    assert again.status_code == 200
    with hospital_context(hospital):
        assert Instance.objects.count() == 1
        assert list(StagedObject.objects.order_by("id").values_list("status", flat=True)) == ["stored", "duplicate"]


def test_different_bytes_under_the_same_uid_is_a_conflict_kept_for_staff(client, first):
    hospital, token = first
    uid = generate_uid()
    stow(client, "first", token, [make_ct_slice(SOPInstanceUID=uid, StudyDescription="one")])
    response = stow(client, "first", token, [make_ct_slice(SOPInstanceUID=uid, StudyDescription="two")])
    assert response.status_code == 409
    [failed] = _items(response, FAILED)
    assert failed[FAILURE_REASON]["Value"] == [0x0111]
    assert failed[SOP_INSTANCE]["Value"] == [uid]
    with hospital_context(hospital):
        assert Instance.objects.count() == 1
        conflict = IngestConflict.objects.get()
        assert conflict.existing.sop_instance_uid == uid
        assert conflict.staged.status == "conflict"


def test_partial_failure_is_202_with_reasons(client, first):
    hospital, token = first
    good = make_ct_slice()
    response = stow(client, "first", token, [good, b"this is not DICOM at all", good[: len(good) // 2]])
    assert response.status_code == 202
    assert len(_items(response, REFERENCED)) == 1
    reasons = [item[FAILURE_REASON]["Value"][0] for item in _items(response, FAILED)]
    assert reasons == [0xC000, 0xC000]
    with hospital_context(hospital):
        assert Instance.objects.count() == 1
        codes = sorted(StagedObject.objects.exclude(status="stored").values_list("error_code", flat=True))
        assert codes == ["DICOM_NOT_PART10", "DICOM_TRUNCATED"]


def test_nothing_stored_is_409(client, first):
    _hospital, token = first
    response = stow(client, "first", token, [b"garbage"])
    assert response.status_code == 409
    assert _items(response, REFERENCED) == []


def test_a_second_patient_inside_one_study_is_refused(client, first):
    hospital, token = first
    study_uid = generate_uid()
    stow(client, "first", token, [make_ct_slice(StudyInstanceUID=study_uid, PatientID="P1")])
    response = stow(client, "first", token, [make_ct_slice(StudyInstanceUID=study_uid, PatientID="P2")])
    assert response.status_code == 409
    assert _items(response, FAILED)[0][FAILURE_REASON]["Value"] == [0xA900]
    with hospital_context(hospital):
        assert Instance.objects.count() == 1
        assert Patient.objects.count() == 1


def test_institution_mismatch_is_stored_with_a_warning_naming_the_device(client, first):
    hospital, token = first
    response = stow(client, "first", token, [make_ct_slice(InstitutionName="SOME OTHER NAME", StationName="CT02")])
    assert response.status_code == 202
    [item] = _items(response, REFERENCED)
    assert item[WARNING_REASON]["Value"] == [0xB007]
    with hospital_context(hospital):
        finding = ValidationFinding.objects.get(code="INSTITUTION_MISMATCH")
        assert finding.severity == "warn"
        assert finding.details.get("station_name") == "CT02"
        assert finding.instance is not None


def test_instances_of_another_study_are_refused_when_posting_to_a_study(client, first):
    _hospital, token = first
    response = stow(client, "first", token, [make_ct_slice()], study_uid=generate_uid())
    assert response.status_code == 409
    assert _items(response, FAILED)[0][FAILURE_REASON]["Value"] == [0xA900]


def test_wrong_content_type_is_415(client, first):
    _hospital, token = first
    response = client.post(
        "/api/first/dicom-web/studies", b"x", content_type="application/dicom", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"no boundary here", 'multipart/related; type="application/dicom"; boundary=abc'),
        (
            b"--abc\r\nContent-Type: application/dicom\r\n\r\nnever closed",
            'multipart/related; type="application/dicom"; boundary=abc',
        ),
        (b"", 'multipart/related; type="application/dicom"; boundary=abc'),
        (b"--abc--", 'multipart/related; type="application/dicom"'),
    ],
)
def test_malformed_multipart_is_400(client, first, body, content_type):
    hospital, token = first
    response = client.generic(
        "POST", "/api/first/dicom-web/studies", body, content_type=content_type,
        CONTENT_TYPE=content_type, HTTP_AUTHORIZATION=f"Bearer {token}",
    )  # fmt: skip
    assert response.status_code == 400
    with hospital_context(hospital):
        assert StagedObject.objects.count() == 0


def test_an_object_over_the_size_limit_fails_cleanly(client, first, settings):
    hospital, token = first
    settings.DICOM_MAX_OBJECT_SIZE = 1000
    response = stow(client, "first", token, [make_ct_slice()])
    assert response.status_code == 409
    assert _items(response, FAILED)[0][FAILURE_REASON]["Value"] == [0xA700]
    with hospital_context(hospital):
        assert StagedObject.objects.count() == 0


def test_read_only_token_cannot_store(client, world, local_storage):
    token = token_for(world.first.hospital, scopes=("read",))
    response = stow(client, "first", token, [make_ct_slice()])
    assert response.status_code == 403


def test_token_of_another_hospital_gets_404(client, world, local_storage):
    token = token_for(world.second.hospital)
    response = stow(client, "first", token, [make_ct_slice()])
    assert response.status_code == 404
    assert json.loads(response.content)["error"] == "not_found"


def test_series_level_checks_flag_a_slice_gap(client, first):
    hospital, token = first
    series = make_ct_series(5, slice_thickness=5.0, positions=[0.0, 5.0, 10.0, 25.0, 30.0])
    response = stow(client, "first", token, series)
    assert response.status_code == 202
    warned = [item for item in _items(response, REFERENCED) if WARNING_REASON in item]
    assert len(warned) == 1
    with hospital_context(hospital):
        finding = ValidationFinding.objects.get(code="SLICE_SPACING_INCONSISTENT")
        assert finding.instance is not None
        assert Instance.objects.count() == 5


def test_a_contiguous_series_has_no_series_findings(client, first):
    hospital, token = first
    response = stow(client, "first", token, make_ct_series(5))
    assert response.status_code == 200
    with hospital_context(hospital):
        assert not ValidationFinding.objects.exists()


def test_an_image_without_pixel_data_is_refused_and_the_rest_stored(client, first):
    hospital, token = first
    good = make_ct_slice(PatientID="PIXELS01")
    response = stow(client, "first", token, [good, make_ct_slice(PatientID="PIXELS01", PixelData=None)])
    assert response.status_code == 202
    assert _items(response, FAILED)[0][FAILURE_REASON]["Value"] == [0xA900]  # TYPE1_MISSING
    with hospital_context(hospital):
        assert Instance.objects.count() == 1
        refused = StagedObject.objects.get(status=StagedObject.Status.REJECTED)
        assert refused.error_code == "TYPE1_MISSING" and "PixelData" in refused.error_message_en


def test_a_missing_patient_id_is_refused(client, first):
    hospital, token = first
    response = stow(client, "first", token, [make_ct_slice(PatientID=""), make_ct_slice(PatientID="UNKNOWN")])
    assert response.status_code == 409
    with hospital_context(hospital):
        assert set(StagedObject.objects.values_list("error_code", flat=True)) == {"PATIENT_ID_MISSING"}
        assert Patient.objects.count() == 0


def test_a_patient_id_of_another_person_is_refused(client, first):
    hospital, token = first
    stow(client, "first", token, [make_ct_slice(PatientID="P-SHARED", PatientName="Alpha^A")])
    response = stow(client, "first", token, [make_ct_slice(PatientID="P-SHARED", PatientName="Beta^B")])
    assert response.status_code == 409
    with hospital_context(hospital):
        assert Patient.objects.count() == 1
        assert Instance.objects.count() == 1
        assert StagedObject.objects.filter(error_code="PATIENT_IDENTITY_MISMATCH").count() == 1


def test_an_unreadable_value_is_a_clean_rejection(client, first):
    hospital, token = first
    # Chinese-locale devices sometimes write a decimal comma into a DS value.
    data = make_ct_slice(SliceThickness="1.25")
    assert data.count(b"1.25") == 1
    response = stow(client, "first", token, [data.replace(b"1.25", b"1,25")])
    assert response.status_code in {200, 202, 409}
    with hospital_context(hospital):
        statuses = set(StagedObject.objects.values_list("status", "error_code"))
    assert statuses <= {("stored", ""), ("rejected", "DICOM_MALFORMED"), ("rejected", "PIXEL_SPACING_INVALID")}


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/related; type*=utf-8''application%2Fdicom; boundary=abc",
        "multipart/related; type=\"application/dicom\"; boundary*=utf-8''abc",
    ],
)
def test_rfc2231_parameters_do_not_crash(client, first, content_type):
    _hospital, token = first
    response = client.generic(
        "POST", "/api/first/dicom-web/studies", b"--abc--\r\n", content_type=content_type,
        CONTENT_TYPE=content_type, HTTP_AUTHORIZATION=f"Bearer {token}",
    )  # fmt: skip
    assert response.status_code in {400, 409, 415}


def test_oversized_part_headers_are_400(client, first):
    _hospital, token = first
    body = b"--abc\r\nX-Junk: " + b"a" * 20_000 + b"\r\n\r\nDATA\r\n--abc--\r\n"
    content_type = 'multipart/related; type="application/dicom"; boundary=abc'
    response = client.generic(
        "POST", "/api/first/dicom-web/studies", body, content_type=content_type,
        CONTENT_TYPE=content_type, HTTP_AUTHORIZATION=f"Bearer {token}",
    )  # fmt: skip
    assert response.status_code == 400


def test_staff_resolve_a_conflict_by_keeping_the_stored_version(client, first, world, sign_in):
    from django.urls import reverse

    from apps.imaging.staging import staging_path

    hospital, token = first
    uid = generate_uid()
    stow(client, "first", token, [make_ct_slice(SOPInstanceUID=uid, StudyDescription="one")])
    stow(client, "first", token, [make_ct_slice(SOPInstanceUID=uid, StudyDescription="two")])
    with hospital_context(hospital):
        conflict = IngestConflict.objects.select_related("staged").get()
    assert staging_path(conflict.staged.public_id).exists()  # kept for staff
    sign_in(world.first["hospital_admin"])
    response = client.post(
        reverse("admin:imaging_ingestconflict_changelist"),
        {"action": "keep_stored", "_selected_action": [conflict.pk], "confirmed": "yes"},
    )
    assert response.status_code == 302
    with hospital_context(hospital):
        conflict.refresh_from_db()
        assert conflict.resolved_at is not None
        assert Instance.objects.get().sop_instance_uid == uid


def test_a_request_without_instances_is_400(client, first):
    _hospital, token = first
    content_type = 'multipart/related; type="application/dicom"; boundary=abc'
    response = client.generic(
        "POST", "/api/first/dicom-web/studies", b"--abc--\r\n", content_type=content_type,
        CONTENT_TYPE=content_type, HTTP_AUTHORIZATION=f"Bearer {token}",
    )  # fmt: skip
    assert response.status_code == 400
    assert response.json()["detail"] == "The request holds no instance."


def test_a_study_url_that_is_not_a_uid_gets_400(client, first):
    _hospital, token = first
    response = stow(client, "first", token, [make_ct_slice()], study_uid="abc def")
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
