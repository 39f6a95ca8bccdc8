"""The ingest conflict screens: what each version is, and a confirmation before either resolution."""

import pytest
from django.urls import reverse
from pydicom.uid import generate_uid

from apps.imaging.models import IngestConflict, Instance, ReplacedInstanceVersion
from apps.tenants.context import hospital_context
from tests.dicomweb.helpers import stow, token_for
from tests.imaging.dicom_factory import make_ct_slice

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:imaging_ingestconflict_changelist"
PATIENT_ID = "CONF0001"
PATIENT_NAME = "Qian^Sanfeng"


@pytest.fixture
def conflict(client, world, local_storage) -> IngestConflict:
    hospital = world.first.hospital
    token = token_for(hospital)
    placement = {
        "SOPInstanceUID": generate_uid(),
        "StudyInstanceUID": generate_uid(),
        "SeriesInstanceUID": generate_uid(),
        "PatientID": PATIENT_ID,
        "PatientName": PATIENT_NAME,
    }
    assert stow(client, "first", token, [make_ct_slice(**placement, StudyDescription="one")]).status_code == 200
    assert stow(client, "first", token, [make_ct_slice(**placement, StudyDescription="two")]).status_code == 409
    with hospital_context(hospital):
        return IngestConflict.objects.select_related("staged", "existing__series__study").get()


def _stored_sha256(hospital) -> str:
    with hospital_context(hospital):
        return Instance.objects.get().sha256


def test_the_detail_shows_both_versions_and_where_the_instance_sits(client, sign_in, world, conflict):
    sign_in(world.first["hospital_admin"])

    response = client.get(
        reverse("admin:imaging_ingestconflict_change", args=[conflict.pk]), HTTP_ACCEPT_LANGUAGE="zh-hans"
    )

    assert response.status_code == 200
    page = response.content.decode()
    instance = conflict.existing
    for shown in [
        instance.sop_instance_uid,
        instance.sha256,
        conflict.received_sha256,
        instance.series.series_instance_uid,
        str(instance.series.public_id),
        instance.series.study.study_instance_uid,
        str(instance.series.study.public_id),
        f"{instance.size} 字节",
        f"{conflict.staged.size} 字节",
        "已存储的版本",
        "接收到的版本",
        "接收时间",
    ]:
        assert shown in page, shown
    assert PATIENT_ID not in page
    assert "Qian" not in page and "Sanfeng" not in page


def test_replacing_from_the_list_asks_for_confirmation_first(client, sign_in, world, conflict):
    hospital = world.first.hospital
    stored_before = _stored_sha256(hospital)
    sign_in(world.first["hospital_admin"])

    response = client.post(
        reverse(CHANGELIST),
        {"action": "replace_with_received", "_selected_action": [conflict.pk]},
        HTTP_ACCEPT_LANGUAGE="zh-hans",
    )

    assert response.status_code == 200
    assert response.templates[0].name == "admin/imaging/ingestconflict/confirm_resolution.html"
    page = response.content.decode()
    assert "保留为被替换的版本" in page  # says that the stored version is kept, not deleted
    assert conflict.received_sha256 in page and stored_before in page
    assert _stored_sha256(hospital) == stored_before
    with hospital_context(hospital):
        assert not ReplacedInstanceVersion.objects.exists()
        assert IngestConflict.objects.get().resolved_at is None


def test_the_confirmed_replacement_replaces(client, sign_in, world, conflict):
    hospital = world.first.hospital
    sign_in(world.first["hospital_admin"])

    response = client.post(
        reverse(CHANGELIST),
        {"action": "replace_with_received", "_selected_action": [conflict.pk], "confirmed": "yes"},
    )

    assert response.status_code == 302
    assert _stored_sha256(hospital) == conflict.received_sha256
    with hospital_context(hospital):
        assert ReplacedInstanceVersion.objects.get().sha256 == conflict.existing.sha256


def test_the_detail_page_offers_the_resolutions_through_the_same_confirmation(client, sign_in, world, conflict):
    sign_in(world.first["hospital_admin"])
    change_url = reverse("admin:imaging_ingestconflict_change", args=[conflict.pk])
    assert 'value="replace_with_received"' in client.get(change_url).content.decode()

    response = client.post(
        change_url, {"CHANGE_FORM-action": "keep_stored", "_selected_action": [conflict.pk], "index": "0"}
    )

    assert response.status_code == 200
    assert response.templates[0].name == "admin/imaging/ingestconflict/confirm_resolution.html"
    with hospital_context(world.first.hospital):
        assert IngestConflict.objects.get().resolved_at is None


def test_keeping_the_stored_version_is_confirmed_then_done(client, sign_in, world, conflict):
    hospital = world.first.hospital
    stored_before = _stored_sha256(hospital)
    sign_in(world.first["hospital_admin"])
    data = {"action": "keep_stored", "_selected_action": [conflict.pk]}

    assert client.post(reverse(CHANGELIST), data).status_code == 200
    with hospital_context(hospital):
        assert IngestConflict.objects.get().resolved_at is None

    assert client.post(reverse(CHANGELIST), {**data, "confirmed": "yes"}).status_code == 302
    with hospital_context(hospital):
        assert IngestConflict.objects.get().resolved_at is not None
    assert _stored_sha256(hospital) == stored_before


def test_the_other_hospitals_admin_gets_404_for_the_detail(client, sign_in, world, conflict):
    sign_in(world.second["hospital_admin"])
    assert client.get(reverse("admin:imaging_ingestconflict_change", args=[conflict.pk])).status_code == 404
