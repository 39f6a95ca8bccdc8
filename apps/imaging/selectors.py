"""Reads of the archive index, for QIDO-RS and WADO-RS (and later the portal and viewer).

Every selector takes the hospital explicitly and filters by it; row-level security backs it up.
"""

import re
from dataclasses import dataclass
from datetime import date, datetime

from django.db.models import Q, QuerySet

from apps.imaging.keys import blind_index, field_unseal
from apps.imaging.models import Instance, Patient, Series, Study, StudyManifest
from apps.tenants.models import Hospital


class QueryError(ValueError):
    """A query parameter the archive cannot understand (the caller answers 400)."""


@dataclass(frozen=True)
class PatientIdentity:
    patient_id: str
    name: str  # as DICOM holds it (PN: components by ^, groups by =); QIDO answers with this
    birth_date: str
    sex: str

    @property
    def display_name(self) -> str:
        return person_name_display(self.name)


_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def person_name_display(value: str) -> str:
    """A DICOM person name as people write it: the ideographic group when there is one (张^三 →
    张三), else the alphabetic one with its components spaced (Zhang^San → Zhang San). Components
    of Chinese characters are joined without a space."""
    groups = value.split("=")
    chosen = next((group for group in (groups[1:2] + groups[:1]) if group.strip("^ ")), "")
    parts = [part.strip() for part in chosen.split("^") if part.strip()]
    return ("" if any(_CJK.search(part) for part in parts) else " ").join(parts)


def patient_identity(hospital: Hospital, patient: Patient) -> PatientIdentity:
    return PatientIdentity(
        patient_id=field_unseal(hospital, patient.mrn_sealed, field="mrn"),
        name=field_unseal(hospital, patient.name_sealed, field="name"),
        birth_date=field_unseal(hospital, patient.birth_date_sealed, field="birth").replace("-", ""),
        sex=patient.sex,
    )


def _parse_da(value: str) -> date:
    try:
        return datetime.strptime(value, "%Y%m%d").date()
    except ValueError as error:
        raise QueryError(f"not a DICOM date: {value!r}") from error


def date_range_filter(field: str, value: str) -> Q:
    """DICOM range matching: ``D``, ``D1-D2``, ``-D2``, ``D1-``."""
    value = value.strip().replace(".", "")
    if "-" not in value:
        return Q(**{field: _parse_da(value)})
    start, _sep, end = value.partition("-")
    query = Q()
    if start:
        query &= Q(**{f"{field}__gte": _parse_da(start)})
    if end:
        query &= Q(**{f"{field}__lte": _parse_da(end)})
    if not start and not end:
        raise QueryError("an empty date range")
    return query


def wildcard_regex(pattern: str) -> re.Pattern[str]:
    """DICOM wildcard matching (PS3.4 C.2.2.2.4): ``*`` any run, ``?`` one character."""
    escaped = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{escaped}$", re.IGNORECASE | re.DOTALL)


def uid_list(value: str) -> list[str]:
    return [uid.strip() for uid in re.split(r"[,\\]", value) if uid.strip()]


def modality_filter(modality: str) -> Q:
    m = modality.upper()
    return (
        Q(modalities=m)
        | Q(modalities__startswith=f"{m}\\")
        | Q(modalities__endswith=f"\\{m}")
        | Q(modalities__contains=f"\\{m}\\")
    )


