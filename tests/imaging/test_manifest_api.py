"""PUT/GET /api/<code>/studies/<study_uid>/manifest: hospital systems declare what a study holds."""

import io
import json

import pytest
from pydicom import dcmread

from apps.audit.models import AuditEvent
from apps.audit.vocabulary import Action
from apps.imaging.models import StudyManifest
from apps.tenants.context import hospital_context, platform_scope
from tests.dicomweb.helpers import stow, token_for
from tests.imaging.dicom_factory import make_ct_series

pytestmark = pytest.mark.django_db

STUDY = "1.2.826.0.1.3680043.8.498.1"
SERIES_A = "1.2.826.0.1.3680043.8.498.1.1"
SERIES_B = "1.2.826.0.1.3680043.8.498.1.2"


def put(client, code: str, token: str, body, study_uid: str = STUDY):
    payload = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.put(
        f"/api/{code}/studies/{study_uid}/manifest",
        payload,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


def get(client, code: str, token: str, study_uid: str = STUDY):
    return client.get(f"/api/{code}/studies/{study_uid}/manifest", HTTP_AUTHORIZATION=f"Bearer {token}")


def manifests(hospital) -> list[StudyManifest]:
    with hospital_context(hospital):
        return list(StudyManifest.objects.all())


def test_put_records_the_manifest_before_the_images_arrive(client, world):
    hospital = world.first.hospital
    response = put(client, "first", token_for(hospital), {"series": {SERIES_A: 3, SERIES_B: 1}})
    assert response.status_code == 200
    body = response.json()
    assert body["series"] == {SERIES_A: 3, SERIES_B: 1}
    assert body["complete"] is False
    assert body["missing"][SERIES_A] == {"expected": 3, "received": 0}
    [manifest] = manifests(hospital)
    assert (manifest.study_instance_uid, manifest.series_counts) == (STUDY, {SERIES_A: 3, SERIES_B: 1})


def test_put_again_replaces_the_manifest(client, world):
    hospital = world.first.hospital
    token = token_for(hospital)
    put(client, "first", token, {"series": {SERIES_A: 3}})
    assert put(client, "first", token, {"series": {SERIES_B: 2}}).status_code == 200
    [manifest] = manifests(hospital)
    assert manifest.series_counts == {SERIES_B: 2}


def test_a_study_that_meets_its_manifest_is_complete(client, world, local_storage):
    hospital = world.first.hospital
    token = token_for(hospital)
    blobs = make_ct_series(2, PatientID="MANAPI01")
    assert stow(client, "first", token, blobs).status_code == 200

    dataset = dcmread(io.BytesIO(blobs[0]))
    response = put(
        client, "first", token, {"series": {dataset.SeriesInstanceUID: 2}}, study_uid=dataset.StudyInstanceUID
    )
    assert response.json()["complete"] is True
    assert get(client, "first", token, dataset.StudyInstanceUID).json()["missing"] == {}


def test_put_is_audited_with_counts_and_the_token(client, world):
    hospital = world.first.hospital
    token = token_for(hospital)
    put(client, "first", token, {"series": {SERIES_A: 3, SERIES_B: 1}})
    with platform_scope("audit"):
        [event] = AuditEvent.objects.filter(action=Action.STUDY_MANIFEST_SET)
    assert event.hospital_id == hospital.pk
    assert event.entry_point == "api"
    assert event.details["series"] == 2 and event.details["expected_instances"] == 4
    assert event.details["token"]
    assert event.object_id == str(manifests(hospital)[0].public_id)


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        [],
        {"series": []},
        {"series": {}},
        {"counts": {SERIES_A: 1}},
        {"series": {SERIES_A: 0}},
        {"series": {SERIES_A: "3"}},
        {"series": {SERIES_A: True}},
        {"series": {"01.2.3": 1}},
    ],
)
def test_bad_manifests_are_400_with_a_reason_and_store_nothing(client, world, body):
    hospital = world.first.hospital
    response = put(client, "first", token_for(hospital), body)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_manifest"
    assert response.json()["detail"]
    assert manifests(hospital) == []


def test_an_invalid_study_uid_is_400(client, world):
    response = put(client, "first", token_for(world.first.hospital), {"series": {SERIES_A: 1}}, study_uid="abc")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_manifest"


def test_read_only_token_cannot_put(client, world):
    response = put(client, "first", token_for(world.first.hospital, scopes=("read",)), {"series": {SERIES_A: 1}})
    assert response.status_code == 403
    assert manifests(world.first.hospital) == []


def test_missing_token_is_401(client, world):
    response = client.put(f"/api/first/studies/{STUDY}/manifest", "{}", content_type="application/json")
    assert response.status_code == 401


def test_token_of_another_hospital_gets_404(client, world):
    response = put(client, "first", token_for(world.second.hospital), {"series": {SERIES_A: 1}})
    assert response.status_code == 404
    assert manifests(world.first.hospital) == []
    assert manifests(world.second.hospital) == []


def test_get_of_another_hospitals_manifest_is_404(client, world):
    put(client, "second", token_for(world.second.hospital), {"series": {SERIES_A: 1}})
    assert get(client, "first", token_for(world.first.hospital)).status_code == 404
