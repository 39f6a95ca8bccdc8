"""Fixity: reading stored objects back and checking them against what was recorded when stored.

``object_verify`` reads an object whole and checks everything there is to check: that the row's
wrapped key unwraps for its own object, SOP Instance UID and digest, the stored size, each
segment's authentication tag (so a flipped bit, a cut, a reordering or a splice fails) and,
recomputed, the SHA-256 of the plaintext recorded at ingest. Instances and the replaced versions a
conflict resolution kept are both checked.

An object stored before 30 November 2026 has its data key bound to its storage key alone, and
every whole read of it rehashes. Once it passes here, its row is given the key wrapped under the
binding (only if the row still holds the key just checked), so the sweep's rolling slices bring
the whole archive onto the binding within one cycle. That is the only change a run makes besides
its audit events.

Rows are read per hospital, in batches of short transactions; objects are read outside any
transaction. Each run records one ARCHIVE_VERIFIED event per hospital checked, with counts and the
public ids of the objects that failed (opaque, naming no patient), in that hospital's audit chain.
"""

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from django.conf import settings
from django.db.models import F
from django.db.models.functions import Mod
from django.utils import timezone
from pydicom import dcmread

from apps.audit.services import audit_record
from apps.audit.vocabulary import Action, EntryPoint, Outcome
from apps.imaging.crypto import CryptoIntegrityError
from apps.imaging.keys import hospital_key
from apps.imaging.models import Instance, ReplacedInstanceVersion
from apps.imaging.objectstore import STORED_OBJECT_FIELDS, StoredObject, instance_stored_object, object_verify
from apps.tenants.context import hospital_context
from apps.tenants.models import Hospital

logger = logging.getLogger(__name__)

_STORED_FIELDS = ("id", "public_id", *STORED_OBJECT_FIELDS)
# How many failed public ids one audit event lists (the counts are always complete).
_AUDITED_FAILURES = 200
_BATCH_SIZE = 200
# What is checked: (how a failure names it, the model, the field saying when it was stored).
_KINDS: tuple[tuple[str, Any, str], ...] = (
    ("instance", Instance, "created_at"),
    ("replaced-version", ReplacedInstanceVersion, "stored_at"),
)


@dataclass(frozen=True)
class VerifyScope:
    """Which objects a run checks. ``limit``: a random sample of at most that many per hospital;
    ``since_days``: only those stored in the last so many days; ``slice_of``: (slice, slices) for
    the rolling check, which covers every object once per ``slices`` days."""

    limit: int | None = None
    since_days: int | None = None
    slice_of: tuple[int, int] | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "limit": self.limit,
            "since_days": self.since_days,
            "slice": list(self.slice_of) if self.slice_of else None,
        }


@dataclass
class VerifyResult:
    """One hospital's outcome; failures are named by public id only."""

    verified: int = 0
    failed: list[str] = field(default_factory=list)  # "instance <uuid>" or "replaced-version <uuid>"
    rebound: int = 0  # objects stored before the binding, whose key is now wrapped under it
    # Objects stored before the binding that passed but stay as they were (a header not read whole,
    # naming no SOP Instance UID, or a row changed meanwhile): they need the legacy wrapping still.
    left_unbound: int = 0

    @property
    def checked(self) -> int:
        return self.verified + len(self.failed)


def rolling_slice(today: date | None = None) -> tuple[int, int]:
    """Today's slice of the rolling check: every object falls in one of ARCHIVE_VERIFY_CYCLE_DAYS
    slices (by row id), one slice a day."""
    slices = max(settings.ARCHIVE_VERIFY_CYCLE_DAYS, 1)
    return (today or timezone.localdate()).toordinal() % slices, slices


def _batches(
    model: Any, hospital: Hospital, scope: VerifyScope, stored_field: str, *, limit: int | None
) -> Iterator[list[Any]]:
    """The rows to check, a batch at a time, each read in its own short transaction; ``limit``:
    a random sample of at most that many instead."""
    rows = model.objects.filter(hospital=hospital)
    if model is ReplacedInstanceVersion:  # its SOP Instance UID is its instance's
        rows = rows.select_related("instance").only(*_STORED_FIELDS, stored_field, "instance__sop_instance_uid")
    else:
        rows = rows.only(*_STORED_FIELDS, stored_field, "sop_instance_uid")
    if scope.since_days is not None:
        rows = rows.filter(**{f"{stored_field}__gte": timezone.now() - timedelta(days=scope.since_days)})
    if scope.slice_of is not None:
        index, slices = scope.slice_of
        rows = rows.annotate(slice_index=Mod(F("id"), slices)).filter(slice_index=index)
    if limit is not None:
        with hospital_context(hospital):
            yield list(rows.order_by("?")[:limit])
        return
    after_id = 0
    while True:
        with hospital_context(hospital):
            batch = list(rows.filter(id__gt=after_id).order_by("id")[:_BATCH_SIZE])
        if not batch:
            return
        yield batch
        after_id = batch[-1].pk


