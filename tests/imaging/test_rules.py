"""Data validation rules: each code with a case that triggers it and one that does not. No database needed."""

import io
from dataclasses import replace
from typing import Any

import pytest
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit

from apps.imaging.dicom.parse import ParsedInstance, parse_part10
from apps.imaging.dicom.rules import (
    LOSSY_TRANSFER_SYNTAXES,
    RULES,
    Finding,
    Severity,
    ValidationPolicy,
    validate_instance,
)
from apps.imaging.dicom.series_rules import study_completeness, validate_series, validate_study
from tests.imaging.dicom_factory import (
    TEST_INSTITUTION,
    make_ct_series,
    make_ct_slice,
    make_instance,
    make_mr_slice,
    make_us_image,
    to_part10_bytes,
)

POLICY = ValidationPolicy(institution_name=TEST_INSTITUTION)


def parse_bytes(data: bytes) -> ParsedInstance:
    return parse_part10(io.BytesIO(data))


def ct(**attributes: Any) -> ParsedInstance:
    return parse_bytes(make_ct_slice(**attributes))


def findings_for(parsed: ParsedInstance, policy: ValidationPolicy = POLICY) -> dict[str, Finding]:
    return {finding.code: finding for finding in validate_instance(parsed, policy=policy)}


def series(positions: list[float], **attributes: Any) -> list[ParsedInstance]:
    return [parse_bytes(data) for data in make_ct_series(len(positions), positions=positions, **attributes)]


# The registry and the policy


def test_registry_holds_every_rule_with_both_titles() -> None:
    assert set(RULES) == {
        "TYPE1_MISSING",
        "LOSSY_TRANSFER_SYNTAX",
        "LOSSY_COMPRESSION_FLAG",
        "PIXEL_LENGTH_MISMATCH",
        "BITS_INCONSISTENT",
        "PHOTOMETRIC_MISMATCH",
        "PIXEL_SPACING_INVALID",
        "INSTITUTION_MISMATCH",
        "CHARSET_GUESSED",
        "SERIES_MIXED_MODALITY",
        "SERIES_MIXED_DEVICE",
        "SERIES_MIXED_BODY_PART",
        "SLICE_SPACING_INCONSISTENT",
        "STUDY_MULTIPLE_PATIENTS",
        "STUDY_INCOMPLETE",
    }
    assert all(rule.title_zh and rule.title_en and len(rule.code) <= 40 for rule in RULES.values())


def test_policy_uses_the_rule_default_without_overrides() -> None:
    assert POLICY.severity("PIXEL_LENGTH_MISMATCH", "CT") == Severity.REJECT
    assert POLICY.severity("INSTITUTION_MISMATCH", "CT") == Severity.WARN


def test_policy_prefers_the_modality_override_to_the_wildcard() -> None:
    policy = ValidationPolicy(
        institution_name=TEST_INSTITUTION,
        severity_overrides={
            ("INSTITUTION_MISMATCH", "*"): Severity.REJECT,
            ("INSTITUTION_MISMATCH", "US"): Severity.WARN,
        },
    )

    assert policy.severity("INSTITUTION_MISMATCH", "US") == Severity.WARN
    assert policy.severity("INSTITUTION_MISMATCH", "CT") == Severity.REJECT


def test_policy_lossy_allowance_is_per_modality_and_yields_to_a_modality_override() -> None:
    policy = ValidationPolicy(
        institution_name=TEST_INSTITUTION,
        lossy_allowed_modalities=frozenset({"US", "ES"}),
        severity_overrides={("LOSSY_TRANSFER_SYNTAX", "ES"): Severity.REJECT},
    )

    assert policy.severity("LOSSY_TRANSFER_SYNTAX", "US") == Severity.WARN
    assert policy.severity("LOSSY_COMPRESSION_FLAG", "us") == Severity.WARN
    assert policy.severity("LOSSY_TRANSFER_SYNTAX", "CT") == Severity.REJECT
    assert policy.severity("LOSSY_TRANSFER_SYNTAX", "ES") == Severity.REJECT
    assert policy.severity("PIXEL_LENGTH_MISMATCH", "US") == Severity.REJECT


