"""Parse a DICOM Part 10 object into the facts ingest, QC and search need, refusing what cannot be stored.

`parse_part10` first walks the element headers (apps.imaging.dicom.part10) so that truncated and
malformed files are refused and Pixel Data is measured without being read, then lets pydicom read the
data set up to the Pixel Data. Text is decoded by apps.imaging.dicom.text, which knows the character
set habits of Chinese devices.
"""

import math
import os
import re
import struct
from dataclasses import dataclass, field
from datetime import date, time
from typing import Any, BinaryIO

from pydicom import dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.tag import Tag

from apps.imaging.dicom.errors import DicomRejected
from apps.imaging.dicom.part10 import Part10Layout, scan_part10
from apps.imaging.dicom.text import decode_text_elements

__all__ = ["DicomRejected", "ParsedInstance", "is_valid_uid", "parse_part10"]

# Values longer than this stay on disk until asked for, so large private blobs cost no memory either.
DEFER_SIZE = "1 KB"
_REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
# PS3.5 9.1: components of digits without leading zeros, separated by dots, at most 64 characters.
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+")


@dataclass(frozen=True)
class ParsedInstance:
    """The facts of one received instance. Text is decoded here; read it from these fields, not `dataset`.

    Patient identity fields are left out of repr() so that logging an instance cannot leak them.
    `dataset` holds everything before Pixel Data (values over 1 KB are read from the source on first use,
    so keep a stream source open while using those); it is left out of comparisons and repr().
    """

    transfer_syntax_uid: str
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    patient_id: str = field(repr=False)
    patient_name: str = field(repr=False)
    patient_sex: str
    patient_birth_date: date | None = field(repr=False)
    other_patient_ids: tuple[str, ...] = field(repr=False)
    study_date: date | None
    study_time: time | None
    accession_number: str
    study_description: str
    study_id: str
    referring_physician_name: str = field(repr=False)
    patient_age: str
    modality: str
    series_number: int | None
    series_description: str
    body_part_examined: str
    manufacturer: str
    station_name: str
    institution_name: str
    instance_number: int | None
    rows: int | None
    columns: int | None
    samples_per_pixel: int | None
    bits_allocated: int | None
    bits_stored: int | None
    high_bit: int | None
    pixel_representation: int | None
    photometric_interpretation: str
    number_of_frames: int
    has_pixel_data: bool
    pixel_data_provider: bool  # Pixel Data Provider URL (0028,7FE0): the pixels are elsewhere (JPIP)
    pixel_data_length: int | None  # native Pixel Data only; None when encapsulated or absent
    is_encapsulated: bool
    pixel_data_offset: int | None  # where frames can be read directly (Part10Layout.pixel_data_offset)
    pixel_spacing: tuple[float, float] | None
    slice_thickness: float | None
    image_position_patient: tuple[float, float, float] | None
    image_orientation_patient: tuple[float, float, float, float, float, float] | None
    lossy_image_compression: str
    specific_character_set: tuple[str, ...]
    charset_guessed: bool
    size: int
    dataset: Dataset = field(compare=False, repr=False)


def is_valid_uid(value: str) -> bool:
    """Whether `value` follows the UID encoding rules of PS3.5 9.1 (after its padding is removed)."""
    return len(value) <= 64 and _UID.fullmatch(value) is not None


def parse_part10(source: str | os.PathLike[str] | BinaryIO) -> ParsedInstance:
    """Parse a Part 10 file, or a seekable binary stream from its current position (restored afterwards).

    Raises DicomRejected: DICOM_NOT_PART10, DICOM_TRUNCATED, DICOM_MALFORMED, DICOM_TOO_LARGE,
    DICOM_MISSING_UID or DICOM_INVALID_UID. Pixel Data is never read, whatever its size.
    """
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        with open(path, "rb") as stream:
            layout = scan_part10(stream)
        # Read by path, so that deferred values can be re-read after this function returns.
        dataset = _read_dataset(path)
    else:
        start = source.tell()
        try:
            layout = scan_part10(source)
            source.seek(start)
            dataset = _read_dataset(source)
        finally:
            source.seek(start)
    _check_uids(dataset, layout.transfer_syntax_uid)
    return _build(dataset, layout)


def _read_dataset(source: str | BinaryIO) -> Dataset:
    try:
        return dcmread(source, defer_size=DEFER_SIZE, stop_before_pixels=True)
    except (InvalidDicomError, EOFError, ValueError, TypeError, LookupError, NotImplementedError, struct.error) as err:
        raise DicomRejected(
            "DICOM_MALFORMED",
            message_zh="DICOM 数据集无法读取",
            message_en="The DICOM data set cannot be read",
        ) from err


