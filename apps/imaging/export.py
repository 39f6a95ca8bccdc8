"""A study as a streamed zip holding a DICOM file-set (PS3.10 / PS3.11 media layout) and its DICOMDIR.

File names are File IDs (``DICOM/PT000000/ST000000/SE000000/IM000000``, the DICOMDIR at the root: uppercase, at most
eight characters per component, nothing taken from the data), so no patient data reaches a file
name. The DICOMDIR is built by pydicom's FileSet from the sealed headers kept at ingest; the files
themselves are decrypted object by object through :func:`apps.imaging.objectstore.object_open`,
which unwraps each object's key only for the row's own object, SOP Instance UID and digest and
checks every segment's tag (objects stored before that binding: the SHA-256 recorded when it was
received, at the end of each). A failed check raises mid-stream, so a damaged object ends the
download instead of reaching the patient silently altered.

Memory stays bounded: the zip is written to a sink that is emptied after every write, entries are
stored (DICOM pixel data is already what the scanner produced) with sizes known up front, and the
objects are read a segment at a time.
"""

import io
import re
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from pydicom import dcmread
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.fileset import FileSet
from pydicom.uid import UID

from apps.imaging.keys import hospital_key
from apps.imaging.metadata import unseal_metadata
from apps.imaging.models import Instance, Study
from apps.imaging.objectstore import StoredObject, instance_stored_object, object_open

FILE_SET_ROOT = "DICOM"
FILE_SET_ID = "YXEXPORT"
# Root names an extra file may take: plain, portable, no directories, and not the DICOMDIR itself.
_EXTRA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_RESERVED_NAMES = {"DICOMDIR", FILE_SET_ROOT}
# Header elements left out of the stand-in datasets the DICOMDIR is built from.
_SKIPPED_GROUPS = {0x0002, 0x7FE0}


class ExportError(ValueError):
    """An export that cannot be built as asked (a bad extra file name, an empty study)."""


@dataclass(frozen=True)
class _Entry:
    name: str
    stored: StoredObject


class _Sink:
    """A write-only, unseekable file for zipfile; what is written is collected until taken."""

    def __init__(self) -> None:
        self._pieces: list[bytes] = []
        self._position = 0

    def write(self, data: bytes) -> int:
        self._pieces.append(bytes(data))
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._pieces)
        self._pieces.clear()
        return data


def _stand_in(header: dict[str, Any], transfer_syntax_uid: str) -> Dataset:
    """The instance's header as a dataset without pixel data or bulk values: enough for pydicom
    to write its directory records."""
    kept = {
        tag: element
        for tag, element in header.items()
        if int(tag[:4], 16) not in _SKIPPED_GROUPS and "BulkDataURI" not in element
    }
    dataset = Dataset.from_json(kept)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    # The DICOMDIR's Referenced Transfer Syntax UID in File comes from here: the stored object's own.
    meta.TransferSyntaxUID = UID(transfer_syntax_uid)
    dataset.file_meta = meta
    return dataset


def _check_extra_files(extra_files: Mapping[str, bytes]) -> None:
    seen = set()
    for name, content in extra_files.items():
        if not _EXTRA_NAME.match(name) or name.upper() in _RESERVED_NAMES or ".." in name:
            raise ExportError(f"{name!r} is not a plain file name for the root of the export.")
        if name.upper() in seen:
            raise ExportError(f"{name!r} is given twice.")
        if not isinstance(content, bytes | bytearray | memoryview):
            raise ExportError(f"the content of {name!r} is not bytes.")
        seen.add(name.upper())


