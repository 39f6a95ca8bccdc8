"""Data validation across instances: within a series (modality, device, body part, slice spacing) and
within a study (one patient; completeness against the sender's manifest).

Instances are grouped by their Series (or Study) Instance UID here, so callers may pass a whole study.
A series-level finding is attached to each instance that differs from the majority of its series, so
the instances that are probably wrong are the ones flagged; ties go to the value seen first.
"""

import statistics
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from itertools import pairwise

from apps.imaging.dicom.parse import ParsedInstance
from apps.imaging.dicom.rules import Finding, ValidationPolicy, make_finding

# Direction cosines within this of each other are the same plane (about 0.6 degrees).
_ORIENTATION_TOLERANCE = 0.01
# Positions this close along the slice normal are one location (phases, echoes, repeats).
_SAME_LOCATION_MM = 0.01


def validate_series(instances: Sequence[ParsedInstance], *, policy: ValidationPolicy) -> list[tuple[str, Finding]]:
    """Cross-instance checks of each series among `instances`; returns (SOP Instance UID, finding) pairs."""
    results: list[tuple[str, Finding]] = []
    for members in _grouped(instances, lambda instance: instance.series_instance_uid):
        results += _mixed(members, "SERIES_MIXED_MODALITY", policy, _modality, ("检查类型（Modality）", "Modality"))
        results += _mixed(members, "SERIES_MIXED_DEVICE", policy, _device, ("设备（厂商 / 工作站）", "device"))
        results += _mixed(members, "SERIES_MIXED_BODY_PART", policy, _body_part, ("检查部位", "Body Part Examined"))
        results += _slice_spacing(members, policy)
    return results


def _grouped(instances: Sequence[ParsedInstance], key: Callable[[ParsedInstance], str]) -> list[list[ParsedInstance]]:
    """Instances grouped by `key`, each SOP instance once (a resent instance must not count twice)."""
    groups: dict[str, dict[str, ParsedInstance]] = {}
    for instance in instances:
        groups.setdefault(key(instance), {}).setdefault(instance.sop_instance_uid, instance)
    return [list(group.values()) for group in groups.values()]


def _modality(instance: ParsedInstance) -> str | None:
    return instance.modality or None


def _device(instance: ParsedInstance) -> str | None:
    if not instance.manufacturer and not instance.station_name:
        return None
    return f"{instance.manufacturer} / {instance.station_name}"


def _body_part(instance: ParsedInstance) -> str | None:
    # Body Part Examined is Type 3: an instance without it does not make the series mixed.
    return instance.body_part_examined or None


def _mixed(
    members: list[ParsedInstance],
    code: str,
    policy: ValidationPolicy,
    value_of: Callable[[ParsedInstance], str | None],
    label: tuple[str, str],
) -> list[tuple[str, Finding]]:
    values = {instance.sop_instance_uid: value_of(instance) for instance in members}
    counts = Counter(value for value in values.values() if value is not None)
    if len(counts) < 2:
        return []
    expected = counts.most_common(1)[0][0]
    label_zh, label_en = label
    return [
        (
            instance.sop_instance_uid,
            make_finding(
                code,
                policy=policy,
                modality=instance.modality,
                message_zh=f"本序列多数实例的{label_zh}为“{expected}”，此实例为“{actual}”",
                message_en=f"Most instances of this series have {label_en} '{expected}'; this one has '{actual}'",
                expected=expected,
                actual=actual,
                distinct_values=len(counts),
            ),
        )
        for instance in members
        if (actual := values[instance.sop_instance_uid]) is not None and actual != expected
    ]


def _tolerance(millimetres: float) -> float:
    """10% of a distance, but never under 0.1 mm (positions are often rounded to 0.1 mm)."""
    return max(0.1, 0.1 * abs(millimetres))


