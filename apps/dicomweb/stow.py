"""STOW-RS (PS3.18 10.5): store instances sent as multipart/related; type="application/dicom".

200: every instance stored without warnings; 202: some failed or carry warnings; 409: none
stored; 400: the body is not a well-formed multipart/related; 415: another media type; 503 (with
Retry-After): the storage failed to make the objects durable, and nothing of the request was kept.
"""

import contextlib
import json
import logging
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import IO, Any

from django.conf import settings
from django.db import transaction
from django.http import HttpResponse
from rest_framework.request import Request

from apps.audit.vocabulary import Action
from apps.dicomweb import dicomjson
from apps.dicomweb.base import DICOM_JSON, DicomWebView, json_error
from apps.dicomweb.multipart import (
    MultipartError,
    Part,
    parse_content_type,
    part_bytes,
    part_chunks,
    split_parts,
    spool,
)
from apps.imaging.dicom.parse import is_valid_uid
from apps.imaging.dicom.prepare import Prepared
from apps.imaging.dicom.rules import ValidationPolicy
from apps.imaging.digests import sha256_soon
from apps.imaging.durable import DeferredWrites
from apps.imaging.indexing import IngestBatch, IngestOutcome, RedoOneByOne, ingest_batch_flush, validation_policy
from apps.imaging.ingest import (
    ingest_batch_discard,
    received_object_ingest,
    received_object_keep,
    staged_object_create,
    staged_object_process,
)
from apps.imaging.models import StagedObject
from apps.imaging.parse_pool import ParseHelper
from apps.imaging.series_review import batch_review
from apps.imaging.staging import StagingTooLarge, staging_remove

logger = logging.getLogger(__name__)

# PS3.18 Table 10.5.3-2 / PS3.4 status codes
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111
OUT_OF_RESOURCES = 0xA700
DATA_SET_DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
WARNING_DATA_SET_DOES_NOT_MATCH = 0xB007

_FAILURE_REASONS = {
    "SOP_INSTANCE_CONFLICT": DUPLICATE_SOP_INSTANCE,
    "STUDY_MULTIPLE_PATIENTS": DATA_SET_DOES_NOT_MATCH,
    "SERIES_IN_OTHER_STUDY": DATA_SET_DOES_NOT_MATCH,
    "STUDY_UID_MISMATCH": DATA_SET_DOES_NOT_MATCH,
    "TYPE1_MISSING": DATA_SET_DOES_NOT_MATCH,
    "TOO_LARGE": OUT_OF_RESOURCES,
}