@pytest.mark.parametrize("data", [make_ct_slice(), make_mr_slice(), make_us_image()], ids=["CT", "MR", "US"])
def test_clean_images_have_no_findings(data: bytes) -> None:
    assert validate_instance(parse_bytes(data), policy=POLICY) == []


# TYPE1_MISSING


@pytest.mark.parametrize("keyword", ["Modality", "Rows", "PhotometricInterpretation", "HighBit"])
def test_missing_type1_attribute_is_named(keyword: str) -> None:
    attributes: dict[str, Any] = {keyword: None}
    if keyword == "Rows":
        attributes["PixelData"] = bytes(512)
    finding = findings_for(ct(**attributes))["TYPE1_MISSING"]

    assert finding.severity == Severity.REJECT
    assert finding.details["missing"] == keyword
    assert keyword in finding.message_en and keyword in finding.message_zh


def test_image_pixel_attributes_are_not_required_of_an_object_that_is_not_an_image() -> None:
    # A Grayscale Softcopy Presentation State: no Image Pixel Module in its IOD.
    parsed = ct(SOPClassUID="1.2.840.10008.5.1.4.1.1.11.1", PixelData=None, Rows=None, Columns=None, BitsAllocated=None)

    assert "TYPE1_MISSING" not in findings_for(parsed)


def test_an_image_without_pixel_data_is_refused() -> None:
    """CT Image Storage holds the Image Pixel Module, where Pixel Data is required unless a Pixel
    Data Provider URL says where the pixels are: without either, there is no image to keep."""
    finding = findings_for(ct(PixelData=None, Rows=None))["TYPE1_MISSING"]

    assert finding.severity == Severity.REJECT
    assert finding.details["missing"] == "Rows, PixelData"


def test_an_image_whose_pixels_are_provided_by_jpip_needs_no_pixel_data() -> None:
    parsed = ct(PixelData=None, PixelDataProviderURL="https://pacs.example/jpip/1")
    assert parsed.pixel_data_provider
    # A provider URL replaces Pixel Data in the JPIP Referenced transfer syntaxes only.
    assert findings_for(parsed)["TYPE1_MISSING"].details["missing"] == "PixelData"
    for syntax in ("1.2.840.10008.1.2.4.94", "1.2.840.10008.1.2.4.95"):
        assert "TYPE1_MISSING" not in findings_for(replace(parsed, transfer_syntax_uid=syntax))
    # An empty URL provides nothing.
    empty = ct(PixelData=None, PixelDataProviderURL="")
    assert not empty.pixel_data_provider
    assert "TYPE1_MISSING" in findings_for(replace(empty, transfer_syntax_uid="1.2.840.10008.1.2.4.94"))


# LOSSY_TRANSFER_SYNTAX and LOSSY_COMPRESSION_FLAG


def test_lossy_transfer_syntax_is_rejected() -> None:
    finding = findings_for(ct(transfer_syntax=JPEGBaseline8Bit))["LOSSY_TRANSFER_SYNTAX"]

    assert finding.severity == Severity.REJECT
    assert finding.details["transfer_syntax_uid"] == JPEGBaseline8Bit


def test_lossy_transfer_syntax_only_warns_where_the_policy_allows_lossy() -> None:
    policy = ValidationPolicy(institution_name=TEST_INSTITUTION, lossy_allowed_modalities=frozenset({"US"}))
    parsed = parse_bytes(make_us_image(transfer_syntax=JPEGBaseline8Bit, LossyImageCompression="01"))

    findings = findings_for(parsed, policy)

    assert findings["LOSSY_TRANSFER_SYNTAX"].severity == Severity.WARN
    assert findings["LOSSY_COMPRESSION_FLAG"].severity == Severity.WARN


