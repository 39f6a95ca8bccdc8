"""An ingest task takes the other received objects of its batch (a C-STORE association, an upload)
with its own and ingests them together (apps.imaging.together); what that claim may and may not take."""

import threading
import time
import uuid
from collections import Counter

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.imaging import together
from apps.imaging.ingest import GIVEN_UP_ERROR_CODE, staged_object_create
from apps.imaging.models import IngestConflict, Series, StagedObject, ValidationFinding
from apps.imaging.staging import staging_path
from apps.imaging.tasks import MAX_ATTEMPTS, RETRY_DELAY, ingest_staged_object
from apps.imaging.together import staged_claim, staged_together_process
from apps.tenants.context import hospital_context
from tests.imaging.dicom_factory import make_ct_series, make_ct_slice

INSTITUTION = {"InstitutionName": "FIRST PEOPLES HOSPITAL"}


@pytest.fixture
def hospital(world, local_storage, settings, tmp_path):
    settings.STAGING_DIR = tmp_path / "staging"
    return world.first.hospital


def stage(hospital, objects: list[bytes], batch: uuid.UUID | None) -> list[StagedObject]:
    with hospital_context(hospital):
        return [
            staged_object_create(hospital=hospital, source=StagedObject.Source.DIMSE, chunks=[data], batch=batch)
            for data in objects
        ]


def rows(staged: list[StagedObject]) -> list[StagedObject]:
    with hospital_context(staged[0].hospital):
        by_id = {row.public_id: row for row in StagedObject.objects.filter(public_id__in=[s.public_id for s in staged])}
    return [by_id[s.public_id] for s in staged]


def test_a_task_ingests_the_waiting_objects_of_its_batch_in_one_go(hospital):
    batch = uuid.uuid4()
    series = stage(hospital, make_ct_series(6, **INSTITUTION), batch)
    elsewhere = stage(hospital, make_ct_series(1, **INSTITUTION), uuid.uuid4())
    with CaptureQueriesContext(connection) as queries:
        assert ingest_staged_object(hospital.pk, str(series[0].public_id)) == StagedObject.Status.STORED
    after = rows(series)
    assert [row.status for row in after] == [StagedObject.Status.STORED] * 6
    assert [row.attempts for row in after] == [1] * 6
    # Another association's object is its own task's.
    assert [(row.status, row.attempts) for row in rows(elsewhere)] == [(StagedObject.Status.RECEIVED, 0)]
    # One UPDATE counts the attempts, one writes the final states: not one per object.
    updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('UPDATE "imaging_stagedobject"')]
    assert len(updates) == 2
    with hospital_context(hospital):
        assert Series.objects.get(pk=after[0].instance.series_id).number_of_instances == 6
    # The tasks queued for the others find them done, and count nothing.
    assert ingest_staged_object(hospital.pk, str(series[3].public_id)) == "busy-absent-or-done"
    assert rows(series)[3].attempts == 1


def test_a_claim_stops_at_its_count_and_its_bytes(hospital, settings):
    batch = uuid.uuid4()
    series = stage(hospital, make_ct_series(6, **INSTITUTION), batch)
    settings.INGEST_TOGETHER_MAX = 3
    with hospital_context(hospital):
        assert staged_claim(hospital=hospital, public_id=str(series[0].public_id), max_attempts=5).public_ids == [
            s.public_id for s in series[:3]
        ]
    settings.INGEST_TOGETHER_MAX = 25
    settings.INGEST_TOGETHER_MAX_BYTES = series[3].size * 2 + 1
    with hospital_context(hospital):
        claim = staged_claim(hospital=hospital, public_id=str(series[3].public_id), max_attempts=5)
    assert claim.public_ids == [series[3].public_id, series[4].public_id]


def test_an_object_tried_before_is_taken_alone_and_never_beside_another(hospital):
    """After a crash every object of the claim has one attempt counted: each is then taken alone,
    so an object that crashes its worker uses up its own attempts, not its neighbours'."""
    batch = uuid.uuid4()
    series = stage(hospital, make_ct_series(4, **INSTITUTION), batch)
    with hospital_context(hospital):
        StagedObject.objects.filter(public_id__in=[series[0].public_id, series[2].public_id]).update(attempts=1)
        assert staged_claim(hospital=hospital, public_id=str(series[0].public_id), max_attempts=5).public_ids == [
            series[0].public_id
        ]
        claim = staged_claim(hospital=hospital, public_id=str(series[1].public_id), max_attempts=5)
    assert claim.public_ids == [series[1].public_id, series[3].public_id]


