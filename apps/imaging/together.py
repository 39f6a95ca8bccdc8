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
from apps.imaging.ingest import staged_object_give_up, staged_object_process
from apps.imaging.models import StagedObject
from apps.imaging.objectstore import object_delete
from apps.tenants.models import Hospital

logger = logging.getLogger(__name__)


@dataclass
class Claim:
    """The objects a task ingests (its own first), and those it gave up after too many attempts."""

    public_ids: list[uuid.UUID] = field(default_factory=list)
    given_up: list[StagedObject] = field(default_factory=list)


@dataclass
class Together:
    outcomes: list[IngestOutcome] = field(default_factory=list)
    # Objects whose ingest raised: left received, to be queued again by the caller.
    failed: list[uuid.UUID] = field(default_factory=list)


def staged_claim(*, hospital: Hospital, public_id: str, max_attempts: int) -> Claim:
    """Count an attempt on the object and, if it was never attempted, on other received objects of
    its batch, as many as ``INGEST_TOGETHER_MAX`` and ``INGEST_TOGETHER_MAX_BYTES`` allow; give up
    those past ``max_attempts``. Run in the hospital's context, in a transaction of its own that
    commits before any of them is processed, so a crash while processing still counts."""
    own = StagedObject.objects.select_for_update(skip_locked=True).filter(public_id=public_id).first()
    claim = Claim()
    if own is None or own.is_final:
        return claim
    claimed = [own]
    budget = settings.INGEST_TOGETHER_MAX_BYTES - own.size
    if own.batch is not None and own.attempts == 0 and budget > 0:
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
    return claim


def staged_together_process(*, hospital: Hospital, public_ids: list[uuid.UUID]) -> Together:
    """Ingest the claimed objects still received and not taken by another task meanwhile, in the
    hospital's context (the caller's transaction). Several: together, their rows written at the
    end; should that fail (a UID stored meanwhile, a conflict within the batch, an error of any one
    object), everything of that attempt is rolled back and they are ingested again one at a time,
    each in its own savepoint, where an error leaves only that object received."""
    by_id = {
        staged.public_id: staged
        for staged in StagedObject.objects.select_for_update(skip_locked=True).filter(
            hospital=hospital, public_id__in=public_ids
        )
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
                try:
                    writes.wait()  # every stored object durable before a row names it
                except OSError as error:
                    raise RedoOneByOne from error
                ingest_batch_flush(batch=shared)
            result.outcomes = outcomes
            return result
        except RedoOneByOne as redo:
            cause = type(redo.__cause__).__name__
            logger.info("ingest: %d staged objects redone one at a time (%s)", len(staged), cause)
            writes.discard()
            for instance in shared.pending_instances:
                object_delete(instance.storage_key)
            for one in staged:
                one.refresh_from_db()  # the attempt changed them in memory
    shared = IngestBatch(hospital=hospital)
    for one in staged:
        try:
            result.outcomes.append(staged_object_process(staged=one, policy=policy, batch=shared))
        except Exception:
            logger.exception("ingest: staged object %s could not be processed", one.public_id)
            result.failed.append(one.public_id)
    ingest_batch_flush(batch=shared)
    return result
