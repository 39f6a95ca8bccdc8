"""STOW-RS ingests a request's instances as a batch: shared lookups, counters written once, and
still every guarantee of the one-object pipeline."""

import hashlib
import io
import os
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from pydicom import dcmread
from pydicom.uid import generate_uid

from apps.imaging import ingest, staging
from apps.imaging.indexing import IngestBatch, ingest_batch_flush, validation_policy
from apps.imaging.ingest import received_object_ingest, staged_object_create, staged_object_process
from apps.imaging.models import IngestConflict, Instance, Patient, Series, StagedObject, Study
from apps.tenants.context import hospital_context
from tests.dicomweb.helpers import stow, token_for
from tests.imaging.dicom_factory import make_ct_series, make_ct_slice, make_mr_slice

pytestmark = pytest.mark.django_db


@pytest.fixture
def first(world, local_storage):
    return world.first.hospital, token_for(world.first.hospital)


def test_counters_of_a_multi_series_request_are_exact(client, first):
    hospital, token = first
    ct = make_ct_series(5, PatientID="BATCH01")
    study_uid = dcmread(io.BytesIO(ct[0])).StudyInstanceUID
    mr_series = generate_uid()
    mr = [
        make_mr_slice(StudyInstanceUID=study_uid, SeriesInstanceUID=mr_series, InstanceNumber=n, PatientID="BATCH01")
        for n in (1, 2)
    ]
    assert stow(client, "first", token, ct[:3] + mr[:1]).status_code == 200
    # A second request: two more CT slices, one more MR, and a repeat (a duplicate adds nothing).
    assert stow(client, "first", token, ct[3:] + mr[1:] + ct[:1]).status_code == 200
    with hospital_context(hospital):
        study = Study.objects.get(study_instance_uid=study_uid)
        assert (study.number_of_instances, study.number_of_series, study.modalities) == (7, 2, "CT\\MR")
        counts = dict(Series.objects.filter(study=study).values_list("modality", "number_of_instances"))
        assert counts == {"CT": 5, "MR": 2}
        assert Instance.objects.filter(series__study=study).count() == 7
        assert Patient.objects.count() == 1


def test_the_digest_is_taken_while_staging(client, first):
    hospital, token = first
    blob = make_ct_slice(PatientID="BATCH02")
    assert stow(client, "first", token, [blob]).status_code == 200
    with hospital_context(hospital):
        staged = StagedObject.objects.get()
        assert staged.sha256 == hashlib.sha256(blob).hexdigest() == staged.instance.sha256


def test_a_refused_part_leaves_no_patient_or_study_behind(client, first):
    hospital, token = first
    good = make_ct_slice(PatientID="BATCH03")
    # Same study, another patient: refused before anything of it is written.
    study_uid = dcmread(io.BytesIO(good)).StudyInstanceUID
    intruder = make_ct_slice(PatientID="BATCH04", PatientName="Other^Person", StudyInstanceUID=study_uid)
    response = stow(client, "first", token, [good, intruder])
    assert response.status_code == 202
    with hospital_context(hospital):
        assert Patient.objects.count() == 1
        assert Study.objects.get().number_of_instances == 1
        assert StagedObject.objects.filter(error_code="STUDY_MULTIPLE_PATIENTS").count() == 1


def test_a_series_costs_a_bounded_number_of_statements_per_slice(client, first):
    """The lookups of patient, study and series are made once per request, not per slice."""
    _hospital, token = first
    series = make_ct_series(25, PatientID="BATCH05")
    with CaptureQueriesContext(connection) as five:
        assert stow(client, "first", token, series[:5]).status_code == 200
    with CaptureQueriesContext(connection) as twenty:
        assert stow(client, "first", token, series[5:]).status_code == 200
    per_slice = (len(twenty.captured_queries) - len(five.captured_queries)) / 15
    # None per slice: the instance and staged rows are inserted together, in their final state, with
    # no savepoint per slice; the stored instances are read once per series, not per slice.
    assert per_slice <= 0.5, per_slice
    staged_inserts = [
        q["sql"] for q in twenty.captured_queries if q["sql"].startswith('INSERT INTO "imaging_stagedobject"')
    ]
    assert len(staged_inserts) == 1, staged_inserts
    instance_inserts = [
        q["sql"] for q in twenty.captured_queries if q["sql"].startswith('INSERT INTO "imaging_instance"')
    ]
    assert len(instance_inserts) == 1, instance_inserts
    instance_reads = [q["sql"] for q in twenty.captured_queries if q["sql"].startswith('SELECT "imaging_instance"')]
    assert len(instance_reads) == 1, instance_reads


