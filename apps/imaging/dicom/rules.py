"""Data validation (数据校验) of received instances: stable rule codes, bilingual findings, hospital policy.

Every rule has a code that never changes (it is stored with each finding and counted by QC), a
default severity, and titles in both languages. A hospital's ValidationPolicy may change a severity per
modality. Findings carry only non-identifying facts: counts, attribute keywords, device names, never
the patient's name, ID or birth date.

Per-instance rules live here; rules across the instances of a series or study are in series_rules.
"""

from dataclasses import dataclass, field
from enum import StrEnum

from apps.imaging.dicom.parse import ParsedInstance


class Severity(StrEnum):
    REJECT = "reject"
    WARN = "warn"


@dataclass(frozen=True)
class Rule:
    code: str
    title_zh: str
    title_en: str
    default_severity: Severity


@dataclass(frozen=True)
class Finding:
    code: str
    severity: Severity
    message_zh: str
    message_en: str
    details: dict[str, str | int | float | None] = field(default_factory=dict)


_RULE_LIST = (
    Rule("TYPE1_MISSING", "缺少 1 类必填属性", "Type 1 attributes missing", Severity.REJECT),
    Rule("LOSSY_TRANSFER_SYNTAX", "有损压缩传输语法", "Lossy transfer syntax", Severity.REJECT),
    Rule("LOSSY_COMPRESSION_FLAG", "图像曾经有损压缩", "Image has been lossy compressed", Severity.REJECT),
    Rule("PIXEL_LENGTH_MISMATCH", "像素数据长度与图像属性不符", "Pixel data length mismatch", Severity.REJECT),
    Rule("BITS_INCONSISTENT", "位深属性不一致", "Inconsistent bit depth attributes", Severity.REJECT),
    Rule("PHOTOMETRIC_MISMATCH", "光度解释与每像素样本数不符", "Photometric interpretation mismatch", Severity.REJECT),
    Rule("PIXEL_SPACING_INVALID", "像素间距缺失或无效", "Pixel spacing missing or invalid", Severity.REJECT),
    Rule("INSTITUTION_MISMATCH", "机构名称与本院不符", "Institution name mismatch", Severity.WARN),
    Rule("CHARSET_GUESSED", "字符集未声明或与内容不符", "Character set guessed", Severity.WARN),
    Rule("SERIES_MIXED_MODALITY", "同一序列中检查类型不一致", "Mixed modalities in a series", Severity.WARN),
    Rule("SERIES_MIXED_DEVICE", "同一序列来自不同设备", "Mixed devices in a series", Severity.WARN),
    Rule("SERIES_MIXED_BODY_PART", "同一序列中检查部位不一致", "Mixed body parts in a series", Severity.WARN),
    Rule("SLICE_SPACING_INCONSISTENT", "层间距不一致（缺层或重叠）", "Inconsistent slice spacing", Severity.WARN),
    Rule("STUDY_MULTIPLE_PATIENTS", "同一检查包含多个患者", "Several patients in one study", Severity.REJECT),
    Rule("STUDY_INCOMPLETE", "检查影像不完整", "Study incomplete", Severity.WARN),
)
RULES: dict[str, Rule] = {rule.code: rule for rule in _RULE_LIST}

