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
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from pydicom.dataset import Dataset

from apps.imaging import metadata
from apps.imaging.crypto import CryptoIntegrityError
from apps.imaging.dicom.parse import DicomRejected, ParsedInstance, parse_part10, parsed_from_header
from apps.imaging.dicom.rules import Finding, Severity, ValidationPolicy, validate_instance
from apps.imaging.dicom.series_rules import validate_series
from apps.imaging.keys import blind_index, field_seal, field_unseal, hospital_key
from apps.imaging.models import (
    IngestConflict,
    Instance,
    Patient,
    Series,
    StagedObject,
    Study,
    ValidationFinding,
    ValidationRuleSetting,
)
from apps.imaging.objectstore import StoredObject, object_delete, object_put
from apps.imaging.staging import staging_open, staging_remove, staging_write
from apps.tenants.context import activate_hospital
from apps.tenants.models import Hospital

logger = logging.getLogger(__name__)


@dataclass
class IngestOutcome:
    staged: StagedObject
    findings: list[Finding] = field(default_factory=list)
    parsed: ParsedInstance | None = None

    @property
    def status(self) -> str:
        return self.staged.status

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == Severity.WARN]


class _Refused(Exception):
    def __init__(self, code: str, message_zh: str, message_en: str, *, conflict_with: Instance | None = None) -> None:
        super().__init__(code)
        self.code, self.message_zh, self.message_en = code, message_zh, message_en
        self.conflict_with = conflict_with


def validation_policy(hospital: Hospital) -> ValidationPolicy:
    """The hospital's rule severities (per modality) over the rules' defaults."""
    overrides = {
        (code, modality.strip().upper() or "*"): Severity(severity)
        for code, modality, severity in ValidationRuleSetting.objects.filter(hospital=hospital).values_list(
            "code", "modality", "severity"
        )
    }
    return ValidationPolicy(institution_name=hospital.institution_name, severity_overrides=overrides)


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
    size, sha256 = staging_write(
        public_id, chunks, hospital_key=hospital_key(hospital), max_size=settings.DICOM_MAX_OBJECT_SIZE
    )
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


def _file_sha256(source: BinaryIO) -> str:
    digest = hashlib.sha256()
    source.seek(0)
    while chunk := source.read(1024 * 1024):
        digest.update(chunk)
    return digest.hexdigest()


@dataclass
class IngestBatch:
    """What the objects of one request share: the patient, study and series rows, read once,
    and the instance counters, written once by ``ingest_batch_flush`` instead of per instance.

    Create it inside the hospital's context (a request or task transaction) and flush it before
    that transaction ends. Each object works on a copy that is adopted only when the object's
    savepoint is released, so a rolled-back object leaves no row behind in the batch.
    """

    hospital: Hospital
    patients: dict[str, Patient] = field(default_factory=dict)
    studies: dict[str, Study] = field(default_factory=dict)
    series: dict[str, Series] = field(default_factory=dict)
    series_added: Counter[int] = field(default_factory=Counter)
    study_instances_added: Counter[int] = field(default_factory=Counter)
    study_series_added: Counter[int] = field(default_factory=Counter)
    study_modalities: dict[int, str] = field(default_factory=dict)
    # A batch that will see many objects of a series (a STOW-RS request) reads the series' stored
    # instances once (``series_instances``, by SOP Instance UID) instead of one lookup per object.
    # A batch of one object (an upload's or the gateway's task) looks its UID up directly.
    prefetch_series: bool = False
    series_instances: dict[str, dict[str, Instance]] = field(default_factory=dict)
    # Off within the retry of an object after a unique-constraint race: look its UID up directly.
    trust_series_instances: bool = True

    def fork(self) -> "IngestBatch":
        return replace(
            self, patients=dict(self.patients), studies=dict(self.studies), series=dict(self.series),
            series_added=Counter(self.series_added), study_instances_added=Counter(self.study_instances_added),
            study_series_added=Counter(self.study_series_added), study_modalities=dict(self.study_modalities),
            series_instances={uid: dict(known) for uid, known in self.series_instances.items()},
        )  # fmt: skip

    def adopt(self, work: "IngestBatch") -> None:
        self.__dict__.update(work.__dict__)