def _slice_spacing(members: list[ParsedInstance], policy: ValidationPolicy) -> list[tuple[str, Finding]]:
    """SLICE_SPACING_INCONSISTENT: a missing slice or an overlap in a stack of parallel slices.

    The rule, per stack of instances sharing an orientation (within 0.01 of each direction cosine):
    order them by Image Position (Patient) projected on the slice normal (the cross product of the row
    and column cosines), keep one instance per location, and take the gaps between neighbours. A gap is
    flagged when it differs from the stack's median gap by more than the tolerance (so the spacing is
    not uniform) AND differs from the median Slice Thickness by more than the tolerance (so it is not
    the contiguous spacing either). Tolerance: 10% of the distance compared with, or 0.1 mm, whichever
    is larger. Uniform spacing that differs from the thickness (deliberate gaps or overlapping
    reconstructions) is never flagged. Without Slice Thickness only the median gap counts. The
    finding goes to the instance after the gap; a stack needs three locations to have a median.
    """
    stacks: list[tuple[tuple[float, ...], list[ParsedInstance]]] = []
    for instance in members:
        orientation = instance.image_orientation_patient
        if orientation is None or instance.image_position_patient is None:
            continue
        for reference, stack in stacks:
            if max(abs(a - b) for a, b in zip(reference, orientation, strict=True)) <= _ORIENTATION_TOLERANCE:
                stack.append(instance)
                break
        else:
            stacks.append((orientation, [instance]))
    results: list[tuple[str, Finding]] = []
    for reference, stack in stacks:
        results += _stack_gaps(reference, stack, policy)
    return results


def _stack_gaps(
    orientation: tuple[float, ...], stack: list[ParsedInstance], policy: ValidationPolicy
) -> list[tuple[str, Finding]]:
    row, column = orientation[:3], orientation[3:]
    normal = (
        row[1] * column[2] - row[2] * column[1],
        row[2] * column[0] - row[0] * column[2],
        row[0] * column[1] - row[1] * column[0],
    )
    if sum(component * component for component in normal) < 0.25:
        return []  # Row and column cosines (nearly) parallel: no plane to measure along.
    located = sorted(
        (
            (sum(p * n for p, n in zip(instance.image_position_patient or (), normal, strict=True)), instance)
            for instance in stack
        ),
        key=lambda pair: pair[0],
    )
    locations: list[tuple[float, ParsedInstance]] = []
    for distance, instance in located:
        if not locations or distance - locations[-1][0] >= _SAME_LOCATION_MM:
            locations.append((distance, instance))
    if len(locations) < 3:
        return []
    gaps = [after[0] - before[0] for before, after in pairwise(locations)]
    typical = statistics.median(gaps)
    thicknesses = [instance.slice_thickness for _, instance in locations if instance.slice_thickness]
    thickness = statistics.median(thicknesses) if thicknesses else None
    expected = typical if thickness is None else thickness
    results: list[tuple[str, Finding]] = []
    for gap, (_, instance) in zip(gaps, locations[1:], strict=True):
        if abs(gap - typical) <= _tolerance(typical) or abs(gap - expected) <= _tolerance(expected):
            continue
        missing = gap > expected
        results.append(
            (
                instance.sop_instance_uid,
                make_finding(
                    "SLICE_SPACING_INCONSISTENT",
                    policy=policy,
                    modality=instance.modality,
                    message_zh=f"与上一层的间距为 {gap:.2f} mm，层厚为 {expected:.2f} mm，"
                    f"本序列典型层间距为 {typical:.2f} mm：{'疑似缺层' if missing else '层面重叠'}",
                    message_en=f"{gap:.2f} mm from the previous slice, where the thickness is {expected:.2f} mm "
                    f"and the series' usual spacing {typical:.2f} mm: {'a missing slice' if missing else 'an overlap'}",
                    spacing_mm=round(gap, 3),
                    expected_mm=round(expected, 3),
                    typical_spacing_mm=round(typical, 3),
                    instance_number=instance.instance_number,
                    kind="gap" if missing else "overlap",
                ),
            )
        )
    return results


