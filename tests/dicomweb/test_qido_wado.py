"""QIDO-RS searches and WADO-RS retrieval: byte-identical, no-store, per hospital."""

from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from pydicom.uid import generate_uid

from apps.audit.models import AuditEvent
from apps.audit.vocabulary import Action, Outcome
from apps.imaging.models import Instance
from apps.imaging.objectstore import STORED_OBJECT_FIELDS
from apps.tenants.context import hospital_context, platform_scope
from tests.dicomweb.helpers import read_multipart, stow, token_for
from tests.imaging.dicom_factory import make_ct_series, make_ct_slice, make_mr_slice

pytestmark = pytest.mark.django_db

STUDY_UID = "0020000D"
PATIENT_NAME = "00100010"
PATIENT_ID = "00100020"
MODALITIES = "00080061"


@pytest.fixture
def archive(client, world, local_storage):
    """Three studies of hospital "first" and one of "second"."""
    token = token_for(world.first.hospital)
    zhang = make_ct_series(3, PatientName="张^三", PatientID="P-ZHANG", StudyDate="20250105", AccessionNumber="A1",
                           SpecificCharacterSet="GB18030")  # fmt: skip
    li = [make_mr_slice(PatientName="李^四", PatientID="P-LI", StudyDate="20250210", AccessionNumber="A2")]
    wang = [make_ct_slice(PatientName="Wang^Wu", PatientID="P-WANG", StudyDate="20241231", AccessionNumber="A3")]
    for parts in (zhang, li, wang):
        assert stow(client, "first", token, parts).status_code == 200
    other_token = token_for(world.second.hospital)
    other = [make_ct_slice(PatientName="张^三", PatientID="P-ZHANG", InstitutionName="SECOND PEOPLES HOSPITAL")]
    assert stow(client, "second", other_token, other).status_code == 200
    return {"token": token, "zhang": zhang, "other_token": other_token}


def _qido(client, token, path="studies", **params):
    return client.get(f"/api/first/dicom-web/{path}", params, HTTP_AUTHORIZATION=f"Bearer {token}")


def _values(results, tag):
    return [r[tag]["Value"][0] if "Value" in r[tag] else None for r in results]


def test_search_by_patient_id(client, archive):
    response = _qido(client, archive["token"], PatientID="P-ZHANG")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/dicom+json"
    assert "no-store" in response["Cache-Control"]
    [study] = response.json()
    assert study[PATIENT_NAME]["Value"] == [{"Alphabetic": "张^三"}]
    assert study["00201208"]["Value"] == [3]  # NumberOfStudyRelatedInstances
    for required in ("00080020", "00080030", "00080050", MODALITIES, "00080090", PATIENT_NAME, PATIENT_ID,
                     "00100030", "00100040", STUDY_UID, "00200010", "00201206", "00201208", "00081190"):  # fmt: skip
        assert required in study, required


def test_search_by_patient_name_wildcards(client, archive):
    assert _values(_qido(client, archive["token"], PatientName="张*").json(), PATIENT_ID) == ["P-ZHANG"]
    assert _values(_qido(client, archive["token"], PatientName="?^四").json(), PATIENT_ID) == ["P-LI"]
    assert _values(_qido(client, archive["token"], PatientName="wang^wu").json(), PATIENT_ID) == ["P-WANG"]


def test_search_by_date_range_modality_and_accession(client, archive):
    january = _qido(client, archive["token"], StudyDate="20250101-20250131").json()
    assert _values(january, PATIENT_ID) == ["P-ZHANG"]
    since = _qido(client, archive["token"], StudyDate="20250101-").json()
    assert sorted(_values(since, PATIENT_ID)) == ["P-LI", "P-ZHANG"]
    assert _values(_qido(client, archive["token"], ModalitiesInStudy="MR").json(), PATIENT_ID) == ["P-LI"]
    assert _values(_qido(client, archive["token"], **{"00080050": "A3"}).json(), PATIENT_ID) == ["P-WANG"]


def test_limit_and_offset(client, archive):
    everything = _values(_qido(client, archive["token"]).json(), PATIENT_ID)
    assert len(everything) == 3
    page = _values(_qido(client, archive["token"], limit=1, offset=1).json(), PATIENT_ID)
    assert page == everything[1:2]


def test_bad_query_parameters_are_400(client, archive):
    assert _qido(client, archive["token"], StudyDate="2025-01").status_code == 400
    assert _qido(client, archive["token"], limit="many").status_code == 400
    # Past the database's integer range: refused, not a server error.
    huge = _qido(client, archive["token"], offset="99999999999999999999")
    assert huge.status_code == 400 and huge.json()["error"]