def test_lossless_encapsulated_syntax_is_not_lossy() -> None:
    assert "LOSSY_TRANSFER_SYNTAX" not in findings_for(ct(transfer_syntax=JPEG2000Lossless))


@pytest.mark.parametrize(
    "uid",
    [
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.55",
        "1.2.840.10008.1.2.4.81",
        "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.4.93",
        "1.2.840.10008.1.2.4.100",
        "1.2.840.10008.1.2.4.102.1",
        "1.2.840.10008.1.2.4.108",
        "1.2.840.10008.1.2.4.112",
        "1.2.840.10008.1.2.4.203",
    ],
)
def test_lossy_syntaxes_are_listed(uid: str) -> None:
    assert uid in LOSSY_TRANSFER_SYNTAXES


@pytest.mark.parametrize(
    "uid",
    [
        ExplicitVRLittleEndian,
        "1.2.840.10008.1.2.4.57",
        "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.80",
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.92",
        "1.2.840.10008.1.2.4.110",
        "1.2.840.10008.1.2.4.201",
        "1.2.840.10008.1.2.4.202",
        "1.2.840.10008.1.2.5",
    ],
)
def test_lossless_syntaxes_are_not_listed(uid: str) -> None:
    assert uid not in LOSSY_TRANSFER_SYNTAXES


def test_lossy_compression_flag_is_rejected() -> None:
    finding = findings_for(ct(LossyImageCompression="01"))["LOSSY_COMPRESSION_FLAG"]

    assert finding.severity == Severity.REJECT


def test_lossy_compression_flag_00_is_fine() -> None:
    assert "LOSSY_COMPRESSION_FLAG" not in findings_for(ct(LossyImageCompression="00"))


# PIXEL_LENGTH_MISMATCH


def test_short_pixel_data_mismatches() -> None:
    finding = findings_for(ct(PixelData=bytes(100)))["PIXEL_LENGTH_MISMATCH"]

    assert (finding.severity, finding.details["expected"], finding.details["actual"]) == (Severity.REJECT, 512, 100)


def test_missing_frames_mismatch() -> None:
    finding = findings_for(ct(NumberOfFrames=3, PixelData=bytes(512)))["PIXEL_LENGTH_MISMATCH"]

    assert (finding.details["expected"], finding.details["number_of_frames"]) == (1536, 3)


@pytest.mark.parametrize(
    "attributes",
    [
        {"Rows": 3, "Columns": 3, "BitsAllocated": 8, "BitsStored": 8, "HighBit": 7},  # 9 bytes padded to 10
        {"Rows": 5, "Columns": 5, "BitsAllocated": 1, "BitsStored": 1, "HighBit": 0},  # 25 bits in 4 bytes
        {"NumberOfFrames": 4},
    ],
    ids=["odd-length-padded", "one-bit", "multi-frame"],
)
def test_matching_pixel_data_lengths(attributes: dict[str, Any]) -> None:
    assert "PIXEL_LENGTH_MISMATCH" not in findings_for(ct(**attributes))


def test_ybr_full_422_stores_two_samples_per_pixel() -> None:
    parsed = parse_bytes(make_us_image(PhotometricInterpretation="YBR_FULL_422", PixelData=bytes(16 * 16 * 2)))

    assert "PIXEL_LENGTH_MISMATCH" not in findings_for(parsed)


def test_encapsulated_pixel_data_is_not_length_checked() -> None:
    assert "PIXEL_LENGTH_MISMATCH" not in findings_for(ct(transfer_syntax=JPEG2000Lossless, NumberOfFrames=2))


# BITS_INCONSISTENT


@pytest.mark.parametrize(
    "attributes", [{"BitsStored": 12, "HighBit": 15}, {"BitsAllocated": 8, "BitsStored": 12, "HighBit": 11}]
)
def test_inconsistent_bits(attributes: dict[str, Any]) -> None:
    finding = findings_for(ct(**attributes))["BITS_INCONSISTENT"]

    assert finding.severity == Severity.REJECT
    assert finding.details["bits_stored"] == 12


