"""The archive's index as ingest writes it: the rows an object is placed under (patient, study,
series), duplicate and conflict checks by SOP Instance UID, the instance row, validation findings,
and the lookups and counters the objects of one request share (``IngestBatch``).

Called by the pipeline in :mod:`apps.imaging.ingest`, inside the object's savepoint and the
hospital's context; nothing here writes files.
"""

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from django.db import IntegrityError, OperationalError
from django.db.models import F
from django.utils import timezone

from apps.imaging.dicom.parse import ParsedInstance
from apps.imaging.dicom.rules import Finding, Severity, ValidationPolicy
from apps.imaging.durable import DeferredWrites
from apps.imaging.keys import blind_index, field_seal, field_unseal
from apps.imaging.models import (
    Instance,
    Patient,
    Series,
    StagedObject,
    Study,
    ValidationFinding,
    ValidationRuleSetting,
)
from apps.imaging.objectstore import StoredObject
from apps.tenants.models import Hospital


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


class Refused(Exception):
    def __init__(self, code: str, message_zh: str, message_en: str, *, conflict_with: Instance | None = None) -> None:
        super().__init__(code)
        self.code, self.message_zh, self.message_en = code, message_zh, message_en
        self.conflict_with = conflict_with


class RedoOneByOne(Exception):
    """The rows a batch deferred cannot be written as they are (a SOP Instance UID taken meanwhile,
    or stored elsewhere, or sent twice in one request with different bytes): the caller rolls the
    batch back and ingests its objects again one at a time, with ``defer_rows`` off."""


def validation_policy(hospital: Hospital) -> ValidationPolicy:
    """The hospital's rule severities (per modality) over the rules' defaults."""
    overrides = {
        (code, modality.strip().upper() or "*"): Severity(severity)
        for code, modality, severity in ValidationRuleSetting.objects.filter(hospital=hospital).values_list(
            "code", "modality", "severity"
        )
    }
    return ValidationPolicy(institution_name=hospital.institution_name, severity_overrides=overrides)


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
    # Set by a caller that waits for its objects' fsyncs itself before committing (a STOW-RS request:
    # the disk syncs one object while the next is parsed and indexed). Shared by the batch's forks.
    writes: DeferredWrites | None = None
    # Set by a caller that flushes the batch itself (a STOW-RS request): the rows of objects received
    # in memory and stored (Instance) or found stored already, their final StagedObject rows and
    # findings, are inserted together by ``ingest_batch_flush`` instead of one by one. The unique
    # constraint on SOP Instance UIDs is then checked there, for the batch: the caller must be
    # ready for RedoOneByOne.
    defer_rows: bool = False
    # With defer_rows: the final state of objects staged beforehand (their rows exist) is written at
    # the flush too, in one UPDATE, instead of one per object (an ingest task's claimed objects,
    # ``apps.imaging.together``). Off for STOW-RS, whose staged parts are large and few.
    defer_staged_rows: bool = False
    pending_instances: list[Instance] = field(default_factory=list)
    pending_rows: list[tuple[StagedObject, list[Finding], str, Instance | None]] = field(default_factory=list)

    def fork(self) -> "IngestBatch":
        return replace(
            self, patients=dict(self.patients), studies=dict(self.studies), series=dict(self.series),
            series_added=Counter(self.series_added), study_instances_added=Counter(self.study_instances_added),
            study_series_added=Counter(self.study_series_added), study_modalities=dict(self.study_modalities),
            series_instances={uid: dict(known) for uid, known in self.series_instances.items()},
            pending_instances=list(self.pending_instances), pending_rows=list(self.pending_rows),
        )  # fmt: skip

    def adopt(self, work: "IngestBatch") -> None:
        """Take over what an object's successful attempt found and added (its retry's caution,
        ``trust_series_instances``, was for that object only)."""
        self.__dict__.update({name: value for name, value in work.__dict__.items() if name != "trust_series_instances"})


# What ``_final_state`` (apps.imaging.ingest) sets on an object that is stored or a duplicate.
_FINAL_STAGED_FIELDS = ["status", "instance", "sop_instance_uid", "sop_class_uid", "updated_at"]


