"""The archive on S3-compatible storage (a real S3 API server on loopback): STOW, then WADO."""

import pytest

from tests.dicomweb.helpers import read_multipart, stow, token_for
from tests.imaging.dicom_factory import make_ct_series

pytestmark = pytest.mark.django_db


def test_stow_then_wado_through_s3(client, world, s3_storage, s3_server):
    token = token_for(world.first.hospital)
    series = make_ct_series(2, PatientName="S3^Test", PatientID="P-S3")
    assert stow(client, "first", token, series).status_code == 200
    keys = [item["Key"] for item in s3_server.client().list_objects_v2(Bucket=s3_server.bucket).get("Contents", [])]
    objects = [key for key in keys if key.startswith("objects/")]
    assert len(objects) >= 2
    assert all("P-S3" not in key for key in keys)
    for key in objects:
        body = s3_server.client().get_object(Bucket=s3_server.bucket, Key=key)["Body"].read()
        assert b"P-S3" not in body
        assert series[0][-64:] not in body

    studies = client.get(
        "/api/first/dicom-web/studies", {"PatientID": "P-S3"}, HTTP_AUTHORIZATION=f"Bearer {token}"
    ).json()
    study_uid = studies[0]["0020000D"]["Value"][0]
    response = client.get(f"/api/first/dicom-web/studies/{study_uid}", HTTP_AUTHORIZATION=f"Bearer {token}")
    parts = read_multipart(b"".join(response.streaming_content), response["Content-Type"])
    assert sorted(parts) == sorted(series)