def test_consistent_bits() -> None:
    assert "BITS_INCONSISTENT" not in findings_for(ct(BitsAllocated=16, BitsStored=16, HighBit=15))


# PHOTOMETRIC_MISMATCH


def test_monochrome_with_three_samples_mismatches() -> None:
    finding = findings_for(ct(SamplesPerPixel=3))["PHOTOMETRIC_MISMATCH"]

    assert (finding.details["expected"], finding.details["actual"]) == (1, 3)


def test_rgb_with_one_sample_mismatches() -> None:
    parsed = parse_bytes(make_us_image(SamplesPerPixel=1))

    assert findings_for(parsed)["PHOTOMETRIC_MISMATCH"].details["expected"] == 3


def test_palette_colour_with_one_sample_matches() -> None:
    parsed = parse_bytes(make_us_image(SamplesPerPixel=1, PhotometricInterpretation="PALETTE COLOR"))

    assert "PHOTOMETRIC_MISMATCH" not in findings_for(parsed)


# PIXEL_SPACING_INVALID


@pytest.mark.parametrize("spacing", [None, [0.0, 0.7], [0.7, -0.7]])
def test_ct_needs_positive_pixel_spacing(spacing: list[float] | None) -> None:
    finding = findings_for(ct(PixelSpacing=spacing))["PIXEL_SPACING_INVALID"]

    assert finding.severity == Severity.REJECT


def test_mr_with_pixel_spacing_is_fine() -> None:
    assert "PIXEL_SPACING_INVALID" not in findings_for(parse_bytes(make_mr_slice()))


def test_ultrasound_does_not_need_pixel_spacing() -> None:
    assert "PIXEL_SPACING_INVALID" not in findings_for(parse_bytes(make_us_image(PixelSpacing=None)))


# INSTITUTION_MISMATCH


def test_other_institution_is_a_warning_naming_the_device() -> None:
    parsed = ct(InstitutionName="OTHER HOSPITAL", StationName="CT02", PatientName="Zhang^San", PatientID="MRN777")

    finding = findings_for(parsed)["INSTITUTION_MISMATCH"]

    assert finding.severity == Severity.WARN
    assert finding.details["station_name"] == "CT02"
    assert finding.details["manufacturer"] == "SYNTHETIC VENDOR"
    assert finding.details["received_institution_name"] == "OTHER HOSPITAL"
    shown = f"{finding.message_zh} {finding.message_en} {finding.details}"
    assert "Zhang" not in shown and "MRN777" not in shown and "1970" not in shown


def test_institution_is_compared_without_case_or_spacing() -> None:
    assert "INSTITUTION_MISMATCH" not in findings_for(ct(InstitutionName="  first peoples  hospital "))


def test_institution_mismatch_never_rewrites_the_data() -> None:
    parsed = ct(InstitutionName="OTHER HOSPITAL")

    validate_instance(parsed, policy=POLICY)

    assert (parsed.institution_name, parsed.dataset.InstitutionName) == ("OTHER HOSPITAL", "OTHER HOSPITAL")


def test_no_configured_institution_means_no_check() -> None:
    policy = ValidationPolicy(institution_name="")

    assert "INSTITUTION_MISMATCH" not in findings_for(ct(InstitutionName="OTHER HOSPITAL"), policy)


# CHARSET_GUESSED


def test_guessed_charset_is_a_warning() -> None:
    ds = make_instance("CT", SpecificCharacterSet=None, PatientName="张三")
    parsed = parse_bytes(to_part10_bytes(ds, text_encoding="gb18030"))

    finding = findings_for(parsed)["CHARSET_GUESSED"]

    assert finding.severity == Severity.WARN
    assert "张三" not in f"{finding.message_zh} {finding.details}"


