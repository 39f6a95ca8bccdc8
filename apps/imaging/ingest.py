"""The one ingest pipeline behind STOW-RS, staff upload and the C-STORE gateway.

receive -> ``staged_object_create`` (bytes fsync'd to staging, a row recorded) ->
``staged_object_process`` (parse, validate, hash, deduplicate, encrypt, store, index, record
findings). Processing runs in a Celery task for uploads and the gateway, and inline for STOW-RS,
whose response must report each instance. A staged object that is still ``received`` after a
crash is picked up again by ``ingest_retry_stale``; nothing is indexed half-way because indexing
happens in one transaction after the encrypted object is stored, and a stored object whose
indexing fails is deleted again.
"""

import hashlib
import io
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, BinaryIO

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from pydicom.dataset import Dataset

from apps.imaging import metadata
from apps.imaging.crypto import CryptoIntegrityError
from apps.imaging.dicom.parse import DicomRejected
from apps.imaging.dicom.prepare import Prepared, describe
from apps.imaging.dicom.rules import Finding, Severity, ValidationPolicy
from apps.imaging.indexing import (
    IngestBatch,
    IngestOutcome,
    RedoOneByOne,
    Refused,
    existing_patient,
    identity_findings,
    index_instance,
    ingest_batch_flush,
    placement_or_existing,
    record_findings,
    validation_policy,
)
from apps.imaging.keys import hospital_key
from apps.imaging.models import (
    IngestConflict,
    Instance,
    StagedObject,
)
from apps.imaging.objectstore import StoredObject, object_delete, object_put
from apps.imaging.staging import staging_open, staging_remove, staging_write
from apps.tenants.context import activate_hospital
from apps.tenants.models import Hospital

logger = logging.getLogger(__name__)

# The code of objects given up after repeated crashes; their staged bytes are kept for staff.
GIVEN_UP_ERROR_CODE = "INGEST_FAILED"


def staged_object_create(
    *,
    hospital: Hospital,
    source: str,
    chunks: Iterable[bytes],
    original_name: str = "",
    batch: uuid.UUID | None = None,
) -> StagedObject:
    """Write received bytes durably to staging and record them. Raises StagingTooLarge."""
    public_id = uuid.uuid4()
    size, sha256 = _stage(public_id, hospital, chunks, new=True)
    try:
        return StagedObject.objects.create(
            hospital=hospital,
            public_id=public_id,
            source=source,
            batch=batch,
            original_name=original_name[:255],
            size=size,
            sha256=sha256,
        )
    except BaseException:
        staging_remove(public_id)
        raise


def _remove_staging_after_commit(staged: StagedObject) -> None:
    public_id = staged.public_id
    transaction.on_commit(lambda: staging_remove(public_id))


def _staging_done(staged: StagedObject, in_memory: bytes | None) -> None:
    """The object is final and its bytes are not kept: its staged file (if it has one) goes once
    the outcome commits. An object received in memory (``in_memory``) has none."""
    if in_memory is None:
        _remove_staging_after_commit(staged)


def _file_sha256(source: BinaryIO) -> str:
    digest = hashlib.sha256()
    source.seek(0)
    while chunk := source.read(1024 * 1024):
        digest.update(chunk)
    return digest.hexdigest()


def _finish(staged: StagedObject, status: str, **fields: Any) -> None:
    _final_state(staged, status, **fields)
    staged.save()


