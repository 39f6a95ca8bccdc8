"""Series-level validation of what a request or an upload stored: one modality, device and body
part per series, slice spacing consistent with thickness; recorded as QC findings."""

import uuid

from apps.imaging import metadata
from apps.imaging.dicom.parse import ParsedInstance, parsed_from_header
from apps.imaging.dicom.rules import Finding, ValidationPolicy
from apps.imaging.dicom.series_rules import validate_series
from apps.imaging.indexing import IngestOutcome, finding_row, validation_policy
from apps.imaging.models import (
    Instance,
    StagedObject,
    ValidationFinding,
)
from apps.tenants.models import Hospital


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
    rows = []
    for sop_instance_uid, finding in results:
        outcome = by_uid[sop_instance_uid]
        assert outcome.parsed is not None
        rows.append(
            finding_row(
                hospital=hospital, staged_id=outcome.staged.pk, instance=outcome.staged.instance, finding=finding,
                modality=outcome.parsed.modality,
            )
        )  # fmt: skip
        outcome.findings.append(finding)
        recorded.append((outcome.staged, finding))
    ValidationFinding.objects.bulk_create(rows)  # one INSERT for a finding on every slice
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
            finding_row(
                hospital=hospital, staged_id=staged_of[instance.pk], instance=instance, finding=finding,
                modality=parsed_by_uid[sop_instance_uid].modality,
            )
        )  # fmt: skip
    ValidationFinding.objects.bulk_create(recorded)
    return len(recorded)