def _names_its_instance(head: bytes, stored: StoredObject) -> bool:
    """Whether the first bytes of an object stored before the binding hold the SOP Instance UID its
    row names (in the file meta and the data set), which the old wrapping did not vouch for.

    An object that names another instance is a row pointing at the wrong object: a failure. A
    header that ``head`` does not hold whole (pydicom reads a cut value without complaint, so the
    read must stop at Pixel Data before the end of ``head``) leaves the object unbound (False).
    """
    stream = io.BytesIO(head)
    try:
        dataset = dcmread(stream, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
    except Exception:  # noqa: BLE001 - unreadable from here: cannot tell, so leave it unbound
        dataset = None
    if dataset is None or not (len(head) == stored.plaintext_size or stream.tell() < len(head)):
        logger.warning("Fixity check: an object's header is larger than the part read; left unbound.")
        return False
    named = {str(dataset.file_meta.get("MediaStorageSOPInstanceUID", "")), str(dataset.get("SOPInstanceUID", ""))}
    named.discard("")
    if not named:
        logger.warning("Fixity check: an object's header names no SOP Instance UID; left unbound.")
        return False
    if named != {stored.sop_instance_uid}:
        raise CryptoIntegrityError(f"{stored.key} holds another SOP Instance UID than its row names.")
    return True


def _rebind(hospital: Hospital, row: Any, wrapped: bytes) -> int:
    """Record the key ``object_verify`` re-wrapped under the binding, if the row still holds the
    key that was checked (a conflict's replacement may have swapped the object meanwhile)."""
    with hospital_context(hospital):
        return int(
            type(row)
            .objects.filter(pk=row.pk, storage_key=row.storage_key, wrapped_data_key=bytes(row.wrapped_data_key))
            .update(wrapped_data_key=wrapped)
        )


def hospital_archive_verify(
    *, hospital: Hospital, scope: VerifyScope, entry_point: EntryPoint = EntryPoint.COMMAND
) -> VerifyResult:
    """Read back ``hospital``'s stored objects within ``scope`` and check each whole; record one
    ARCHIVE_VERIFIED event (outcome serious failure when any failed) and return the counts.

    Read-only apart from the audit event and the keys of objects stored before the binding (see the
    module docstring), so safe to run at any time and to run again.
    """
    result = VerifyResult()
    key: bytes | None = None  # asked for only when there is something to read (first use creates it)
    for kind, model, stored_field in _KINDS:
        limit = None if scope.limit is None else scope.limit - result.checked
        if limit is not None and limit < 1:
            break
        for batch in _batches(model, hospital, scope, stored_field, limit=limit):
            if key is None and batch:
                with hospital_context(hospital):
                    key = hospital_key(hospital)
            for row in batch:
                try:
                    stored = instance_stored_object(row)
                    verified = object_verify(hospital_key=key or b"", stored=stored)
                    rebind = verified.rewrapped is not None and _names_its_instance(verified.head, stored)
                except Exception as error:  # noqa: BLE001 - one bad object must not stop the others
                    # The type and the opaque id are enough; an error's text could quote stored bytes.
                    logger.warning("Fixity check failed for %s %s: %s", kind, row.public_id, type(error).__name__)
                    result.failed.append(f"{kind} {row.public_id}")
                else:
                    result.verified += 1
                    if verified.rewrapped is not None:
                        bound = rebind and _rebind(hospital, row, verified.rewrapped)
                        result.rebound += int(bound)
                        result.left_unbound += int(not bound)
    if result.failed:
        logger.error("Fixity check: %s of %s objects of %s failed.", len(result.failed), result.checked, hospital.code)
    audit_record(
        action=Action.ARCHIVE_VERIFIED,
        outcome=Outcome.SERIOUS_FAILURE if result.failed else Outcome.SUCCESS,
        hospital=hospital,
        entry_point=entry_point,
        object_type="archive",
        details={
            **scope.describe(),
            "verified": result.verified,
            "failed": len(result.failed),
            "rebound": result.rebound,
            "left_unbound": result.left_unbound,
            "failed_objects": result.failed[:_AUDITED_FAILURES],
        },
    )
    return result