def test_a_task_ingesting_one_object_looks_its_uid_up_directly(first):
    """Uploads and the gateway ingest one object per task: reading the whole series for each
    object would read a 3,000-slice series 3,000 times."""
    hospital, _token = first
    series = make_ct_series(4, PatientID="BATCH11")
    with hospital_context(hospital):
        for blob in series[:3]:
            staged = staged_object_create(hospital=hospital, source="upload", chunks=[blob])
            assert staged_object_process(staged=staged).status == "stored"
        staged = staged_object_create(hospital=hospital, source="upload", chunks=[series[3]])
        with CaptureQueriesContext(connection) as queries:
            assert staged_object_process(staged=staged).status == "stored"
    instance_reads = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('SELECT "imaging_instance"')]
    assert len(instance_reads) == 1 and '"sop_instance_uid" =' in instance_reads[0], instance_reads
    assert '"series_id" =' not in instance_reads[0]


def _staging_files(settings) -> list[str]:
    return [name for _root, _dirs, names in os.walk(settings.STAGING_DIR) for name in names]


def test_an_object_stored_from_memory_leaves_no_staged_file(client, first, settings):
    hospital, token = first
    settings.STAGING_DIR = settings.VAR_DIR / f"staging-{uuid.uuid4().hex}"
    blobs = make_ct_series(3, PatientID="BATCH06")
    assert stow(client, "first", token, blobs).status_code == 200
    assert _staging_files(settings) == []
    with hospital_context(hospital):
        assert list(StagedObject.objects.values_list("status", flat=True)) == ["stored"] * 3


def test_large_objects_still_stream_through_staging(client, first, settings, monkeypatch):
    hospital, token = first
    settings.STOW_IN_MEMORY_MAX_SIZE = 100  # every object is "large"
    blob = make_ct_slice(PatientID="BATCH07")
    staged_writes: list[int] = []
    staging_write = staging.staging_write

    def recording_staging_write(public_id, chunks, **kwargs):
        result = staging_write(public_id, chunks, **kwargs)
        staged_writes.append(result[0])
        return result

    monkeypatch.setattr(ingest, "staging_write", recording_staging_write)
    assert stow(client, "first", token, [blob]).status_code == 200
    assert staged_writes == [len(blob)]
    with hospital_context(hospital):
        staged = StagedObject.objects.get()
        assert staged.status == "stored"
        assert staged.sha256 == hashlib.sha256(blob).hexdigest() == staged.instance.sha256


def test_a_failure_while_storing_keeps_the_object_staged_for_the_retry(client, first, settings, monkeypatch):
    """The disk refuses the stored object (a fault outside our code, simulated): the client hears
    0x0110, and the bytes wait, staged and encrypted, for the retry sweeper, which stores them."""
    hospital, token = first
    settings.STAGING_DIR = settings.VAR_DIR / f"staging-{uuid.uuid4().hex}"
    blob = make_ct_slice(PatientID="BATCH08")

    def disk_full(**_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ingest, "object_put", disk_full)
    response = stow(client, "first", token, [blob])
    assert response.status_code == 409
    assert response.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0x0110]
    assert len(_staging_files(settings)) == 1
    assert blob not in b"".join(
        open(os.path.join(root, name), "rb").read()  # noqa: SIM115
        for root, _dirs, names in os.walk(settings.STAGING_DIR)
        for name in names
    )
    with hospital_context(hospital):
        staged = StagedObject.objects.get()
        assert (staged.status, staged.sha256) == ("received", hashlib.sha256(blob).hexdigest())
        assert Instance.objects.count() == 0
    monkeypatch.undo()
    with hospital_context(hospital):
        assert staged_object_process(staged=staged).status == "stored"
        assert Instance.objects.get().sha256 == hashlib.sha256(blob).hexdigest()


def test_a_known_uid_in_another_series_is_found_on_the_retry(client, first, local_storage):
    """The stored instances are read per series; a SOP Instance UID stored in another series is
    caught by the unique constraint, and the retry finds it: a conflict, no second copy stored."""
    hospital, token = first
    uid = generate_uid()
    assert stow(client, "first", token, [make_ct_slice(SOPInstanceUID=uid, PatientID="BATCH09")]).status_code == 200
    other_series = make_ct_slice(SOPInstanceUID=uid, PatientID="BATCH09", SeriesDescription="other")
    response = stow(client, "first", token, [other_series])
    assert response.status_code == 409
    assert response.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0x0111]
    with hospital_context(hospital):
        assert Instance.objects.count() == 1
        assert Series.objects.count() == 1
        # The rolled-back first attempt left no row: one staged object per request.
        assert sorted(StagedObject.objects.values_list("status", flat=True)) == ["conflict", "stored"]
        stored_keys = set(Instance.objects.values_list("storage_key", flat=True))
    files = {
        os.path.relpath(os.path.join(root, name), local_storage.location)
        for root, _dirs, names in os.walk(local_storage.location)
        for name in names
    }
    assert files == stored_keys


