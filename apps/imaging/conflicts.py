"""Resolving a conflict (different bytes received under a stored SOP Instance UID) by replacing
the stored instance with the received one. Keeping the stored one is ``ingest_conflict_keep_stored``.

Nothing is lost: the instance's previous object stays in storage and is recorded as a
``ReplacedInstanceVersion`` (its key, wrapped data key, digest and sealed header), and the
replacement is audited with both digests.
"""

from typing import Any

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.audit.services import audit_record
from apps.audit.vocabulary import Action, EntryPoint
from apps.imaging import metadata
from apps.imaging.crypto import CryptoIntegrityError
from apps.imaging.dicom.parse import DicomRejected, parse_part10
from apps.imaging.indexing import instance_stored_fields
from apps.imaging.keys import blind_index, hospital_key
from apps.imaging.models import IngestConflict, Instance, ReplacedInstanceVersion, StagedObject
from apps.imaging.objectstore import StoredObject, object_delete, object_put
from apps.imaging.staging import staging_open, staging_remove


class ConflictNotReplaceable(Exception):
    """The received object cannot take the stored one's place; the message says why."""


def ingest_conflict_replace(
    *, conflict: IngestConflict, actor: Any, request: HttpRequest | None = None
) -> ReplacedInstanceVersion:
    """Replace the stored instance of ``conflict`` with the object received under the same SOP
    Instance UID. Call inside the conflict's hospital context.

    The received object must be the same instance of the same series, study and patient (another
    placement is a different mistake, resolved at the sending system). Its encrypted object is
    stored, the instance row points at it, the previous object is kept as a
    ``ReplacedInstanceVersion``, the conflict is resolved and an INSTANCE_REPLACED event recorded,
    in one transaction; a failure stores nothing. Raises ConflictNotReplaceable.
    """
    hospital = conflict.hospital
    with transaction.atomic():
        locked = (
            IngestConflict.objects.select_for_update()
            .select_related("staged")
            .filter(hospital=hospital, pk=conflict.pk, resolved_at__isnull=True)
            .first()
        )
        if locked is None:
            raise ConflictNotReplaceable(_("This conflict has already been resolved."))
        instance = (
            Instance.objects.select_for_update(of=("self",))
            .select_related("series__study__patient")
            .get(hospital=hospital, pk=locked.existing_id)
        )
        key = hospital_key(hospital)
        stored: StoredObject | None = None
        try:
            try:
                with staging_open(locked.staged.public_id, hospital_key=key) as source:
                    parsed = parse_part10(source)
                    _check_same_place(hospital, instance, parsed)
                    sealed_metadata = metadata.seal_metadata(hospital, parsed)
                    source.seek(0)
                    stored = object_put(
                        hospital_key=key, source=source, size=locked.staged.size,
                        sop_instance_uid=instance.sop_instance_uid,
                    )  # fmt: skip
            except (CryptoIntegrityError, DicomRejected, FileNotFoundError):
                raise ConflictNotReplaceable(_("The received object can no longer be read.")) from None
            if stored.sha256 != locked.received_sha256:
                raise ConflictNotReplaceable(_("The received object changed since the conflict was recorded."))
            previous = ReplacedInstanceVersion.objects.create(
                hospital=hospital,
                instance=instance,
                conflict=locked,
                transfer_syntax_uid=instance.transfer_syntax_uid,
                size=instance.size,
                sha256=instance.sha256,
                storage_key=instance.storage_key,
                cipher=instance.cipher,
                wrapped_data_key=bytes(instance.wrapped_data_key),
                segment_size=instance.segment_size,
                stored_size=instance.stored_size,
                metadata_sealed=bytes(instance.metadata_sealed),
                stored_at=instance.created_at,
                replaced_by=actor if getattr(actor, "pk", None) else None,
            )
            Instance.objects.filter(pk=instance.pk).update(**instance_stored_fields(parsed, stored, sealed_metadata))
            IngestConflict.objects.filter(pk=locked.pk).update(resolved_at=timezone.now())
            StagedObject.objects.filter(pk=locked.staged_id).update(
                status=StagedObject.Status.STORED, instance=instance, updated_at=timezone.now()
            )
            audit_record(
                action=Action.INSTANCE_REPLACED,
                request=request,
                actor=actor,
                hospital=hospital,
                entry_point=EntryPoint.ADMIN,
                object_type="instance",
                object_id=str(instance.public_id),
                details={
                    "conflict": str(locked.public_id),
                    "replaced_version": str(previous.public_id),
                    "previous_sha256": previous.sha256,
                    "sha256": stored.sha256,
                },
            )
        except BaseException:
            if stored is not None:
                object_delete(stored.key)
            raise
        public_id = locked.staged.public_id
        transaction.on_commit(lambda: staging_remove(public_id))
    return previous


def _check_same_place(hospital: Any, instance: Instance, parsed: Any) -> None:
    series = instance.series
    study = series.study
    if (
        parsed.sop_instance_uid != instance.sop_instance_uid
        or parsed.series_instance_uid != series.series_instance_uid
        or parsed.study_instance_uid != study.study_instance_uid
    ):
        raise ConflictNotReplaceable(
            _("The received object belongs to another series or study; correct it at the sending system.")
        )
    if blind_index(hospital, parsed.patient_id, field="mrn") != study.patient.mrn_index:
        raise ConflictNotReplaceable(_("The received object names another patient; correct it at the sending system."))
