"""Staged objects of one sender ingested together: what an ingest task does with the object it was
queued for and the others of its batch (a C-STORE association, a staff upload) waiting beside it.

A modality sends a series one object at a time; the gateway stages each and queues a task for it.
Taken one by one, each object pays for its own transaction, validation settings, patient, study
and series lookups and row writes. A task instead claims its object and up to
``INGEST_TOGETHER_MAX`` other received objects of the same batch (``staged_claim``), and ingests
them in one transaction as a STOW-RS request ingests its parts (``staged_together_process``): one
lookup of each series' stored instances, the objects' fsyncs overlapping the next object's work,
their rows written together at the end. The tasks queued for the others then find them done.

What a claim risks is bounded: an attempt is counted on every claimed object before any is
processed, so an object that crashes its worker is given up after ``max_attempts`` like any other;
and only objects never attempted are claimed beside another, so a crash does not count against its
neighbours twice: once retried, each object is taken alone.
"""

import logging
import uuid
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from apps.imaging.durable import DeferredWrites
from apps.imaging.indexing import IngestBatch, IngestOutcome, RedoOneByOne, ingest_batch_flush, validation_policy
from apps.imaging.ingest import ingest_batch_discard, staged_object_give_up, staged_object_process
from apps.imaging.models import StagedObject
from apps.tenants.models import Hospital

logger = logging.getLogger(__name__)


@dataclass
class Claim:
    """The objects a task ingests (its own first), and those it gave up after too many attempts."""

    public_ids: list[uuid.UUID] = field(default_factory=list)
    given_up: list[StagedObject] = field(default_factory=list)
    # Each claimed object's attempts, this one counted.
    attempts: dict[uuid.UUID, int] = field(default_factory=dict)


@dataclass
class Together:
    outcomes: list[IngestOutcome] = field(default_factory=list)
    # Objects whose ingest raised, and what: left received, for the caller to queue again.
    failed: list[tuple[uuid.UUID, Exception]] = field(default_factory=list)


def staged_claim(*, hospital: Hospital, public_id: str, max_attempts: int, attempts_before: int | None = None) -> Claim:
    """Count an attempt on the object and, if it was never attempted, on other received objects of
    its batch, as many as ``INGEST_TOGETHER_MAX`` and ``INGEST_TOGETHER_MAX_BYTES`` allow; give up
    those past ``max_attempts``. Run in the hospital's context, in a transaction of its own that
    commits before any of them is processed, so a crash while processing still counts.

    ``attempts_before``: the object was queued again after that many attempts; if it has had more
    since (its own task tried it meanwhile), nothing is claimed."""
    own = (
        StagedObject.objects.select_for_update(skip_locked=True).filter(hospital=hospital, public_id=public_id).first()
    )
    claim = Claim()
    if own is None or own.is_final or (attempts_before is not None and own.attempts != attempts_before):
        return claim
    claimed = [own]
    budget = settings.INGEST_TOGETHER_MAX_BYTES - own.size
    if own.batch is not None and own.attempts == 0 and budget > 0 and settings.INGEST_TOGETHER_MAX > 1:
        others = (
            StagedObject.objects.select_for_update(skip_locked=True)
            .filter(hospital=hospital, batch=own.batch, status=StagedObject.Status.RECEIVED, attempts=0)
            .exclude(pk=own.pk)
            .order_by("pk")
            .only("pk", "public_id", "size", "attempts")[: settings.INGEST_TOGETHER_MAX - 1]
        )
        for other in others:
            if other.size > budget:
                break
            budget -= other.size
            claimed.append(other)
    StagedObject.objects.filter(pk__in=[staged.pk for staged in claimed]).update(
        attempts=F("attempts") + 1, updated_at=timezone.now()
    )
    for staged in claimed:
        if staged.attempts + 1 > max_attempts:
            staged.refresh_from_db()
            staged_object_give_up(staged=staged)
            claim.given_up.append(staged)
        else:
            claim.public_ids.append(staged.public_id)
            claim.attempts[staged.public_id] = staged.attempts + 1
    return claim


def staged_together_process(*, hospital: Hospital, public_ids: list[uuid.UUID]) -> Together:
    """Ingest the claimed objects still received (another task may have finished one meanwhile), in the
    hospital's context (the caller's transaction). Several: together, their rows written at the
    end; should that fail (a UID stored meanwhile, a conflict within the batch, an error of any one
    object), everything of that attempt is rolled back and they are ingested again one at a time,
    each in its own savepoint, where an error leaves only that object received."""
    # Waiting for a lock, not skipping it: the claim is this task's, and what holds one of its rows
    # for a moment is another task's claim scanning the batch (PostgreSQL can lock a row it then
    # does not return) or the object's own task taking it alone; skipped, the object could be left
    # received with no task to come for it.
    by_id = {
        staged.public_id: staged
        for staged in StagedObject.objects.select_for_update()
        .filter(hospital=hospital, public_id__in=public_ids)
        .order_by("pk")
    }
    staged = [by_id[public_id] for public_id in public_ids if public_id in by_id and not by_id[public_id].is_final]
    for one in staged:
        one.hospital = hospital  # not a query per object
    result = Together()
    if not staged:
        return result
    policy = validation_policy(hospital)
    if len(staged) > 1:
        writes = DeferredWrites()
        shared = IngestBatch(
            hospital=hospital, prefetch_series=True, writes=writes, defer_rows=True, defer_staged_rows=True
        )
        try:
            with transaction.atomic():
                outcomes = [staged_object_process(staged=one, policy=policy, batch=shared) for one in staged]
                writes.wait()  # every stored object durable before a row names it
                ingest_batch_flush(batch=shared)
            result.outcomes = outcomes
            return result
        except Exception as error:  # noqa: BLE001 - redone below, where each object's error is logged
            # RedoOneByOne, or anything else of the attempt as a whole (a failed fsync, a deadlock
            # over the counters): one at a time, an error is then only that object's.
            cause = error.__cause__ if isinstance(error, RedoOneByOne) else error
            logger.info("ingest: %d staged objects redone one at a time (%s)", len(staged), type(cause).__name__)
            ingest_batch_discard(batch=shared)
            for one in staged:
                one.refresh_from_db()  # the attempt changed them in memory
                one.hospital = hospital
    shared = IngestBatch(hospital=hospital)
    for one in staged:
        try:
            result.outcomes.append(staged_object_process(staged=one, policy=policy, batch=shared))
        except Exception as error:
            logger.exception("ingest: staged object %s could not be processed", one.public_id)
            result.failed.append((one.public_id, error))
    ingest_batch_flush(batch=shared)
    return result
