"""QIDO-RS (PS3.18 10.6): search for studies, series and instances.

Each response carries the attributes PS3.18 Table 10.6.3-3/-4/-5 require at its level, plus the
ones named in ``includefield`` that the index holds.
"""

import json
from typing import Any

from django.http import HttpResponse
from pydicom.datadict import keyword_for_tag
from rest_framework.request import Request

from apps.audit.vocabulary import Action
from apps.dicomweb import dicomjson
from apps.dicomweb.base import DICOM_JSON, DicomWebView, json_error
from apps.imaging import selectors
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


def _page(query: Any) -> tuple[int, int]:
    try:
        limit = int(query.get("limit", DEFAULT_LIMIT))
        offset = int(query.get("offset", 0))
    except ValueError as error:
        raise selectors.QueryError("limit and offset must be integers") from error
    if limit < 0 or offset < 0:
        raise selectors.QueryError("limit and offset must not be negative")
    return min(limit or DEFAULT_LIMIT, MAX_LIMIT), offset


class _QidoView(DicomWebView):
    level = ""
    matching_keys: frozenset[str] = frozenset()

    def get(self, request: Request, hospital_code: str, **uids: str) -> HttpResponse:
        try:
            params = _normalize(request.query_params)
            limit, offset = _page(request.query_params)
            results = self.search(request, params, limit, offset, **uids)
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
        if request.query_params.get("includefield"):
            warnings.append("includefield is not supported; the default attributes are returned")
        if warnings:
            response["Warning"] = ", ".join(f'299 {request.get_host()} "{text}"' for text in warnings)
        return response

    def search(self, request: Request, params: dict[str, str], limit: int, offset: int, **uids: str) -> list[Any]:
        raise NotImplementedError


class StudySearchView(_QidoView):
    level = "study"
    matching_keys = frozenset(
        {"StudyInstanceUID", "PatientID", "PatientName", "StudyDate", "AccessionNumber", "ModalitiesInStudy", "StudyID"}
    )

    def search(self, request: Request, params: dict[str, str], limit: int, offset: int, **uids: str) -> list[Any]:
        studies = selectors.studies_matching(self.hospital, params)
        name = params.get("PatientName")
        if name and ("*" in name or "?" in name):
            page = selectors.filter_patient_name(self.hospital, list(studies), name)[offset : offset + limit]
        else:
            page = list(studies[offset : offset + limit])
        return [self._study(request, study) for study in page]

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

    def search(self, request: Request, params: dict[str, str], limit: int, offset: int, **uids: str) -> list[Any]:
        series = selectors.series_matching(self.hospital, params, uids.get("study_uid"))
        return [self._series(request, s) for s in series[offset : offset + limit]]

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
        return [self._instance(request, i) for i in instances[offset : offset + limit]]

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
