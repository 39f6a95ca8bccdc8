"""parse_part10: what it extracts, how it decodes Chinese text, and what it refuses. No database needed."""

import io
import os
import struct
import tracemalloc
from datetime import date, time
from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
)

from apps.imaging.dicom.parse import DicomRejected, ParsedInstance, is_valid_uid, parse_part10
from tests.imaging.dicom_factory import (
    CT_IMAGE_STORAGE,
    TEST_INSTITUTION,
    element_offset,
    make_ct_slice,
    make_instance,
    make_us_image,
    to_part10_bytes,
    write_large_part10,
)


def parse_bytes(data: bytes) -> ParsedInstance:
    return parse_part10(io.BytesIO(data))


def rejection(data: bytes) -> DicomRejected:
    with pytest.raises(DicomRejected) as caught:
        parse_bytes(data)
    return caught.value


# What is extracted


def test_ct_slice_fields_are_extracted() -> None:
    ds = make_instance("CT", StudyTime="093000.25", SeriesNumber=3, InstanceNumber=7, OtherPatientIDs=["A1", "B2"])
    parsed = parse_bytes(to_part10_bytes(ds))

    assert parsed.transfer_syntax_uid == ExplicitVRLittleEndian
    assert (parsed.sop_class_uid, parsed.sop_instance_uid) == (CT_IMAGE_STORAGE, ds.SOPInstanceUID)
    assert (parsed.study_instance_uid, parsed.series_instance_uid) == (ds.StudyInstanceUID, ds.SeriesInstanceUID)
    assert (parsed.patient_id, parsed.patient_name, parsed.patient_sex) == ("TEST0001", "Ceshi^Huanzhe", "O")
    assert parsed.patient_birth_date == date(1970, 1, 1)
    assert parsed.other_patient_ids == ("A1", "B2")
    assert (parsed.study_date, parsed.study_time) == (date(2025, 1, 2), time(9, 30, 0, 250000))
    assert (parsed.accession_number, parsed.study_id, parsed.patient_age) == ("ACC0001", "1", "055Y")
    assert parsed.referring_physician_name == "Yisheng^Ceshi"
    assert (parsed.modality, parsed.series_number, parsed.instance_number) == ("CT", 3, 7)
    assert (parsed.body_part_examined, parsed.manufacturer, parsed.station_name) == (
        "CHEST",
        "SYNTHETIC VENDOR",
        "STATION01",
    )
    assert parsed.institution_name == TEST_INSTITUTION
    assert (parsed.rows, parsed.columns, parsed.samples_per_pixel) == (16, 16, 1)
    assert (parsed.bits_allocated, parsed.bits_stored, parsed.high_bit, parsed.pixel_representation) == (16, 12, 11, 0)
    assert parsed.photometric_interpretation == "MONOCHROME2"
    assert parsed.number_of_frames == 1
    assert (parsed.has_pixel_data, parsed.pixel_data_length, parsed.is_encapsulated) == (True, 512, False)
    assert parsed.pixel_spacing == (0.7, 0.7)
    assert parsed.slice_thickness == 5.0
    assert parsed.image_position_patient == (-100.0, -100.0, 0.0)
    assert parsed.image_orientation_patient == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    assert parsed.lossy_image_compression == ""
    assert parsed.specific_character_set == ("ISO_IR 192",)
    assert parsed.charset_guessed is False
    assert parsed.size == len(to_part10_bytes(ds))


def test_dataset_stops_before_pixel_data_and_is_left_out_of_equality() -> None:
    data = make_ct_slice()
    first, second = parse_bytes(data), parse_bytes(data)

    assert "PixelData" not in first.dataset
    assert first.dataset is not second.dataset
    assert first == second


def test_repr_leaves_out_patient_identity() -> None:
    text = repr(parse_bytes(make_ct_slice(PatientName="Zhang^San", PatientID="MRN777", PatientBirthDate="19800203")))

    assert "Zhang" not in text
    assert "MRN777" not in text
    assert "1980" not in text
    assert "dataset" not in text


@pytest.mark.parametrize(
    "transfer_syntax",
    [ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian],
)
def test_native_transfer_syntaxes_give_the_pixel_data_length(transfer_syntax: str) -> None:
    parsed = parse_bytes(make_ct_slice(transfer_syntax=transfer_syntax, PatientName="张三"))

    assert parsed.transfer_syntax_uid == transfer_syntax
    assert (parsed.pixel_data_length, parsed.is_encapsulated) == (512, False)
    assert (parsed.rows, parsed.bits_allocated, parsed.patient_name) == (16, 16, "张三")


