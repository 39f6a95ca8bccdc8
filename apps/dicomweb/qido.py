"""QIDO-RS (PS3.18 10.6): search for studies, series and instances.

Each response carries the attributes PS3.18 Table 10.6.3-3/-4/-5 require at its level. Those
named in ``includefield`` come from the stored header of the result's first instance (an
attribute the header lacks is left out); ``includefield=all`` adds a set of further attributes
of the level, and at the instance level every standard attribute except bulk data.
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import Min
from django.http import HttpResponse
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from rest_framework.request import Request

from apps.audit.vocabulary import Action
from apps.dicomweb import dicomjson
from apps.dicomweb.base import DICOM_JSON, DicomWebView, json_error
from apps.imaging import selectors
from apps.imaging.metadata import unseal_metadata
from apps.imaging.models import Instance, Series, Study

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_CONTROL = {"limit", "offset", "includefield", "fuzzymatching"}


def _normalize(query: Any) -> dict[str, str]:
    """Query keys as keywords: ``00100020`` and ``PatientID`` are the same key."""
    params: dict[str, str] = {}
    for key, value in query.items():
        if key in _CONTROL:
            continue
        if len(key) == 8 and all(c in "0123456789abcdefABCDEF" for c in key):
            key = keyword_for_tag(int(key, 16)) or key
        params[key] = value
    return params


# What includefield=all adds at the study and series levels, taken from the stored header of the
# level's first instance (attributes of these levels, so any instance gives the same value).
_ALL_STUDY = (
    "IssuerOfPatientID", "PatientAge", "PatientSize", "PatientWeight", "InstitutionName",
    "NameOfPhysiciansReadingStudy", "AdmittingDiagnosesDescription", "StudyComments",
)  # fmt: skip
_ALL_SERIES = (
    "SeriesDate", "SeriesTime", "Manufacturer", "ManufacturerModelName", "StationName", "InstitutionName",
    "ProtocolName", "Laterality", "PatientPosition", "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime", "OperatorsName", "PerformingPhysicianName",
)  # fmt: skip


@dataclass(frozen=True)
class IncludeFields:
    """The ``includefield`` parameter: ``all``, or attributes by keyword or tag."""

    everything: bool
    tags: tuple[str, ...]  # eight upper-case hex digits each

    @property
    def wanted(self) -> bool:
        return self.everything or bool(self.tags)


def _include_fields(query: Any) -> IncludeFields:
    everything = False
    tags: list[str] = []
    for raw in query.getlist("includefield"):
        for name in (part.strip() for part in raw.split(",")):
            if not name:
                continue
            if name == "all":
                everything = True
                continue
            if len(name) == 8 and all(c in "0123456789abcdefABCDEF" for c in name):
                tags.append(name.upper())
                continue
            tag = tag_for_keyword(name)
            if tag is None:
                raise selectors.QueryError("includefield names an unknown attribute")
            tags.append(f"{tag:08X}")
    return IncludeFields(everything, tuple(dict.fromkeys(tags)))


def _tags_of(keywords: Iterable[str]) -> list[str]:
    return [f"{tag_for_keyword(keyword):08X}" for keyword in keywords]


def _from_header(result: dict[str, Any], header: dict[str, Any], tags: Iterable[str]) -> None:
    """Add the named attributes the header holds and the result lacks. Bulk data (pixel data,
    large binary values) is WADO-RS's business, not a search result's."""
    for tag in tags:
        element = header.get(tag)
        if tag in result or element is None or "BulkDataURI" in element:
            continue
        result[tag] = element


# Far beyond any archive's matches, and within the database's integer range.
MAX_OFFSET = 10**9


def _page(query: Any) -> tuple[int, int]:
    try:
        limit = int(query.get("limit", DEFAULT_LIMIT))
        offset = int(query.get("offset", 0))
    except ValueError as error:
        raise selectors.QueryError("limit and offset must be integers") from error
    if limit < 0 or offset < 0:
        raise selectors.QueryError("limit and offset must not be negative")
    if offset > MAX_OFFSET:
        raise selectors.QueryError(f"offset must not exceed {MAX_OFFSET}")
    return min(limit or DEFAULT_LIMIT, MAX_LIMIT), offset


class _QidoView(DicomWebView):
    level = ""
    matching_keys: frozenset[str] = frozenset()

    def get(self, request: Request, hospital_code: str, **uids: str) -> HttpResponse:
        try:
            params = _normalize(request.query_params)
            limit, offset = _page(request.query_params)
            include = _include_fields(request.query_params)
            results = self.search(request, params, limit, offset, **uids)
            if include.wanted:
                self.include(results, include)
        except selectors.QueryError as error:
            return json_error(400, "bad_request", str(error))
        self.audit(
            request, Action.STUDIES_QUERIED, object_type=self.level, object_id=uids.get("study_uid", ""),
            details={"keys": sorted(params), "results": len(results)},
        )  # fmt: skip
        response = HttpResponse(json.dumps(results, ensure_ascii=False), content_type=DICOM_JSON)
        # PS3.18: say what was not honoured rather than fail.
        warnings = []
        ignored = [key for key in sorted(set(params) - self.matching_keys) if key.isascii() and key.isalnum()]
        if ignored:
            warnings.append(f"The following attributes are not supported as matching keys: {', '.join(ignored)[:200]}")
        if warnings:
            response["Warning"] = ", ".join(f'299 {request.get_host()} "{text}"' for text in warnings)
        return response

    def search(self, request: Request, params: dict[str, str], limit: int, offset: int, **uids: str) -> list[Any]:
        raise NotImplementedError

    all_tags: tuple[str, ...] = ()

    def include(self, results: list[dict[str, Any]], include: IncludeFields) -> None:
        """Complete the results with the includefield attributes, from the stored (sealed) header
        of each result's first instance: one query, then one decryption per result."""
        headers = self.result_headers(self._page_objects)
        tags = [*include.tags, *(_tags_of(self.all_tags) if include.everything else [])]
        for result, header in zip(results, headers, strict=True):
            if header is None:
                continue
            if include.everything and self.level == "instance":
                # Every standard attribute of the instance: not the file meta group, not private ones.
                standard = [t for t in header if not t.startswith("0002") and int(t[:4], 16) % 2 == 0]
                _from_header(result, header, standard)
            _from_header(result, header, tags)

    _page_objects: list[Any]

    def result_headers(self, objects: list[Any]) -> list[dict[str, Any] | None]:
        raise NotImplementedError

    def _first_instance_headers(self, field: str, objects: list[Any]) -> list[dict[str, Any] | None]:
        firsts = dict(
            Instance.objects.filter(hospital=self.hospital, **{f"{field}__in": [o.pk for o in objects]})
            .values(field)
            .annotate(first=Min("id"))
            .values_list(field, "first")
        )
        sealed = dict(
            Instance.objects.filter(hospital=self.hospital, pk__in=list(firsts.values())).values_list(
                "pk", "metadata_sealed"
            )
        )
        return [
            unseal_metadata(self.hospital, bytes(sealed[firsts[o.pk]])) if o.pk in firsts else None for o in objects
        ]


