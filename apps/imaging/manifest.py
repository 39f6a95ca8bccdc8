"""Study completeness against an optional manifest (检查完整性): services and the sweep.

A manifest names the series a study should have and how many instances each. Images may arrive
before or after it, over minutes, in any order, so completeness is a question asked when it
matters (``apps.imaging.selectors.study_images_complete``, e.g. before publishing to the
patient) and, for QC, by a periodic sweep: a study still short of its manifest once arrivals
have been quiet for ``QUIET_PERIOD`` gets one STUDY_INCOMPLETE finding (on its latest received
object), not one per request while the transfer is still running.
"""

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.imaging.dicom.rules import make_finding
from apps.imaging.indexing import finding_row, validation_policy
from apps.imaging.models import Series, StagedObject, StudyManifest, ValidationFinding
from apps.tenants.models import Hospital

QUIET_PERIOD = timedelta(minutes=30)
MAX_SERIES = 10_000
MAX_INSTANCES_PER_SERIES = 1_000_000
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


class ManifestError(ValueError):
    """A manifest that cannot be accepted; the message says why and quotes no patient data."""


def _valid_uid(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 64 and bool(_UID.match(value))


def study_manifest_set(
    *, hospital: Hospital, study_instance_uid: str, series_counts: Mapping[str, int], actor: Any
) -> StudyManifest:
    """Record (or replace) what ``study_instance_uid`` should hold: Series Instance UID ->
    expected number of instances. ``actor`` is who sends it (a token or user), for the caller's
    audit record. Raises ManifestError for malformed UIDs or counts."""
    if not _valid_uid(study_instance_uid):
        raise ManifestError(_("The Study Instance UID is not a valid UID."))
    if not series_counts or len(series_counts) > MAX_SERIES:
        raise ManifestError(_("A manifest names between 1 and %(limit)d series.") % {"limit": MAX_SERIES})
    counts: dict[str, int] = {}
    for series_uid, count in series_counts.items():
        if not _valid_uid(series_uid):
            raise ManifestError(_("A Series Instance UID is not a valid UID."))
        if isinstance(count, bool) or not isinstance(count, int) or not 0 < count <= MAX_INSTANCES_PER_SERIES:
            raise ManifestError(
                _("Expected instance counts are whole numbers from 1 to %(limit)d.")
                % {"limit": MAX_INSTANCES_PER_SERIES}
            )
        counts[series_uid] = count
    with transaction.atomic():
        manifest, _created = StudyManifest.objects.update_or_create(
            hospital=hospital,
            study_instance_uid=study_instance_uid,
            defaults={"series_counts": counts, "incomplete_reported_at": None},
        )
    return manifest


def manifest_shortfall(*, hospital: Hospital, manifest: StudyManifest) -> dict[str, tuple[int, int]]:
    """Series of the manifest short of instances: Series Instance UID -> (expected, received)."""
    received = dict(
        Series.objects.filter(
            hospital=hospital,
            study__study_instance_uid=manifest.study_instance_uid,
            series_instance_uid__in=list(manifest.series_counts),
        ).values_list("series_instance_uid", "number_of_instances")
    )
    return {
        series_uid: (int(expected), received.get(series_uid, 0))
        for series_uid, expected in manifest.series_counts.items()
        if received.get(series_uid, 0) < int(expected)
    }


def study_completeness_check(*, hospital: Hospital, manifest: StudyManifest) -> list[ValidationFinding]:
    """Record STUDY_INCOMPLETE findings for a study still short of its manifest, once per manifest.

    Findings belong to a received object: they are attached to the study's latest one. A study
    of which nothing arrived has no object to carry them; the selector still says incomplete.
    """
    if manifest.incomplete_reported_at is not None:
        return []
    shortfall = manifest_shortfall(hospital=hospital, manifest=manifest)
    if not shortfall:
        return []
    latest = (
        StagedObject.objects.filter(
            hospital=hospital,
            instance__series__study__study_instance_uid=manifest.study_instance_uid,
        )
        .select_related("instance__series")
        .order_by("-created_at", "-id")
        .first()
    )
    if latest is None:
        return []
    policy = validation_policy(hospital)
    series_numbers = dict(
        Series.objects.filter(hospital=hospital, series_instance_uid__in=list(shortfall)).values_list(
            "series_instance_uid", "series_number"
        )
    )
    recorded = []
    for series_uid, (expected, received) in shortfall.items():
        number = series_numbers.get(series_uid)
        label_zh = f"序列 {number}" if number is not None else "一个序列"
        label_en = f"Series {number}" if number is not None else "A series"
        modality = latest.instance.series.modality if latest.instance else ""
        finding = make_finding(
            "STUDY_INCOMPLETE",
            policy=policy,
            modality=modality,
            message_zh=f"{label_zh}应有 {expected} 个实例，只收到 {received} 个",
            message_en=f"{label_en} should have {expected} instances; {received} arrived",
            series_instance_uid=series_uid,
            expected=expected,
            received=received,
            missing=expected - received,
        )
        recorded.append(
            finding_row(hospital=hospital, staged_id=latest.pk, instance=None, finding=finding, modality=modality)
        )
    ValidationFinding.objects.bulk_create(recorded)
    StudyManifest.objects.filter(pk=manifest.pk).update(incomplete_reported_at=timezone.now())
    return recorded


def quiet_manifests(*, hospital: Hospital, now: Any = None) -> list[StudyManifest]:
    """Unreported manifests whose study received nothing for QUIET_PERIOD (or ever, since the
    manifest arrived that long ago)."""
    cutoff = (now or timezone.now()) - QUIET_PERIOD
    manifests = list(
        StudyManifest.objects.filter(hospital=hospital, incomplete_reported_at__isnull=True, updated_at__lt=cutoff)
    )
    latest_staged = dict(
        StagedObject.objects.filter(
            hospital=hospital,
            instance__series__study__study_instance_uid__in=[m.study_instance_uid for m in manifests],
        )
        .values("instance__series__study__study_instance_uid")
        .annotate(last=Max("created_at"))
        .values_list("instance__series__study__study_instance_uid", "last")
    )
    quiet = []
    for manifest in manifests:
        last = latest_staged.get(manifest.study_instance_uid)
        if last is None or last < cutoff:
            quiet.append(manifest)
    return quiet
