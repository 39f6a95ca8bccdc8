"""Synthetic DICOM Part 10 objects for tests, built with pydicom. Never real patient data.

The usual entry points:

- `make_instance(modality, **attributes) -> Dataset`: a CT, MR or US (colour) image with every Type 1
  attribute set and Pixel Data sized to match. Attributes are DICOM keywords; None removes one.
  Pixel Data follows Rows/Columns/SamplesPerPixel/BitsAllocated/NumberOfFrames unless `PixelData` is given.
- `to_part10_bytes(ds, transfer_syntax=..., text_encoding=...) -> bytes`: a Part 10 file. Compressed
  transfer syntaxes get placeholder fragments (nothing here decodes pixels). "ISO 2022 IR 58" text is
  written with the ESC $ ) A designations of PS3.5 Annex K; `text_encoding` forces raw text bytes in
  any codec, to imitate devices whose bytes do not match (or lack) Specific Character Set.
- `make_ct_slice`, `make_mr_slice`, `make_us_image`: both steps at once.
- `make_ct_series(count, ...) -> list[bytes]`: one series of axial slices with chosen positions.
- `write_large_part10(path, ...)`: a file with a huge, sparse Pixel Data value, for memory tests.
"""

import copy
import io
import os
import re
import struct
from collections.abc import Callable, Sequence
from typing import Any

from pydicom import Dataset
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.tag import Tag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
US_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"
US_MULTIFRAME_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.3.1"
NATIVE_TRANSFER_SYNTAXES = (
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
)
TEST_INSTITUTION = "FIRST PEOPLES HOSPITAL"

# Made-up identity: "Ceshi Huanzhe" is pinyin for "test patient".
_PATIENT = {
    "PatientName": "Ceshi^Huanzhe",
    "PatientID": "TEST0001",
    "PatientBirthDate": "19700101",
    "PatientSex": "O",
    "PatientAge": "055Y",
}
_STUDY = {
    "StudyDate": "20250102",
    "StudyTime": "093000",
    "AccessionNumber": "ACC0001",
    "StudyID": "1",
    "StudyDescription": "Synthetic study",
    "ReferringPhysicianName": "Yisheng^Ceshi",
}
_EQUIPMENT = {
    "Manufacturer": "SYNTHETIC VENDOR",
    "StationName": "STATION01",
    "InstitutionName": TEST_INSTITUTION,
}
_AXIAL = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
_PRESETS: dict[str, dict[str, Any]] = {
    "CT": {
        "SOPClassUID": CT_IMAGE_STORAGE,
        "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
        "BodyPartExamined": "CHEST",
        "Rows": 16,
        "Columns": 16,
        "SamplesPerPixel": 1,
        "PhotometricInterpretation": "MONOCHROME2",
        "BitsAllocated": 16,
        "BitsStored": 12,
        "HighBit": 11,
        "PixelRepresentation": 0,
        "PixelSpacing": [0.7, 0.7],
        "SliceThickness": 5.0,
        "ImagePositionPatient": [-100.0, -100.0, 0.0],
        "ImageOrientationPatient": _AXIAL,
        "RescaleIntercept": -1024,
        "RescaleSlope": 1,
        "KVP": 120,
    },
    "MR": {
        "SOPClassUID": MR_IMAGE_STORAGE,
        "ImageType": ["ORIGINAL", "PRIMARY", "M"],
        "BodyPartExamined": "HEAD",
        "Rows": 16,
        "Columns": 16,
        "SamplesPerPixel": 1,
        "PhotometricInterpretation": "MONOCHROME2",
        "BitsAllocated": 16,
        "BitsStored": 16,
        "HighBit": 15,
        "PixelRepresentation": 0,
        "PixelSpacing": [0.9, 0.9],
        "SliceThickness": 3.0,
        "ImagePositionPatient": [-90.0, -90.0, 0.0],
        "ImageOrientationPatient": _AXIAL,
        "ScanningSequence": "SE",
        "SequenceVariant": "NONE",
        "MagneticFieldStrength": 1.5,
    },
    "US": {
        "SOPClassUID": US_IMAGE_STORAGE,
        "ImageType": ["ORIGINAL", "PRIMARY"],
        "BodyPartExamined": "ABDOMEN",
        "Rows": 16,
        "Columns": 16,
        "SamplesPerPixel": 3,
        "PhotometricInterpretation": "RGB",
        "PlanarConfiguration": 0,
        "BitsAllocated": 8,
        "BitsStored": 8,
        "HighBit": 7,
        "PixelRepresentation": 0,
    },
}
_ISO2022_IR58 = b"\x1b$)A"
_TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UT", "UC", "PN"})