# Transfer syntaxes whose pixel data is (or may be) lossy, from the PS3.6 Annex A registry: JPEG
# processes other than the lossless ones, JPEG-LS near-lossless, JPEG 2000 and HTJ2K "lossy or lossless"
# (treated as lossy: the syntax permits it), MPEG-2, H.264 and HEVC video, and JPEG XL except lossless.
# JPEG XL JPEG Recompression is lossless over a JPEG that was itself lossy.
LOSSY_TRANSFER_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.4.50",  # JPEG Baseline (Process 1)
        "1.2.840.10008.1.2.4.51",  # JPEG Extended (Process 2 & 4)
        *(f"1.2.840.10008.1.2.4.{n}" for n in (52, 53, 54, 55, 56, 59, 60, 61, 62, 63, 64)),  # retired lossy JPEG
        "1.2.840.10008.1.2.4.81",  # JPEG-LS Lossy (Near-Lossless)
        "1.2.840.10008.1.2.4.91",  # JPEG 2000
        "1.2.840.10008.1.2.4.93",  # JPEG 2000 Part 2 Multi-component
        *(f"1.2.840.10008.1.2.4.{n}" for n in range(100, 109)),  # MPEG-2, MPEG-4 AVC/H.264, HEVC/H.265
        *(f"1.2.840.10008.1.2.4.{n}.1" for n in range(100, 107)),  # their fragmentable variants
        "1.2.840.10008.1.2.4.111",  # JPEG XL JPEG Recompression
        "1.2.840.10008.1.2.4.112",  # JPEG XL
        "1.2.840.10008.1.2.4.203",  # High-Throughput JPEG 2000
    }
)
_LOSSY_CODES = frozenset({"LOSSY_TRANSFER_SYNTAX", "LOSSY_COMPRESSION_FLAG"})
# Photometric Interpretation -> Samples per Pixel (PS3.3 C.7.6.3.1.2), retired terms included.
_SAMPLES_FOR_PHOTOMETRIC = {
    "MONOCHROME1": 1,
    "MONOCHROME2": 1,
    "PALETTE COLOR": 1,
    "RGB": 3,
    "HSV": 3,
    "YBR_FULL": 3,
    "YBR_FULL_422": 3,
    "YBR_PARTIAL_422": 3,
    "YBR_PARTIAL_420": 3,
    "YBR_ICT": 3,
    "YBR_RCT": 3,
    "ARGB": 4,
    "CMYK": 4,
}
# Modalities whose image IODs make Pixel Spacing Type 1 (Image Plane Module: CT, MR, PET).
_SPACING_MODALITIES = frozenset({"CT", "MR", "PT"})
_COMMON_TYPE1 = ("sop_class_uid", "sop_instance_uid", "study_instance_uid", "series_instance_uid", "modality")
_IMAGE_PIXEL_TYPE1 = (
    "samples_per_pixel",
    "photometric_interpretation",
    "rows",
    "columns",
    "bits_allocated",
    "bits_stored",
    "high_bit",
    "pixel_representation",
)
# Image Storage SOP classes (PS3.4 B.5) whose IODs hold the Image Pixel Module (PS3.3 C.7.6.3),
# where Pixel Data is Type 1C: required unless Pixel Data Provider URL (0028,7FE0) is present,
# which it is only in the JPIP Referenced transfer syntaxes. An instance of one of these without
# Pixel Data (and not JPIP-referenced) has no image to keep.
_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1."
PIXEL_DATA_REQUIRED_SOP_CLASSES = frozenset(
    _IMAGE_STORAGE + suffix
    for suffix in (
        "1", "1.1", "1.1.1", "1.2", "1.2.1", "1.3", "1.3.1",  # CR, DX, MG, intra-oral X-ray
        "2", "2.1", "2.2",  # CT, Enhanced CT, Legacy Converted Enhanced CT
        "3.1", "6.1", "6.2",  # ultrasound multi-frame, ultrasound, Enhanced US Volume
        "4", "4.1", "4.3", "4.4",  # MR, Enhanced MR, Enhanced MR Color, Legacy Converted Enhanced MR
        "7", "7.1", "7.2", "7.3", "7.4",  # secondary capture, single- and multi-frame
        "12.1", "12.1.1", "12.2", "12.2.1",  # XA, Enhanced XA, XRF, Enhanced XRF
        "13.1.1", "13.1.2", "13.1.3",  # X-ray 3D angiographic and craniofacial, breast tomosynthesis
        "20", "128", "128.1", "130",  # NM, PET, Legacy Converted Enhanced PET, Enhanced PET
        "77.1.1", "77.1.2", "77.1.3", "77.1.4", "77.1.5.1", "77.1.5.2", "77.1.6",  # visible light
        "481.1",  # RT Image
    )
)  # fmt: skip
JPIP_REFERENCED_TRANSFER_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.94", "1.2.840.10008.1.2.4.95"})
_KEYWORDS = {
    "sop_class_uid": "SOPClassUID",
    "sop_instance_uid": "SOPInstanceUID",
    "study_instance_uid": "StudyInstanceUID",
    "series_instance_uid": "SeriesInstanceUID",
    "modality": "Modality",
    "samples_per_pixel": "SamplesPerPixel",
    "photometric_interpretation": "PhotometricInterpretation",
    "rows": "Rows",
    "columns": "Columns",
    "bits_allocated": "BitsAllocated",
    "bits_stored": "BitsStored",
    "high_bit": "HighBit",
    "pixel_representation": "PixelRepresentation",
}


@dataclass(frozen=True)
class ValidationPolicy:
    """A hospital's validation settings.

    `severity_overrides` maps (rule code, modality or "*") to a severity. Lossy rules only warn for
    modalities in `lossy_allowed_modalities` (ultrasound, endoscopy and photos are lossy by nature).
    """

    institution_name: str
    severity_overrides: dict[tuple[str, str], Severity] = field(default_factory=dict)
    lossy_allowed_modalities: frozenset[str] = frozenset()

    def severity(self, code: str, modality: str) -> Severity:
        """The severity of `code` for `modality`, most specific setting first.

        An override for this modality, then the lossy allowance for this modality, then an override for
        every modality ("*"), then the rule's default.
        """
        modality = modality.strip().upper()
        exact = self.severity_overrides.get((code, modality))
        if exact is not None:
            return exact
        if code in _LOSSY_CODES and modality in self.lossy_allowed_modalities:
            return Severity.WARN
        every = self.severity_overrides.get((code, "*"))
        if every is not None:
            return every
        return RULES[code].default_severity


