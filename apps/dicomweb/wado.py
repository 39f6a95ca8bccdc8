"""WADO-RS (PS3.18 10.4): retrieve studies, series and instances as stored, and their metadata.

Instances are streamed as multipart/related; type="application/dicom", decrypted segment by
segment: what is returned is byte-identical to what was received. The database work is done
before streaming starts, because the stream outlives the request's transaction.
"""

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from django.http import HttpResponse, StreamingHttpResponse
from rest_framework.request import Request

from apps.dicomweb.base import DICOM_JSON, DicomWebView, json_error
from apps.dicomweb.multipart import encode_part_header, parse_content_type
from apps.imaging import selectors
from apps.imaging.keys import hospital_key
from apps.imaging.metadata import BULK_DATA_PLACEHOLDER, unseal_metadata
from apps.imaging.models import Instance
from apps.imaging.objectstore import instance_stored_object, object_open
from apps.tenants.models import Hospital


def _accepted_transfer_syntaxes(accept: str) -> set[str] | None:
    """The transfer syntaxes the client accepts for application/dicom parts; None for any.
    Raises ValueError when the client accepts no application/dicom at all."""
    if not accept.strip():
        return None
    syntaxes: set[str] = set()
    acceptable = False
    for item in accept.split(","):
        content_type = parse_content_type(item)
        if content_type.media_type in {"*/*", "multipart/*"}:
            return None
        if content_type.media_type == "multipart/related":
            if content_type.params.get("type", "application/dicom").lower() not in {"application/dicom", "*/*"}:
                continue
            acceptable = True
            syntax = content_type.params.get("transfer-syntax", "*")
            if syntax == "*":
                return None
            syntaxes.add(syntax)
    if not acceptable:
        raise ValueError(accept)
    return syntaxes


def _multipart_stream(opened: list[tuple[Iterator[bytes], str]], boundary: str) -> Iterator[bytes]:
    for pieces, transfer_syntax in opened:
        yield encode_part_header(boundary, f"application/dicom; transfer-syntax={transfer_syntax}")
        yield from pieces
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def metadata_documents(
    hospital: Hospital, instances: list[Instance], instance_url: Callable[[Instance], str]
) -> list[dict[str, Any]]:
    """The DICOM JSON headers of `instances` (of `hospital`), bulk data pointing at ``instance_url(instance)``.

    Shared by the DICOMweb API and the viewer, which points bulk data at its own endpoints.
    """
    documents: list[dict[str, Any]] = []
    for instance in instances:
        document = unseal_metadata(hospital, bytes(instance.metadata_sealed))
        url = instance_url(instance)
        for element in document.values():
            if element.get("BulkDataURI") == BULK_DATA_PLACEHOLDER:
                element["BulkDataURI"] = url
        documents.append(document)
    return documents


class RetrieveView(DicomWebView):
    def get(self, request: Request, hospital_code: str, study_uid: str, series_uid: str | None = None,
            sop_uid: str | None = None) -> HttpResponse | StreamingHttpResponse:  # fmt: skip
        params = {"SOPInstanceUID": sop_uid} if sop_uid else {}
        instances = list(selectors.instances_matching(self.hospital, params, study_uid, series_uid))
        if not instances:
            return json_error(404, "not_found", "Not found.")
        try:
            accepted = _accepted_transfer_syntaxes(request.META.get("HTTP_ACCEPT", ""))
        except ValueError:
            return json_error(
                406, "not_acceptable", 'This resource is available as multipart/related; type="application/dicom".'
            )
        if accepted is not None and any(i.transfer_syntax_uid not in accepted for i in instances):
            return json_error(
                406, "not_acceptable", "Instances are returned in the transfer syntax they were stored in."
            )
        boundary = uuid.uuid4().hex
        key = hospital_key(self.hospital)
        # Every object's data key is unwrapped here, before the response starts (and before the
        # access is recorded): a row that does not name its own object (a database fault,
        # tampering) is a clean error, recorded as a failed access, not a cut-off stream.
        opened = [
            (object_open(hospital_key=key, stored=instance_stored_object(i)), i.transfer_syntax_uid) for i in instances
        ]
        self.audit_access(request, study_uid, series_uid, len(instances), "instances")
        response = StreamingHttpResponse(
            _multipart_stream(opened, boundary),
            content_type=f'multipart/related; type="application/dicom"; boundary={boundary}',
        )
        return response


class MetadataView(DicomWebView):
    def get(self, request: Request, hospital_code: str, study_uid: str, series_uid: str | None = None,
            sop_uid: str | None = None) -> HttpResponse:  # fmt: skip
        params = {"SOPInstanceUID": sop_uid} if sop_uid else {}
        instances = list(selectors.instances_matching(self.hospital, params, study_uid, series_uid))
        if not instances:
            return json_error(404, "not_found", "Not found.")
        self.audit_access(request, study_uid, series_uid, len(instances), "metadata")
        documents = metadata_documents(
            self.hospital, instances,
            lambda i: self.instance_url(request, study_uid, i.series.series_instance_uid, i.sop_instance_uid),
        )  # fmt: skip
        return HttpResponse(json.dumps(documents, ensure_ascii=False), content_type=DICOM_JSON)