def ingest_batch_flush(*, batch: IngestBatch) -> None:
    """Write the counters the batch collected (F() increments, so concurrent requests add up)."""
    for series_pk, added in batch.series_added.items():
        Series.objects.filter(pk=series_pk).update(number_of_instances=F("number_of_instances") + added)
    for study_pk in set(batch.study_instances_added) | set(batch.study_modalities):
        changes: dict[str, Any] = {}
        if added := batch.study_instances_added.get(study_pk, 0):
            changes["number_of_instances"] = F("number_of_instances") + added
        if new_series := batch.study_series_added.get(study_pk, 0):
            changes["number_of_series"] = F("number_of_series") + new_series
        if study_pk in batch.study_modalities:
            changes["modalities"] = batch.study_modalities[study_pk]
        Study.objects.filter(pk=study_pk).update(**changes)
    batch.series_added.clear()
    batch.study_instances_added.clear()
    batch.study_series_added.clear()
    batch.study_modalities.clear()


def _stored_instance(batch: IngestBatch, parsed: ParsedInstance) -> Instance | None:
    """The instance already stored under the object's SOP Instance UID, if any.

    The instances of a series are read once per batch (one query for a series of any length, none
    for a series that does not exist yet), not once per object. An instance stored under the same
    UID in another series is not in that list: its insert then breaks the unique constraint, the
    object's attempt is rolled back, and the retry (``trust_series_instances`` off) looks the UID up
    directly.
    """
    if not (batch.prefetch_series and batch.trust_series_instances):
        return _stored_instance_by_uid(batch, parsed)
    known = batch.series_instances.get(parsed.series_instance_uid)
    if known is None:
        series = _existing_series(batch, parsed.series_instance_uid)
        known = {}
        if series is not None:
            known = {
                instance.sop_instance_uid: instance
                for instance in Instance.objects.filter(hospital=batch.hospital, series=series).only(
                    "pk", "hospital_id", "series_id", "sop_instance_uid", "sha256"
                )
            }
        batch.series_instances[parsed.series_instance_uid] = known
    return known.get(parsed.sop_instance_uid)


def _stored_instance_by_uid(batch: IngestBatch, parsed: ParsedInstance) -> Instance | None:
    return Instance.objects.filter(hospital=batch.hospital, sop_instance_uid=parsed.sop_instance_uid).first()


def _check_existing(
    batch: IngestBatch, parsed: ParsedInstance, sha256: str, *, directly: bool = False
) -> Instance | None:
    """Same SOP Instance UID: same bytes is a duplicate, other bytes a conflict."""
    existing = _stored_instance_by_uid(batch, parsed) if directly else _stored_instance(batch, parsed)
    if existing is not None and existing.sha256 != sha256:
        raise _Refused(
            "SOP_INSTANCE_CONFLICT",
            "该 SOP 实例 UID 已存储了不同的内容，已留待人工处理。",
            "Different content is already stored under this SOP Instance UID; kept for staff to resolve.",
            conflict_with=existing,
        )
    return existing


def _patient_create(hospital: Hospital, parsed: ParsedInstance, mrn_index: str) -> Patient:
    # No savepoint: a concurrent insert of the same patient raises IntegrityError, which rolls
    # back the whole object and makes staged_object_process try once more (and find it).
    return Patient.objects.create(
        hospital=hospital,
        mrn_sealed=field_seal(hospital, parsed.patient_id, field="mrn"),
        mrn_index=mrn_index,
        name_sealed=field_seal(hospital, parsed.patient_name, field="name"),
        name_index=blind_index(hospital, parsed.patient_name, field="name"),
        birth_date_sealed=field_seal(
            hospital, parsed.patient_birth_date.isoformat() if parsed.patient_birth_date else "", field="birth"
        ),
        sex=parsed.patient_sex if parsed.patient_sex in {"M", "F", "O"} else "",
    )


_PLACEHOLDER_IDS = {"", "UNKNOWN", "ANONYMOUS", "NONE", "NULL", "N/A", "NA", "0", "-"}