def test_series_and_instance_searches(client, archive):
    [study] = _qido(client, archive["token"], PatientID="P-ZHANG").json()
    study_uid = study[STUDY_UID]["Value"][0]
    series = _qido(client, archive["token"], f"studies/{study_uid}/series").json()
    assert len(series) == 1
    assert series[0]["00080060"]["Value"] == ["CT"]
    series_uid = series[0]["0020000E"]["Value"][0]
    instances = _qido(client, archive["token"], f"studies/{study_uid}/series/{series_uid}/instances").json()
    assert [i["00200013"]["Value"][0] for i in instances] == [1, 2, 3]
    assert _qido(client, archive["token"], "instances", Modality="MR").status_code == 200


def test_another_hospital_sees_only_its_own(client, archive):
    response = client.get("/api/second/dicom-web/studies", HTTP_AUTHORIZATION=f"Bearer {archive['other_token']}")
    assert len(response.json()) == 1
    assert _qido(client, archive["other_token"]).status_code == 404  # second's token at first's URL


def test_retrieve_instance_is_byte_identical(client, archive):
    [study] = _qido(client, archive["token"], PatientID="P-ZHANG").json()
    study_uid = study[STUDY_UID]["Value"][0]
    instances = _qido(client, archive["token"], f"studies/{study_uid}/instances").json()
    url = instances[0]["00081190"]["Value"][0].replace("http://testserver", "")
    response = client.get(url, HTTP_AUTHORIZATION=f"Bearer {archive['token']}")
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    [body] = read_multipart(b"".join(response.streaming_content), response["Content-Type"])
    assert body in archive["zhang"]


def test_rows_with_swapped_objects_return_none_of_the_other_patients_bytes(client, archive, world):
    """Wrong-patient images, as a database fault or tampering would make them: Wang's and Li's rows
    swap every stored-object column. Each read fails before the response starts: a clean error, no
    byte of the other's object."""
    with hospital_context(world.first.hospital):
        wang = Instance.objects.select_related("series__study").get(series__study__accession_number="A3")
        li = Instance.objects.select_related("series__study").get(series__study__accession_number="A2")
        columns = {instance.pk: {f: getattr(instance, f) for f in STORED_OBJECT_FIELDS} for instance in (wang, li)}
        Instance.objects.filter(pk=li.pk).update(storage_key="objects/00/" + "0" * 32)
        Instance.objects.filter(pk=wang.pk).update(**columns[li.pk])
        Instance.objects.filter(pk=li.pk).update(**columns[wang.pk])
    for instance in (wang, li):
        series = instance.series
        url = f"/api/first/dicom-web/studies/{series.study.study_instance_uid}/series/"
        url += f"{series.series_instance_uid}/instances/{instance.sop_instance_uid}"
        for path in (url, url.rsplit("/instances/", 1)[0]):  # the instance, and its whole series
            response = client.get(path, HTTP_AUTHORIZATION=f"Bearer {archive['token']}")
            assert response.status_code == 500
            assert response.json()["error"] == "stored_object_damaged"
            assert b"DICM" not in response.content
    # Recorded as failed accesses (kept although the answers were 5xx), and no access succeeded.
    with platform_scope("audit"):
        accesses = list(AuditEvent.objects.filter(action=Action.INSTANCES_ACCESSED).values_list("outcome", flat=True))
    assert accesses == [Outcome.SERIOUS_FAILURE] * 4


def test_retrieve_study_returns_every_instance(client, archive):
    [study] = _qido(client, archive["token"], PatientID="P-ZHANG").json()
    study_uid = study[STUDY_UID]["Value"][0]
    response = client.get(
        f"/api/first/dicom-web/studies/{study_uid}",
        HTTP_AUTHORIZATION=f"Bearer {archive['token']}",
        HTTP_ACCEPT='multipart/related; type="application/dicom"; transfer-syntax=*',
    )
    parts = read_multipart(b"".join(response.streaming_content), response["Content-Type"])
    assert sorted(parts) == sorted(archive["zhang"])


def test_metadata_names_the_patient_and_omits_pixel_data(client, archive):
    [study] = _qido(client, archive["token"], PatientID="P-ZHANG").json()
    study_uid = study[STUDY_UID]["Value"][0]
    response = client.get(
        f"/api/first/dicom-web/studies/{study_uid}/metadata", HTTP_AUTHORIZATION=f"Bearer {archive['token']}"
    )
    documents = response.json()
    assert len(documents) == 3
    assert documents[0][PATIENT_NAME]["Value"] == [{"Alphabetic": "张^三"}]
    assert "7FE00010" not in documents[0]
    assert documents[0]["00020010"]["Value"] == ["1.2.840.10008.1.2.1"]


def test_unknown_study_and_other_hospitals_study_are_the_same_404(client, archive):
    other = client.get("/api/second/dicom-web/studies", HTTP_AUTHORIZATION=f"Bearer {archive['other_token']}")
    other_uid = other.json()[0][STUDY_UID]["Value"][0]
    for uid in (other_uid, generate_uid()):
        response = client.get(f"/api/first/dicom-web/studies/{uid}", HTTP_AUTHORIZATION=f"Bearer {archive['token']}")
        assert response.status_code == 404
        assert response.json() == {"error": "not_found", "detail": "Not found."}