def make_finding(
    code: str,
    *,
    policy: ValidationPolicy,
    modality: str,
    message_zh: str,
    message_en: str,
    **details: str | int | float | None,
) -> Finding:
    """A finding for `code`, with the severity the policy gives it for `modality`."""
    return Finding(code, policy.severity(code, modality), message_zh, message_en, details)


def validate_instance(parsed: ParsedInstance, *, policy: ValidationPolicy) -> list[Finding]:
    """Run every per-instance rule; return the findings, rejections and warnings alike, in rule order."""
    findings: list[Finding] = []
    for check in _CHECKS:
        finding = check(parsed, policy)
        if finding is not None:
            findings.append(finding)
    return findings


def _type1_missing(parsed: ParsedInstance, policy: ValidationPolicy) -> Finding | None:
    pixels_elsewhere = parsed.pixel_data_provider and parsed.transfer_syntax_uid in JPIP_REFERENCED_TRANSFER_SYNTAXES
    needs_pixels = parsed.sop_class_uid in PIXEL_DATA_REQUIRED_SOP_CLASSES and not pixels_elsewhere
    fields = _COMMON_TYPE1 + (_IMAGE_PIXEL_TYPE1 if parsed.has_pixel_data or needs_pixels else ())
    missing = [_KEYWORDS[name] for name in fields if getattr(parsed, name) in (None, "")]
    if needs_pixels and not parsed.has_pixel_data:
        missing.append("PixelData")
    if not missing:
        return None
    names = ", ".join(missing)
    return make_finding(
        "TYPE1_MISSING",
        policy=policy,
        modality=parsed.modality,
        message_zh=f"缺少或为空的 1 类属性：{names}",
        message_en=f"Type 1 attributes missing or empty: {names}",
        missing=names,
    )


def _lossy_transfer_syntax(parsed: ParsedInstance, policy: ValidationPolicy) -> Finding | None:
    if parsed.transfer_syntax_uid not in LOSSY_TRANSFER_SYNTAXES:
        return None
    return make_finding(
        "LOSSY_TRANSFER_SYNTAX",
        policy=policy,
        modality=parsed.modality,
        message_zh=f"像素数据采用有损压缩传输语法（{parsed.transfer_syntax_uid}）",
        message_en=f"Pixel data uses a lossy transfer syntax ({parsed.transfer_syntax_uid})",
        transfer_syntax_uid=parsed.transfer_syntax_uid,
    )


def _lossy_compression_flag(parsed: ParsedInstance, policy: ValidationPolicy) -> Finding | None:
    if parsed.lossy_image_compression != "01":
        return None
    return make_finding(
        "LOSSY_COMPRESSION_FLAG",
        policy=policy,
        modality=parsed.modality,
        message_zh="有损图像压缩（0028,2110）为 01：图像曾经过有损压缩",
        message_en="Lossy Image Compression (0028,2110) is 01: the image has been lossy compressed",
        lossy_image_compression=parsed.lossy_image_compression,
    )


def expected_pixel_data_length(parsed: ParsedInstance) -> int | None:
    """Bytes of native Pixel Data the image attributes call for, before padding; None if one is missing.

    Rows * Columns * Samples per Pixel * Number of Frames * Bits Allocated / 8, in whole bytes for
    1-bit data; YBR_FULL_422 stores two samples per pixel, not three (PS3.3 C.7.6.3.1.2).
    """
    factors = (parsed.rows, parsed.columns, parsed.samples_per_pixel, parsed.bits_allocated)
    if any(factor is None for factor in factors):
        return None
    rows, columns, samples, bits = (int(factor or 0) for factor in factors)
    if parsed.photometric_interpretation == "YBR_FULL_422":
        samples = 2
    total_bits = rows * columns * samples * parsed.number_of_frames * bits
    return (total_bits + 7) // 8


def _pixel_length_mismatch(parsed: ParsedInstance, policy: ValidationPolicy) -> Finding | None:
    actual = parsed.pixel_data_length
    if parsed.is_encapsulated or actual is None:
        return None
    expected = expected_pixel_data_length(parsed)
    # A value of odd length is padded with one byte to even length (PS3.5 7.1.1).
    if expected is None or actual == expected or (expected % 2 == 1 and actual == expected + 1):
        return None
    return make_finding(
        "PIXEL_LENGTH_MISMATCH",
        policy=policy,
        modality=parsed.modality,
        message_zh=f"像素数据长度为 {actual} 字节，按图像属性应为 {expected} 字节",
        message_en=f"Pixel Data is {actual} bytes; the image attributes call for {expected}",
        expected=expected,
        actual=actual,
        number_of_frames=parsed.number_of_frames,
    )