def test_declared_charset_is_not_a_guess() -> None:
    assert "CHARSET_GUESSED" not in findings_for(ct(SpecificCharacterSet="GB18030", PatientName="张三"))


# Series: SERIES_MIXED_MODALITY, SERIES_MIXED_DEVICE, SERIES_MIXED_BODY_PART


def test_consistent_series_has_no_findings() -> None:
    assert validate_series(series([0, 5, 10, 15, 20]), policy=POLICY) == []


@pytest.mark.parametrize(
    ("code", "change"),
    [
        ("SERIES_MIXED_MODALITY", {"modality": "MR"}),
        ("SERIES_MIXED_DEVICE", {"station_name": "CT02"}),
        ("SERIES_MIXED_DEVICE", {"manufacturer": "OTHER VENDOR"}),
        ("SERIES_MIXED_BODY_PART", {"body_part_examined": "HEAD"}),
    ],
)
def test_the_odd_instance_out_is_flagged(code: str, change: dict[str, str]) -> None:
    instances = series([0, 5, 10, 15])
    instances[2] = replace(instances[2], **change)

    results = validate_series(instances, policy=POLICY)

    assert [(uid, finding.code) for uid, finding in results] == [(instances[2].sop_instance_uid, code)]
    assert results[0][1].severity == Severity.WARN


def test_instance_without_body_part_does_not_mix_the_series() -> None:
    instances = series([0, 5, 10])
    instances[1] = replace(instances[1], body_part_examined="")

    assert validate_series(instances, policy=POLICY) == []


def test_different_series_are_checked_apart() -> None:
    ct_series, mr_series = series([0, 5, 10]), series([0, 5, 10])
    mr_series = [replace(instance, modality="MR") for instance in mr_series]

    assert validate_series(ct_series + mr_series, policy=POLICY) == []


# SLICE_SPACING_INCONSISTENT


def spacing_findings(instances: list[ParsedInstance]) -> list[tuple[str, Finding]]:
    return [
        result for result in validate_series(instances, policy=POLICY) if result[1].code == "SLICE_SPACING_INCONSISTENT"
    ]


def test_missing_slice_is_flagged_on_the_slice_after_the_gap() -> None:
    instances = series([0, 5, 10, 20, 25])

    results = spacing_findings(instances)

    assert [uid for uid, _ in results] == [instances[3].sop_instance_uid]
    assert results[0][1].details["spacing_mm"] == 10.0
    assert results[0][1].details["kind"] == "gap"
    assert results[0][1].severity == Severity.WARN


def test_overlap_is_flagged() -> None:
    instances = series([0, 5, 10, 12, 17, 22])

    results = spacing_findings(instances)

    assert [uid for uid, _ in results] == [instances[3].sop_instance_uid]
    assert results[0][1].details["kind"] == "overlap"


def test_uniform_spacing_wider_than_the_thickness_is_deliberate() -> None:
    assert spacing_findings(series([0, 7, 14, 21, 28], slice_thickness=5.0)) == []


def test_missing_slice_in_a_spaced_series_flags_only_the_gap() -> None:
    instances = series([0, 7, 14, 28, 35], slice_thickness=5.0)

    assert [uid for uid, _ in spacing_findings(instances)] == [instances[3].sop_instance_uid]


def test_small_jitter_is_within_tolerance() -> None:
    assert spacing_findings(series([0, 5, 10, 15.4, 20.4])) == []


def test_order_and_direction_of_arrival_do_not_matter() -> None:
    instances = series([25, 20, 5, 10, 0])

    assert [uid for uid, _ in spacing_findings(instances)] == [instances[1].sop_instance_uid]


def test_repeated_locations_are_one_location() -> None:
    instances = series([0, 0, 5, 5, 10, 10, 15, 15])

    assert spacing_findings(instances) == []


