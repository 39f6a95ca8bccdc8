"""Building DICOM JSON (PS3.18 F.2) attributes for QIDO-RS and STOW-RS responses."""

from datetime import date, time
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.tag import Tag

JsonDataset = dict[str, Any]


def tag_hex(keyword_or_tag: str | int) -> str:
    tag = tag_for_keyword(keyword_or_tag) if isinstance(keyword_or_tag, str) else keyword_or_tag
    if tag is None:
        raise KeyError(keyword_or_tag)
    return f"{int(Tag(tag)):08X}"


def attribute(keyword: str, value: Any) -> tuple[str, dict[str, Any]]:
    """One attribute by keyword; empty values give an attribute without ``Value`` (PS3.18 F.2.5)."""
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    vr = dictionary_VR(tag)
    if vr == "US or SS":
        vr = "US"
    element: dict[str, Any] = {"vr": vr}
    if value is None or value == "" or value == []:
        return f"{tag:08X}", element
    values = value if isinstance(value, list) else [value]
    if vr == "PN":
        element["Value"] = [{"Alphabetic": str(v)} for v in values]
    elif vr == "DA":
        element["Value"] = [v.strftime("%Y%m%d") if isinstance(v, date) else str(v) for v in values]
    elif vr == "TM":
        element["Value"] = [v.strftime("%H%M%S") if isinstance(v, time) else str(v) for v in values]
    elif vr == "SQ":
        element["Value"] = values
    else:
        element["Value"] = values
    return f"{tag:08X}", element


def dataset(**attributes: Any) -> JsonDataset:
    return dict(attribute(keyword, value) for keyword, value in attributes.items())
