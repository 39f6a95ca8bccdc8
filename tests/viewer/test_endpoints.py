"""The viewer's data endpoints: WADO-RS metadata, frames and thumbnails of the granted study only."""

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.audit.models import AuditEvent
from apps.imaging.models import Series
from apps.tenants.context import hospital_context, platform_scope
from apps.viewer.grants import viewer_url
from tests.dicomweb.helpers import read_multipart
from tests.viewer.helpers import ct_gradient, grant_session, grants_revoke

pytestmark = pytest.mark.django_db


@pytest.fixture
def urls(ct_study, world):
    with hospital_context(world.first.hospital):
        series = Series.objects.get(hospital=world.first.hospital, study=ct_study)
    base = f"{viewer_url(ct_study)}series/{series.public_id}/"
    return {"series": series, "metadata": f"{base}metadata", "thumbnail": f"{base}thumbnail"}


def _doctor(client, sign_in, world):
    sign_in(world.first["reporting_doctor"])
    return client


def test_metadata_is_dicom_json_with_bulk_data_at_viewer_urls(client, sign_in, world, urls):
    response = _doctor(client, sign_in, world).get(urls["metadata"])
    assert response.status_code == 200
    assert response["Content-Type"] == "application/dicom+json"
    assert "no-store" in response["Cache-Control"]
    documents = response.json()
    assert [d["00200013"]["Value"][0] for d in documents] == [1, 2, 3]
    bulk = documents[0]["7FE00010"]["BulkDataURI"]
    assert bulk.startswith(f"{urls['metadata'].removesuffix('metadata')}instances/")
    assert "1.2." not in bulk  # opaque public ids, not DICOM UIDs


def test_frames_are_the_stored_pixel_values(client, sign_in, world, urls):
    client = _doctor(client, sign_in, world)
    documents = client.get(urls["metadata"]).json()
    bulk = documents[1]["7FE00010"]["BulkDataURI"]
    # Cornerstone asks with Accept: application/octet-stream; the viewer answers as stored.
    response = client.get(f"{bulk}/frames/1", HTTP_ACCEPT="application/octet-stream")
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    [frame] = read_multipart(b"".join(response.streaming_content), response["Content-Type"])
    assert frame == ct_gradient(16, 16, 1).astype("<u2").tobytes()
    assert client.get(f"{bulk}/frames/2").status_code == 400


def test_image_access_is_audited_once_per_series_not_per_frame(client, sign_in, world, urls):
    client = _doctor(client, sign_in, world)
    documents = client.get(urls["metadata"]).json()
    for document in documents:
        assert client.get(f"{document['7FE00010']['BulkDataURI']}/frames/1").status_code == 200
    client.get(urls["metadata"])
    with platform_scope("audit"):
        events = list(AuditEvent.objects.filter(hospital=world.first.hospital, action="instances_accessed"))
    assert len(events) == 1
    assert events[0].details["series"] == str(urls["series"].public_id)
    assert events[0].details["mode"] == "doctor"


def test_thumbnail_is_a_small_jpeg(client, sign_in, world, urls):
    response = _doctor(client, sign_in, world).get(urls["thumbnail"])
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response.content[:2] == b"\xff\xd8"
    assert "no-store" in response["Cache-Control"]