@pytest.mark.parametrize("transfer_syntax", [JPEGBaseline8Bit, JPEG2000Lossless])
def test_encapsulated_pixel_data_is_flagged_without_a_length(transfer_syntax: str) -> None:
    parsed = parse_bytes(make_ct_slice(transfer_syntax=transfer_syntax, NumberOfFrames=3))

    assert (parsed.has_pixel_data, parsed.is_encapsulated, parsed.pixel_data_length) == (True, True, None)
    assert parsed.number_of_frames == 3


def test_object_without_pixel_data_has_no_length() -> None:
    parsed = parse_bytes(make_ct_slice(PixelData=None))

    assert (parsed.has_pixel_data, parsed.pixel_data_length, parsed.is_encapsulated) == (False, None, False)


def test_colour_ultrasound_is_read() -> None:
    parsed = parse_bytes(make_us_image())

    assert (parsed.modality, parsed.photometric_interpretation, parsed.samples_per_pixel) == ("US", "RGB", 3)
    assert parsed.pixel_data_length == 16 * 16 * 3
    assert parsed.pixel_spacing is None


def test_path_source_reads_deferred_values_after_returning(tmp_path: Path) -> None:
    path = tmp_path / "long-comment.dcm"
    path.write_bytes(make_ct_slice(ImageComments="x" * 5000))

    parsed = parse_part10(path)

    assert parsed.size == path.stat().st_size
    assert len(parsed.dataset.ImageComments) == 5000


def test_stream_position_is_restored() -> None:
    stream = io.BytesIO(b"ignored prefix" + make_ct_slice())
    stream.seek(len(b"ignored prefix"))

    parse_part10(stream)

    assert stream.tell() == len(b"ignored prefix")


@pytest.mark.filterwarnings("ignore:Invalid value for VR")
def test_dates_and_times_in_old_or_bad_forms() -> None:
    parsed = parse_bytes(make_ct_slice(StudyDate="2025.01.02", StudyTime="09:30", PatientBirthDate="19701345"))

    assert (parsed.study_date, parsed.study_time, parsed.patient_birth_date) == (date(2025, 1, 2), time(9, 30), None)


def test_enhanced_objects_give_pixel_measures_from_the_functional_groups() -> None:
    measures = Dataset()
    measures.PixelSpacing = [0.5, 0.6]
    measures.SliceThickness = 1.25
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    parsed = parse_bytes(
        make_ct_slice(PixelSpacing=None, SliceThickness=None, SharedFunctionalGroupsSequence=Sequence([shared]))
    )

    assert (parsed.pixel_spacing, parsed.slice_thickness) == ((0.5, 0.6), 1.25)


def test_undefined_length_sequences_are_walked() -> None:
    ds = make_instance("CT")
    item = Dataset()
    item.ReferencedSOPClassUID = CT_IMAGE_STORAGE
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    item.is_undefined_length_sequence_item = True
    ds.ReferencedImageSequence = Sequence([item])
    ds["ReferencedImageSequence"].is_undefined_length = True

    assert parse_bytes(to_part10_bytes(ds)).pixel_data_length == 512


# Character sets


@pytest.mark.parametrize(
    ("charset", "text_encoding"),
    [
        ("ISO_IR 192", None),
        ("GB18030", None),
        ("GBK", None),
        (["", "ISO 2022 IR 58"], None),  # with ESC $ ) A, as PS3.5 Annex K shows
        (["", "ISO 2022 IR 58"], "gb2312"),  # devices that leave the escape sequences out
    ],
)
def test_declared_chinese_charsets_decode_to_the_same_name(charset: str | list[str], text_encoding: str | None) -> None:
    ds = make_instance("CT", SpecificCharacterSet=charset, PatientName="张三", InstitutionName="第一人民医院")

    parsed = parse_bytes(to_part10_bytes(ds, text_encoding=text_encoding))

    assert parsed.patient_name == "张三"
    assert parsed.institution_name == "第一人民医院"
    assert parsed.charset_guessed is False
    assert str(parsed.dataset.PatientName) == "张三"


