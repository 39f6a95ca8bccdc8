"""Staff uploads: single files, folders (many files) and zip archives, into the one pipeline.

Zip archives are read defensively: entries are streamed and counted as they are read (header
sizes are not trusted), the total and the compression ratio are capped against zip bombs, and
entries with absolute paths or ``..`` are refused by name. Entry names are never used as paths.
"""

import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import PurePosixPath
from typing import IO

from django.conf import settings
from django.db import transaction

from apps.imaging.ingest import staged_object_create
from apps.imaging.models import StagedObject
from apps.imaging.staging import StagingTooLarge
from apps.tenants.models import Hospital

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class UploadItem:
    """One file of an upload: staged, or refused with a reason before staging."""

    name: str
    staged: StagedObject | None = None
    error_code: str = ""
    error_zh: str = ""
    error_en: str = ""


REFUSALS = {
    "TOO_LARGE": ("文件超过允许的大小。", "The file is larger than allowed."),
    "BAD_ZIP": ("压缩包已损坏或无法读取。", "The zip archive is damaged or unreadable."),
    "ZIP_TOO_MANY_ENTRIES": ("压缩包中的文件过多。", "The zip archive holds too many files."),
    "ZIP_UNSAFE_PATH": ("压缩包内的路径不安全，已拒绝。", "Unsafe path inside the zip archive; refused."),
    "ZIP_BOMB": (
        "压缩包内容异常膨胀（疑似压缩炸弹），已停止解压。",
        "The archive expands abnormally (a zip bomb?); extraction stopped.",
    ),
    "BAD_ZIP_ENTRY": ("压缩包中的该文件无法读取。", "This file in the zip archive cannot be read."),
}


def _refused(name: str, code: str) -> UploadItem:
    message_zh, message_en = REFUSALS[code]
    return UploadItem(name, error_code=code, error_zh=message_zh, error_en=message_en)


class _ZipLimit(Exception):
    pass


def _chunks(handle: IO[bytes], *, limit: int) -> Iterator[bytes]:
    total = 0
    while chunk := handle.read(CHUNK):
        total += len(chunk)
        if total > limit:
            raise _ZipLimit
        yield chunk


def _unsafe_name(name: str) -> bool:
    path = PurePosixPath(name.replace("\\", "/"))
    return path.is_absolute() or ".." in path.parts or (len(name) > 1 and name[1] == ":")


def _stage(hospital: Hospital, batch: uuid.UUID, name: str, chunks: Iterator[bytes]) -> UploadItem:
    try:
        # File and folder names often carry the patient's name: they are echoed once to the
        # uploader and never stored.
        staged = staged_object_create(hospital=hospital, source=StagedObject.Source.UPLOAD, chunks=chunks, batch=batch)
    except StagingTooLarge:
        return _refused(name, "TOO_LARGE")
    return UploadItem(name, staged=staged)


@dataclass
class _Budget:
    """What one upload request may still expand to from zip archives."""

    remaining: int


def _zip_items(hospital: Hospital, batch: uuid.UUID, name: str, upload: IO[bytes], budget: _Budget) -> list[UploadItem]:
    items: list[UploadItem] = []
    try:
        archive = zipfile.ZipFile(upload)
    except (zipfile.BadZipFile, OSError):
        return [_refused(name, "BAD_ZIP")]
    entries = [info for info in archive.infolist() if not info.is_dir()]
    if len(entries) > settings.UPLOAD_ZIP_MAX_ENTRIES:
        return [_refused(name, "ZIP_TOO_MANY_ENTRIES")]
    for info in entries:
        label = f"{name}/{info.filename}"[:255]
        if _unsafe_name(info.filename):
            items.append(_refused(label, "ZIP_UNSAFE_PATH"))
            continue
        if PurePosixPath(info.filename).name.upper() == "DICOMDIR":
            continue  # The media directory, not an image; the archive indexes the files themselves.
        ratio_limit = max(info.compress_size, 1) * settings.UPLOAD_ZIP_MAX_RATIO
        limit = min(budget.remaining, ratio_limit)  # staging itself refuses objects over the size limit
        try:
            with archive.open(info) as entry:
                item = _stage(hospital, batch, label, _chunks(entry, limit=limit))
        except _ZipLimit:
            items.append(_refused(label, "ZIP_BOMB"))
            break
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError):
            items.append(_refused(label, "BAD_ZIP_ENTRY"))
            continue
        items.append(item)
        if item.staged is not None:
            budget.remaining -= item.staged.size
    return items


def upload_receive(*, hospital: Hospital, files: list[tuple[str, IO[bytes]]], batch: uuid.UUID) -> list[UploadItem]:
    """Stage every uploaded file (expanding zip archives) and queue each for ingest after commit.

    Call inside the hospital's context.
    """
    from apps.imaging.tasks import ingest_staged_object, series_review_queue

    items: list[UploadItem] = []
    budget = _Budget(settings.UPLOAD_ZIP_MAX_TOTAL)
    for name, handle in files:
        if name.lower().endswith(".zip") or zipfile.is_zipfile(handle):
            handle.seek(0)
            items.extend(_zip_items(hospital, batch, name, handle, budget))
        else:
            handle.seek(0)
            # staging_write enforces the size limit for plain files.
            items.append(_stage(hospital, batch, name, iter(partial(handle.read, CHUNK), b"")))
    for item in items:
        if item.staged is not None:
            public_id = str(item.staged.public_id)
            transaction.on_commit(partial(ingest_staged_object.delay, hospital.pk, public_id))
    if any(item.staged is not None for item in items):
        series_review_queue(hospital=hospital, batch=batch)
    return items