def test_unacceptable_media_type_is_406(client, archive):
    [study] = _qido(client, archive["token"], PatientID="P-ZHANG").json()
    study_uid = study[STUDY_UID]["Value"][0]
    for accept in ("image/png", 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50'):
        response = client.get(
            f"/api/first/dicom-web/studies/{study_uid}", HTTP_AUTHORIZATION=f"Bearer {archive['token']}",
            HTTP_ACCEPT=accept,
        )  # fmt: skip
        assert response.status_code == 406, accept


def test_stored_object_holds_no_plaintext(client, archive, local_storage):
    slice_ = archive["zhang"][0]
    marker = slice_[-64:]  # pixel bytes
    names = [path for path in Path(local_storage.location).rglob("*") if path.is_file()]
    assert len(names) == 6  # one object per instance, both hospitals
    for name in names:
        data = name.read_bytes()
        assert marker not in data
        assert "张^三".encode("gb18030") not in data


def test_an_audited_search_takes_no_savepoint_of_its_own(client, archive):
    """The audit event goes into the request's transaction as it is: one savepoint in all, the one
    the request's own block becomes inside a test's transaction (in production: none)."""
    with CaptureQueriesContext(connection) as queries:
        assert _qido(client, archive["token"], PatientID="P-ZHANG").status_code == 200
    statements = [query["sql"] for query in queries.captured_queries]
    assert sum(sql.startswith("SAVEPOINT") for sql in statements) == 1
    assert any(sql.startswith('INSERT INTO "audit_auditevent"') for sql in statements)


def test_queries_and_retrievals_are_audited_without_patient_values(client, archive, world):
    from apps.audit.models import AuditEvent
    from apps.tenants.context import platform_scope

    [study] = _qido(client, archive["token"], PatientID="P-ZHANG").json()
    study_uid = study[STUDY_UID]["Value"][0]
    client.get(f"/api/first/dicom-web/studies/{study_uid}", HTTP_AUTHORIZATION=f"Bearer {archive['token']}")
    with platform_scope("audit"):
        events = list(AuditEvent.objects.filter(hospital=world.first.hospital).order_by("sequence"))
    actions = [event.action for event in events]
    assert actions.count("instances_imported") == 3
    query = next(e for e in events if e.action == "studies_queried")
    assert query.event_id == "110112"
    assert query.details["keys"] == ["PatientID"]
    assert "P-ZHANG" not in str(query.details)
    access = next(e for e in events if e.action == "instances_accessed")
    assert (access.event_id, access.object_id, access.details["instances"]) == ("110103", study_uid, 3)


def test_unsupported_matching_keys_are_named_in_a_warning(client, archive):
    response = _qido(client, archive["token"], PatientBirthDate="19700101", includefield="all")
    assert response.status_code == 200
    assert len(response.json()) == 3  # the key is not used for matching
    assert "PatientBirthDate" in response["Warning"]
    assert response["Warning"].startswith("299 ")
    assert "includefield" not in response["Warning"]
    assert "Warning" not in _qido(client, archive["token"], PatientID="P-ZHANG")


INSTITUTION = "00080080"
SERIES_DATE = "00080021"
SLICE_THICKNESS = "00180050"
PIXEL_DATA = "7FE00010"


def test_includefield_adds_named_attributes_from_the_stored_header(client, archive):
    response = _qido(client, archive["token"], PatientID="P-ZHANG", includefield="InstitutionName,00180050")
    assert response.status_code == 200 and "Warning" not in response
    [study] = response.json()
    assert study[INSTITUTION]["Value"] == ["FIRST PEOPLES HOSPITAL"]
    assert [float(v) for v in study[SLICE_THICKNESS]["Value"]] == [5.0]
    assert study[PATIENT_ID]["Value"] == ["P-ZHANG"]  # the required attributes stay


def test_includefield_all_at_the_instance_level_omits_pixel_data(client, archive):
    response = _qido(client, archive["token"], "instances", includefield="all")
    results = response.json()
    assert response.status_code == 200 and len(results) == 5
    for result in results:
        assert SLICE_THICKNESS in result and INSTITUTION in result
        assert PIXEL_DATA not in result
        assert not any(tag.startswith("0002") for tag in result)
    default = _qido(client, archive["token"], "instances").json()
    assert all(SLICE_THICKNESS not in result for result in default)


def test_includefield_all_at_the_series_level(client, archive):
    results = _qido(client, archive["token"], "series", includefield="all").json()
    assert all(INSTITUTION in result for result in results)


def test_an_unknown_includefield_attribute_is_400(client, archive):
    response = _qido(client, archive["token"], includefield="NoSuchKeyword")
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"


def test_includefield_shows_nothing_of_another_hospital(client, archive):
    response = client.get(
        "/api/first/dicom-web/studies", {"includefield": "all"}, HTTP_AUTHORIZATION=f"Bearer {archive['other_token']}"
    )
    assert response.status_code == 404