def test_iso2022_ir58_person_name_keeps_its_component_groups() -> None:
    ds = make_instance("CT", SpecificCharacterSet=["", "ISO 2022 IR 58"], PatientName="Zhang^San=张^三")
    data = to_part10_bytes(ds)

    parsed = parse_bytes(data)

    assert b"=\x1b$)A" in data
    assert parsed.patient_name == "Zhang^San=张^三"
    assert parsed.specific_character_set == ("", "ISO 2022 IR 58")
    assert parsed.dataset.PatientName.ideographic == "张^三"


@pytest.mark.parametrize("text_encoding", ["utf-8", "gb18030"])
def test_missing_charset_with_chinese_bytes_is_guessed(text_encoding: str) -> None:
    ds = make_instance("CT", SpecificCharacterSet=None, PatientName="张三", StudyDescription="胸部平扫")

    parsed = parse_bytes(to_part10_bytes(ds, text_encoding=text_encoding))

    assert (parsed.patient_name, parsed.study_description) == ("张三", "胸部平扫")
    assert parsed.specific_character_set == ()
    assert parsed.charset_guessed is True


def test_declared_utf8_with_gbk_bytes_is_guessed() -> None:
    ds = make_instance("CT", SpecificCharacterSet="ISO_IR 192", PatientName="张三")

    parsed = parse_bytes(to_part10_bytes(ds, text_encoding="gbk"))

    assert (parsed.patient_name, parsed.charset_guessed) == ("张三", True)


def test_guessed_text_reaches_the_dataset_json() -> None:
    ds = make_instance("CT", SpecificCharacterSet=None, PatientName="张三")

    parsed = parse_bytes(to_part10_bytes(ds, text_encoding="gb18030"))

    assert parsed.dataset.to_json_dict()["00100010"]["Value"] == [{"Alphabetic": "张三"}]


def test_text_in_large_sequences_is_decoded_with_the_guess() -> None:
    items = []
    for index in range(40):  # well over the 1 KB above which values are deferred
        item = Dataset()
        item.CodeValue = f"C{index}"
        item.CodingSchemeDesignator = "99LOCAL"
        item.CodeMeaning = "胸部平扫"
        items.append(item)
    ds = make_instance("CT", SpecificCharacterSet=None, PatientName="张三", ProcedureCodeSequence=Sequence(items))

    parsed = parse_bytes(to_part10_bytes(ds, text_encoding="gb18030"))

    assert {item.CodeMeaning for item in parsed.dataset.ProcedureCodeSequence} == {"胸部平扫"}


def test_deferred_values_of_a_stream_source_stay_readable() -> None:
    parsed = parse_bytes(make_ct_slice(ImageComments="y" * 5000))

    assert parsed.dataset.ImageComments == "y" * 5000


def test_latin1_is_decoded_as_declared() -> None:
    parsed = parse_bytes(make_ct_slice(SpecificCharacterSet="ISO_IR 100", PatientName="Müller^Jürgen"))

    assert (parsed.patient_name, parsed.charset_guessed) == ("Müller^Jürgen", False)


def test_ascii_without_charset_is_not_a_guess() -> None:
    parsed = parse_bytes(make_ct_slice(SpecificCharacterSet=None, PatientName="Zhang^San"))

    assert (parsed.patient_name, parsed.charset_guessed) == ("Zhang^San", False)


# What is refused


def test_bytes_that_are_not_dicom_are_refused() -> None:
    refused = rejection(b"%PDF-1.7\n" + bytes(300))

    assert refused.code == "DICOM_NOT_PART10"
    assert "not a DICOM file" in refused.message_en


def test_empty_file_is_refused() -> None:
    assert rejection(b"").code == "DICOM_NOT_PART10"


def test_data_set_without_preamble_is_refused() -> None:
    refused = rejection(make_ct_slice()[132:])

    assert refused.code == "DICOM_NOT_PART10"
    assert "preamble" in refused.message_en


def test_file_meta_without_transfer_syntax_is_refused() -> None:
    data = make_ct_slice()
    # Retag (0002,0010) Transfer Syntax UID as an unknown group 0002 element of the same shape.
    data = data.replace(struct.pack("<HH", 0x0002, 0x0010) + b"UI", struct.pack("<HH", 0x0002, 0x0099) + b"UI", 1)

    refused = rejection(data)

    assert refused.code == "DICOM_NOT_PART10"
    assert "Transfer Syntax" in refused.message_en


