"""Staff upload of files, folders and zip archives: per-file results, hostile archives refused."""

import io
import zipfile

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.imaging.models import Instance, StagedObject
from apps.tenants.context import hospital_context
from tests.imaging.dicom_factory import make_ct_series, make_ct_slice

pytestmark = pytest.mark.django_db


def _file(name: str, data: bytes) -> io.BytesIO:
    handle = io.BytesIO(data)
    handle.name = name
    return handle


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def uploader(client, sign_in, world, local_storage):
    sign_in(world.first["technologist"])
    return client


@pytest.fixture
def post(django_capture_on_commit_callbacks):
    """POST files; the ingest tasks queued for after the commit run before it returns."""

    def _post(client, batch, *files, code="first"):
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(
                reverse("imaging:upload_files", args=[code]), {"batch": str(batch), "files": list(files)}
            )

    return _post


def test_upload_page_for_technologists(uploader):
    response = uploader.get(reverse("imaging:upload", args=["first"]))
    assert response.status_code == 200
    assert b"js/upload.js" in response.content


def test_files_and_a_zip_are_stored_with_a_result_each(uploader, world, post):
    import uuid

    batch = uuid.uuid4()
    series = make_ct_series(3)
    archive = _zip({"study/1.dcm": series[1], "study/2.dcm": series[2], "DICOMDIR": b"ignored"})
    response = post(uploader, batch, _file("a.dcm", series[0]), _file("study.zip", archive))
    assert response.status_code == 200
    names = [item["name"] for item in response.json()["items"]]
    assert names == ["a.dcm", "study.zip/study/1.dcm", "study.zip/study/2.dcm"]
    status = uploader.get(reverse("imaging:upload_status", args=["first", batch])).json()["items"]
    # Celery runs in-process in these tests: every file is already ingested.
    assert [item["status"] for item in status] == ["stored", "stored", "stored"]
    with hospital_context(world.first.hospital):
        assert Instance.objects.count() == 3
        assert set(StagedObject.objects.values_list("source", flat=True)) == {"upload"}
        [imported] = AuditEvent.objects.filter(action="instances_imported")
        assert (imported.event_id, imported.details["files"], imported.details["staged"]) == ("110107", 3, 3)
        assert "a.dcm" not in str(imported.details)


def test_bad_files_get_a_clear_result_and_nothing_is_indexed(uploader, world, post):
    import uuid

    batch = uuid.uuid4()
    truncated = make_ct_slice()[:300]
    response = post(uploader, batch, _file("notes.txt", b"hello"), _file("cut.dcm", truncated))
    assert response.status_code == 200
    status = uploader.get(reverse("imaging:upload_status", args=["first", batch])).json()["items"]
    assert [(item["status"], item["code"]) for item in status] == [
        ("rejected", "DICOM_NOT_PART10"),
        ("rejected", "DICOM_TRUNCATED"),
    ]
    assert all(item["message"] for item in status)
    with hospital_context(world.first.hospital):
        assert Instance.objects.count() == 0


def test_zip_entries_with_unsafe_paths_are_refused(uploader, world, post):
    import uuid

    archive = _zip({"../evil.dcm": make_ct_slice(), "/abs.dcm": make_ct_slice(), "ok.dcm": make_ct_slice()})
    items = post(uploader, uuid.uuid4(), _file("x.zip", archive)).json()["items"]
    codes = {item["name"].split("/", 1)[1]: item["code"] for item in items}
    assert codes == {"../evil.dcm": "ZIP_UNSAFE_PATH", "/abs.dcm": "ZIP_UNSAFE_PATH", "ok.dcm": ""}
    with hospital_context(world.first.hospital):
        assert Instance.objects.count() == 1


def test_a_zip_bomb_is_stopped(uploader, world, settings, post):
    import uuid

    settings.UPLOAD_ZIP_MAX_RATIO = 50
    archive = _zip({"bomb.dcm": bytes(20 * 1024 * 1024)})
    assert len(archive) < 100_000
    items = post(uploader, uuid.uuid4(), _file("bomb.zip", archive)).json()["items"]
    assert [item["code"] for item in items] == ["ZIP_BOMB"]
    with hospital_context(world.first.hospital):
        assert StagedObject.objects.count() == 0


def test_a_damaged_zip_is_refused(uploader, post):
    import uuid

    items = post(uploader, uuid.uuid4(), _file("broken.zip", b"PK\x03\x04 not really a zip")).json()["items"]
    assert items[0]["code"] in {"BAD_ZIP", "DICOM_NOT_PART10", ""}
    assert items[0]["status"] in {"rejected", "received"}


def test_an_oversized_file_is_refused(uploader, settings, post):
    import uuid

    settings.DICOM_MAX_OBJECT_SIZE = 100
    items = post(uploader, uuid.uuid4(), _file("big.dcm", make_ct_slice())).json()["items"]
    assert [item["code"] for item in items] == ["TOO_LARGE"]


def test_clinicians_cannot_upload(client, sign_in, world):
    sign_in(world.first["clinician"])
    assert client.get(reverse("imaging:upload", args=["first"])).status_code == 403