def ingest_batch_flush(*, batch: IngestBatch) -> None:
    """Insert the rows the batch deferred, and write the counters it collected (F() increments, so
    concurrent requests add up). Raises RedoOneByOne if a deferred instance's UID is taken."""
    if batch.pending_instances:
        try:
            Instance.objects.bulk_create(batch.pending_instances)
        except (IntegrityError, OperationalError) as error:
            # A UID taken, or a deadlock with a request inserting the same UIDs in another order
            # (any other operational error too: the one-by-one path meets it on its own). The
            # transaction is unusable until the caller rolls its savepoint back.
            raise RedoOneByOne from error
        batch.pending_instances.clear()
    if batch.pending_rows:
        staged_rows = [staged for staged, *_ in batch.pending_rows]
        StagedObject.objects.bulk_create([staged for staged in staged_rows if staged.pk is None])
        if existing := [staged for staged in staged_rows if staged.pk is not None]:
            now = timezone.now()
            for staged in existing:
                staged.updated_at = now
            StagedObject.objects.bulk_update(existing, _FINAL_STAGED_FIELDS)
        ValidationFinding.objects.bulk_create(
            row for staged, findings, modality, instance in batch.pending_rows
            for row in finding_rows(staged, findings, modality, instance)
        )  # fmt: skip
        batch.pending_rows.clear()
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
        if existing.pk is None:
            raise RedoOneByOne  # a conflict is kept against a stored instance, not a deferred one
        raise Refused(
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


def _remembered[Row: Patient | Study | Series](
    cache: dict[str, Row], key: str, lookup: Callable[[], Row | None]
) -> Row | None:
    """The row the batch found under ``key`` before, else ``lookup()``'s, remembered if found
    (absent rows are not remembered: another request may create them meanwhile)."""
    if (known := cache.get(key)) is not None:
        return known
    row = lookup()
    if row is not None:
        cache[key] = row
    return row


def existing_patient(batch: IngestBatch, parsed: ParsedInstance) -> Patient | None:
    mrn_index = blind_index(batch.hospital, parsed.patient_id, field="mrn")
    return _remembered(
        batch.patients, mrn_index, lambda: Patient.objects.filter(hospital=batch.hospital, mrn_index=mrn_index).first()
    )


def _existing_study(batch: IngestBatch, study_instance_uid: str) -> Study | None:
    return _remembered(
        batch.studies, study_instance_uid,
        lambda: Study.objects.filter(hospital=batch.hospital, study_instance_uid=study_instance_uid).first(),
    )  # fmt: skip


def _existing_series(batch: IngestBatch, series_instance_uid: str) -> Series | None:
    if series_instance_uid not in batch.series and (
        batch.trust_series_instances and series_instance_uid in batch.series_instances
    ):
        return None  # looked up in this batch and absent (a series created since is in batch.series)
    return _remembered(
        batch.series, series_instance_uid,
        lambda: Series.objects.filter(hospital=batch.hospital, series_instance_uid=series_instance_uid).first(),
    )  # fmt: skip


def identity_findings(hospital: Hospital, parsed: ParsedInstance, patient: Patient | None) -> list[Finding]:
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


def _second_patient() -> Refused:
    return Refused(
        "STUDY_MULTIPLE_PATIENTS",
        "同一检查中出现了第二位患者的身份。",
        "A second patient identity appeared inside one study.",
    )


def _series_in_other_study() -> Refused:
    return Refused(
        "SERIES_IN_OTHER_STUDY",
        "该序列 UID 已属于另一个检查。",
        "This Series Instance UID already belongs to another study.",
    )


def placement_or_existing(
    batch: IngestBatch, parsed: ParsedInstance, patient: Patient | None, sha256: str
) -> tuple[Instance | None, tuple[Study | None, Series | None]]:
    """The instance already stored under the object's SOP Instance UID with the same bytes (a
    duplicate), else where the object goes: its existing study and series, if any.

    Raises Refused for different bytes under a stored UID (a conflict, ahead of anything else) or
    for a misplacement (the study of another patient, the series of another study). The batch's
    lists hold the object's own series only, so before a misplacement is reported, a UID stored
    elsewhere (under another patient or study) is looked up directly.
    """
    existing = _check_existing(batch, parsed, sha256)
    if existing is not None:
        return existing, (None, None)
    try:
        return None, _placement(batch, parsed, patient)
    except Refused:
        if batch.prefetch_series and (existing := _check_existing(batch, parsed, sha256, directly=True)):
            return existing, (None, None)
        raise


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


def index_instance(
    batch: IngestBatch,
    parsed: ParsedInstance,
    stored: StoredObject,
    sealed_metadata: bytes,
    placement: tuple[Patient | None, Study | None, Series | None],
    *,
    defer: bool = False,
) -> Instance:
    """Insert the instance (or, ``defer``, leave it to the batch's flush), and its patient, study
    and series when new. Counters of rows created here start at this instance; those of existing
    rows are collected in the batch."""
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
    instance = Instance(
        hospital=hospital,
        series=series,
        sop_instance_uid=parsed.sop_instance_uid,
        **instance_stored_fields(parsed, stored, sealed_metadata),
    )
    if defer:
        batch.pending_instances.append(instance)
    else:
        instance.save(force_insert=True)
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


def finding_row(
    *, hospital: Hospital, staged_id: int, instance: Instance | None, finding: Finding, modality: str
) -> ValidationFinding:
    """The stored form of one validation finding (messages cut to their columns)."""
    return ValidationFinding(
        hospital=hospital,
        staged_id=staged_id,
        instance=instance,
        code=finding.code,
        severity=str(finding.severity),
        modality=modality[:16],
        message_zh=finding.message_zh[:300],
        message_en=finding.message_en[:300],
        details=dict(finding.details),
    )


def finding_rows(
    staged: StagedObject, findings: list[Finding], modality: str, instance: Instance | None
) -> Iterator[ValidationFinding]:
    """The unsaved rows of one object's findings (its staged row must have its pk)."""
    for finding in findings:
        yield finding_row(
            hospital=staged.hospital, staged_id=staged.pk, instance=instance, finding=finding, modality=modality
        )


def record_findings(staged: StagedObject, findings: list[Finding], modality: str, instance: Instance | None) -> None:
    ValidationFinding.objects.bulk_create(finding_rows(staged, findings, modality, instance))