def _normalised_name(name: str) -> str:
    """A person name without padding or empty trailing components, case-folded ("Zhang^San^^" == "ZHANG^SAN")."""
    groups = [group.rstrip("^ ").strip() for group in name.split("=")]
    return "=".join(groups).rstrip("=").casefold()


def validate_study(instances: Sequence[ParsedInstance], *, policy: ValidationPolicy) -> list[tuple[str, Finding]]:
    """STUDY_MULTIPLE_PATIENTS: each instance whose patient differs from the majority of its study.

    Patients are compared by Patient ID and name (normalised) and by birth date where both instances
    have one. The finding says how many identities there are and which attributes differ, never values.
    """
    results: list[tuple[str, Finding]] = []
    for members in _grouped(instances, lambda instance: instance.study_instance_uid):
        identities = {
            instance.sop_instance_uid: (
                instance.patient_id.strip().casefold(),
                _normalised_name(instance.patient_name),
                instance.patient_birth_date,
            )
            for instance in members
        }
        majority = Counter(identities.values()).most_common(1)[0][0]
        differing: dict[str, list[str]] = {}
        for uid, (patient_id, name, birth_date) in identities.items():
            fields = [
                keyword
                for keyword, differs in (
                    ("PatientID", patient_id != majority[0]),
                    ("PatientName", name != majority[1]),
                    ("PatientBirthDate", None not in (birth_date, majority[2]) and birth_date != majority[2]),
                )
                if differs
            ]
            if fields:
                differing[uid] = fields
        if not differing:
            continue
        count = 1 + len({identities[uid] for uid in differing})
        for instance in members:
            if instance.sop_instance_uid not in differing:
                continue
            fields_named = ", ".join(differing[instance.sop_instance_uid])
            results.append(
                (
                    instance.sop_instance_uid,
                    make_finding(
                        "STUDY_MULTIPLE_PATIENTS",
                        policy=policy,
                        modality=instance.modality,
                        message_zh=f"同一检查中有 {count} 个不同的患者身份；此实例的 {fields_named} 与多数实例不同",
                        message_en=f"This study holds {count} different patient identities; this instance's "
                        f"{fields_named} differ from most instances",
                        identities=count,
                        instances=len(members),
                        differing_attributes=fields_named,
                    ),
                )
            )
    return results


def study_completeness(
    instances: Sequence[ParsedInstance],
    manifest: Mapping[str, int] | None,
    *,
    policy: ValidationPolicy | None = None,
) -> list[Finding]:
    """STUDY_INCOMPLETE for each series of `manifest` (Series Instance UID -> expected count) short of instances.

    No manifest, no check: only the sender knows how many instances it meant to send. Without a policy the
    rule's default severity applies. Series received beyond the manifest are not this rule's business.
    """
    if not manifest:
        return []
    policy = policy or ValidationPolicy(institution_name="")
    received: dict[str, list[ParsedInstance]] = {}
    for members in _grouped(instances, lambda instance: instance.series_instance_uid):
        received[members[0].series_instance_uid] = members
    findings: list[Finding] = []
    for series_uid, expected in manifest.items():
        members = received.get(series_uid, [])
        if len(members) >= expected:
            continue
        modality = members[0].modality if members else ""
        series_number = members[0].series_number if members else None
        label_zh = f"序列 {series_number}" if series_number is not None else "一个序列"
        label_en = f"Series {series_number}" if series_number is not None else "A series"
        findings.append(
            make_finding(
                "STUDY_INCOMPLETE",
                policy=policy,
                modality=modality,
                message_zh=f"{label_zh}应有 {expected} 个实例，只收到 {len(members)} 个",
                message_en=f"{label_en} should have {expected} instances; {len(members)} arrived",
                series_instance_uid=series_uid,
                series_number=series_number,
                expected=expected,
                received=len(members),
                missing=expected - len(members),
            )
        )
    return findings