def make_instance(modality: str = "CT", **attributes: Any) -> Dataset:
    """A complete synthetic image of `modality` ("CT", "MR" or "US"), with fresh UIDs.

    `attributes` are DICOM keywords set last (None deletes the attribute), e.g.
    `make_instance("CT", PatientName="张三", SpecificCharacterSet="GB18030", Rows=32, NumberOfFrames=2)`.
    """
    ds = Dataset()
    values: dict[str, Any] = {
        "SpecificCharacterSet": "ISO_IR 192",
        "Modality": modality,
        "StudyInstanceUID": generate_uid(),
        "SeriesInstanceUID": generate_uid(),
        "SOPInstanceUID": generate_uid(),
        "SeriesNumber": 1,
        "InstanceNumber": 1,
        **_PATIENT,
        **_STUDY,
        **_EQUIPMENT,
        **_PRESETS[modality],
        **attributes,
    }
    for keyword, value in values.items():
        if keyword != "PixelData" and value is not None:
            setattr(ds, keyword, value)
    if "PixelData" not in attributes:
        ds.PixelData = bytes(i % 251 for i in range(expected_pixel_length(ds)))
    elif attributes["PixelData"] is not None:
        ds.PixelData = attributes["PixelData"]
    if "PixelData" in ds:
        ds["PixelData"].VR = "OB" if ds.get("BitsAllocated", 16) <= 8 else "OW"
    return ds


def expected_pixel_length(ds: Dataset) -> int:
    """The native Pixel Data length the image attributes call for, padded to even length."""
    bits = ds.Rows * ds.Columns * ds.SamplesPerPixel * int(ds.get("NumberOfFrames", 1)) * ds.BitsAllocated
    length = (bits + 7) // 8
    return length + length % 2


def to_part10_bytes(
    ds: Dataset,
    transfer_syntax: str = ExplicitVRLittleEndian,
    *,
    text_encoding: str | None = None,
) -> bytes:
    """`ds` as a Part 10 file (preamble, DICM, File Meta Information) in `transfer_syntax`."""
    ds = copy.deepcopy(ds)
    charset = ds.get("SpecificCharacterSet", "")
    terms = [charset] if isinstance(charset, str) else list(charset)
    forced: dict[bytes, bytes] = {}
    if text_encoding is not None:
        forced = _placeholders_for_text(ds, lambda text: text.encode(text_encoding))
    elif "ISO 2022 IR 58" in terms:
        forced = _placeholders_for_text(ds, encode_iso2022_ir58)
    if forced and transfer_syntax == DeflatedExplicitVRLittleEndian:
        raise ValueError("raw text bytes cannot be spliced into a deflated data set")
    if transfer_syntax not in NATIVE_TRANSFER_SYNTAXES and "PixelData" in ds:
        frames = int(ds.get("NumberOfFrames", 1))
        # Placeholder codestreams (SOI ... EOI): nothing in these tests decodes pixels.
        ds.PixelData = encapsulate([b"\xff\xd8" + bytes(16) + b"\xff\xd9" for _ in range(frames)])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    ds.file_meta = FileMetaDataset()
    # The File Meta Information needs these even when a test removed them from the data set.
    ds.file_meta.MediaStorageSOPClassUID = ds.get("SOPClassUID") or CT_IMAGE_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID") or "2.25.1"
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    for placeholder, raw in forced.items():
        assert data.count(placeholder) == 1
        data = data.replace(placeholder, raw)
    return data


def encode_iso2022_ir58(text: str) -> bytes:
    """Text as "ISO 2022 IR 58" bytes: ASCII as is, each run of Chinese after ESC $ ) A (PS3.5 Annex K)."""
    encoded = b""
    for run in re.findall(r"[\x00-\x7f]+|[^\x00-\x7f]+", text):
        encoded += run.encode("ascii") if run.isascii() else _ISO2022_IR58 + run.encode("gb2312")
    return encoded


