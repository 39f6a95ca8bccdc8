"""An independent client (dicomweb-client) against the running server: store, search, retrieve."""

import io

import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient

from tests.dicomweb.helpers import token_for
from tests.imaging.dicom_factory import make_ct_series

pytestmark = pytest.mark.django_db(transaction=True)


def test_dicomweb_client_round_trip(live_server, world, local_storage):
    token = token_for(world.first.hospital)
    client = DICOMwebClient(url=f"{live_server.url}/api/first/dicom-web", headers={"Authorization": f"Bearer {token}"})
    series = make_ct_series(2, PatientName="Client^Test", PatientID="P-CLIENT")
    datasets = [pydicom.dcmread(io.BytesIO(raw)) for raw in series]
    result = client.store_instances(datasets)
    assert len(result.ReferencedSOPSequence) == 2

    [study] = client.search_for_studies(search_filters={"PatientID": "P-CLIENT"})
    study_uid = study["0020000D"]["Value"][0]
    instances = client.search_for_instances(study_instance_uid=study_uid)
    assert len(instances) == 2

    first = datasets[0]
    retrieved = client.retrieve_instance(study_uid, first.SeriesInstanceUID, first.SOPInstanceUID)
    assert retrieved.SOPInstanceUID == first.SOPInstanceUID
    assert retrieved.PixelData == first.PixelData
    metadata = client.retrieve_study_metadata(study_uid)
    assert {m["00080018"]["Value"][0] for m in metadata} == {d.SOPInstanceUID for d in datasets}


def test_dicomweb_client_with_a_wrong_token_is_refused(live_server, world):
    from requests.exceptions import HTTPError

    client = DICOMwebClient(
        url=f"{live_server.url}/api/first/dicom-web", headers={"Authorization": "Bearer yxy_" + "x" * 43}
    )
    with pytest.raises(HTTPError) as raised:
        client.search_for_studies()
    assert raised.value.response.status_code == 401