def test_a_repeat_within_one_request_is_a_duplicate(client, first):
    hospital, token = first
    blob = make_ct_slice(PatientID="BATCH10")
    response = stow(client, "first", token, [blob, blob])
    assert response.status_code == 200
    with hospital_context(hospital):
        assert sorted(StagedObject.objects.values_list("status", flat=True)) == ["duplicate", "stored"]
        assert Instance.objects.count() == 1


def test_a_uid_stored_for_another_patient_is_a_conflict_not_a_misplacement(client, first):
    """Different bytes under a stored SOP Instance UID, naming another patient in the same study:
    kept as a conflict for staff (0x0111), not refused as a second patient and thrown away."""
    hospital, token = first
    uid = generate_uid()
    original = make_ct_slice(SOPInstanceUID=uid, PatientID="BATCH12")
    study_uid = dcmread(io.BytesIO(original)).StudyInstanceUID
    assert stow(client, "first", token, [original]).status_code == 200
    resent = make_ct_slice(
        SOPInstanceUID=uid, StudyInstanceUID=study_uid, PatientID="BATCH13", PatientName="Other^Person"
    )
    response = stow(client, "first", token, [resent])
    assert response.status_code == 409
    assert response.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0x0111]
    with hospital_context(hospital):
        assert StagedObject.objects.filter(status="conflict", error_code="SOP_INSTANCE_CONFLICT").count() == 1
        assert IngestConflict.objects.count() == 1


def test_the_parsed_header_of_an_object_from_memory_is_not_kept(first):
    """The outcome outlives the object's processing (until the response): it must not hold the
    object's bytes through the parsed header's source, or a request's parts pile up in memory."""
    hospital, _token = first
    blob = make_ct_slice(PatientID="BATCH14")
    with hospital_context(hospital):
        batch = IngestBatch(hospital=hospital, prefetch_series=True)
        outcome = received_object_ingest(
            hospital=hospital, source="stow", data=blob, batch_id=uuid.uuid4(), batch=batch,
            policy=validation_policy(hospital),
        )  # fmt: skip
        ingest_batch_flush(batch=batch)
    assert outcome.status == "stored"
    assert outcome.parsed is not None and outcome.parsed.sop_instance_uid
    assert len(outcome.parsed.dataset) == 0
    assert getattr(outcome.parsed.dataset, "buffer", None) is None


def test_a_retry_does_not_switch_the_series_lists_off_for_the_rest_of_the_request(client, first):
    _hospital, token = first
    uid = generate_uid()
    assert stow(client, "first", token, [make_ct_slice(SOPInstanceUID=uid, PatientID="BATCH15")]).status_code == 200
    # First a UID known in another series (found on the retry), then a new series of three.
    elsewhere = make_ct_slice(SOPInstanceUID=uid, PatientID="BATCH15", SeriesDescription="other")
    with CaptureQueriesContext(connection) as queries:
        stow(client, "first", token, [elsewhere, *make_ct_series(3, PatientID="BATCH16")])
    by_uid = [
        q["sql"] for q in queries.captured_queries
        if q["sql"].startswith('SELECT "imaging_instance"') and '"sop_instance_uid" =' in q["sql"]
    ]  # fmt: skip
    assert len(by_uid) == 1, by_uid  # the retry's own lookup only


def _object_files(storage) -> set[str]:
    return {
        os.path.relpath(os.path.join(root, name), storage.location)
        for root, _dirs, names in os.walk(storage.location)
        for name in names
    }