def _placeholders_for_text(ds: Dataset, encode: Callable[[str], bytes]) -> dict[bytes, bytes]:
    """Swap each non-ASCII text value (in sequence items too) for an ASCII placeholder as long as its bytes.

    pydicom re-encodes text by Specific Character Set when writing, so bytes that contradict it (the
    point of these tests) are spliced into the written file instead. Returns placeholder -> raw bytes.
    """
    swapped: dict[bytes, bytes] = {}
    datasets = [ds]
    while datasets:
        current = datasets.pop()
        for element in list(current):
            if element.VR == "SQ":
                datasets.extend(element.value)
            if element.VR not in _TEXT_VRS or element.VM != 1 or str(element.value).isascii():
                continue
            raw = encode(str(element.value))
            raw += b" " * (len(raw) % 2)
            placeholder = f"~{len(swapped):x}".ljust(len(raw), "~").encode("ascii")
            swapped[placeholder] = raw
            current[element.tag] = DataElement(element.tag, element.VR, placeholder.decode("ascii"))
    return swapped


def make_ct_slice(*, transfer_syntax: str = ExplicitVRLittleEndian, **attributes: Any) -> bytes:
    """One CT slice as Part 10 bytes; see make_instance for `attributes`."""
    return to_part10_bytes(make_instance("CT", **attributes), transfer_syntax)


def make_mr_slice(*, transfer_syntax: str = ExplicitVRLittleEndian, **attributes: Any) -> bytes:
    """One MR slice as Part 10 bytes; see make_instance for `attributes`."""
    return to_part10_bytes(make_instance("MR", **attributes), transfer_syntax)


def make_us_image(*, transfer_syntax: str = ExplicitVRLittleEndian, **attributes: Any) -> bytes:
    """One colour (RGB) ultrasound image as Part 10 bytes; see make_instance for `attributes`."""
    return to_part10_bytes(make_instance("US", **attributes), transfer_syntax)


def make_ct_series(
    count: int,
    *,
    slice_thickness: float = 5.0,
    spacing: float | None = None,
    positions: Sequence[float] | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    **attributes: Any,
) -> list[bytes]:
    """`count` axial CT slices of one series, at z = i * spacing (default: contiguous) or at `positions`."""
    step = slice_thickness if spacing is None else spacing
    heights = list(positions) if positions is not None else [index * step for index in range(count)]
    shared = {
        "StudyInstanceUID": generate_uid(),
        "SeriesInstanceUID": generate_uid(),
        "SliceThickness": slice_thickness,
        **attributes,
    }
    return [
        make_ct_slice(
            transfer_syntax=transfer_syntax,
            InstanceNumber=index + 1,
            ImagePositionPatient=[-100.0, -100.0, height],
            SliceLocation=height,
            **shared,
        )
        for index, height in enumerate(heights[:count])
    ]


def write_large_part10(path: str | os.PathLike[str], *, rows: int, columns: int, frames: int) -> int:
    """Write a 16-bit CT whose native Pixel Data (rows * columns * frames * 2 bytes) is a sparse hole.

    The data set is written by pydicom without Pixel Data, then the Pixel Data header is appended and the
    file extended with truncate(), so the value is never in memory, here or (the point of the test) in
    the parser. Returns the file size.
    """
    length = rows * columns * frames * 2
    ds = make_instance("CT", Rows=rows, Columns=columns, NumberOfFrames=frames, PixelData=None)
    header = to_part10_bytes(ds)
    element = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, length)
    with open(path, "wb") as stream:
        stream.write(header + element)
        stream.truncate(len(header) + len(element) + length)
    return os.path.getsize(path)


def element_offset(data: bytes, keyword: str) -> int:
    """Where the first top-level-looking element `keyword` starts (little endian), for corrupting tests."""
    tag = Tag(keyword)
    offset = data.find(struct.pack("<HH", tag.group, tag.element), 132)
    assert offset > 0, f"{keyword} ({dictionary_VR(tag)}) not found"
    return offset