def _existing_patient(batch: IngestBatch, parsed: ParsedInstance) -> Patient | None:
    mrn_index = blind_index(batch.hospital, parsed.patient_id, field="mrn")
    if (known := batch.patients.get(mrn_index)) is not None:
        return known
    patient = Patient.objects.filter(hospital=batch.hospital, mrn_index=mrn_index).first()
    if patient is not None:
        batch.patients[mrn_index] = patient
    return patient


def _existing_study(batch: IngestBatch, study_instance_uid: str) -> Study | None:
    if (known := batch.studies.get(study_instance_uid)) is not None:
        return known
    study = Study.objects.filter(hospital=batch.hospital, study_instance_uid=study_instance_uid).first()
    if study is not None:
        batch.studies[study_instance_uid] = study
    return study


def _existing_series(batch: IngestBatch, series_instance_uid: str) -> Series | None:
    if (known := batch.series.get(series_instance_uid)) is not None:
        return known
    if batch.trust_series_instances and series_instance_uid in batch.series_instances:
        return None  # looked up in this batch and absent (a series created since is in batch.series)
    series = Series.objects.filter(hospital=batch.hospital, series_instance_uid=series_instance_uid).first()
    if series is not None:
        batch.series[series_instance_uid] = series
    return series


def _identity_findings(hospital: Hospital, parsed: ParsedInstance, patient: Patient | None) -> list[Finding]:
    """Patients are keyed by the hospital's Patient ID, so it must be real and must not already
    belong to someone else: merging two people would show one the other's images."""
    if parsed.patient_id.strip().upper() in _PLACEHOLDER_IDS:
        return [_finding("PATIENT_ID_MISSING", "缺少有效的患者 ID（PatientID）。", "A real Patient ID is missing.")]
    if patient is None:
        return []
    known_name = blind_index(hospital, parsed.patient_name, field="name")
    known_birth = field_unseal(hospital, patient.birth_date_sealed, field="birth")
    birth = parsed.patient_birth_date.isoformat() if parsed.patient_birth_date else ""
    if (patient.name_index and known_name and known_name != patient.name_index) or (
        known_birth and birth and known_birth != birth
    ):
        return [
            _finding(
                "PATIENT_IDENTITY_MISMATCH",
                "该患者 ID 已属于姓名或出生日期不同的患者。",
                "This Patient ID already belongs to a patient with another name or birth date.",
            )
        ]
    return []


def _finding(code: str, message_zh: str, message_en: str) -> Finding:
    return Finding(code=code, severity=Severity.REJECT, message_zh=message_zh, message_en=message_en, details={})


def _second_patient() -> _Refused:
    return _Refused(
        "STUDY_MULTIPLE_PATIENTS",
        "同一检查中出现了第二位患者的身份。",
        "A second patient identity appeared inside one study.",
    )


def _series_in_other_study() -> _Refused:
    return _Refused(
        "SERIES_IN_OTHER_STUDY",
        "该序列 UID 已属于另一个检查。",
        "This Series Instance UID already belongs to another study.",
    )


def _placement(
    batch: IngestBatch, parsed: ParsedInstance, patient: Patient | None
) -> tuple[Study | None, Series | None]:
    """The existing study and series of the instance, if any; refused before anything is
    written when the study belongs to another patient or the series to another study."""
    study = _existing_study(batch, parsed.study_instance_uid)
    if study is None:
        if _existing_series(batch, parsed.series_instance_uid) is not None:
            raise _series_in_other_study()
        return None, None
    if patient is None or study.patient_id != patient.pk:
        raise _second_patient()
    series = _existing_series(batch, parsed.series_instance_uid)
    if series is not None and series.study_id != study.pk:
        raise _series_in_other_study()
    return study, series