def test_an_object_out_of_attempts_is_given_up_and_its_bytes_kept(hospital):
    batch = uuid.uuid4()
    series = stage(hospital, make_ct_series(2, **INSTITUTION), batch)
    with hospital_context(hospital):
        StagedObject.objects.filter(public_id=series[0].public_id).update(attempts=MAX_ATTEMPTS)
    assert ingest_staged_object(hospital.pk, str(series[0].public_id)) == StagedObject.Status.REJECTED
    first, second = rows(series)
    assert (first.status, first.error_code) == (StagedObject.Status.REJECTED, GIVEN_UP_ERROR_CODE)
    assert staging_path(first.public_id).exists()  # for staff
    # It was taken alone: its neighbour waits for its own task.
    assert (second.status, second.attempts) == (StagedObject.Status.RECEIVED, 0)


def test_the_same_uid_twice_in_one_batch_is_redone_one_at_a_time(hospital):
    """Rows written together cannot hold a conflict: the batch is rolled back and its objects
    ingested one by one, where the second copy of a UID becomes a conflict for staff."""
    batch = uuid.uuid4()
    uid = "1.2.826.0.1.3680043.8.498.424242"
    series = make_ct_series(2, **INSTITUTION)
    original = make_ct_slice(SOPInstanceUID=uid, InstanceNumber=7, **INSTITUTION)
    changed = make_ct_slice(SOPInstanceUID=uid, InstanceNumber=8, **INSTITUTION)
    staged = stage(hospital, [series[0], original, changed, series[1]], batch)
    assert ingest_staged_object(hospital.pk, str(staged[0].public_id)) == StagedObject.Status.STORED
    statuses = [row.status for row in rows(staged)]
    assert statuses == ["stored", "stored", "conflict", "stored"]
    with hospital_context(hospital):
        assert IngestConflict.objects.filter(staged__public_id=staged[2].public_id).count() == 1


def test_an_object_that_fails_does_not_hold_back_the_others_and_is_queued_again_alone(
    hospital, monkeypatch, django_capture_on_commit_callbacks
):
    batch = uuid.uuid4()
    staged = stage(hospital, make_ct_series(3, **INSTITUTION), batch)
    staging_path(staged[1].public_id).unlink()  # its bytes gone: every attempt raises
    queued = []
    monkeypatch.setattr(ingest_staged_object, "apply_async", lambda args, **kw: queued.append((args, kw)))
    # Called as a worker calls it (not eagerly).
    with django_capture_on_commit_callbacks(execute=True):
        assert ingest_staged_object(hospital.pk, str(staged[0].public_id)) == StagedObject.Status.STORED
    first, broken, third = rows(staged)
    assert (first.status, third.status) == (StagedObject.Status.STORED, StagedObject.Status.STORED)
    assert (broken.status, broken.attempts) == (StagedObject.Status.RECEIVED, 1)
    # Its own task may have come and gone while this one held it: queued again, alone, later.
    assert queued == [((hospital.pk, str(broken.public_id), 1), {"countdown": RETRY_DELAY})]
    # A task queued after one attempt leaves it alone once it has had another.
    with hospital_context(hospital):
        StagedObject.objects.filter(pk=broken.pk).update(attempts=2)
    assert ingest_staged_object(hospital.pk, str(broken.public_id), 1) == "busy-absent-or-done"
    assert rows(staged)[1].attempts == 2


def test_an_os_error_of_the_tasks_own_object_is_raised_for_celerys_retry(hospital):
    """As before objects were taken together: the task's autoretry_for=(OSError,) retries it with a
    growing delay (a disk or bucket briefly away), and the other objects are stored meanwhile."""
    staged = stage(hospital, make_ct_series(2, **INSTITUTION), uuid.uuid4())
    staging_path(staged[0].public_id).unlink()
    with pytest.raises(FileNotFoundError):
        ingest_staged_object(hospital.pk, str(staged[0].public_id))
    broken, other = rows(staged)
    assert (broken.status, broken.attempts) == (StagedObject.Status.RECEIVED, 1)
    assert other.status == StagedObject.Status.STORED  # taken with it