class StudySearchView(_QidoView):
    level = "study"
    matching_keys = frozenset(
        {"StudyInstanceUID", "PatientID", "PatientName", "StudyDate", "AccessionNumber", "ModalitiesInStudy", "StudyID"}
    )

    all_tags = _ALL_STUDY

    def search(self, request: Request, params: dict[str, str], limit: int, offset: int, **uids: str) -> list[Any]:
        studies = selectors.studies_matching(self.hospital, params)
        name = params.get("PatientName")
        if name and ("*" in name or "?" in name):
            page = selectors.filter_patient_name(self.hospital, list(studies), name)[offset : offset + limit]
        else:
            page = list(studies[offset : offset + limit])
        self._page_objects = page
        return [self._study(request, study) for study in page]

    def result_headers(self, objects: list[Any]) -> list[dict[str, Any] | None]:
        return self._first_instance_headers("series__study", objects)

    def _study(self, request: Request, study: Study) -> dict[str, Any]:
        patient = selectors.patient_identity(self.hospital, study.patient)
        return dicomjson.dataset(
            SpecificCharacterSet="ISO_IR 192",
            StudyDate=study.study_date,
            StudyTime=study.study_time,
            AccessionNumber=study.accession_number,
            ModalitiesInStudy=[m for m in study.modalities.split("\\") if m],
            ReferringPhysicianName=study.referring_physician_name,
            PatientName=patient.name,
            PatientID=patient.patient_id,
            PatientBirthDate=patient.birth_date,
            PatientSex=patient.sex,
            StudyInstanceUID=study.study_instance_uid,
            StudyID=study.study_id,
            StudyDescription=study.description,
            NumberOfStudyRelatedSeries=study.number_of_series,
            NumberOfStudyRelatedInstances=study.number_of_instances,
            RetrieveURL=self.study_url(request, study.study_instance_uid),
        )