def _index(
    batch: IngestBatch,
    parsed: ParsedInstance,
    stored: StoredObject,
    sealed_metadata: bytes,
    placement: tuple[Patient | None, Study | None, Series | None],
) -> Instance:
    """Insert the instance, and its patient, study and series when new. Counters of rows created
    here start at this instance; those of existing rows are collected in the batch."""
    hospital = batch.hospital
    modality = parsed.modality[:16]
    patient, study, series = placement
    if patient is None:
        patient = _patient_create(hospital, parsed, blind_index(hospital, parsed.patient_id, field="mrn"))
        batch.patients[patient.mrn_index] = patient
    study_created = study is None
    if study is None:
        study = Study.objects.create(
            hospital=hospital,
            study_instance_uid=parsed.study_instance_uid,
            patient=patient,
            accession_number=parsed.accession_number[:16],
            study_id=parsed.study_id[:16],
            study_date=parsed.study_date,
            study_time=parsed.study_time,
            description=parsed.study_description[:64],
            referring_physician_name=parsed.referring_physician_name[:200],
            modalities=modality,
            number_of_series=1,
            number_of_instances=1,
        )
        batch.studies[study.study_instance_uid] = study
    series_created = series is None
    if series is None:
        series = Series.objects.create(
            hospital=hospital,
            series_instance_uid=parsed.series_instance_uid,
            study=study,
            modality=modality,
            series_number=parsed.series_number,
            description=parsed.series_description[:64],
            body_part_examined=parsed.body_part_examined[:16],
            manufacturer=parsed.manufacturer[:64],
            station_name=parsed.station_name[:16],
            institution_name=parsed.institution_name[:64],
            number_of_instances=1,
        )
        batch.series[series.series_instance_uid] = series
        if not study_created:
            batch.study_series_added[study.pk] += 1
    else:
        batch.series_added[series.pk] += 1
    if not study_created:
        batch.study_instances_added[study.pk] += 1
        modalities = batch.study_modalities.get(study.pk, study.modalities)
        known = [m for m in modalities.split("\\") if m]
        if modality and modality not in known:
            batch.study_modalities[study.pk] = "\\".join(sorted([*known, modality]))
    instance = Instance.objects.create(
        hospital=hospital,
        series=series,
        sop_instance_uid=parsed.sop_instance_uid,
        **instance_stored_fields(parsed, stored, sealed_metadata),
    )
    # Kept in the batch's lists only where a list is whole: a series read in full, or created here.
    if series_created and batch.prefetch_series:
        batch.series_instances[parsed.series_instance_uid] = {parsed.sop_instance_uid: instance}
    elif (listed := batch.series_instances.get(parsed.series_instance_uid)) is not None:
        listed[parsed.sop_instance_uid] = instance
    return instance


def instance_stored_fields(parsed: ParsedInstance, stored: StoredObject, sealed_metadata: bytes) -> dict[str, Any]:
    """The Instance columns that describe one stored object: header fields and where and how its
    bytes are kept. Shared by indexing and by a conflict's replacement."""
    return {
        "sop_class_uid": parsed.sop_class_uid,
        "instance_number": parsed.instance_number,
        "transfer_syntax_uid": parsed.transfer_syntax_uid,
        "rows": parsed.rows,
        "columns": parsed.columns,
        "number_of_frames": parsed.number_of_frames or 1,
        "size": stored.plaintext_size,
        "sha256": stored.sha256,
        "storage_key": stored.key,
        "cipher": stored.suite,
        "wrapped_data_key": stored.wrapped_data_key,
        "segment_size": stored.segment_size,
        "stored_size": stored.stored_size,
        "metadata_sealed": sealed_metadata,
        "pixel_data_offset": parsed.pixel_data_offset,
        "pixel_data_length": parsed.pixel_data_length if parsed.pixel_data_offset is not None else None,
    }


def _record_findings(staged: StagedObject, findings: list[Finding], modality: str, instance: Instance | None) -> None:
    ValidationFinding.objects.bulk_create(
        ValidationFinding(
            hospital=staged.hospital,
            staged=staged,
            instance=instance,
            code=finding.code,
            severity=str(finding.severity),
            modality=modality[:16],
            message_zh=finding.message_zh[:300],
            message_en=finding.message_en[:300],
            details=dict(finding.details),
        )
        for finding in findings
    )