def _final_state(staged: StagedObject, status: str, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(staged, name, value)
    staged.status = status


def ingest_conflict_keep_stored(*, conflict: IngestConflict, actor: Any) -> None:
    """Resolve a conflict by keeping the stored instance; the received bytes are deleted."""
    with transaction.atomic():
        IngestConflict.objects.filter(pk=conflict.pk).update(resolved_at=timezone.now())
        _remove_staging_after_commit(conflict.staged)


def staged_object_give_up(*, staged: StagedObject) -> None:
    """After repeated crashes, stop retrying: the object is rejected with a reason, the staged
    bytes kept for staff."""
    _finish(
        staged, StagedObject.Status.REJECTED, error_code=GIVEN_UP_ERROR_CODE,
        error_message_zh="多次处理失败，已停止重试，请联系管理员。",
        error_message_en="Processing failed repeatedly; retries stopped. Contact an administrator.",
    )  # fmt: skip


def staged_object_process(
    *,
    staged: StagedObject,
    expected_study_uid: str | None = None,
    policy: ValidationPolicy | None = None,
    batch: IngestBatch | None = None,
) -> IngestOutcome:
    """Ingest one staged object; idempotent: a finished one is returned as it is.

    Runs in a savepoint of the caller's transaction, inside the staged object's hospital
    context. ``expected_study_uid`` is the study a STOW-RS request was addressed to, if any;
    ``policy`` the hospital's validation policy, when the caller has it already; ``batch`` the
    lookups and counters shared with the other objects of the request (the caller then flushes
    it with ``ingest_batch_flush``). Any exception leaves the object ``received`` for a retry.
    """
    own_batch = batch is None
    if batch is None:
        activate_hospital(staged.hospital)
        batch = IngestBatch(hospital=staged.hospital)
    if staged.is_final:
        return IngestOutcome(staged)
    policy = policy or validation_policy(staged.hospital)

    def attempt(work: IngestBatch) -> IngestOutcome:
        outcome = _process(staged, expected_study_uid, policy, work)
        if own_batch:
            ingest_batch_flush(batch=work)
        return outcome

    return _attempted_twice(batch, attempt, before_retry=staged.refresh_from_db)


def ingest_batch_discard(*, batch: IngestBatch) -> None:
    """After a deferring batch is rolled back (RedoOneByOne), remove what it stored, named by
    nothing now: on the filesystem every file it wrote (and any sync still pending), elsewhere the
    objects of its deferred instances."""
    if batch.writes is not None:
        batch.writes.discard()
    for instance in batch.pending_instances:
        object_delete(instance.storage_key)


def _attempted_twice(
    batch: IngestBatch, attempt: Callable[[IngestBatch], IngestOutcome], *, before_retry: Callable[[], None]
) -> IngestOutcome:
    """Run ``attempt`` in a savepoint on a copy of ``batch``, adopted only if it succeeds.

    A concurrent ingest of the same patient, study, series or instance that commits first breaks a
    unique constraint: the attempt is rolled back whole and made once more, finding that ingest's
    rows, and this time looking SOP Instance UIDs up one by one rather than in the batch's lists.

    A batch that defers rows (a STOW-RS request of several objects) takes no savepoint per object,
    two statements that would mostly guard nothing, its rows being inserted at the flush; nor a copy
    of the batch. Any failure is then RedoOneByOne: the caller rolls the whole batch back, throws it
    away and redoes the request this way.
    """
    if batch.defer_rows:
        try:
            return attempt(batch)
        except RedoOneByOne:
            raise
        except Exception as error:
            raise RedoOneByOne from error
    for number in (1, 2):
        work = batch.fork()
        work.trust_series_instances = number == 1
        try:
            with transaction.atomic():
                outcome = attempt(work)
        except IntegrityError:
            if number == 2:
                raise
            before_retry()
            continue
        batch.adopt(work)
        return outcome
    raise AssertionError("unreachable")


def received_object_ingest(
    *,
    hospital: Hospital,
    source: str,
    data: bytes,
    batch_id: uuid.UUID,
    batch: IngestBatch,
    policy: ValidationPolicy,
    expected_study_uid: str | None = None,
    sha256: str | None = None,
    prepared: Prepared | None = None,
) -> IngestOutcome:
    """Ingest an object received whole in memory by a request that answers only once it is stored
    (STOW-RS): parse, validate, encrypt, store and index it from memory, and insert its row once, in
    its final state. Its bytes are staged only if they must be kept: a conflict for staff to resolve
    (here) or a failure left for the retry sweeper (``received_object_keep``, by the caller).

    Why no staged file first: the row of a staged object is committed with the request's
    transaction, so after a crash mid-request neither it nor its staged file could be found again;
    the client, which has no answer, sends the object again. What the answer acknowledges is
    durable: the stored object is fsync'd before the transaction commits.

    ``sha256``: the digest of ``data``, when the caller took it already; ``prepared``: what a
    helper process found parsing and validating ``data`` (``apps.imaging.parse_pool``).
    """
    digest = sha256 or hashlib.sha256(data).hexdigest()
    public_id = uuid.uuid4()

    def attempt(work: IngestBatch) -> IngestOutcome:
        # A new row each time: an INSERT of a rolled-back attempt left its primary key behind.
        staged = StagedObject(
            hospital=hospital, public_id=public_id, source=source, batch=batch_id, size=len(data), sha256=digest
        )
        return _process_source(staged, io.BytesIO(data), expected_study_uid, policy, work, data, prepared)

    outcome = _attempted_twice(batch, attempt, before_retry=lambda: None)
    if outcome.parsed is not None:
        # The parsed header keeps its source (these bytes) for deferred values: let both go now,
        # or a request of many parts would hold every one of them until it answers.
        outcome.parsed = replace(outcome.parsed, dataset=Dataset())
    return outcome


def received_object_keep(*, hospital: Hospital, source: str, data: bytes, batch_id: uuid.UUID) -> StagedObject:
    """Stage an object received in memory whose processing failed, for the retry sweeper."""
    return staged_object_create(hospital=hospital, source=source, chunks=[data], batch=batch_id)


def _stage(public_id: uuid.UUID, hospital: Hospital, chunks: Iterable[bytes], *, new: bool = False) -> tuple[int, str]:
    return staging_write(
        public_id, chunks, hospital_key=hospital_key(hospital), max_size=settings.DICOM_MAX_OBJECT_SIZE, new=new
    )


def _stage_in_memory(staged: StagedObject, data: bytes) -> None:
    if _stage(staged.public_id, staged.hospital, [data]) != (staged.size, staged.sha256):
        raise RuntimeError("The staged copy differs from the bytes received.")


def _reject(
    staged: StagedObject, code: str, message_zh: str, message_en: str, *, in_memory: bytes | None = None
) -> IngestOutcome:
    _finish(
        staged, StagedObject.Status.REJECTED, error_code=code,
        error_message_zh=message_zh[:300], error_message_en=message_en[:300],
    )  # fmt: skip
    _staging_done(staged, in_memory)
    return IngestOutcome(staged)


def _process(
    staged: StagedObject, expected_study_uid: str | None, policy: ValidationPolicy, batch: IngestBatch
) -> IngestOutcome:
    try:
        with staging_open(staged.public_id, hospital_key=hospital_key(staged.hospital)) as source:
            return _process_source(staged, source, expected_study_uid, policy, batch)
    except CryptoIntegrityError:
        # Altered or cut short on disk: no retry can help. Nothing was stored or indexed, since
        # every read of the staged bytes comes before the object is put and indexed.
        logger.warning("staged object %s: the staged file failed its integrity check", staged.public_id)
        return _reject(
            staged,
            "STAGING_DAMAGED",
            "暂存文件未通过完整性校验，请重新上传。",
            "The staged file failed its integrity check; upload it again.",
        )


def _final(
    batch: IngestBatch,
    staged: StagedObject,
    defer: bool,
    status: str,
    findings: list[Finding],
    modality: str,
    instance: Instance,
    identity: dict[str, str],
) -> None:
    """Record an object as stored or as a duplicate of ``instance``, with its findings; ``defer``:
    its rows are left to the batch's flush."""
    if defer:
        _final_state(staged, status, instance=instance, **identity)
        batch.pending_rows.append((staged, findings, modality, instance))
    else:
        _finish(staged, status, instance=instance, **identity)
        record_findings(staged, findings, modality, instance)


def _process_source(
    staged: StagedObject,
    source: BinaryIO,
    expected_study_uid: str | None,
    policy: ValidationPolicy,
    batch: IngestBatch,
    in_memory: bytes | None = None,
    prepared: Prepared | None = None,
) -> IngestOutcome:
    """``in_memory``: the object's bytes when it was received in memory and has no staged file;
    ``prepared``: these bytes parsed, validated and described already (by a helper process)."""
    hospital = staged.hospital
    # Rows of an object received in memory wait for the flush of a batch that defers them; the row
    # of a staged object exists already, and is updated as it goes unless the batch defers that too.
    defer = batch.defer_rows and (in_memory is not None or batch.defer_staged_rows)
    try:
        if prepared is None:
            parsed, findings, document = describe(source, policy)
        else:
            parsed, findings, document = prepared.parsed, list(prepared.findings), prepared.document
        patient = existing_patient(batch, parsed)
        findings += identity_findings(hospital, parsed, patient)
        sealed_metadata = metadata.seal_document(hospital, document)
    except DicomRejected as rejected:
        return _reject(staged, rejected.code, rejected.message_zh, rejected.message_en, in_memory=in_memory)
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as error:
        # A value pydicom cannot represent (a DS of "1,25", say): refuse the object. The log names
        # the error's type only: its message may quote the value.
        logger.warning("staged object %s: unreadable attribute value (%s)", staged.public_id, type(error).__name__)
        return _reject(
            staged,
            "DICOM_MALFORMED",
            "文件中有无法解读的属性值。",
            "The file holds an attribute value that cannot be read.",
            in_memory=in_memory,
        )
    identity = {"sop_instance_uid": parsed.sop_instance_uid, "sop_class_uid": parsed.sop_class_uid}
    rejections = [f for f in findings if f.severity == Severity.REJECT]
    stored: StoredObject | None = None
    sha256 = staged.sha256 or _file_sha256(source)
    try:
        if expected_study_uid and parsed.study_instance_uid != expected_study_uid:
            raise Refused(
                "STUDY_UID_MISMATCH",
                "实例的检查 UID 与请求地址中的检查不一致。",
                "The instance's Study Instance UID differs from the study in the request URL.",
            )
        if rejections:
            first = rejections[0]
            raise Refused(first.code, first.message_zh, first.message_en)
        existing, (study, series) = placement_or_existing(batch, parsed, patient, sha256)
        if existing is not None:
            # Its findings were recorded with the stored instance.
            _final(batch, staged, defer, StagedObject.Status.DUPLICATE, [], parsed.modality, existing, identity)
            _staging_done(staged, in_memory)
            return IngestOutcome(staged, findings, parsed)
        source.seek(0)
        stored = object_put(
            hospital_key=hospital_key(hospital), source=source, size=staged.size, writes=batch.writes,
            sop_instance_uid=parsed.sop_instance_uid,
            sha256=sha256 if in_memory is not None else None,  # bytes in memory: their digest holds
        )  # fmt: skip
        # The digest taken while encrypting must be the one taken while staging.
        if stored.sha256 != sha256:
            raise Refused("STAGING_CHANGED", "暂存文件在处理中被改动。", "The staged file changed while processing.")
        instance = index_instance(batch, parsed, stored, sealed_metadata, (patient, study, series), defer=defer)
        # An object received in memory is inserted here (or at the batch's flush), in its final state.
        _final(batch, staged, defer, StagedObject.Status.STORED, findings, parsed.modality, instance, identity)
    except Refused as refused:
        if stored is not None:
            object_delete(stored.key, writes=batch.writes)
        status = StagedObject.Status.CONFLICT if refused.conflict_with else StagedObject.Status.REJECTED
        if refused.conflict_with is not None and in_memory is not None:
            # Kept for staff to resolve: now the bytes must be staged after all.
            _stage_in_memory(staged, in_memory)
        _finish(
            staged, status, error_code=refused.code, error_message_zh=refused.message_zh,
            error_message_en=refused.message_en, **identity,
        )  # fmt: skip
        record_findings(staged, findings, parsed.modality, None)
        if refused.conflict_with is not None:
            IngestConflict.objects.create(
                hospital=hospital, staged=staged, existing=refused.conflict_with, received_sha256=sha256
            )
        else:
            _staging_done(staged, in_memory)
        return IngestOutcome(staged, findings, parsed)
    except BaseException:
        if stored is not None:
            object_delete(stored.key, writes=batch.writes)
        raise
    _staging_done(staged, in_memory)
    return IngestOutcome(staged, findings, parsed)
