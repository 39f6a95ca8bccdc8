"""manage.py archive_sweep: files no row needs are removed once past the grace period, nothing else.

The tests run inside a transaction whose on-commit callbacks never run, which is exactly the crash
the sweep repairs: a row made final and committed, its staged file never removed.
"""

import io
import os
import time
import uuid
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from pydicom.uid import generate_uid

from apps.audit.models import AuditEvent
from apps.audit.vocabulary import Action, Outcome
from apps.imaging.conflicts import ingest_conflict_replace
from apps.imaging.ingest import (
    ingest_conflict_keep_stored,
    staged_object_create,
    staged_object_give_up,
    staged_object_process,
)
from apps.imaging.keys import hospital_key
from apps.imaging.models import IngestConflict, Instance, ReplacedInstanceVersion, StagedObject
from apps.imaging.objectstore import object_put
from apps.imaging.staging import staging_path
from apps.imaging.sweep import archive_sweep
from apps.imaging.tasks import archive_sweep_daily
from apps.tenants.context import hospital_context, platform_scope
from config.celery import app as celery_app
from tests.imaging.dicom_factory import make_ct_slice

pytestmark = pytest.mark.django_db

PATIENT_NAME = "Qingli^Gudu"
PATIENT_ID = "P-SWEEP-0417"
DAY_AND_AN_HOUR = 25 * 3600


@pytest.fixture
def staging(settings, tmp_path) -> Path:
    settings.STAGING_DIR = tmp_path / "staging"
    settings.ARCHIVE_ORPHAN_GRACE_HOURS = 24
    return settings.STAGING_DIR


def _slice(**attributes) -> bytes:
    return make_ct_slice(PatientName=PATIENT_NAME, PatientID=PATIENT_ID, **attributes)


def _stage(hospital, blob: bytes) -> StagedObject:
    with hospital_context(hospital):
        return staged_object_create(hospital=hospital, source="upload", chunks=[blob])


def _process(staged: StagedObject) -> str:
    with hospital_context(staged.hospital):
        return staged_object_process(staged=staged).status


def _stored(hospital) -> StagedObject:
    staged = _stage(hospital, _slice())
    assert _process(staged) == StagedObject.Status.STORED
    return staged


def _conflict(hospital) -> StagedObject:
    """A stored instance and a received one with other bytes under its SOP Instance UID."""
    placement = {"SOPInstanceUID": generate_uid(), "StudyInstanceUID": generate_uid()}
    placement["SeriesInstanceUID"] = generate_uid()
    assert _process(_stage(hospital, _slice(**placement, StudyDescription="one"))) == StagedObject.Status.STORED
    staged = _stage(hospital, _slice(**placement, StudyDescription="two"))
    assert _process(staged) == StagedObject.Status.CONFLICT
    return staged


def _rolled_back_staging(hospital) -> Path:
    """A staged file whose row was rolled back with its request (a 5xx after staging)."""
    staged_id: list[uuid.UUID] = []
    with pytest.raises(RuntimeError), hospital_context(hospital):
        staged_id.append(staged_object_create(hospital=hospital, source="upload", chunks=[_slice()]).public_id)
        raise RuntimeError("the request failed after staging")
    with hospital_context(hospital):
        assert not StagedObject.objects.filter(public_id=staged_id[0]).exists()
    return staging_path(staged_id[0])


def _orphan_object(hospital, data: bytes = b"bytes whose row was never committed") -> str:
    """A stored object whose instance row never committed (a crash between the write and the commit)."""
    with hospital_context(hospital):
        key = hospital_key(hospital)
    return object_put(hospital_key=key, source=io.BytesIO(data), size=len(data), sop_instance_uid=generate_uid()).key


def _make_old(*paths: Path) -> None:
    past = time.time() - DAY_AND_AN_HOUR
    for path in paths:
        os.utime(path, (past, past))


def _age_every_file(*directories: Path) -> None:
    for directory in directories:
        _make_old(*(path for path in directory.rglob("*") if path.is_file()))


