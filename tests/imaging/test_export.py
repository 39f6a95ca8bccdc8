"""The study export: a streamed zip holding a DICOM file-set with a DICOMDIR that DCMTK reads."""

import io
import re
import shutil
import subprocess
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.fileset import FileSet
from pydicom.uid import ImplicitVRLittleEndian

from apps.imaging.crypto import CryptoIntegrityError
from apps.imaging.export import ExportError, study_export_chunks
from apps.imaging.ingest import staged_object_create, staged_object_process
from apps.imaging.models import Instance, StagedObject, Study
from apps.tenants.context import hospital_context
from tests.imaging.dicom_factory import make_ct_series, make_mr_slice

pytestmark = pytest.mark.django_db
COMPONENT = re.compile(r"^[A-Z0-9_]{1,8}$")


def ingest(hospital, blobs: list[bytes]) -> None:
    with hospital_context(hospital):
        for blob in blobs:
            staged = staged_object_create(hospital=hospital, source="stow", chunks=[blob])
            outcome = staged_object_process(staged=staged)
            assert outcome.status == StagedObject.Status.STORED, outcome.staged.error_code


def export_zip(study: Study, **options) -> bytes:
    with hospital_context(study.hospital):
        chunks = study_export_chunks(study=study, **options)
    return b"".join(chunks)


@pytest.fixture
def ct_and_mr(world, local_storage):
    hospital = world.first.hospital
    ct = make_ct_series(4, PatientName="Ceshi^Huanzhe", PatientID="EXP0001")
    study_uid = dcmread(io.BytesIO(ct[0])).StudyInstanceUID
    mr = [
        make_mr_slice(
            StudyInstanceUID=study_uid, SeriesInstanceUID="1.2.826.0.1.3680043.8.498.77", InstanceNumber=1,
            PatientName="Ceshi^Huanzhe", PatientID="EXP0001", transfer_syntax=ImplicitVRLittleEndian,
        )
    ]  # fmt: skip
    ingest(hospital, ct + mr)
    with hospital_context(hospital):
        study = Study.objects.select_related("hospital").get(study_instance_uid=study_uid)
    return study, ct + mr


def test_zip_holds_byte_identical_files_under_file_set_names(ct_and_mr):
    study, blobs = ct_and_mr
    archive = zipfile.ZipFile(io.BytesIO(export_zip(study, extra_files={"REPORT.PDF": b"%PDF-1.7 report"})))
    assert archive.testzip() is None
    names = archive.namelist()
    dicom_names = [n for n in names if n.startswith("DICOM/")]
    assert sorted(archive.read(n) for n in dicom_names) == sorted(blobs)
    assert "DICOMDIR" in names and archive.read("REPORT.PDF") == b"%PDF-1.7 report"
    for name in dicom_names:
        assert all(COMPONENT.match(part) for part in name.split("/")), name
    assert not any("EXP0001" in n or "CESHI" in n.upper() for n in names)