def test_slices_in_another_orientation_form_their_own_stack() -> None:
    instances = series([0, 5, 10, 15])
    localizer = replace(instances[0], sop_instance_uid="2.25.42", image_orientation_patient=(0, 1, 0, 0, 0, -1))

    assert spacing_findings([*instances, localizer]) == []


def test_without_thickness_the_median_gap_decides() -> None:
    instances = [replace(instance, slice_thickness=None) for instance in series([0, 5, 10, 20])]

    assert [uid for uid, _ in spacing_findings(instances)] == [instances[3].sop_instance_uid]


# STUDY_MULTIPLE_PATIENTS


def study(count: int = 4) -> list[ParsedInstance]:
    return series([5.0 * index for index in range(count)])


def test_second_patient_in_a_study_is_rejected_without_naming_anyone() -> None:
    instances = study()
    instances[3] = replace(instances[3], patient_id="MRN999", patient_name="Li^Si")

    results = validate_study(instances, policy=POLICY)

    assert [uid for uid, _ in results] == [instances[3].sop_instance_uid]
    finding = results[0][1]
    assert (finding.code, finding.severity) == ("STUDY_MULTIPLE_PATIENTS", Severity.REJECT)
    assert finding.details["identities"] == 2
    assert finding.details["differing_attributes"] == "PatientID, PatientName"
    shown = f"{finding.message_zh} {finding.message_en} {finding.details}"
    assert "MRN999" not in shown and "Li^Si" not in shown and "TEST0001" not in shown


def test_name_formatting_is_not_another_patient() -> None:
    instances = study()
    instances[1] = replace(instances[1], patient_name="CESHI^HUANZHE^^")

    assert validate_study(instances, policy=POLICY) == []


def test_absent_birth_date_is_not_another_patient() -> None:
    instances = study()
    instances[1] = replace(instances[1], patient_birth_date=None)

    assert validate_study(instances, policy=POLICY) == []


def test_different_birth_date_is_another_patient() -> None:
    instances = study()
    instances[1] = replace(instances[1], patient_birth_date=instances[1].patient_birth_date.replace(year=1971))

    results = validate_study(instances, policy=POLICY)

    assert [finding.details["differing_attributes"] for _, finding in results] == ["PatientBirthDate"]


def test_different_studies_may_have_different_patients() -> None:
    first, second = study(2), study(2)
    second = [replace(instance, patient_id="MRN999") for instance in second]

    assert validate_study(first + second, policy=POLICY) == []


# STUDY_INCOMPLETE


def test_study_short_of_its_manifest_is_incomplete() -> None:
    instances = study(3)

    findings = study_completeness(instances, {instances[0].series_instance_uid: 5})

    assert [(finding.code, finding.severity) for finding in findings] == [("STUDY_INCOMPLETE", Severity.WARN)]
    assert (findings[0].details["expected"], findings[0].details["received"], findings[0].details["missing"]) == (
        5,
        3,
        2,
    )


def test_resent_instances_count_once() -> None:
    instances = study(3)

    findings = study_completeness([*instances, instances[0]], {instances[0].series_instance_uid: 4})

    assert findings[0].details["received"] == 3


def test_series_never_received_is_incomplete() -> None:
    findings = study_completeness(study(2), {"2.25.12345": 10})

    assert (findings[0].details["received"], findings[0].details["series_number"]) == (0, None)


def test_complete_study_and_missing_manifest_have_no_findings() -> None:
    instances = study(3)

    assert study_completeness(instances, {instances[0].series_instance_uid: 3}) == []
    assert study_completeness(instances, None) == []


def test_completeness_severity_follows_the_policy() -> None:
    instances = study(1)
    policy = ValidationPolicy(TEST_INSTITUTION, severity_overrides={("STUDY_INCOMPLETE", "CT"): Severity.REJECT})

    findings = study_completeness(instances, {instances[0].series_instance_uid: 2}, policy=policy)

    assert findings[0].severity == Severity.REJECT