class SeriesSearchView(_QidoView):
    level = "series"
    matching_keys = frozenset({"SeriesInstanceUID", "Modality", "SeriesNumber", "StudyInstanceUID"})

    all_tags = _ALL_SERIES

    def search(self, request: Request, params: dict[str, str], limit: int, offset: int, **uids: str) -> list[Any]:
        series = selectors.series_matching(self.hospital, params, uids.get("study_uid"))
        self._page_objects = list(series[offset : offset + limit])
        return [self._series(request, s) for s in self._page_objects]

    def result_headers(self, objects: list[Any]) -> list[dict[str, Any] | None]:
        return self._first_instance_headers("series", objects)

    def _series(self, request: Request, series: Series) -> dict[str, Any]:
        study_uid = series.study.study_instance_uid
        return dicomjson.dataset(
            SpecificCharacterSet="ISO_IR 192",
            StudyInstanceUID=study_uid,
            Modality=series.modality,
            SeriesDescription=series.description,
            SeriesNumber=series.series_number,
            SeriesInstanceUID=series.series_instance_uid,
            BodyPartExamined=series.body_part_examined,
            NumberOfSeriesRelatedInstances=series.number_of_instances,
            RetrieveURL=self.series_url(request, study_uid, series.series_instance_uid),
        )


class InstanceSearchView(_QidoView):
    level = "instance"
    matching_keys = frozenset({"SOPInstanceUID", "SOPClassUID", "SeriesInstanceUID", "InstanceNumber"})

    def search(self, request: Request, params: dict[str, str], limit: int, offset: int, **uids: str) -> list[Any]:
        instances = selectors.instances_matching(self.hospital, params, uids.get("study_uid"), uids.get("series_uid"))
        self._page_objects = list(instances[offset : offset + limit])
        return [self._instance(request, i) for i in self._page_objects]

    def result_headers(self, objects: list[Any]) -> list[dict[str, Any] | None]:
        return [unseal_metadata(self.hospital, bytes(instance.metadata_sealed)) for instance in objects]

    def _instance(self, request: Request, instance: Instance) -> dict[str, Any]:
        series = instance.series
        study_uid = series.study.study_instance_uid
        return dicomjson.dataset(
            SpecificCharacterSet="ISO_IR 192",
            StudyInstanceUID=study_uid,
            SeriesInstanceUID=series.series_instance_uid,
            Modality=series.modality,
            SOPClassUID=instance.sop_class_uid,
            SOPInstanceUID=instance.sop_instance_uid,
            InstanceNumber=instance.instance_number,
            Rows=instance.rows,
            Columns=instance.columns,
            NumberOfFrames=instance.number_of_frames,
            RetrieveURL=self.instance_url(request, study_uid, series.series_instance_uid, instance.sop_instance_uid),
        )