def _file_set(hospital: Any, instances: list[Instance]) -> tuple[bytes, list[_Entry]]:
    """The DICOMDIR's bytes and, per instance, its path in the zip (its File ID)."""
    file_set = FileSet()
    file_set.ID = FILE_SET_ID
    stored_by_uid: dict[str, StoredObject] = {}
    for instance in instances:
        header = unseal_metadata(hospital, bytes(instance.metadata_sealed))
        file_set.add(_stand_in(header, instance.transfer_syntax_uid))
        stored_by_uid[instance.sop_instance_uid] = instance_stored_object(instance)
    # pydicom writes a file-set only to a directory: its DICOMDIR and the stand-ins beside it name
    # the patient, so they go to memory-backed scratch space (EXPORT_SCRATCH_DIR, /dev/shm by
    # default), never to a disk, and are removed at once.
    with tempfile.TemporaryDirectory(prefix="export-", dir=settings.EXPORT_SCRATCH_DIR) as directory:
        file_set.write(directory)
        dicomdir = dcmread(Path(directory) / "DICOMDIR")
    entries = []
    for record in dicomdir.DirectoryRecordSequence:
        if "ReferencedFileID" in record:
            file_id = record.ReferencedFileID
            components = [FILE_SET_ROOT, *([file_id] if isinstance(file_id, str) else file_id)]
            record.ReferencedFileID = components
            uid = record.get("ReferencedSOPInstanceUIDInFile")
            if uid in stored_by_uid:
                entries.append(_Entry(name="/".join(components), stored=stored_by_uid[uid]))
    return _with_offsets_recomputed(dicomdir), entries


def _written(dataset: FileDataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _with_offsets_recomputed(dicomdir: FileDataset) -> bytes:
    """The DICOMDIR written with its record offsets moved to where the records now are.

    pydicom names the files ``PTxxxxxx/STxxxxxx/...`` from the DICOMDIR's own directory; the
    file-set here keeps its DICOMDIR at the root of the zip and its files under ``DICOM/``, so
    every File ID gained a component and the records after the first reference moved. The
    offset values are fixed-size, so writing once, reading where each record landed and writing
    again with the new offsets gives a consistent directory.
    """
    records = list(dicomdir.DirectoryRecordSequence)
    old_index = {record.seq_item_tell: index for index, record in enumerate(records)}
    moved = dcmread(io.BytesIO(_written(dicomdir)))
    new_offset = [record.seq_item_tell for record in moved.DirectoryRecordSequence]

    def relocated(offset: int) -> int:
        return 0 if offset == 0 else new_offset[old_index[offset]]

    for record in records:
        for keyword in ("OffsetOfTheNextDirectoryRecord", "OffsetOfReferencedLowerLevelDirectoryEntity"):
            if keyword in record:
                setattr(record, keyword, relocated(getattr(record, keyword)))
    for keyword in (
        "OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity",
        "OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity",
    ):
        setattr(dicomdir, keyword, relocated(getattr(dicomdir, keyword)))
    return _written(dicomdir)


def study_export_chunks(*, study: Study, extra_files: Mapping[str, bytes] | None = None) -> Iterator[bytes]:
    """The study as a zip, streamed: ``DICOMDIR`` at the root, the file-set's instances under
    ``DICOM/``, and ``extra_files`` (e.g. ``REPORT.PDF``) at the root.

    Must be called inside the study's hospital context: the index is read and the DICOMDIR built
    before this returns (so a streaming response needs no database afterwards); the objects are
    decrypted and checked while the returned iterator is consumed. Raises ExportError for extra
    file names that are not plain root names, or a study without instances.
    """
    extras = dict(extra_files or {})
    _check_extra_files(extras)
    hospital = study.hospital
    instances = list(
        Instance.objects.filter(hospital=hospital, series__study=study).order_by(
            "series__series_number", "series_id", "instance_number", "id"
        )
    )
    if not instances:
        raise ExportError("the study has no stored instances.")
    key = hospital_key(hospital)
    dicomdir, entries = _file_set(hospital, instances)
    return _zip_chunks(key=key, dicomdir=dicomdir, entries=entries, extra_files=extras)


def _zip_chunks(
    *, key: bytes, dicomdir: bytes, entries: list[_Entry], extra_files: dict[str, bytes]
) -> Iterator[bytes]:
    sink = _Sink()
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:  # type: ignore[call-overload]
        archive.writestr(_zip_info("DICOMDIR", len(dicomdir)), dicomdir)
        yield sink.take()
        for entry in entries:
            with archive.open(_zip_info(entry.name, entry.stored.plaintext_size), mode="w") as member:
                for piece in object_open(hospital_key=key, stored=entry.stored):
                    member.write(piece)
                    yield sink.take()
            yield sink.take()
        for name, content in extra_files.items():
            archive.writestr(_zip_info(name, len(content)), bytes(content))
            yield sink.take()
    yield sink.take()


def _zip_info(name: str, size: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.file_size = size
    info.external_attr = 0o644 << 16
    return info
