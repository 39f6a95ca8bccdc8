"""Celery tasks of the archive: thin wrappers that load by id and call one service."""

import uuid
from datetime import timedelta
from functools import partial

from celery import Task, shared_task
from django.db import transaction
from django.utils import timezone

from apps.audit.vocabulary import EntryPoint
from apps.imaging.fixity import VerifyScope, hospital_archive_verify, rolling_slice
from apps.imaging.manifest import quiet_manifests, study_completeness_check
from apps.imaging.models import StagedObject
from apps.imaging.series_review import batch_series_review_stored
from apps.imaging.sweep import archive_sweep
from apps.imaging.together import staged_claim, staged_together_process
from apps.tenants.context import hospital_context
from apps.tenants.models import Hospital

STALE_AFTER = timedelta(minutes=10)
MAX_ATTEMPTS = 5
# Seconds before another object of a claim whose ingest raised is tried again, alone.
RETRY_DELAY = 10
# A batch's series review waits for its objects: every REVIEW_DELAY seconds, up to REVIEW_TRIES times.
REVIEW_DELAY = 15
REVIEW_TRIES = 40


@shared_task(bind=True, acks_late=True, autoretry_for=(OSError,), retry_backoff=True, max_retries=MAX_ATTEMPTS)
def ingest_staged_object(
    task: Task, hospital_id: int, staged_public_id: str, attempts_before: int | None = None
) -> str:
    """Ingest one staged object, with others of its batch waiting beside it (apps.imaging.together).
    Safe to run twice: a finished object is left as it is. ``attempts_before``: queued again after
    that many attempts; if another task has tried the object since, this one leaves it alone.

    An error of the object's own: an OSError is retried by Celery with a growing delay, anything
    else is left ``received`` for ``ingest_retry_stale``, as one object of a task alone always was.
    Another object of the claim that fails is queued again, alone, after RETRY_DELAY seconds (its
    own task may have come and gone while this one held it)."""
    hospital = Hospital.objects.get(pk=hospital_id)
    # Count the attempts in their own transaction, so a crash while processing still counts.
    with hospital_context(hospital):
        claim = staged_claim(
            hospital=hospital, public_id=staged_public_id, max_attempts=MAX_ATTEMPTS, attempts_before=attempts_before
        )
    if not claim.public_ids:
        return claim.given_up[0].status if claim.given_up else "busy-absent-or-done"
    with hospital_context(hospital):
        result = staged_together_process(hospital=hospital, public_ids=claim.public_ids)
    own_error: Exception | None = None
    for public_id, error in result.failed:
        if str(public_id) == staged_public_id:
            own_error = error
        elif not task.request.is_eager:
            again = (hospital_id, str(public_id), claim.attempts[public_id])
            transaction.on_commit(partial(ingest_staged_object.apply_async, again, countdown=RETRY_DELAY), robust=True)
    if isinstance(own_error, OSError):
        # Celery's retry, with a growing delay as autoretry_for gives; without attempts_before,
        # which the attempt just counted has made stale.
        raise task.retry(
            exc=own_error, args=(hospital_id, staged_public_id), countdown=min(600, 2**task.request.retries)
        )
    own = next((o.status for o in result.outcomes if str(o.staged.public_id) == staged_public_id), None)
    return own or ("failed" if own_error else "busy-absent-or-done")


@shared_task
def ingest_retry_stale() -> int:
    """Re-queue objects left ``received`` by a crash; run periodically (celery beat)."""
    queued = 0
    cutoff = timezone.now() - STALE_AFTER
    for hospital in Hospital.objects.all():
        with hospital_context(hospital):
            stale = StagedObject.objects.filter(
                hospital=hospital, status=StagedObject.Status.RECEIVED, updated_at__lt=cutoff,
                attempts__lte=MAX_ATTEMPTS,
            ).values_list("public_id", flat=True)  # fmt: skip
            for public_id in stale:
                transaction.on_commit(partial(ingest_staged_object.delay, hospital.pk, str(public_id)))
                queued += 1
    return queued


@shared_task
def study_completeness_sweep() -> int:
    """Record STUDY_INCOMPLETE for studies still short of their manifest once arrivals are quiet;
    run periodically (celery beat). Returns the number of findings recorded."""
    recorded = 0
    for hospital in Hospital.objects.all():
        with hospital_context(hospital):
            for manifest in quiet_manifests(hospital=hospital):
                recorded += len(study_completeness_check(hospital=hospital, manifest=manifest))
    return recorded


@shared_task(acks_late=True)
def series_review_batch(hospital_id: int, batch: str, tries: int = 0) -> int | None:
    """Series-level checks of an upload or a C-STORE association once all its objects are
    ingested; asks again later while some are still waiting."""
    hospital = Hospital.objects.get(pk=hospital_id)
    with hospital_context(hospital):
        recorded = batch_series_review_stored(hospital=hospital, batch=uuid.UUID(batch))
    if recorded is None and tries < REVIEW_TRIES:
        series_review_batch.apply_async((hospital_id, batch, tries + 1), countdown=REVIEW_DELAY)
    return recorded


def series_review_queue(*, hospital: Hospital, batch: uuid.UUID) -> None:
    """Queue the series review of ``batch`` after the current transaction commits (after the
    ingest tasks of its objects, which are queued first)."""
    transaction.on_commit(partial(series_review_batch.delay, hospital.pk, str(batch)), robust=True)


@shared_task
def archive_sweep_daily() -> dict[str, int | bool]:
    """Remove orphaned staged files and stored objects past the grace period (celery beat, daily).
    A refused sweep (too many orphans) raises, so the failure shows in the worker's log."""
    return archive_sweep(entry_point=EntryPoint.TASK).counts()


@shared_task
def archive_verify_rolling() -> dict[str, int]:
    """Check today's slice of every hospital's stored objects (celery beat, daily): over
    ARCHIVE_VERIFY_CYCLE_DAYS days every object is read back once. Returns failures per hospital."""
    scope = VerifyScope(slice_of=rolling_slice())
    failures = {}
    for hospital in Hospital.objects.order_by("code"):
        result = hospital_archive_verify(hospital=hospital, scope=scope, entry_point=EntryPoint.TASK)
        failures[hospital.code] = len(result.failed)
    return failures