def _finish(staged: StagedObject, status: str, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(staged, name, value)
    staged.status = status
    staged.save()


def batch_review(
    *, hospital: Hospital, outcomes: list[IngestOutcome], policy: ValidationPolicy | None = None
) -> list[tuple[StagedObject, Finding]]:
    """Series-level checks over the instances stored by one request (one modality, device and
    body part per series; slice spacing consistent with thickness), recorded as QC findings."""
    stored = [
        outcome for outcome in outcomes
        if outcome.parsed is not None and outcome.staged.status == StagedObject.Status.STORED
    ]  # fmt: skip
    by_uid = {outcome.parsed.sop_instance_uid: outcome for outcome in stored if outcome.parsed}
    results = validate_series([o.parsed for o in stored if o.parsed], policy=policy or validation_policy(hospital))
    recorded = []
    for sop_instance_uid, finding in results:
        outcome = by_uid[sop_instance_uid]
        assert outcome.parsed is not None
        _record_findings(outcome.staged, [finding], outcome.parsed.modality, outcome.staged.instance)
        outcome.findings.append(finding)
        recorded.append((outcome.staged, finding))
    return recorded


def batch_series_review_stored(*, hospital: Hospital, batch: uuid.UUID) -> int | None:
    """Series-level checks for uploads and the gateway, whose objects are ingested one by one in
    tasks: once every object of ``batch`` is final, the series it added to are checked whole
    (earlier instances included) from the headers kept at ingest. Returns the number of findings
    recorded, or None while objects of the batch are still waiting (call again later).

    Safe to repeat: a finding already recorded for an instance is not recorded again.
    """
    objects = StagedObject.objects.filter(hospital=hospital, batch=batch)
    if objects.filter(status=StagedObject.Status.RECEIVED).exists():
        return None
    series_ids = set(
        objects.filter(status=StagedObject.Status.STORED, instance__isnull=False).values_list(
            "instance__series_id", flat=True
        )
    )
    if not series_ids:
        return 0
    instances = list(Instance.objects.filter(hospital=hospital, series_id__in=series_ids).order_by("id"))
    parsed_by_uid: dict[str, ParsedInstance] = {}
    for instance in instances:
        header = metadata.unseal_metadata(hospital, bytes(instance.metadata_sealed))
        parsed_by_uid[instance.sop_instance_uid] = parsed_from_header(
            header, transfer_syntax_uid=instance.transfer_syntax_uid, size=instance.size
        )
    results = validate_series(list(parsed_by_uid.values()), policy=validation_policy(hospital))
    if not results:
        return 0
    by_uid = {instance.sop_instance_uid: instance for instance in instances}
    already = set(
        ValidationFinding.objects.filter(hospital=hospital, instance__in=instances).values_list("instance_id", "code")
    )
    staged_of = dict(
        StagedObject.objects.filter(hospital=hospital, instance__in=instances, status=StagedObject.Status.STORED)
        .order_by("id")
        .values_list("instance_id", "id")
    )
    recorded = []
    for sop_instance_uid, finding in results:
        instance = by_uid[sop_instance_uid]
        if (instance.pk, finding.code) in already or instance.pk not in staged_of:
            continue
        already.add((instance.pk, finding.code))
        recorded.append(
            ValidationFinding(
                hospital=hospital, staged_id=staged_of[instance.pk], instance=instance, code=finding.code,
                severity=str(finding.severity), modality=parsed_by_uid[sop_instance_uid].modality[:16],
                message_zh=finding.message_zh[:300], message_en=finding.message_en[:300],
                details=dict(finding.details),
            )
        )  # fmt: skip
    ValidationFinding.objects.bulk_create(recorded)
    return len(recorded)


def ingest_conflict_keep_stored(*, conflict: IngestConflict, actor: Any) -> None:
    """Resolve a conflict by keeping the stored instance; the received bytes are deleted."""
    with transaction.atomic():
        IngestConflict.objects.filter(pk=conflict.pk).update(resolved_at=timezone.now())
        _remove_staging_after_commit(conflict.staged)


def staged_object_give_up(*, staged: StagedObject) -> None:
    """After repeated crashes, stop retrying: the object is rejected with a reason, the staged
    bytes kept for staff."""
    _finish(
        staged, StagedObject.Status.REJECTED, error_code="INGEST_FAILED",
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


def _attempted_twice(
    batch: IngestBatch, attempt: Callable[[IngestBatch], IngestOutcome], *, before_retry: Callable[[], None]
) -> IngestOutcome:
    """Run ``attempt`` in a savepoint on a copy of ``batch``, adopted only if it succeeds.

    A concurrent ingest of the same patient, study, series or instance that commits first breaks a
    unique constraint: the attempt is rolled back whole and made once more, finding that ingest's
    rows, and this time looking SOP Instance UIDs up one by one rather than in the batch's lists.
    """
    for number in (1, 2):
        work = batch.fork()
        work.trust_series_instances = number == 1 and batch.trust_series_instances
        try:
            with transaction.atomic():
                outcome = attempt(work)
        except IntegrityError:
            if number == 2:
                raise
            before_retry()
            continue
        trust = batch.trust_series_instances
        batch.adopt(work)
        batch.trust_series_instances = trust  # the retry's caution was for its object only
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
) -> IngestOutcome:
    """Ingest an object received whole in memory by a request that answers only once it is stored
    (STOW-RS): parse, validate, encrypt, store and index it from memory, and insert its row once, in
    its final state. Its bytes are staged only if they must be kept: a conflict for staff to resolve
    (here) or a failure left for the retry sweeper (``received_object_keep``, by the caller).

    Why no staged file first: the row of a staged object is committed with the request's
    transaction, so after a crash mid-request neither it nor its staged file could be found again;
    the client, which has no answer, sends the object again. What the answer acknowledges is
    durable: the stored object is fsync'd before the transaction commits.
    """
    digest = hashlib.sha256(data).hexdigest()
    public_id = uuid.uuid4()

    def attempt(work: IngestBatch) -> IngestOutcome:
        # A new row each time: an INSERT of a rolled-back attempt left its primary key behind.
        staged = StagedObject(
            hospital=hospital, public_id=public_id, source=source, batch=batch_id, size=len(data), sha256=digest
        )
        return _process_source(staged, io.BytesIO(data), expected_study_uid, policy, work, data)

    outcome = _attempted_twice(batch, attempt, before_retry=lambda: None)
    if outcome.parsed is not None:
        # The parsed header keeps its source (these bytes) for deferred values: let both go now,
        # or a request of many parts would hold every one of them until it answers.
        outcome.parsed = replace(outcome.parsed, dataset=Dataset())
    return outcome


def received_object_keep(*, hospital: Hospital, source: str, data: bytes, batch_id: uuid.UUID) -> StagedObject:
    """Stage an object received in memory whose processing failed, for the retry sweeper."""
    return staged_object_create(hospital=hospital, source=source, chunks=[data], batch=batch_id)


def _stage_in_memory(staged: StagedObject, data: bytes) -> None:
    size, digest = staging_write(
        staged.public_id, [data], hospital_key=hospital_key(staged.hospital), max_size=settings.DICOM_MAX_OBJECT_SIZE
    )
    if (size, digest) != (staged.size, staged.sha256):
        raise RuntimeError("The staged copy differs from the bytes received.")


def _reject(
    staged: StagedObject, code: str, message_zh: str, message_en: str, *, staged_on_disk: bool = True
) -> IngestOutcome:
    _finish(
        staged, StagedObject.Status.REJECTED, error_code=code,
        error_message_zh=message_zh[:300], error_message_en=message_en[:300],
    )  # fmt: skip
    if staged_on_disk:
        _remove_staging_after_commit(staged)
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


def _duplicate(
    staged: StagedObject, existing: Instance, identity: dict[str, str], outcome: IngestOutcome, in_memory: bytes | None
) -> IngestOutcome:
    """The same bytes are stored already: recorded as a duplicate of that instance."""
    _finish(staged, StagedObject.Status.DUPLICATE, instance=existing, **identity)
    if in_memory is None:
        _remove_staging_after_commit(staged)
    return outcome


def _process_source(
    staged: StagedObject,
    source: BinaryIO,
    expected_study_uid: str | None,
    policy: ValidationPolicy,
    batch: IngestBatch,
    in_memory: bytes | None = None,
) -> IngestOutcome:
    """``in_memory``: the object's bytes when it was received in memory and has no staged file."""
    hospital = staged.hospital
    try:
        parsed = parse_part10(source)
        findings = validate_instance(parsed, policy=policy)
        patient = _existing_patient(batch, parsed)
        findings += _identity_findings(hospital, parsed, patient)
        sealed_metadata = metadata.seal_metadata(hospital, parsed)
    except DicomRejected as rejected:
        return _reject(
            staged, rejected.code, rejected.message_zh, rejected.message_en, staged_on_disk=in_memory is None
        )
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as error:
        # A value pydicom cannot represent (a DS of "1,25", say): refuse the object. The log names
        # the error's type only: its message may quote the value.
        logger.warning("staged object %s: unreadable attribute value (%s)", staged.public_id, type(error).__name__)
        return _reject(
            staged,
            "DICOM_MALFORMED",
            "文件中有无法解读的属性值。",
            "The file holds an attribute value that cannot be read.",
            staged_on_disk=in_memory is None,
        )
    identity = {"sop_instance_uid": parsed.sop_instance_uid, "sop_class_uid": parsed.sop_class_uid}
    rejections = [f for f in findings if f.severity == Severity.REJECT]
    stored: StoredObject | None = None
    sha256 = staged.sha256 or _file_sha256(source)
    try:
        if expected_study_uid and parsed.study_instance_uid != expected_study_uid:
            raise _Refused(
                "STUDY_UID_MISMATCH",
                "实例的检查 UID 与请求地址中的检查不一致。",
                "The instance's Study Instance UID differs from the study in the request URL.",
            )
        if rejections:
            first = rejections[0]
            raise _Refused(first.code, first.message_zh, first.message_en)
        existing = _check_existing(batch, parsed, sha256)
        if existing is not None:
            return _duplicate(staged, existing, identity, IngestOutcome(staged, findings, parsed), in_memory)
        try:
            study, series = _placement(batch, parsed, patient)
        except _Refused:
            # The batch's lists hold the object's own series only: a UID stored elsewhere (under
            # another patient or study) is a conflict or a duplicate before it is misplaced.
            if batch.prefetch_series and (existing := _check_existing(batch, parsed, sha256, directly=True)):
                return _duplicate(staged, existing, identity, IngestOutcome(staged, findings, parsed), in_memory)
            raise
        source.seek(0)
        stored = object_put(hospital_key=hospital_key(hospital), source=source, size=staged.size)
        # The digest taken while encrypting must be the one taken while staging.
        if stored.sha256 != sha256:
            raise _Refused("STAGING_CHANGED", "暂存文件在处理中被改动。", "The staged file changed while processing.")
        instance = _index(batch, parsed, stored, sealed_metadata, (patient, study, series))
        # The row first: an object received in memory is inserted here, in its final state.
        _finish(staged, StagedObject.Status.STORED, instance=instance, **identity)
        _record_findings(staged, findings, parsed.modality, instance)
    except _Refused as refused:
        if stored is not None:
            object_delete(stored.key)
        status = StagedObject.Status.CONFLICT if refused.conflict_with else StagedObject.Status.REJECTED
        if refused.conflict_with is not None and in_memory is not None:
            # Kept for staff to resolve: now the bytes must be staged after all.
            _stage_in_memory(staged, in_memory)
        _finish(
            staged, status, error_code=refused.code, error_message_zh=refused.message_zh,
            error_message_en=refused.message_en, **identity,
        )  # fmt: skip
        _record_findings(staged, findings, parsed.modality, None)
        if refused.conflict_with is not None:
            IngestConflict.objects.create(
                hospital=hospital, staged=staged, existing=refused.conflict_with, received_sha256=sha256
            )
        elif in_memory is None:
            _remove_staging_after_commit(staged)
        return IngestOutcome(staged, findings, parsed)
    except BaseException:
        if stored is not None:
            object_delete(stored.key)
        raise
    if in_memory is None:
        _remove_staging_after_commit(staged)
    return IngestOutcome(staged, findings, parsed)
