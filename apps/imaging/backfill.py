"""Backfill of the Pixel Data position on instances stored before ingest recorded it (imaging 0006).

Each stored object's element headers are walked with the same scan ingest runs
(:func:`apps.imaging.dicom.part10.scan_part10`), reading the object through a one-segment window, so
the columns get exactly what ingest would have written. Rows are handled in batches, in id order:
rows are read in one short transaction, objects are read from storage outside any transaction, and
each row is updated only if it still names the object that was read and still lacks the offset. A run
that stops half-way is resumed by running it again; a second run changes nothing.
"""

import logging
from dataclasses import dataclass, field
from typing import BinaryIO, cast

from apps.imaging.dicom.part10 import NO_DIRECT_OFFSET_TRANSFER_SYNTAXES, scan_part10
from apps.imaging.keys import hospital_key
from apps.imaging.models import Instance
from apps.imaging.objectstore import STORED_OBJECT_FIELDS, StoredObject, instance_stored_object
from apps.imaging.pixels import _StoredObjectReader
from apps.imaging.staging import PlaintextView
from apps.tenants.context import hospital_context
from apps.tenants.models import Hospital

logger = logging.getLogger(__name__)


@dataclass
class BackfillResult:
    """Counts for one hospital; failed rows are named by public id only."""

    scanned: int = 0
    filled: int = 0
    without_offset: int = 0  # ingest would record none either (no Pixel Data, or a rarer encoding)
    failed: list[str] = field(default_factory=list)


class _StoredObjectFile(PlaintextView):
    """A stored object's plaintext as a read-only seekable file, one decrypted segment at a time."""

    def __init__(self, *, key: bytes, stored: StoredObject) -> None:
        self._reader = _StoredObjectReader(hospital_key=key, stored=stored)
        self._size = stored.plaintext_size
        self._position = 0

    def read(self, size: int | None = -1) -> bytes:
        remaining = max(self._size - self._position, 0)
        count = remaining if size is None or size < 0 else min(size, remaining)
        data = self._reader.read_at(self._position, count) if count else b""
        self._position += len(data)
        return data

    def readinto(self, buffer: "bytearray | memoryview") -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)


def _pending(hospital: Hospital, *, after_id: int, batch_size: int) -> list[Instance]:
    with hospital_context(hospital):
        return list(
            Instance.objects.filter(hospital=hospital, id__gt=after_id, pixel_data_offset__isnull=True)
            .exclude(transfer_syntax_uid__in=NO_DIRECT_OFFSET_TRANSFER_SYNTAXES)
            .only("id", "public_id", "sop_instance_uid", *STORED_OBJECT_FIELDS)
            .order_by("id")[:batch_size]
        )


def pixel_offsets_backfill(*, hospital: Hospital, batch_size: int = 200) -> BackfillResult:
    """Record the Pixel Data offset and native length of ``hospital``'s instances that lack them.

    Idempotent and resumable (see the module docstring). An object that cannot be read or scanned
    is counted as failed and left as it was: frame reads of it keep walking the headers.
    """
    result = BackfillResult()
    after_id = 0
    while batch := _pending(hospital, after_id=after_id, batch_size=batch_size):
        with hospital_context(hospital):
            key = hospital_key(hospital)
        updates: list[tuple[Instance, int, int | None]] = []
        for instance in batch:
            result.scanned += 1
            try:
                with _StoredObjectFile(key=key, stored=instance_stored_object(instance)) as stream:
                    layout = scan_part10(cast(BinaryIO, stream))
            except Exception as error:  # noqa: BLE001 - one bad object must not stop the others
                # The error's text may quote the object's bytes; its type and the opaque id are enough.
                logger.warning("Instance %s could not be scanned: %s", instance.public_id, type(error).__name__)
                result.failed.append(str(instance.public_id))
                continue
            if layout.pixel_data_offset is None:
                result.without_offset += 1
                continue
            updates.append((instance, layout.pixel_data_offset, layout.pixel_data_length))
        with hospital_context(hospital):
            for instance, offset, length in updates:
                # Only if the row still names the object read (a conflict's replacement swaps it).
                result.filled += Instance.objects.filter(
                    pk=instance.pk, storage_key=instance.storage_key, pixel_data_offset__isnull=True
                ).update(pixel_data_offset=offset, pixel_data_length=length)
        after_id = batch[-1].pk
    return result
