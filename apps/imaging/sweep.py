"""The orphan sweep: files the archive wrote that no database row needs any more.

Three kinds are left behind by failures, never by normal operation:

- staged files (``STAGING_DIR/<2 hex>/<32 hex>``, named by a ``StagedObject``'s public id) whose
  row was rolled back (a request that failed after staging) or whose row is final (stored,
  duplicate, rejected, or a conflict staff have resolved) while a crash came between the commit and
  the removal after it. Files of rows still ``received`` (waiting for ingest or its retry), of
  unresolved conflicts (kept for staff to decide) and of objects rejected after repeated crashes
  (kept for staff) are never touched;
- stored objects (``objects/<2 hex>/<32 hex>`` in the default storage) that neither an ``Instance``
  nor a ``ReplacedInstanceVersion`` names: a crash between the object's write and the commit of
  its row. Such an object cannot be read by anyone anyway: its wrapped data key was only ever in
  the row that was never committed;
- temporary files of interrupted durable writes (``<name>.<12 hex>.part``, ``durable.py``), in
  staging and in a filesystem object storage.

Only files older than ``ARCHIVE_ORPHAN_GRACE_HOURS`` are removed, so a write whose row is not
committed yet is never raced. Rows are tenant-scoped under row-level security, so a name is looked
up in every hospital's own context; a name no hospital knows is an orphan. A run that would remove
more than ``ARCHIVE_SWEEP_MAX_REMOVALS`` files removes none: that many orphans means a wrong
database or a broken tenant setting, not a few crashes, and emptying the archive is not a repair.
"""

import logging
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from itertools import batched
from pathlib import Path

from django.conf import settings
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.db.models import Q
from django.utils import timezone

from apps.audit.services import audit_record
from apps.audit.vocabulary import Action, EntryPoint, Outcome
from apps.imaging.durable import PARTIAL_NAME
from apps.imaging.ingest import GIVEN_UP_ERROR_CODE
from apps.imaging.models import Instance, ReplacedInstanceVersion, StagedObject
from apps.imaging.objectstore import OBJECT_KEY_PATTERN, object_delete
from apps.tenants.context import hospital_context
from apps.tenants.models import Hospital

logger = logging.getLogger(__name__)

OBJECTS_PREFIX = "objects"
_SHARD = re.compile(r"^[0-9a-f]{2}$")
_NAME = re.compile(r"^[0-9a-f]{32}$")
_LOOKUP_BATCH = 500


def _is_partial(name: str) -> bool:
    """A temporary file of an interrupted durable write of a staged file or a stored object."""
    match = PARTIAL_NAME.match(name)
    return match is not None and _NAME.match(match["name"]) is not None


class SweepRefused(Exception):
    """More orphans than ``ARCHIVE_SWEEP_MAX_REMOVALS``: nothing was removed. ``result`` holds the
    counts up to where the sweep stopped looking."""

    def __init__(self, result: "SweepResult") -> None:
        super().__init__(f"More than {settings.ARCHIVE_SWEEP_MAX_REMOVALS} orphans; nothing was removed.")
        self.result = result


class SweepFailed(Exception):
    """The removal stopped partway (a storage error): ``result.removed`` says how far it got."""

    def __init__(self, result: "SweepResult", error: Exception) -> None:
        super().__init__(f"The sweep stopped after {result.removed} removals ({type(error).__name__}).")
        self.result = result


@dataclass
class SweepResult:
    """Counts only: the names of what is swept are opaque, but there is no need to list them."""

    dry_run: bool = False
    staged_files: int = 0  # staged files looked at
    staged_removed: int = 0  # orphans removed (in a dry run: that would be removed)
    staged_kept_young: int = 0  # orphans spared because they are younger than the grace period
    objects: int = 0  # stored objects looked at
    objects_removed: int = 0
    objects_kept_young: int = 0
    partial_removed: int = 0  # leftover temporary files of interrupted writes
    partial_kept_young: int = 0
    refused: bool = False
    removed: int = 0  # files actually removed so far (all of the above, unless the removal failed)
    _staged_to_remove: list[Path] = field(default_factory=list, repr=False)
    _objects_to_remove: list[str] = field(default_factory=list, repr=False)
    _partials_to_remove: list[tuple[str, str]] = field(default_factory=list, repr=False)

    def counts(self) -> dict[str, int | bool]:
        return {name: value for name, value in asdict(self).items() if not name.startswith("_")}