def _partial(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{uuid.uuid4().hex}.{uuid.uuid4().hex[:12]}.part"
    path.write_bytes(b"an interrupted write")
    return path


def _instance_keys(*hospitals) -> set[str]:
    keys: set[str] = set()
    for hospital in hospitals:
        with hospital_context(hospital):
            keys.update(Instance.objects.values_list("storage_key", flat=True))
            keys.update(ReplacedInstanceVersion.objects.values_list("storage_key", flat=True))
    return keys


def _sweep_events() -> list[AuditEvent]:
    with platform_scope("audit"):
        return list(AuditEvent.objects.filter(action=Action.ARCHIVE_SWEPT))


# --- Staging ----------------------------------------------------------------------------------------


def test_old_staged_files_no_row_needs_are_removed(world, staging, local_storage, monkeypatch):
    monkeypatch.setattr("apps.imaging.sweep._LOOKUP_BATCH", 2)  # lookups in several batches
    first, second = world.first.hospital, world.second.hospital
    rolled_back = _rolled_back_staging(first)
    stored = _stored(first)
    original = _stage(second, (blob := _slice()))
    duplicate = _stage(second, blob)
    assert _process(original) == StagedObject.Status.STORED
    assert _process(duplicate) == StagedObject.Status.DUPLICATE
    resolved = _conflict(first)
    with hospital_context(first):
        ingest_conflict_keep_stored(conflict=IngestConflict.objects.get(staged=resolved), actor=None)
    orphans = [rolled_back, staging_path(stored.public_id), staging_path(original.public_id)]
    orphans += [staging_path(duplicate.public_id), staging_path(resolved.public_id)]
    assert all(path.exists() for path in orphans)  # on-commit removal never ran
    _age_every_file(staging)

    result = archive_sweep()

    assert [path for path in orphans if path.exists()] == []
    assert [path for path in staging.rglob("*") if path.is_file()] == []  # the conflict's first object too
    assert result.staged_removed == len(orphans) + 1


def test_staged_files_kept_for_ingest_or_staff_stay(world, staging, local_storage):
    first, second = world.first.hospital, world.second.hospital
    received = _stage(second, _slice())  # waiting for ingest (or its retry)
    conflict = _conflict(first)  # unresolved: staff decide
    given_up = _stage(first, _slice())
    with hospital_context(first):
        staged_object_give_up(staged=given_up)  # rejected after repeated crashes, bytes kept for staff
    kept = [staging_path(staged.public_id) for staged in (received, conflict, given_up)]
    _age_every_file(staging)

    result = archive_sweep()

    assert [path for path in kept if not path.exists()] == []
    assert (result.staged_files, result.staged_removed) == (4, 1)  # the conflict's stored one goes


def test_young_orphaned_staged_files_are_kept(world, staging, local_storage):
    young = _rolled_back_staging(world.first.hospital)
    old = _rolled_back_staging(world.first.hospital)
    _make_old(old)

    result = archive_sweep()

    assert young.exists() and not old.exists()
    assert (result.staged_removed, result.staged_kept_young) == (1, 1)


def test_leftover_temporary_files_are_removed_once_old(world, staging, local_storage):
    storage_root = Path(local_storage.location)
    old = [_partial(staging / "ab"), _partial(storage_root / "objects" / "cd")]
    young = [_partial(staging / "ab"), _partial(storage_root / "objects" / "cd")]
    _make_old(*old)

    result = archive_sweep()

    assert [path.exists() for path in old] == [False, False]
    assert [path.exists() for path in young] == [True, True]
    assert (result.partial_removed, result.partial_kept_young) == (2, 2)


def test_files_the_sweep_does_not_recognise_are_left_alone(world, staging, local_storage):
    shard = staging / "ab"
    shard.mkdir(parents=True)
    strangers = [shard / "notes.txt", staging / "ab" / ("ab" + "0" * 29), staging / "README"]
    for path in strangers:
        path.write_bytes(b"not the archive's")
    local_storage.save("exports/report.pdf", io.BytesIO(b"not an object"))
    _age_every_file(staging, Path(local_storage.location))

    archive_sweep()

    assert all(path.exists() for path in strangers)
    assert local_storage.exists("exports/report.pdf")


# --- Stored objects ---------------------------------------------------------------------------------


def _objects_world(world) -> dict[str, list[str]]:
    """Stored instances of both hospitals, a replaced version kept by a conflict resolution, and
    two orphaned objects."""
    first, second = world.first.hospital, world.second.hospital
    _stored(first)
    _stored(second)
    conflict = _conflict(second)
    with hospital_context(second):
        ingest_conflict_replace(
            conflict=IngestConflict.objects.get(staged=conflict), actor=world.second["hospital_admin"]
        )
    kept = sorted(_instance_keys(first, second))
    assert len(kept) == 4  # two stored, the replaced instance's new and previous objects
    return {"kept": kept, "orphans": [_orphan_object(first), _orphan_object(second)]}


def test_old_orphaned_objects_are_removed_and_stored_ones_kept(world, staging, local_storage, monkeypatch):
    monkeypatch.setattr("apps.imaging.sweep._LOOKUP_BATCH", 4)  # lookups in several batches
    objects = _objects_world(world)
    _age_every_file(Path(local_storage.location))

    result = archive_sweep()

    assert [key for key in objects["orphans"] if local_storage.exists(key)] == []
    assert [key for key in objects["kept"] if not local_storage.exists(key)] == []
    assert (result.objects, result.objects_removed, result.objects_kept_young) == (6, 2, 0)


def test_young_orphaned_objects_are_kept(world, staging, local_storage):
    young = _orphan_object(world.first.hospital)

    result = archive_sweep()

    assert local_storage.exists(young)
    assert (result.objects_removed, result.objects_kept_young) == (0, 1)


def test_orphaned_objects_are_removed_from_s3_and_stored_ones_kept(world, staging, s3_storage, settings):
    objects = _objects_world(world)
    # Objects on S3 cannot be made older; with no grace period every orphan is old enough.
    settings.ARCHIVE_ORPHAN_GRACE_HOURS = 0
    time.sleep(0.01)

    result = archive_sweep()

    assert [key for key in objects["orphans"] if s3_storage.exists(key)] == []
    assert [key for key in objects["kept"] if not s3_storage.exists(key)] == []
    assert result.objects_removed >= 2  # the bucket is the session's: other tests leave objects in it
    for key in objects["kept"]:
        s3_storage.delete(key)  # the bucket is shared by the session


def test_young_orphaned_objects_are_kept_on_s3(world, staging, s3_storage):
    young = _orphan_object(world.first.hospital)

    result = archive_sweep()

    assert s3_storage.exists(young)
    assert result.objects_kept_young >= 1 and result.objects_removed == 0
    s3_storage.delete(young)


# --- Dry run, the command, the audit trail and the cap -------------------------------------------------


def test_dry_run_removes_nothing_and_records_nothing(world, staging, local_storage):
    staged = _rolled_back_staging(world.first.hospital)
    orphan = _orphan_object(world.first.hospital)
    partial = _partial(staging / "ab")
    _age_every_file(staging, Path(local_storage.location))
    output = io.StringIO()

    call_command("archive_sweep", "--dry-run", stdout=output)

    assert staged.exists() and local_storage.exists(orphan) and partial.exists()
    assert "would remove 1 orphans" in output.getvalue()
    assert _sweep_events() == []


def test_the_command_prints_counts_and_no_names(world, staging, local_storage):
    staged = _rolled_back_staging(world.first.hospital)
    orphan = _orphan_object(world.first.hospital)
    _stored(world.first.hospital)
    _age_every_file(staging, Path(local_storage.location))
    output = io.StringIO()

    call_command("archive_sweep", stdout=output)

    text = output.getvalue()
    assert "staging: 2 files, removed 2 orphans" in text  # the rolled back one and the stored one
    assert "objects: 2 objects, removed 1 orphans" in text
    for name in (staged.name, orphan, PATIENT_NAME, PATIENT_ID, "Qingli"):
        assert name not in text


def test_a_sweep_is_audited_once_with_counts(world, staging, local_storage):
    _rolled_back_staging(world.first.hospital)
    _orphan_object(world.second.hospital)
    _age_every_file(staging, Path(local_storage.location))

    archive_sweep()

    [event] = _sweep_events()
    assert event.hospital_id is None and event.outcome == Outcome.SUCCESS
    assert (event.event_id, event.action_code) == ("110103", "D")
    assert (event.details["staged_removed"], event.details["objects_removed"]) == (1, 1)


def test_more_orphans_than_the_cap_removes_none(world, staging, local_storage, settings):
    settings.ARCHIVE_SWEEP_MAX_REMOVALS = 1
    staged = _rolled_back_staging(world.first.hospital)
    orphan = _orphan_object(world.first.hospital)
    _age_every_file(staging, Path(local_storage.location))

    with pytest.raises(CommandError, match="nothing was removed"):
        call_command("archive_sweep", stdout=io.StringIO())

    assert staged.exists() and local_storage.exists(orphan)
    [event] = _sweep_events()
    assert event.outcome == Outcome.SERIOUS_FAILURE


def test_the_daily_task_sweeps(world, staging, local_storage):
    staged = _rolled_back_staging(world.first.hospital)
    _make_old(staged)

    assert archive_sweep_daily.delay().get()["staged_removed"] == 1
    assert not staged.exists()


def test_beat_runs_the_sweep_and_the_fixity_check_daily(settings):
    for name in ("archive-sweep", "archive-verify-rolling"):
        entry = settings.CELERY_BEAT_SCHEDULE[name]
        assert entry["schedule"] == 24 * 3600
        assert entry["task"] in celery_app.tasks


def test_a_sweep_that_fails_partway_is_audited_with_how_far_it_got(world, staging, local_storage, monkeypatch):
    """The storage refuses to delete the second orphan (a fault outside our code, simulated): the
    first is gone, the failure is recorded with the counts, and the command says to run again."""
    _rolled_back_staging(world.first.hospital)
    orphans = [_orphan_object(world.second.hospital), _orphan_object(world.second.hospital, b"another")]
    _age_every_file(staging, Path(local_storage.location))
    deleted: list[str] = []
    real_delete = local_storage.delete

    def refusing_second(name):
        if len(deleted) == 1:
            raise PermissionError(13, "Permission denied")
        deleted.append(name)
        real_delete(name)

    monkeypatch.setattr(local_storage, "delete", refusing_second)
    out = io.StringIO()
    with pytest.raises(CommandError, match="stopped after 2 removals"):
        call_command("archive_sweep", stdout=out)
    assert "objects: " in out.getvalue()
    assert sum(local_storage.exists(key) for key in orphans) == 1
    [event] = _sweep_events()
    assert event.outcome == Outcome.MAJOR_FAILURE
    assert (event.details["removed"], event.details["objects_removed"]) == (2, 2)
    assert event.details["error"] == "PermissionError"

    monkeypatch.undo()
    archive_sweep()
    assert not any(local_storage.exists(key) for key in orphans)