def _check_uids(dataset: Dataset, transfer_syntax_uid: str) -> None:
    values = {keyword: _first(_strings(dataset, keyword)) for keyword in _REQUIRED_UIDS}
    missing = [keyword for keyword, value in values.items() if not value]
    if missing:
        names = ", ".join(missing)
        raise DicomRejected(
            "DICOM_MISSING_UID",
            message_zh=f"缺少必需的 UID：{names}",
            message_en=f"Required UIDs are missing: {names}",
        )
    values["TransferSyntaxUID"] = transfer_syntax_uid
    invalid = [keyword for keyword, value in values.items() if not is_valid_uid(value)]
    if invalid:
        names = ", ".join(invalid)
        raise DicomRejected(
            "DICOM_INVALID_UID",
            message_zh=f"UID 格式不符合 DICOM 规定（最多 64 个字符，数字与点，分量无前导零）：{names}",
            message_en=f"UIDs do not follow the DICOM rules (at most 64 characters, digits and dots, "
            f"no leading zeros): {names}",
        )


def _build(dataset: Dataset, layout: Part10Layout) -> ParsedInstance:
    charset_guessed = decode_text_elements(dataset)
    frames = _int(dataset, "NumberOfFrames")
    return ParsedInstance(
        transfer_syntax_uid=layout.transfer_syntax_uid,
        sop_class_uid=_text(dataset, "SOPClassUID"),
        sop_instance_uid=_text(dataset, "SOPInstanceUID"),
        study_instance_uid=_text(dataset, "StudyInstanceUID"),
        series_instance_uid=_text(dataset, "SeriesInstanceUID"),
        patient_id=_text(dataset, "PatientID"),
        patient_name=_text(dataset, "PatientName"),
        patient_sex=_text(dataset, "PatientSex"),
        patient_birth_date=_date(_text(dataset, "PatientBirthDate")),
        other_patient_ids=tuple(_strings(dataset, "OtherPatientIDs")),
        study_date=_date(_text(dataset, "StudyDate")),
        study_time=_time(_text(dataset, "StudyTime")),
        accession_number=_text(dataset, "AccessionNumber"),
        study_description=_text(dataset, "StudyDescription"),
        study_id=_text(dataset, "StudyID"),
        referring_physician_name=_text(dataset, "ReferringPhysicianName"),
        patient_age=_text(dataset, "PatientAge"),
        modality=_text(dataset, "Modality").upper(),
        series_number=_int(dataset, "SeriesNumber"),
        series_description=_text(dataset, "SeriesDescription"),
        body_part_examined=_text(dataset, "BodyPartExamined").upper(),
        manufacturer=_text(dataset, "Manufacturer"),
        station_name=_text(dataset, "StationName"),
        institution_name=_text(dataset, "InstitutionName"),
        instance_number=_int(dataset, "InstanceNumber"),
        rows=_int(dataset, "Rows"),
        columns=_int(dataset, "Columns"),
        samples_per_pixel=_int(dataset, "SamplesPerPixel"),
        bits_allocated=_int(dataset, "BitsAllocated"),
        bits_stored=_int(dataset, "BitsStored"),
        high_bit=_int(dataset, "HighBit"),
        pixel_representation=_int(dataset, "PixelRepresentation"),
        photometric_interpretation=_text(dataset, "PhotometricInterpretation").upper(),
        number_of_frames=1 if frames is None else frames,
        has_pixel_data=layout.has_pixel_data,
        pixel_data_provider=bool(_text(dataset, "PixelDataProviderURL")),
        pixel_data_length=layout.pixel_data_length,
        is_encapsulated=layout.is_encapsulated,
        pixel_data_offset=layout.pixel_data_offset,
        pixel_spacing=_pair(_pixel_measure(dataset, "PixelSpacing")),
        slice_thickness=_single(_pixel_measure(dataset, "SliceThickness")),
        image_position_patient=_triple(_floats(dataset, "ImagePositionPatient")),
        image_orientation_patient=_sextuple(_floats(dataset, "ImageOrientationPatient")),
        lossy_image_compression=_text(dataset, "LossyImageCompression"),
        specific_character_set=tuple(_strings(dataset, "SpecificCharacterSet", keep_empty=True)),
        charset_guessed=charset_guessed,
        size=layout.size,
        dataset=dataset,
    )