def test_a_crash_while_processing_leaves_every_claimed_object_received_with_its_attempt_counted(hospital, monkeypatch):
    staged = stage(hospital, make_ct_series(3, **INSTITUTION), uuid.uuid4())

    def crash(**kwargs):
        raise SystemExit("the worker dies")

    monkeypatch.setattr(together, "staged_object_process", crash)
    with pytest.raises(SystemExit):
        ingest_staged_object(hospital.pk, str(staged[0].public_id))
    assert [(row.status, row.attempts) for row in rows(staged)] == [(StagedObject.Status.RECEIVED, 1)] * 3


def test_objects_of_another_hospital_under_the_same_batch_id_are_not_claimed(hospital, world):
    batch = uuid.uuid4()
    ours = stage(hospital, make_ct_series(2, **INSTITUTION), batch)
    theirs = stage(world.second.hospital, make_ct_series(2, InstitutionName="SECOND PEOPLES HOSPITAL"), batch)
    assert ingest_staged_object(hospital.pk, str(ours[0].public_id)) == StagedObject.Status.STORED
    assert [row.status for row in rows(ours)] == [StagedObject.Status.STORED] * 2
    assert [(row.status, row.attempts) for row in rows(theirs)] == [(StagedObject.Status.RECEIVED, 0)] * 2


def test_findings_of_objects_ingested_together_are_recorded(hospital):
    """The institution name differs from the hospital's: a warning per object, written with the
    rows at the end."""
    staged = stage(hospital, make_ct_series(3, InstitutionName="SOME OTHER PLACE"), uuid.uuid4())
    assert ingest_staged_object(hospital.pk, str(staged[0].public_id)) == StagedObject.Status.STORED
    with hospital_context(hospital):
        codes = Counter(ValidationFinding.objects.filter(staged__in=rows(staged)).values_list("code", flat=True))
    assert codes["INSTITUTION_MISMATCH"] == 3


def test_an_os_error_of_an_object_queued_again_is_retried_without_its_stale_attempt_count(hospital, monkeypatch):
    """The attempt this task counted makes ``attempts_before`` stale: a retry with it would leave
    the object alone. Celery's retry gets the object's id alone."""
    [staged] = stage(hospital, make_ct_series(1, **INSTITUTION), uuid.uuid4())
    with hospital_context(hospital):
        StagedObject.objects.filter(pk=staged.pk).update(attempts=1)
    staging_path(staged.public_id).unlink()
    retries = []

    def retry(**kwargs):
        retries.append(kwargs)
        return RuntimeError("retry asked for")

    monkeypatch.setattr(ingest_staged_object, "retry", retry)
    with pytest.raises(RuntimeError, match="retry asked for"):
        ingest_staged_object(hospital.pk, str(staged.public_id), 1)
    assert retries[0]["args"] == (hospital.pk, str(staged.public_id))
    assert isinstance(retries[0]["exc"], FileNotFoundError)
    assert rows([staged])[0].attempts == 2


@pytest.mark.django_db(transaction=True)
def test_a_claimed_object_another_task_holds_for_a_moment_is_waited_for_not_skipped(hospital):
    """Another task's claim scanning the batch can lock a row it then does not take. Skipped, the
    object would be left received with its own task gone (it found the row locked, too)."""
    staged = stage(hospital, make_ct_series(3, **INSTITUTION), uuid.uuid4())
    with hospital_context(hospital):
        claim = staged_claim(hospital=hospital, public_id=str(staged[0].public_id), max_attempts=5)
    assert len(claim.public_ids) == 3
    locked = threading.Event()

    def hold() -> None:
        try:
            with hospital_context(hospital):
                list(StagedObject.objects.select_for_update().filter(pk=staged[1].pk))
                locked.set()
                time.sleep(0.5)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(10)
    with hospital_context(hospital):
        result = staged_together_process(hospital=hospital, public_ids=claim.public_ids)
    holder.join()
    assert result.failed == []
    assert [row.status for row in rows(staged)] == [StagedObject.Status.STORED] * 3