def test_dicomdir_references_every_instance_with_its_transfer_syntax(ct_and_mr):
    study, blobs = ct_and_mr
    archive = zipfile.ZipFile(io.BytesIO(export_zip(study)))
    dicomdir = dcmread(io.BytesIO(archive.read("DICOMDIR")))
    images = [r for r in dicomdir.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE"]
    assert {r.DirectoryRecordType for r in dicomdir.DirectoryRecordSequence} == {"PATIENT", "STUDY", "SERIES", "IMAGE"}
    by_uid = {dcmread(io.BytesIO(b)).SOPInstanceUID: b for b in blobs}
    assert {r.ReferencedSOPInstanceUIDInFile for r in images} == set(by_uid)
    for record in images:
        assert record.ReferencedFileID[0] == "DICOM"
        path = "/".join(record.ReferencedFileID)
        original = dcmread(io.BytesIO(by_uid[record.ReferencedSOPInstanceUIDInFile]))
        assert archive.read(path) == by_uid[record.ReferencedSOPInstanceUIDInFile]
        assert record.ReferencedTransferSyntaxUIDInFile == original.file_meta.TransferSyntaxUID


@pytest.mark.skipif(shutil.which("dcmdump") is None, reason="DCMTK is installed by scripts/ensure_tools.sh")
def test_pydicom_loads_the_file_set_with_consistent_offsets(ct_and_mr, tmp_path):
    study, blobs = ct_and_mr
    zipfile.ZipFile(io.BytesIO(export_zip(study))).extractall(tmp_path)
    # Loading follows every offset and raises on a record no offset reaches (an orphan).
    file_set = FileSet(tmp_path / "DICOMDIR")
    assert len(file_set) == len(blobs)
    assert sorted(Path(i.path).read_bytes() for i in file_set) == sorted(blobs)


def test_dcmtk_reads_the_dicomdir_and_every_file_it_references(ct_and_mr, tmp_path):
    study, blobs = ct_and_mr
    zipfile.ZipFile(io.BytesIO(export_zip(study))).extractall(tmp_path)
    root = tmp_path
    dump = subprocess.run(
        ["dcmdump", "-q", "+P", "0004,1500", "+P", "0004,1511", str(root / "DICOMDIR")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    file_ids = re.findall(r"\(0004,1500\) CS \[([^\]]+)\]", dump.stdout)
    assert len(file_ids) == len(blobs)
    for file_id in file_ids:
        assert file_id.startswith("DICOM\\")
        path = root.joinpath(*file_id.split("\\"))
        subprocess.run(["dcmdump", "-q", str(path)], capture_output=True, check=True)
    # dcmgpdir in update mode reads the DICOMDIR, compares every file with its records and warns
    # on any difference; -w keeps it from writing anything. -Nxc: the general-purpose CD profile
    # wants Explicit VR Little Endian, but the export keeps each file as it was received.
    check = subprocess.run(
        ["dcmgpdir", "+U", "-w", "-Nxc", "+D", "DICOMDIR", *[f.replace("\\", "/") for f in file_ids]],
        capture_output=True, text=True, cwd=root,
    )  # fmt: skip
    problems = [
        line for line in (check.stdout + check.stderr).splitlines()
        if "LittleEndianExplicit expected" not in line
    ]  # fmt: skip
    assert (check.returncode, problems) == (0, [])


def test_export_streams_in_bounded_memory(world, local_storage, settings):
    hospital = world.first.hospital
    blobs = make_ct_series(12, Rows=512, Columns=512, PatientID="EXP0002")
    ingest(hospital, blobs)
    with hospital_context(hospital):
        study = Study.objects.select_related("hospital").get(
            study_instance_uid=dcmread(io.BytesIO(blobs[0])).StudyInstanceUID
        )
        chunks = study_export_chunks(study=study)
    total = sum(len(b) for b in blobs)
    tracemalloc.start()
    try:
        largest = 0
        received = 0
        for chunk in chunks:
            largest = max(largest, len(chunk))
            received += len(chunk)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received > total
    assert largest <= settings.STORAGE_SEGMENT_SIZE + 4096
    assert peak < total / 2, (peak, total)


def test_a_damaged_object_ends_the_export(ct_and_mr):
    study, _blobs = ct_and_mr
    with hospital_context(study.hospital):
        instance = Instance.objects.filter(series__study=study).order_by("id").last()
        path = Path(local_storage_location()) / instance.storage_key
    data = bytearray(path.read_bytes())
    data[-40] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CryptoIntegrityError):
        export_zip(study)


def local_storage_location() -> str:
    from django.core.files.storage import storages

    return storages["default"].location


@pytest.mark.parametrize("name", ["../x.pdf", "/etc/passwd", "a/b.pdf", "DICOMDIR", "dicom", "", "报告.pdf"])
def test_extra_file_names_must_be_plain_root_names(ct_and_mr, name):
    study, _blobs = ct_and_mr
    with hospital_context(study.hospital), pytest.raises(ExportError):
        study_export_chunks(study=study, extra_files={name: b"x"})


def test_a_study_of_another_hospital_exports_nothing(ct_and_mr, world):
    study, _blobs = ct_and_mr
    # Row-level security: in the other hospital's context the study's instances are invisible.
    with hospital_context(world.second.hospital), pytest.raises(ExportError):
        study_export_chunks(study=study)


def test_the_dicomdir_is_built_in_the_scratch_directory_only(ct_and_mr, settings, tmp_path, monkeypatch):
    """pydicom writes the DICOMDIR (which names the patient) to a directory: the configured
    memory-backed scratch space, nowhere else, and nothing is left there afterwards."""
    study, _blobs = ct_and_mr
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    settings.EXPORT_SCRATCH_DIR = str(scratch)
    written_to: list[Path] = []
    write = FileSet.write

    def recording_write(self, path=None, *args, **kwargs):
        written_to.append(Path(path))
        return write(self, path, *args, **kwargs)

    monkeypatch.setattr(FileSet, "write", recording_write)
    export_zip(study)
    assert len(written_to) == 1 and written_to[0].parent == scratch
    assert list(scratch.iterdir()) == []
