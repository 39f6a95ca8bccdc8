"""Uploaded files reach the temporary directory only sealed (apps.imaging.spool)."""

import io
import uuid
import zipfile
from pathlib import Path

import pytest
from django.urls import reverse

from apps.imaging import views
from apps.imaging.models import Instance
from apps.imaging.spool import SealedSpool
from apps.tenants.context import hospital_context
from tests.imaging.dicom_factory import make_ct_slice
from tests.imaging.temporary_files import temporary_files

PATIENT_NAME = "Linshi^Wenjian"


def test_a_sealed_spool_reads_back_what_was_written_and_holds_no_plaintext(settings, tmp_path):
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    settings.STORAGE_SEGMENT_SIZE = 1000
    data = PATIENT_NAME.encode() * 700  # segments of 1,000 bytes, the last one short
    spool = SealedSpool()
    for start in range(0, len(data), 777):
        spool.write(data[start : start + 777])
    [spooled] = temporary_files(tmp_path)
    with spool.finish() as reader:
        assert PATIENT_NAME.encode() not in spooled.read_bytes()
        assert reader.read() == data
        reader.seek(2500)
        assert reader.read(30) == data[2500:2530]
    assert temporary_files(tmp_path) == []


@pytest.mark.django_db
@pytest.mark.parametrize("as_zip", [False, True], ids=["file", "zip"])
def test_uploaded_files_spilled_to_disk_are_never_plaintext(
    as_zip, client, sign_in, world, local_storage, settings, tmp_path, monkeypatch, django_capture_on_commit_callbacks
):
    temporary_directory = tmp_path / "uploads"
    temporary_directory.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(temporary_directory)
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024
    data = make_ct_slice(PatientName=PATIENT_NAME, Rows=512, Columns=512)
    assert len(data) > 512 * 1024 and PATIENT_NAME.encode() in data
    if as_zip:  # stored, not deflated: the name is in the archive's bytes as it is in the file
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr("study/1.dcm", data)
        upload, name = buffer.getvalue(), "study.zip"
    else:
        upload, name = data, "1.dcm"
    seen: list[Path] = []
    receive = views.upload_receive

    def receive_and_look(**kwargs):
        # Every uploaded file is spooled by now, and still is while it is staged.
        files = temporary_files(temporary_directory)
        seen.extend(files)
        assert [path for path in files if PATIENT_NAME.encode() in path.read_bytes()] == []
        return receive(**kwargs)

    monkeypatch.setattr(views, "upload_receive", receive_and_look)
    sign_in(world.first["technologist"])
    handle = io.BytesIO(upload)
    handle.name = name
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("imaging:upload_files", args=["first"]), {"batch": str(uuid.uuid4()), "files": [handle]}
        )
    assert response.status_code == 200
    assert [item["code"] for item in response.json()["items"]] == [""]
    assert seen, "the upload did not spill to the temporary directory"
    with hospital_context(world.first.hospital):
        assert Instance.objects.count() == 1
