"""The DICOM JSON header (PS3.18 F.2) of a parsed instance, as the archive keeps it (sealed, by
apps.imaging.metadata): pixel data left out, other large binary values as BulkDataURI placeholders.
No Django here: helper processes build it too (apps.imaging.dicom.prepare)."""

import json
from typing import Any

from pydicom.dataset import Dataset
from pydicom.tag import Tag

from apps.imaging.dicom.parse import ParsedInstance

# Bulk pixel data is served by WADO-RS, not repeated in the metadata.
_BULK_TAGS = {Tag(0x7FE0, 0x0010), Tag(0x7FE0, 0x0008), Tag(0x7FE0, 0x0009)}
_BULK_THRESHOLD = 4096
BULK_DATA_PLACEHOLDER = "{bulk}"


def header_json(dataset: Dataset) -> dict[str, Any]:
    """The dataset as DICOM JSON without pixel data; other large binary values become
    BulkDataURI placeholders that the WADO-RS layer completes."""
    header = dataset
    if any(tag in dataset for tag in _BULK_TAGS):  # a header read with its pixel data
        header = Dataset()
        for element in dataset:
            if element.tag not in _BULK_TAGS:
                header.add(element)
    return header.to_json_dict(
        bulk_data_threshold=_BULK_THRESHOLD, bulk_data_element_handler=lambda element: BULK_DATA_PLACEHOLDER
    )


def metadata_document(parsed: ParsedInstance) -> str:
    """The instance's metadata as stored: its header as DICOM JSON, with its transfer syntax."""
    document = header_json(parsed.dataset)
    document["00020010"] = {"vr": "UI", "Value": [parsed.transfer_syntax_uid]}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))