def _staged_names_in_use(names: list[str], hospitals: list[Hospital]) -> set[str]:
    """The names among ``names`` whose staged row still needs its file (a row of any hospital, each
    looked up in that hospital's context): received, an unresolved conflict, or rejected after
    repeated crashes (``staged_object_give_up`` keeps those bytes for staff)."""
    public_ids = [uuid.UUID(hex=name) for name in names]
    needed = (
        Q(status=StagedObject.Status.RECEIVED)
        | Q(status=StagedObject.Status.CONFLICT, conflict__resolved_at__isnull=True)
        | Q(status=StagedObject.Status.REJECTED, error_code=GIVEN_UP_ERROR_CODE)
    )
    in_use: set[str] = set()
    for hospital in hospitals:
        with hospital_context(hospital):
            rows = StagedObject.objects.filter(hospital=hospital, public_id__in=public_ids).filter(needed)
            in_use.update(public_id.hex for public_id in rows.values_list("public_id", flat=True))
    return in_use


def _object_keys_in_use(keys: list[str], hospitals: list[Hospital]) -> set[str]:
    """The keys among ``keys`` that an instance or a replaced instance version names."""
    in_use: set[str] = set()
    for hospital in hospitals:
        with hospital_context(hospital):
            for model in (Instance, ReplacedInstanceVersion):
                rows = model.objects.filter(hospital=hospital, storage_key__in=keys)
                in_use.update(rows.values_list("storage_key", flat=True))
    return in_use


def _check_limit(result: SweepResult) -> None:
    if result.staged_removed + result.objects_removed > settings.ARCHIVE_SWEEP_MAX_REMOVALS:
        result.refused = True
        raise SweepRefused(result)


def _staged_files(result: SweepResult, *, cutoff: datetime) -> Iterator[tuple[str, Path, bool]]:
    """Staged files (name, path, older than the grace period), noting temporary files on the way."""
    root = Path(settings.STAGING_DIR)
    if not root.is_dir():
        return
    for shard in sorted(os.scandir(root), key=lambda entry: entry.name):
        if not (shard.is_dir(follow_symlinks=False) and _SHARD.match(shard.name)):
            continue
        for entry in os.scandir(shard.path):
            if not entry.is_file(follow_symlinks=False):
                continue
            old = entry.stat(follow_symlinks=False).st_mtime < cutoff.timestamp()
            if _is_partial(entry.name):
                if old:
                    result.partial_removed += 1
                    result._partials_to_remove.append(("staging", entry.path))
                else:
                    result.partial_kept_young += 1
            elif _NAME.match(entry.name) and entry.name.startswith(shard.name):
                yield entry.name, Path(entry.path), old


def _sweep_staging(result: SweepResult, *, cutoff: datetime, hospitals: list[Hospital]) -> None:
    # Batches run across shards: one round of per-hospital lookups per batch, not per shard.
    for batch in batched(_staged_files(result, cutoff=cutoff), _LOOKUP_BATCH):
        result.staged_files += len(batch)
        in_use = _staged_names_in_use([name for name, _path, _old in batch], hospitals)
        for name, path, old in batch:
            if name in in_use:
                continue
            if old:
                result.staged_removed += 1
                result._staged_to_remove.append(path)
            else:
                result.staged_kept_young += 1  # its row may not be committed yet
        _check_limit(result)


def _listdir(storage: Storage, path: str) -> tuple[list[str], list[str]]:
    try:
        directories, files = storage.listdir(path)
    except FileNotFoundError:
        return [], []
    return list(directories), list(files)