def studies_matching(hospital: Hospital, params: dict[str, str]) -> QuerySet[Study]:
    """Studies of ``hospital`` matching QIDO-RS study-level keys (except PatientName wildcards,
    which ``filter_patient_name`` applies after decrypting)."""
    studies = Study.objects.filter(hospital=hospital).select_related("patient")
    if value := params.get("StudyInstanceUID"):
        studies = studies.filter(study_instance_uid__in=uid_list(value))
    if value := params.get("PatientID"):
        if "*" in value or "?" in value:
            raise QueryError("PatientID matching is exact in this archive")
        studies = studies.filter(patient__mrn_index=blind_index(hospital, value, field="mrn"))
    if value := params.get("StudyDate"):
        studies = studies.filter(date_range_filter("study_date", value))
    if value := params.get("AccessionNumber"):
        studies = studies.filter(accession_number=value)
    if value := params.get("ModalitiesInStudy"):
        studies = studies.filter(modality_filter(value))
    if value := params.get("StudyID"):
        studies = studies.filter(study_id=value)
    if (value := params.get("PatientName")) and "*" not in value and "?" not in value:
        studies = studies.filter(patient__name_index=blind_index(hospital, value, field="name"))
    return studies.order_by("-study_date", "-study_time", "id")


def filter_patient_name(hospital: Hospital, studies: list[Study], pattern: str | None) -> list[Study]:
    if not pattern or ("*" not in pattern and "?" not in pattern):
        return studies
    regex = wildcard_regex(pattern)
    return [s for s in studies if regex.match(field_unseal(hospital, s.patient.name_sealed, field="name"))]


def series_matching(hospital: Hospital, params: dict[str, str], study_uid: str | None) -> QuerySet[Series]:
    series = Series.objects.filter(hospital=hospital).select_related("study", "study__patient")
    if study_uid:
        series = series.filter(study__study_instance_uid=study_uid)
    if value := params.get("SeriesInstanceUID"):
        series = series.filter(series_instance_uid__in=uid_list(value))
    if value := params.get("Modality"):
        series = series.filter(modality=value.upper())
    if value := params.get("SeriesNumber"):
        try:
            series = series.filter(series_number=int(value))
        except ValueError as error:
            raise QueryError("SeriesNumber must be an integer") from error
    if value := params.get("StudyInstanceUID"):
        series = series.filter(study__study_instance_uid__in=uid_list(value))
    return series.order_by("study_id", "series_number", "id")


def instances_matching(
    hospital: Hospital, params: dict[str, str], study_uid: str | None, series_uid: str | None
) -> QuerySet[Instance]:
    instances = Instance.objects.filter(hospital=hospital).select_related("series", "series__study")
    if study_uid:
        instances = instances.filter(series__study__study_instance_uid=study_uid)
    if series_uid:
        instances = instances.filter(series__series_instance_uid=series_uid)
    if value := params.get("SOPInstanceUID"):
        instances = instances.filter(sop_instance_uid__in=uid_list(value))
    if value := params.get("SOPClassUID"):
        instances = instances.filter(sop_class_uid__in=uid_list(value))
    if value := params.get("SeriesInstanceUID"):
        instances = instances.filter(series__series_instance_uid__in=uid_list(value))
    if value := params.get("InstanceNumber"):
        try:
            instances = instances.filter(instance_number=int(value))
        except ValueError as error:
            raise QueryError("InstanceNumber must be an integer") from error
    return instances.order_by("series_id", "instance_number", "id")


def study_images_complete(study: Study) -> bool:
    """Whether the study's images are all here, for publication to the patient.

    With a manifest (``apps.imaging.manifest.study_manifest_set``): every series it names holds
    at least the expected number of instances. Without one, only the sender knows what it meant
    to send, so a study with at least one stored instance counts as complete. Call it inside the
    study's hospital context.
    """
    manifest = StudyManifest.objects.filter(
        hospital_id=study.hospital_id, study_instance_uid=study.study_instance_uid
    ).first()
    if manifest is None:
        return Instance.objects.filter(hospital_id=study.hospital_id, series__study=study).exists()
    received = dict(
        Series.objects.filter(
            hospital_id=study.hospital_id, study=study, series_instance_uid__in=list(manifest.series_counts)
        ).values_list("series_instance_uid", "number_of_instances")
    )
    return all(received.get(uid, 0) >= int(expected) for uid, expected in manifest.series_counts.items())