class StowView(DicomWebView):
    def post(self, request: Request, hospital_code: str, study_uid: str | None = None) -> HttpResponse:
        if study_uid is not None and not is_valid_uid(study_uid):
            return json_error(400, "bad_request", "The study in the request URL is not a valid UID.")
        content_type = parse_content_type(request.META.get("CONTENT_TYPE", ""))
        if content_type.media_type != "multipart/related":
            return json_error(415, "unsupported_media_type", 'Send multipart/related; type="application/dicom".')
        part_type = content_type.params.get("type", "application/dicom").lower()
        if part_type != "application/dicom":
            return json_error(415, "unsupported_media_type", "Only application/dicom parts are supported.")
        boundary = content_type.params.get("boundary")
        if not boundary:
            return json_error(400, "bad_request", "The multipart boundary is missing.")
        try:
            body = spool(
                request._request,
                max_size=settings.STOW_MAX_REQUEST_SIZE,
                memory_max_size=settings.STOW_BODY_IN_MEMORY_MAX_SIZE,
            )
        except MultipartError:
            return json_error(413, "too_large", "The request is larger than this server accepts.")
        with body:
            try:
                parts = split_parts(body, boundary)
            except MultipartError as error:
                return json_error(400, "bad_request", f"The multipart body is malformed: {error}.")
            if not parts:
                return json_error(400, "bad_request", "The request holds no instance.")
            return self._store(request, body, parts, study_uid)

    def _store(self, request: Request, body: IO[bytes], parts: list[Part], study_uid: str | None) -> HttpResponse:
        batch = uuid.uuid4()
        referenced: list[dict[str, Any]] = []
        policy = validation_policy(self.hospital)
        writes = DeferredWrites()
        try:
            outcomes, failed = self._ingest_batch(body, parts, batch, study_uid, policy, writes)
            batch_review(hospital=self.hospital, outcomes=outcomes, policy=policy)
        except BaseException as error:
            # Nothing of this request commits (a 5xx rolls its transaction back): what it wrote to the
            # storage is named by nothing, and goes now rather than waiting for the sweep.
            writes.discard()
            if isinstance(error, _NotDurable):
                response = json_error(
                    503, "storage_unavailable", "The archive could not write to its storage; nothing was stored."
                )
                response["Retry-After"] = "60"
                return response
            raise
        any_warning = False
        for outcome in outcomes:
            staged = outcome.staged
            identity = {
                "ReferencedSOPClassUID": staged.sop_class_uid or None,
                "ReferencedSOPInstanceUID": staged.sop_instance_uid or None,
            }
            if staged.status in {StagedObject.Status.STORED, StagedObject.Status.DUPLICATE}:
                item = dicomjson.dataset(**identity, RetrieveURL=self._instance_url(request, outcome))
                if outcome.warnings:
                    any_warning = True
                    item.update(dicomjson.dataset(WarningReason=WARNING_DATA_SET_DOES_NOT_MATCH))
                referenced.append(item)
            else:
                reason = _FAILURE_REASONS.get(staged.error_code, CANNOT_UNDERSTAND)
                failed.append(dicomjson.dataset(**identity, FailureReason=reason))
        self.audit(
            request, Action.INSTANCES_IMPORTED, object_type="study", object_id=study_uid or "",
            details={"batch": str(batch), "stored": len(referenced), "failed": len(failed)},
        )  # fmt: skip
        result: dict[str, Any] = {}
        if study_uid:
            result.update(dicomjson.dataset(RetrieveURL=self.study_url(request, study_uid)))
        if referenced:
            result.update(dicomjson.dataset(ReferencedSOPSequence=referenced))
        if failed:
            result.update(dicomjson.dataset(FailedSOPSequence=failed))
        if not referenced:
            status = 409
        elif failed or any_warning:
            status = 202
        else:
            status = 200
        return HttpResponse(json.dumps(result), status=status, content_type=DICOM_JSON)

    def _ingest_batch(
        self,
        body: IO[bytes],
        parts: list[Part],
        batch: uuid.UUID,
        study_uid: str | None,
        policy: ValidationPolicy,
        writes: DeferredWrites,
    ) -> tuple[list[IngestOutcome], list[dict[str, Any]]]:
        """Ingest the parts as one batch: the request's transaction already acts for the hospital,
        and the instances of one series share their patient, study and series lookups and counter
        updates. Several objects: each series' stored instances are read once, and the rows of the
        objects are inserted together at the flush; should those rows not go in as they are
        (RedoOneByOne), the batch is rolled back and the parts ingested again, one row at a time.
        One object: its UID is looked up directly and its rows inserted as it goes."""
        several = len(parts) > 1
        for defer_rows in (several, False):
            # One object: nothing to overlap its fsyncs with, so they are made as it is written.
            shared = IngestBatch(
                hospital=self.hospital, prefetch_series=several, writes=writes if several else None,
                defer_rows=defer_rows,
            )  # fmt: skip
            work = _Work(body, batch, study_uid, policy, shared)
            try:
                # Only a batch that defers rows can be redone: it needs a savepoint to roll back to.
                with transaction.atomic() if defer_rows else contextlib.nullcontext():
                    self._ingest_parts(parts, work)
                    # The disk synced each stored object while the parts went on. Every one is durable
                    # before a row names it, and before the rows that other requests wait for are
                    # locked (the counters here, the audit chain's head after).
                    if not _objects_synced(writes):
                        raise _NotDurable
                    ingest_batch_flush(batch=shared)
            except RedoOneByOne as redo:
                if not defer_rows:
                    raise
                logger.info("STOW: redone one object at a time (%s)", type(redo.__cause__ or redo).__name__)
                try:
                    # Large parts' files too: they went through the same writes.
                    ingest_batch_discard(batch=shared)
                finally:
                    _forget_staged(work)
                continue
            except BaseException:
                _forget_staged(work)  # nothing of this attempt will commit
                raise
            return work.outcomes, work.failed
        raise AssertionError("unreachable")

    def _ingest_parts(self, parts: list[Part], work: "_Work") -> None:
        helpers = ParseHelper.checkout() if len(parts) > 1 else []
        try:
            self._ingest_each(parts, work, helpers)
        finally:
            for helper in helpers:
                helper.release()

    def _ingest_each(self, parts: list[Part], work: "_Work", helpers: list[ParseHelper]) -> None:
        body, failed = work.body, work.failed
        several = len(parts) > 1
        ahead = _ReadAhead(body, [_in_memory(part) for part in parts], work.policy, helpers) if several else None
        for index, part in enumerate(parts):
            if part.content_type != "application/dicom":
                failed.append(dicomjson.dataset(FailureReason=CANNOT_UNDERSTAND))
                continue
            if part.end - part.start > settings.DICOM_MAX_OBJECT_SIZE:
                failed.append(dicomjson.dataset(FailureReason=OUT_OF_RESOURCES))
                continue
            if _in_memory(part):
                data, sha256, prepared = ahead.take(parts, index) if ahead else (part_bytes(body, part), None, None)
                self._ingest_in_memory(data, sha256, prepared, work)
                del data, prepared  # not held while the next parts are read
                continue
            try:
                staged = staged_object_create(
                    hospital=self.hospital, source=StagedObject.Source.STOW, chunks=part_chunks(body, part),
                    batch=work.batch,
                )  # fmt: skip
                work.staged.append(staged.public_id)
            except StagingTooLarge:
                failed.append(dicomjson.dataset(FailureReason=OUT_OF_RESOURCES))
                continue
            except OSError as error:
                raise _staging_refused(error) from error
            try:
                work.outcomes.append(
                    staged_object_process(
                        staged=staged, expected_study_uid=work.study_uid, policy=work.policy, batch=work.shared
                    )
                )
            except RedoOneByOne:
                raise
            except Exception:
                # Left "received": the retry sweeper takes it up again. The client hears 0x0110.
                logger.exception("STOW: staged object %s could not be processed", staged.public_id)
                failed.append(dicomjson.dataset(FailureReason=PROCESSING_FAILURE))

    def _ingest_in_memory(self, data: bytes, sha256: str | None, prepared: Prepared | None, work: "_Work") -> None:
        """An object small enough to hold in memory: processed from there, staged only if kept.
        ``sha256``, ``prepared``: its digest, and what a helper process found parsing it, when
        they were taken beforehand."""
        try:
            work.outcomes.append(
                received_object_ingest(
                    hospital=self.hospital, source=StagedObject.Source.STOW, data=data, batch_id=work.batch,
                    batch=work.shared, policy=work.policy, expected_study_uid=work.study_uid, sha256=sha256,
                    prepared=prepared,
                )
            )  # fmt: skip
        except RedoOneByOne:
            raise
        except Exception:
            # Staged "received" for the retry sweeper, as above. The client hears 0x0110.
            try:
                staged = received_object_keep(
                    hospital=self.hospital, source=StagedObject.Source.STOW, data=data, batch_id=work.batch
                )
            except OSError as error:
                raise _staging_refused(error) from error
            work.staged.append(staged.public_id)
            logger.exception("STOW: received object %s could not be processed", staged.public_id)
            work.failed.append(dicomjson.dataset(FailureReason=PROCESSING_FAILURE))

    def _instance_url(self, request: Request, outcome: IngestOutcome) -> str:
        """Built from the parsed UIDs: no queries per instance."""
        parsed = outcome.parsed
        if parsed is None:  # an object finished earlier, returned as it was
            instance = outcome.staged.instance
            assert instance is not None
            series = instance.series
            return self.instance_url(
                request, series.study.study_instance_uid, series.series_instance_uid, instance.sop_instance_uid
            )
        return self.instance_url(
            request, parsed.study_instance_uid, parsed.series_instance_uid, parsed.sop_instance_uid
        )