def _object_keys(result: SweepResult, storage: Storage, *, cutoff: datetime) -> Iterator[str]:
    """Object keys in the storage, noting temporary files (filesystem storage) on the way."""
    on_filesystem = isinstance(storage, FileSystemStorage)
    shards, _files = _listdir(storage, OBJECTS_PREFIX)
    for shard in sorted(shards):
        if not _SHARD.match(shard):
            continue
        _directories, names = _listdir(storage, f"{OBJECTS_PREFIX}/{shard}")
        for name in sorted(names):
            key = f"{OBJECTS_PREFIX}/{shard}/{name}"
            if OBJECT_KEY_PATTERN.match(key) and name.startswith(shard):
                yield key
            elif on_filesystem and _is_partial(name):
                if storage.get_modified_time(key) < cutoff:
                    result.partial_removed += 1
                    result._partials_to_remove.append(("objects", key))
                else:
                    result.partial_kept_young += 1


def _sweep_objects(result: SweepResult, *, cutoff: datetime, hospitals: list[Hospital]) -> None:
    storage = storages["default"]
    for batch in batched(_object_keys(result, storage, cutoff=cutoff), _LOOKUP_BATCH):
        result.objects += len(batch)
        in_use = _object_keys_in_use(list(batch), hospitals)
        for key in batch:
            if key in in_use:
                continue
            # Age is asked only of the few orphans (on S3 it is a request per object), and only
            # after the lookup, so an object whose row commits meanwhile is young or known.
            if storage.get_modified_time(key) < cutoff:
                result.objects_removed += 1
                result._objects_to_remove.append(key)
            else:
                result.objects_kept_young += 1
        _check_limit(result)


def _remove(result: SweepResult) -> None:
    storage = storages["default"]
    for path in result._staged_to_remove:
        path.unlink(missing_ok=True)
        result.removed += 1
    for key in result._objects_to_remove:
        object_delete(key)
        result.removed += 1
    for place, name in result._partials_to_remove:
        if place == "staging":
            Path(name).unlink(missing_ok=True)
        else:
            storage.delete(name)
        result.removed += 1


def archive_sweep(*, dry_run: bool = False, entry_point: EntryPoint = EntryPoint.COMMAND) -> SweepResult:
    """Remove orphaned staged files, stored objects and temporary files older than the grace
    period (see the module docstring); return the counts.

    ``dry_run`` removes nothing and records nothing. Otherwise one ARCHIVE_SWEPT event with the
    counts goes to the platform's audit chain (orphans belong to no hospital anyone can tell).
    Raises SweepRefused, removing nothing, when there are more orphans than
    ``ARCHIVE_SWEEP_MAX_REMOVALS``; SweepFailed, audited as a major failure with the counts, when
    a removal fails partway. Safe to run at any time and to run again.
    """
    result = SweepResult(dry_run=dry_run)
    cutoff = timezone.now() - timedelta(hours=settings.ARCHIVE_ORPHAN_GRACE_HOURS)
    hospitals = list(Hospital.objects.order_by("pk"))
    try:
        _sweep_staging(result, cutoff=cutoff, hospitals=hospitals)
        _sweep_objects(result, cutoff=cutoff, hospitals=hospitals)
    except SweepRefused:
        logger.error("Archive sweep refused: more than %s orphans found.", settings.ARCHIVE_SWEEP_MAX_REMOVALS)
        if not dry_run:
            audit_record(
                action=Action.ARCHIVE_SWEPT,
                outcome=Outcome.SERIOUS_FAILURE,
                entry_point=entry_point,
                object_type="archive",
                details={**result.counts(), "max_removals": settings.ARCHIVE_SWEEP_MAX_REMOVALS},
            )
        raise
    if not dry_run:
        try:
            _remove(result)
        except Exception as error:
            # Some files went, some did not: recorded as such (the counts say how far it got), and
            # the next run takes up the rest.
            logger.error("Archive sweep stopped after %s removals (%s).", result.removed, type(error).__name__)
            audit_record(
                action=Action.ARCHIVE_SWEPT, outcome=Outcome.MAJOR_FAILURE, entry_point=entry_point,
                object_type="archive", details={**result.counts(), "error": type(error).__name__},
            )  # fmt: skip
            raise SweepFailed(result, error) from error
        audit_record(
            action=Action.ARCHIVE_SWEPT, entry_point=entry_point, object_type="archive", details=result.counts()
        )
    return result