def test_other_hospital_staff_get_json_404_from_every_endpoint(client, sign_in, world, urls):
    bulk = _doctor(client, sign_in, world).get(urls["metadata"]).json()[0]["7FE00010"]["BulkDataURI"]
    client.logout()
    sign_in(world.second["reporting_doctor"])
    for url in (urls["metadata"], urls["thumbnail"], f"{bulk}/frames/1"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.json()["error"] == "not_found"


def test_ended_grant_gives_json_404_to_data_requests(client, world, urls, ct_study):
    key = grant_session(client, ct_study)
    assert client.get(urls["metadata"]).status_code == 200
    grants_revoke(key)
    response = client.get(urls["metadata"])
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert "no-store" in response["Cache-Control"]


def test_series_of_another_study_is_not_reachable_through_a_grant(client, world, urls, ct_study, local_storage):
    from tests.viewer.helpers import ct_series_parts, study_store

    other = study_store(world.first.hospital, ct_series_parts(1, rows=8, columns=8))
    grant_session(client, other)
    series_path = urls["metadata"].split("/series/")[1]
    assert client.get(f"{viewer_url(other)}series/{series_path}").status_code == 404


def test_instances_above_the_size_limit_are_refused(client, sign_in, world, urls, settings):
    client = _doctor(client, sign_in, world)
    bulk = client.get(urls["metadata"]).json()[0]["7FE00010"]["BulkDataURI"]
    settings.VIEWER_MAX_INSTANCE_BYTES = 100
    response = client.get(f"{bulk}/frames/1")
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"


def test_data_endpoints_refuse_post(client, sign_in, world, urls):
    assert _doctor(client, sign_in, world).post(urls["metadata"]).status_code == 405


def test_gradient_helper_is_what_is_stored(ct_study):
    assert ct_gradient(2, 3, 0).tolist() == [[100, 103, 106], [102, 105, 108]]
    assert np.asarray(ct_gradient(16, 16, 2))[15, 15] == 100 + 30 + 45 + 20


def test_frames_of_one_study_are_not_reachable_under_another_studys_url(
    client, sign_in, world, urls, ct_study, local_storage
):
    from tests.viewer.helpers import ct_series_parts, study_store

    client = _doctor(client, sign_in, world)
    bulk = client.get(urls["metadata"]).json()[0]["7FE00010"]["BulkDataURI"]
    assert client.get(f"{bulk}/frames/1").status_code == 200
    other = study_store(world.first.hospital, ct_series_parts(1, rows=8, columns=8))
    elsewhere = bulk.replace(urls["metadata"].split("/series/")[0] + "/", viewer_url(other))
    assert elsewhere != bulk
    for url in (elsewhere, bulk.replace(str(ct_study.public_id), "00000000-0000-4000-8000-000000000000")):
        response = client.get(f"{url}/frames/1")
        assert response.status_code == 404, url
        assert response.json()["error"] == "not_found"


def test_frame_requests_read_five_rows_and_write_nothing_to_the_session(client, sign_in, world, urls):
    client = _doctor(client, sign_in, world)
    documents = client.get(urls["metadata"]).json()  # records INSTANCES_ACCESSED, in the session too
    with CaptureQueriesContext(connection) as context:
        for document in documents:
            assert client.get(f"{document['7FE00010']['BulkDataURI']}/frames/1").status_code == 200
    statements = [q["sql"] for q in context.captured_queries]
    assert not [sql for sql in statements if "django_session" in sql and not sql.startswith("SELECT")]
    # Session, user, second-factor device, hospital with the membership, instance with its series
    # (and the study, by the join); set_config and the test's savepoints aside.
    reads = [sql for sql in statements if sql.startswith("SELECT") and "set_config" not in sql]
    assert len(reads) == 5 * len(documents)


def test_single_frame_is_the_bare_stored_values_with_its_transfer_syntax(client, sign_in, world, urls):
    client = _doctor(client, sign_in, world)
    bulk = client.get(urls["metadata"]).json()[2]["7FE00010"]["BulkDataURI"]
    response = client.get(f"{bulk}/raw/frames/1")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
    assert "no-store" in response["Cache-Control"]
    assert b"".join(response.streaming_content) == ct_gradient(16, 16, 2).astype("<u2").tobytes()
    for bad in ("2", "1,1", "x"):
        assert client.get(f"{bulk}/raw/frames/{bad}").status_code == 400
    client.logout()
    sign_in(world.second["reporting_doctor"])
    assert client.get(f"{bulk}/raw/frames/1").status_code == 404