def test_staff_of_another_hospital_get_403_and_batches_are_404(client, sign_in, world, local_storage, post):
    import uuid

    sign_in(world.second["technologist"])
    assert client.get(reverse("imaging:upload", args=["first"])).status_code == 403
    batch = uuid.uuid4()
    post(client, batch, _file("a.dcm", make_ct_slice(InstitutionName="SECOND PEOPLES HOSPITAL")), code="second")
    assert client.get(reverse("imaging:upload_status", args=["second", batch])).status_code == 200
    client.logout()
    sign_in(world.first["technologist"])
    assert client.get(reverse("imaging:upload_status", args=["first", batch])).status_code == 404


def test_bad_requests_are_400(uploader, post):
    assert uploader.post(reverse("imaging:upload_files", args=["first"]), {"batch": "nope"}).status_code == 400
    import uuid

    assert (
        uploader.post(reverse("imaging:upload_files", args=["first"]), {"batch": str(uuid.uuid4())}).status_code == 400
    )


def test_hospital_rule_settings_change_what_is_rejected(client, sign_in, world, local_storage, post):
    import uuid

    from apps.imaging.models import ValidationRuleSetting

    with hospital_context(world.first.hospital):
        ValidationRuleSetting.objects.create(
            hospital=world.first.hospital, code="INSTITUTION_MISMATCH", modality="CT", severity="reject"
        )
    sign_in(world.first["technologist"])
    batch = uuid.uuid4()
    post(client, batch, _file("a.dcm", make_ct_slice(InstitutionName="ELSEWHERE")))
    status = client.get(reverse("imaging:upload_status", args=["first", batch])).json()["items"]
    assert [(item["status"], item["code"]) for item in status] == [("rejected", "INSTITUTION_MISMATCH")]


def test_qc_lists_show_only_the_hospitals_own_objects(client, sign_in, world, local_storage, post):
    import uuid

    sign_in(world.second["technologist"])
    post(client, uuid.uuid4(), _file("x.txt", b"not dicom"), code="second")
    client.logout()
    sign_in(world.first["hospital_admin"])
    response = client.get(reverse("admin:imaging_stagedobject_changelist"))
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == []
    assert client.get(reverse("admin:imaging_validationrulesetting_add")).status_code == 200
    sign_in(world.first["clinician"])
    assert client.get(reverse("admin:imaging_stagedobject_changelist")).status_code == 403


def test_series_level_rules_run_over_an_uploaded_batch(uploader, world, post):
    import uuid

    from apps.imaging.models import ValidationFinding

    batch = uuid.uuid4()
    series = make_ct_series(5, slice_thickness=5.0, positions=[0.0, 5.0, 10.0, 25.0, 30.0])
    files = [_file(f"{index}.dcm", blob) for index, blob in enumerate(series)]
    assert post(uploader, batch, *files).status_code == 200
    with hospital_context(world.first.hospital):
        [finding] = ValidationFinding.objects.filter(code="SLICE_SPACING_INCONSISTENT")
        assert finding.instance is not None and finding.staged.batch == batch


def test_a_series_completed_by_a_second_upload_is_checked_whole_and_findings_not_repeated(uploader, world, post):
    import uuid

    from apps.imaging.models import ValidationFinding
    from apps.imaging.tasks import series_review_batch

    series = make_ct_series(4, Manufacturer="ACME")
    odd_one = make_ct_slice(
        StudyInstanceUID=_uid(series[0], "StudyInstanceUID"), SeriesInstanceUID=_uid(series[0], "SeriesInstanceUID"),
        InstanceNumber=5, Manufacturer="OTHER VENDOR",
    )  # fmt: skip
    first_batch = uuid.uuid4()
    assert post(uploader, first_batch, *[_file(f"{i}.dcm", b) for i, b in enumerate(series)]).status_code == 200
    with hospital_context(world.first.hospital):
        assert not ValidationFinding.objects.exists()
    second_batch = uuid.uuid4()
    assert post(uploader, second_batch, _file("5.dcm", odd_one)).status_code == 200
    with hospital_context(world.first.hospital):
        mixed = ValidationFinding.objects.filter(code="SERIES_MIXED_DEVICE").count()
        assert mixed >= 1
    # Reviewing again records nothing new.
    series_review_batch(world.first.hospital.pk, str(second_batch))
    with hospital_context(world.first.hospital):
        assert ValidationFinding.objects.filter(code="SERIES_MIXED_DEVICE").count() == mixed


def _uid(blob: bytes, keyword: str) -> str:
    from pydicom import dcmread

    return str(getattr(dcmread(io.BytesIO(blob)), keyword))


def test_stored_files_report_their_validation_warnings(uploader, post):
    import uuid

    batch = uuid.uuid4()
    post(uploader, batch, _file("a.dcm", make_ct_slice(InstitutionName="ELSEWHERE")), _file("b.dcm", make_ct_slice()))
    items = uploader.get(reverse("imaging:upload_status", args=["first", batch])).json()["items"]
    assert [item["status"] for item in items] == ["stored", "stored"]
    [warning] = items[0]["warnings"]
    assert warning["code"] == "INSTITUTION_MISMATCH" and "机构名称" in warning["message"]
    assert items[1]["warnings"] == []
    english = uploader.get(reverse("imaging:upload_status", args=["first", batch]), HTTP_ACCEPT_LANGUAGE="en")
    assert "机构名称" not in english.json()["items"][0]["warnings"][0]["message"]


def test_upload_page_has_a_message_for_no_files_chosen(uploader):
    html = uploader.get(reverse("imaging:upload", args=["first"])).content.decode()
    assert 'data-label-no-files="请先选择文件、文件夹或 zip 压缩包。"' in html