def _in_memory(part: Part) -> bool:
    """Whether the part is ingested from memory (an object small enough, of the right type)."""
    size = part.end - part.start
    return (
        part.content_type == "application/dicom"
        and size <= settings.STOW_IN_MEMORY_MAX_SIZE
        and size <= settings.DICOM_MAX_OBJECT_SIZE
    )


class _ReadAhead:
    """The bytes of the parts ingested from memory, read ahead of their turn, each one's SHA-256
    taken on a thread (``apps.imaging.digests``) and, but for the first, the object parsed and
    validated by a helper process (``apps.imaging.parse_pool``) meanwhile: the request parses the
    first itself while its helpers do the next ones, in turn. Besides the part taken, at most one
    part per helper is held (one without helpers)."""

    def __init__(
        self, body: IO[bytes], eligible: list[bool], policy: ValidationPolicy, helpers: list[ParseHelper]
    ) -> None:
        self._body = body
        self._policy = policy
        self._helpers = helpers
        self._order = [index for index, ok in enumerate(eligible) if ok]
        self._position = {index: number for number, index in enumerate(self._order)}
        self._depth = max(len(helpers), 1)  # parts read before the one taken is handed out
        self._held: dict[int, tuple[bytes, Future[str], ParseHelper | None]] = {}

    def _read(self, parts: list[Part], number: int) -> None:
        """Read the ``number``-th such part, unless read already or there is none."""
        if number >= len(self._order) or (index := self._order[number]) in self._held:
            return
        data = part_bytes(self._body, parts[index])
        # Part n (n ≥ 1) goes to helper (n - 1) mod h, which has the result of part n - h read by now.
        helper = self._helpers[(number - 1) % len(self._helpers)] if self._helpers and number else None
        if helper is not None and not helper.send(data, self._policy):
            helper = None
        self._held[index] = (data, sha256_soon(data), helper)

    def take(self, parts: list[Part], index: int) -> tuple[bytes, str, Prepared | None]:
        """Part ``index``'s bytes, digest and what a helper found parsing it (None: parse it here);
        the parts after it are read, hashed and parsed meanwhile. Parts are taken in order. A
        helper's result for this part is read before the helper is sent its next part."""
        number = self._position[index]
        for ahead in range(number, number + self._depth):
            self._read(parts, ahead)
        data, digest, helper = self._held.pop(index)
        prepared = helper.receive() if helper is not None else None
        self._read(parts, number + self._depth)
        return data, digest.result(), prepared