def test_a_request_whose_rows_cannot_go_in_together_is_redone_one_by_one(client, first, local_storage):
    """Several objects: their instance rows go in together at the end. One UID is stored already
    in another series, so that insert fails; the request is rolled back and redone one object at a
    time: the taken UID is a conflict kept for staff, the rest stored, and nothing of the first
    attempt is left, on the disk or in the counters."""
    hospital, token = first
    uid = generate_uid()
    assert stow(client, "first", token, [make_ct_slice(SOPInstanceUID=uid, PatientID="BATCH17")]).status_code == 200
    taken = make_ct_slice(SOPInstanceUID=uid, PatientID="BATCH17", SeriesDescription="other")
    series = make_ct_series(3, PatientID="BATCH17")
    response = stow(client, "first", token, [*series[:2], taken, series[2]])
    assert response.status_code == 202
    assert len(response.json()["00081199"]["Value"]) == 3
    assert [item["00081197"]["Value"] for item in response.json()["00081198"]["Value"]] == [[0x0111]]
    with hospital_context(hospital):
        assert Instance.objects.count() == 4
        new_series = Series.objects.get(series_instance_uid=dcmread(io.BytesIO(series[0])).SeriesInstanceUID)
        assert new_series.number_of_instances == 3
        assert new_series.study.number_of_instances == 3
        assert sorted(StagedObject.objects.values_list("status", flat=True)) == ["conflict"] + ["stored"] * 4
        assert IngestConflict.objects.get().existing.sop_instance_uid == uid
        stored_keys = set(Instance.objects.values_list("storage_key", flat=True))
    assert _object_files(local_storage) == stored_keys


def test_one_uid_twice_in_a_request_with_different_bytes_is_a_conflict_with_the_first(client, first, local_storage):
    hospital, token = first
    uid = generate_uid()
    original = make_ct_slice(SOPInstanceUID=uid, PatientID="BATCH18")
    study_uid = dcmread(io.BytesIO(original)).StudyInstanceUID
    changed = make_ct_slice(SOPInstanceUID=uid, StudyInstanceUID=study_uid, PatientID="BATCH18", ImageComments="x")
    response = stow(client, "first", token, [original, changed])
    assert response.status_code == 202
    assert [item["00081197"]["Value"] for item in response.json()["00081198"]["Value"]] == [[0x0111]]
    with hospital_context(hospital):
        instance = Instance.objects.get()
        assert instance.sha256 == hashlib.sha256(original).hexdigest()
        conflict = IngestConflict.objects.get()
        assert conflict.existing == instance
        assert conflict.received_sha256 == hashlib.sha256(changed).hexdigest()
        assert _object_files(local_storage) == {instance.storage_key}


def test_a_redone_request_leaves_only_the_staged_files_its_rows_name(client, first, settings):
    """A conflict found in the first, rolled-back attempt was staged on the way; the redo stages it
    again under the row it keeps. Only the files that rows name are left."""
    hospital, token = first
    settings.STAGING_DIR = settings.VAR_DIR / f"staging-{uuid.uuid4().hex}"
    a, b = make_ct_slice(PatientID="BATCH19"), make_ct_slice(PatientID="BATCH19")
    study_uid = dcmread(io.BytesIO(a)).StudyInstanceUID
    assert stow(client, "first", token, [a]).status_code == 200
    assert stow(client, "first", token, [b]).status_code == 200
    first_a = dcmread(io.BytesIO(a))
    a_changed = make_ct_slice(
        SOPInstanceUID=first_a.SOPInstanceUID, SeriesInstanceUID=first_a.SeriesInstanceUID,
        StudyInstanceUID=study_uid, PatientID="BATCH19", ImageComments="changed",
    )  # fmt: skip
    b_elsewhere = make_ct_slice(SOPInstanceUID=dcmread(io.BytesIO(b)).SOPInstanceUID, PatientID="BATCH19")
    response = stow(client, "first", token, [a_changed, b_elsewhere])
    assert response.status_code == 409
    with hospital_context(hospital):
        conflicts = set(StagedObject.objects.filter(status="conflict").values_list("public_id", flat=True))
    assert len(conflicts) == 2
    assert {uuid.UUID(name) for name in _staging_files(settings)} == conflicts


def test_a_redone_request_of_large_and_small_parts_leaves_no_object_behind(client, first, local_storage, settings):
    """A large part (through staging, its row inserted as it goes) and a small one whose UID is
    stored in another series: the first attempt is rolled back and redone, and the large part's
    object of that attempt goes with it."""
    hospital, token = first
    uid = generate_uid()
    assert stow(client, "first", token, [make_ct_slice(SOPInstanceUID=uid, PatientID="BATCH20")]).status_code == 200
    large = make_ct_slice(PatientID="BATCH20", Rows=128, Columns=128)
    small = make_ct_slice(SOPInstanceUID=uid, PatientID="BATCH20", SeriesDescription="other")
    settings.STOW_IN_MEMORY_MAX_SIZE = (len(large) + len(small)) // 2
    assert len(small) < settings.STOW_IN_MEMORY_MAX_SIZE < len(large)
    response = stow(client, "first", token, [large, small])
    assert response.status_code == 202
    with hospital_context(hospital):
        assert Instance.objects.count() == 2
        assert _object_files(local_storage) == set(Instance.objects.values_list("storage_key", flat=True))