def _bits_inconsistent(parsed: ParsedInstance, policy: ValidationPolicy) -> Finding | None:
    allocated, stored, high = parsed.bits_allocated, parsed.bits_stored, parsed.high_bit
    if allocated is None or stored is None or high is None:
        return None
    if stored <= allocated and high == stored - 1:
        return None
    return make_finding(
        "BITS_INCONSISTENT",
        policy=policy,
        modality=parsed.modality,
        message_zh=f"位深不一致：分配位数 {allocated}、存储位数 {stored}、最高位 {high}"
        "（要求存储位数不大于分配位数，且最高位等于存储位数减一）",
        message_en=f"Inconsistent bits: Bits Allocated {allocated}, Bits Stored {stored}, High Bit {high} "
        "(Bits Stored must not exceed Bits Allocated, and High Bit must be Bits Stored - 1)",
        bits_allocated=allocated,
        bits_stored=stored,
        high_bit=high,
    )


def _photometric_mismatch(parsed: ParsedInstance, policy: ValidationPolicy) -> Finding | None:
    expected = _SAMPLES_FOR_PHOTOMETRIC.get(parsed.photometric_interpretation)
    actual = parsed.samples_per_pixel
    if expected is None or actual is None or actual == expected:
        return None
    photometric = parsed.photometric_interpretation
    return make_finding(
        "PHOTOMETRIC_MISMATCH",
        policy=policy,
        modality=parsed.modality,
        message_zh=f"光度解释 {photometric} 要求每像素样本数为 {expected}，实际为 {actual}",
        message_en=f"Photometric Interpretation {photometric} needs {expected} samples per pixel, not {actual}",
        photometric_interpretation=photometric,
        expected=expected,
        actual=actual,
    )


def _pixel_spacing_invalid(parsed: ParsedInstance, policy: ValidationPolicy) -> Finding | None:
    if parsed.modality not in _SPACING_MODALITIES or not parsed.has_pixel_data:
        return None
    spacing = parsed.pixel_spacing
    if spacing is not None and spacing[0] > 0 and spacing[1] > 0:
        return None
    shown = "missing" if spacing is None else f"{spacing[0]:g}\\{spacing[1]:g}"
    return make_finding(
        "PIXEL_SPACING_INVALID",
        policy=policy,
        modality=parsed.modality,
        message_zh=f"{parsed.modality} 图像需要两个大于 0 的像素间距（0028,0030）值，实际为：{shown}",
        message_en=f"{parsed.modality} images need Pixel Spacing (0028,0030) with two values above 0; found: {shown}",
        pixel_spacing=None if spacing is None else shown,
    )


def _normalised_institution(name: str) -> str:
    return " ".join(name.split()).casefold()


def _institution_mismatch(parsed: ParsedInstance, policy: ValidationPolicy) -> Finding | None:
    expected = _normalised_institution(policy.institution_name)
    if not expected or _normalised_institution(parsed.institution_name) == expected:
        return None
    # Reported, never rewritten: the device's configuration is what needs fixing.
    return make_finding(
        "INSTITUTION_MISMATCH",
        policy=policy,
        modality=parsed.modality,
        message_zh=f"机构名称（0008,0080）为“{parsed.institution_name}”，本院为“{policy.institution_name}”；"
        f"请检查设备 {parsed.station_name or '（未知工作站）'} 的配置",
        message_en=f"Institution Name (0008,0080) is '{parsed.institution_name}', not "
        f"'{policy.institution_name}'; check the configuration of device {parsed.station_name or '(unknown station)'}",
        received_institution_name=parsed.institution_name,
        expected_institution_name=policy.institution_name,
        station_name=parsed.station_name,
        manufacturer=parsed.manufacturer,
    )


def _charset_guessed(parsed: ParsedInstance, policy: ValidationPolicy) -> Finding | None:
    if not parsed.charset_guessed:
        return None
    declared = "\\".join(parsed.specific_character_set) or "(none)"
    return make_finding(
        "CHARSET_GUESSED",
        policy=policy,
        modality=parsed.modality,
        message_zh=f"字符集（0008,0005）为 {declared}，与文本内容不符，已按 UTF-8 或 GB18030 推断解码；请检查设备配置",
        message_en=f"Specific Character Set (0008,0005) is {declared} and does not match the text, which was "
        "decoded by trying UTF-8 then GB18030; check the device configuration",
        specific_character_set=declared,
        station_name=parsed.station_name,
        manufacturer=parsed.manufacturer,
    )


_CHECKS = (
    _type1_missing,
    _lossy_transfer_syntax,
    _lossy_compression_flag,
    _pixel_length_mismatch,
    _bits_inconsistent,
    _photometric_mismatch,
    _pixel_spacing_invalid,
    _institution_mismatch,
    _charset_guessed,
)