@dataclass
class _Work:
    """What the parts of one attempt at a request share, and what they come to."""

    body: IO[bytes]
    batch: uuid.UUID
    study_uid: str | None
    policy: ValidationPolicy
    shared: IngestBatch
    outcomes: list[IngestOutcome] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    staged: list[uuid.UUID] = field(default_factory=list)  # staged files made by this attempt


def _forget_staged(work: _Work) -> None:
    """Remove the staged files of an attempt whose rows roll back: nothing would ever name them.
    Besides those it made itself, an object received in memory and kept as a conflict was staged
    under its own id on the way."""
    for public_id in {*work.staged, *(outcome.staged.public_id for outcome in work.outcomes)}:
        staging_remove(public_id)


class _NotDurable(Exception):
    """A stored object could not be made durable: the request fails whole (503)."""


def _staging_refused(error: OSError) -> _NotDurable:
    """The disk refuses what the request must keep: logged (errno only, the message names a file)."""
    logger.error("STOW: a staged file could not be written (errno %s)", error.errno)
    return _NotDurable()


def _objects_synced(writes: DeferredWrites) -> bool:
    """Wait for the fsyncs of every object the request stored; False if one of them failed."""
    try:
        writes.wait()
    except OSError as error:
        # errno only: the message names a file.
        logger.error("STOW: a stored object could not be made durable (errno %s)", error.errno)
        return False
    return True