def test_pixel_data_shorter_than_declared_is_truncated() -> None:
    assert rejection(make_ct_slice()[:-100]).code == "DICOM_TRUNCATED"


def test_file_ending_inside_an_element_header_is_truncated() -> None:
    data = make_ct_slice()

    assert rejection(data[: element_offset(data, "PixelData") + 5]).code == "DICOM_TRUNCATED"


def test_file_ending_inside_a_text_value_is_truncated() -> None:
    data = make_ct_slice(PatientName="张三")

    assert rejection(data[: element_offset(data, "PatientName") + 10]).code == "DICOM_TRUNCATED"


def test_encapsulated_pixel_data_without_its_delimiter_is_truncated() -> None:
    assert rejection(make_ct_slice(transfer_syntax=JPEGBaseline8Bit)[:-8]).code == "DICOM_TRUNCATED"


def test_deflated_data_set_cut_short_is_truncated() -> None:
    assert rejection(make_ct_slice(transfer_syntax=DeflatedExplicitVRLittleEndian)[:-40]).code == "DICOM_TRUNCATED"


def test_native_pixel_data_under_an_encapsulated_syntax_is_malformed() -> None:
    data = make_ct_slice()
    # Explicit VR Little Endian and RLE Lossless have UIDs of the same padded length.
    data = data.replace(b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008.1.2.5\x00", 1)

    assert rejection(data).code == "DICOM_MALFORMED"


@pytest.mark.parametrize("keyword", ["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"])
def test_missing_uid_is_refused_by_keyword(keyword: str) -> None:
    refused = rejection(make_ct_slice(**{keyword: None}, PatientName="张三", PatientID="MRN777"))

    assert refused.code == "DICOM_MISSING_UID"
    assert keyword in refused.message_en
    assert keyword in refused.message_zh
    assert "张三" not in refused.message_zh + refused.message_en
    assert "MRN777" not in refused.message_zh + refused.message_en


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI", "ignore:The value length")
@pytest.mark.parametrize("uid", ["1.2.03.4", "1.2.abc", "1.2.3.", "12345", "1." + "2" * 64])
def test_invalid_uid_is_refused(uid: str) -> None:
    refused = rejection(make_ct_slice(StudyInstanceUID=uid))

    assert refused.code == "DICOM_INVALID_UID"
    assert "StudyInstanceUID" in refused.message_en


@pytest.mark.parametrize(
    ("uid", "valid"),
    [("1.2.840.10008.1.2", True), ("0.0", True), ("2.25.0", True), ("1.02", False), ("1..2", False), ("1", False)],
)
def test_uid_rules(uid: str, valid: bool) -> None:
    assert is_valid_uid(uid) is valid


# Large files


def _parse_measuring_peak_memory(path: Path) -> tuple[ParsedInstance, int]:
    tracemalloc.start()
    try:
        parsed = parse_part10(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return parsed, peak


def test_large_pixel_data_is_measured_without_being_read(tmp_path: Path) -> None:
    path = tmp_path / "large.dcm"
    size = write_large_part10(path, rows=2048, columns=2048, frames=8)  # 64 MiB of Pixel Data

    parsed, peak = _parse_measuring_peak_memory(path)

    assert parsed.pixel_data_length == 2048 * 2048 * 8 * 2
    assert parsed.size == size
    assert peak < 4 * 1024 * 1024 < size // 16


def test_multi_gigabyte_pixel_data_is_measured_without_being_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.dcm"
    length = 4096 * 4096 * 96 * 2  # 3 GiB: above 2**31, where signed 32-bit lengths would break
    write_large_part10(path, rows=4096, columns=4096, frames=96)
    if os.stat(path).st_blocks * 512 > 64 * 1024 * 1024:
        pytest.skip("this file system does not keep sparse files sparse")

    parsed, peak = _parse_measuring_peak_memory(path)

    assert parsed.pixel_data_length == length
    assert peak < 4 * 1024 * 1024


def test_large_file_cut_short_is_truncated(tmp_path: Path) -> None:
    path = tmp_path / "cut.dcm"
    size = write_large_part10(path, rows=1024, columns=1024, frames=4)
    os.truncate(path, size - 1024)

    with pytest.raises(DicomRejected) as caught:
        parse_part10(path)

    assert caught.value.code == "DICOM_TRUNCATED"
