"""The DICOM JSON header (PS3.18 F.2) of an instance, kept sealed because it names the patient."""

import json
from typing import Any

from apps.imaging.dicom.header import BULK_DATA_PLACEHOLDER, metadata_document
from apps.imaging.dicom.parse import ParsedInstance
from apps.imaging.keys import field_seal, field_unseal
from apps.tenants.models import Hospital

__all__ = ["BULK_DATA_PLACEHOLDER", "seal_document", "seal_metadata", "unseal_metadata"]


def seal_document(hospital: Hospital, document: str) -> bytes:
    """Seal a metadata document made by ``apps.imaging.dicom.header.metadata_document``."""
    return field_seal(hospital, document, field="metadata")


def seal_metadata(hospital: Hospital, parsed: ParsedInstance) -> bytes:
    return seal_document(hospital, metadata_document(parsed))


def unseal_metadata(hospital: Hospital, sealed: bytes) -> dict[str, Any]:
    return json.loads(field_unseal(hospital, sealed, field="metadata"))