def parsed_from_header(header: dict[str, Any], *, transfer_syntax_uid: str, size: int) -> ParsedInstance:
    """An instance's facts rebuilt from the DICOM JSON header kept at ingest (no pixel data), for
    checks run after its staged file is gone (series-level review of uploads and the gateway)."""
    kept = {tag: element for tag, element in header.items() if "BulkDataURI" not in element}
    dataset = Dataset.from_json(kept)
    layout = Part10Layout(
        transfer_syntax_uid=transfer_syntax_uid,
        size=size,
        has_pixel_data=True,
        pixel_data_length=None,
        is_encapsulated=False,
    )
    return _build(dataset, layout)


def _raw(dataset: Dataset, keyword: str) -> bytes | str | None:
    """The undecoded value of an element (or pydicom's decoded value, if something already converted it)."""
    tag = Tag(keyword)
    if tag not in dataset:
        return None
    element = dataset.get_item(tag)
    value = element.value if isinstance(element, RawDataElement | DataElement) else None
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, list | tuple | MultiValue):
        return "\\".join(str(item) for item in value)
    return str(value)


def _strings(dataset: Dataset, keyword: str, *, keep_empty: bool = False) -> list[str]:
    """The values of an element, split on backslashes: ASCII ones raw, text ones as decoded at parse time."""
    value = _raw(dataset, keyword)
    if value is None:
        return []
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    values = [item.strip(" \x00") for item in value.split("\\")]
    if keep_empty:
        return values if any(values) else []
    return [item for item in values if item]


def _first(values: list[str]) -> str:
    return values[0] if values else ""


def _text(dataset: Dataset, keyword: str) -> str:
    return _first(_strings(dataset, keyword))


def _int(dataset: Dataset, keyword: str) -> int | None:
    """An integer from an IS (text) or US (binary) element; None when absent or unreadable."""
    tag = Tag(keyword)
    if tag not in dataset:
        return None
    if dictionary_VR(tag) != "IS":
        # Binary VRs: pydicom unpacks them with the data set's byte order.
        value = dataset[tag].value
        try:
            return int(value[0] if isinstance(value, list | tuple) else value)
        except (TypeError, ValueError, IndexError):
            return None
    text = _text(dataset, keyword)
    try:
        return int(text)
    except ValueError:
        return None


def _floats(source: Dataset, keyword: str) -> list[float] | None:
    values: list[float] = []
    for item in _strings(source, keyword):
        try:
            number = float(item)
        except ValueError:
            return None
        if not math.isfinite(number):
            return None
        values.append(number)
    return values or None


def _pixel_measure(dataset: Dataset, keyword: str) -> list[float] | None:
    """A Pixel Measures value: top level, or for enhanced multi-frame objects in the functional groups."""
    found = _floats(dataset, keyword)
    if found is not None:
        return found
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        items = dataset.get(groups)
        if not items:
            continue
        measures = items[0].get("PixelMeasuresSequence")
        if measures:
            return _floats(measures[0], keyword)
    return None


def _single(values: list[float] | None) -> float | None:
    return values[0] if values and len(values) == 1 else None


def _pair(values: list[float] | None) -> tuple[float, float] | None:
    return (values[0], values[1]) if values and len(values) == 2 else None


def _triple(values: list[float] | None) -> tuple[float, float, float] | None:
    return (values[0], values[1], values[2]) if values and len(values) == 3 else None


def _sextuple(values: list[float] | None) -> tuple[float, float, float, float, float, float] | None:
    if not values or len(values) != 6:
        return None
    return (values[0], values[1], values[2], values[3], values[4], values[5])


def _date(value: str) -> date | None:
    """A DA value (YYYYMMDD, or the ACR-NEMA YYYY.MM.DD some old devices still send)."""
    digits = value.replace(".", "")
    if len(digits) != 8 or not digits.isdigit():
        return None
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None


def _time(value: str) -> time | None:
    """A TM value: HH, HHMM, HHMMSS with an optional fraction (colons, as in ACR-NEMA, are tolerated)."""
    whole, _, fraction = value.replace(":", "").partition(".")
    if len(whole) not in (2, 4, 6) or not whole.isdigit() or (fraction and not fraction.isdigit()):
        return None
    hour, minute, second = int(whole[:2]), int(whole[2:4] or 0), int(whole[4:6] or 0)
    microsecond = int((fraction + "000000")[:6])
    try:
        # TM allows a leap second (60); datetime.time does not.
        return time(hour, minute, min(second, 59), microsecond)
    except ValueError:
        return None
