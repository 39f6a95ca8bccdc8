"""Byte-level checks of a DICOM Part 10 stream, done by seeking, so multi-gigabyte files cost no memory.

pydicom reads a file that ends early without complaint (a short value is simply shorter), and loads an
encapsulated Pixel Data value whole. This module walks the element headers instead: it checks the
preamble and File Meta Information (PS3.10 7.1), that every element, item and fragment ends inside the
file, and where the top-level Pixel Data is and how long it is, reading only headers and seeking over
values.
"""

import io
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO, NamedTuple

from apps.imaging.dicom.errors import DicomRejected

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
# Transfer syntaxes whose Pixel Data position ingest never records (see _direct_pixel_data_offset).
NO_DIRECT_OFFSET_TRANSFER_SYNTAXES = (DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN)
# Transfer syntaxes whose Pixel Data is native (not encapsulated), PS3.5 A.1-A.5.
NATIVE_TRANSFER_SYNTAXES = frozenset(
    {
        IMPLICIT_VR_LITTLE_ENDIAN,
        EXPLICIT_VR_LITTLE_ENDIAN,
        DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
        EXPLICIT_VR_BIG_ENDIAN,
    }
)

_PREAMBLE_LENGTH = 128
_UNDEFINED_LENGTH = 0xFFFFFFFF
_TRANSFER_SYNTAX_TAG = 0x00020010
_PIXEL_DATA = 0x7FE00010
_EXTENDED_OFFSET_TABLE = 0x7FE00001
# Pixel Data, Float Pixel Data and Double Float Pixel Data: the pixel element of an image.
PIXEL_DATA_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
_ITEM = 0xFFFEE000
_ITEM_DELIMITER = 0xFFFEE00D
_SEQUENCE_DELIMITER = 0xFFFEE0DD
# Explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2, Table 7.1-1).
_LONG_LENGTH_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
# Nesting deeper than this is taken as a crafted file rather than a real object.
_MAX_DEPTH = 32
# A deflated data set is inflated in memory; real ones (structured reports) are far smaller.
MAX_INFLATED_SIZE = 256 * 1024 * 1024


@dataclass(frozen=True)
class Part10Layout:
    """What the headers say: the transfer syntax and where, how long and how encoded the Pixel Data is."""

    transfer_syntax_uid: str
    size: int
    has_pixel_data: bool
    pixel_data_length: int | None
    is_encapsulated: bool
    # Where the Pixel Data value starts, from the start of the file, when a frame can be read from there
    # with no other fact from the headers; None otherwise (see _direct_pixel_data_offset).
    pixel_data_offset: int | None = None


class _PixelElement(NamedTuple):
    tag: int
    length: int | None
    encapsulated: bool
    value_position: int
    after_extended_offset_table: bool


def not_part10(message_zh: str, message_en: str) -> DicomRejected:
    return DicomRejected("DICOM_NOT_PART10", message_zh=message_zh, message_en=message_en)


def _truncated(what_en: str, what_zh: str) -> DicomRejected:
    return DicomRejected(
        "DICOM_TRUNCATED",
        message_zh=f"文件不完整：{what_zh}",
        message_en=f"The file is truncated: {what_en}",
    )


def _malformed(what_en: str, what_zh: str) -> DicomRejected:
    return DicomRejected(
        "DICOM_MALFORMED",
        message_zh=f"DICOM 数据结构错误：{what_zh}",
        message_en=f"The DICOM data structure is malformed: {what_en}",
    )


class _Walker:
    """Reads element headers from `stream` between fixed bounds, seeking over every value."""

    def __init__(self, stream: BinaryIO, end: int, *, little_endian: bool) -> None:
        self.stream = stream
        self.end = end
        self.order = "<" if little_endian else ">"

    def _read(self, position: int, count: int) -> bytes:
        if position + count > self.end:
            raise _truncated("the file ends inside an element header", "文件在数据元素头部中间结束")
        self.stream.seek(position)
        data = self.stream.read(count)
        if len(data) < count:
            raise _truncated("the file ends inside an element header", "文件在数据元素头部中间结束")
        return data

    def header(self, position: int, *, implicit: bool) -> tuple[int, bytes | None, int, int]:
        """Return (tag, VR or None, value length, value position) of the element at `position`."""
        head = self._read(position, 8)
        group, element = struct.unpack(f"{self.order}HH", head[:4])
        tag = group << 16 | element
        vr = head[4:6]
        # Item and delimiter tags never carry a VR; a non-letter VR means a writer switched to implicit VR.
        if implicit or group == 0xFFFE or not (vr.isalpha() and vr.isupper()):
            return tag, None, struct.unpack(f"{self.order}I", head[4:])[0], position + 8
        if vr in _LONG_LENGTH_VRS:
            return tag, vr, struct.unpack(f"{self.order}I", self._read(position + 8, 4))[0], position + 12
        return tag, vr, struct.unpack(f"{self.order}H", head[6:])[0], position + 8

    def skip(self, value_position: int, length: int) -> int:
        if value_position + length > self.end:
            raise _truncated(
                "a value is longer than the bytes that remain in the file", "数据元素的值长度超出了文件剩余字节数"
            )
        return value_position + length

    def dataset(self, position: int, *, implicit: bool, depth: int, in_item: bool) -> tuple[int, _PixelElement | None]:
        """Walk a data set to the end of file (top level) or to its item delimiter; return where it ends.

        At the top level the result also describes the Pixel Data element, if there is one.
        """
        if depth > _MAX_DEPTH:
            raise _malformed("sequences are nested too deeply", "序列嵌套层数过多")
        pixel: _PixelElement | None = None
        extended_offset_table = False
        while position < self.end:
            tag, vr, length, value_position = self.header(position, implicit=implicit)
            if tag == _ITEM_DELIMITER:
                if not in_item:
                    raise _malformed("an item delimiter outside any item", "在序列条目之外出现条目结束标记")
                return value_position, pixel
            if tag in (_ITEM, _SEQUENCE_DELIMITER):
                raise _malformed("an item tag where a data element was expected", "在应为数据元素处出现条目标记")
            is_pixel = tag in PIXEL_DATA_TAGS
            extended_offset_table = extended_offset_table or (tag == _EXTENDED_OFFSET_TABLE and depth == 0)
            if length != _UNDEFINED_LENGTH:
                position = self.skip(value_position, length)
                if is_pixel and depth == 0:
                    pixel = _PixelElement(tag, length, False, value_position, extended_offset_table)
            elif is_pixel or (vr is not None and vr not in (b"SQ", b"UN")):
                position = self.fragments(value_position)
                if is_pixel and depth == 0:
                    pixel = _PixelElement(tag, None, True, value_position, extended_offset_table)
            else:
                # An undefined-length UN holds a sequence encoded as Implicit VR Little Endian (PS3.5 6.2.2).
                position = self.sequence(value_position, implicit=implicit or vr == b"UN", depth=depth + 1)
        if in_item:
            raise _truncated("the file ends inside a sequence item", "文件在序列条目中间结束")
        return position, pixel

    def sequence(self, position: int, *, implicit: bool, depth: int) -> int:
        """Walk the items of an undefined-length sequence up to and past its sequence delimiter."""
        while True:
            tag, _, length, value_position = self.header(position, implicit=True)
            if tag == _SEQUENCE_DELIMITER:
                return value_position
            if tag != _ITEM:
                raise _malformed("a sequence holds something other than items", "序列中含有非条目内容")
            if length == _UNDEFINED_LENGTH:
                position, _ = self.dataset(value_position, implicit=implicit, depth=depth, in_item=True)
            else:
                position = self.skip(value_position, length)

    def fragments(self, position: int) -> int:
        """Walk encapsulated fragments (PS3.5 A.4): items of defined length, then a sequence delimiter."""
        while True:
            tag, _, length, value_position = self.header(position, implicit=True)
            if tag == _SEQUENCE_DELIMITER:
                return value_position
            if tag != _ITEM or length == _UNDEFINED_LENGTH:
                raise _malformed("encapsulated pixel data holds an invalid fragment", "封装像素数据中含有无效片段")
            position = self.skip(value_position, length)


def _read_file_meta(stream: BinaryIO, start: int, end: int) -> tuple[str, int]:
    """Walk the File Meta Information (always Explicit VR Little Endian); return (transfer syntax, data set start)."""
    walker = _Walker(stream, end, little_endian=True)
    position = start
    transfer_syntax: str | None = None
    seen_any = False
    while position + 8 <= end:
        stream.seek(position)
        if struct.unpack("<H", stream.read(2))[0] != 0x0002:
            break
        tag, vr, length, value_position = walker.header(position, implicit=False)
        if vr is None or length == _UNDEFINED_LENGTH:
            raise not_part10(
                "文件元信息（File Meta Information）编码错误", "The File Meta Information is not encoded correctly"
            )
        position = walker.skip(value_position, length)
        seen_any = True
        if tag == _TRANSFER_SYNTAX_TAG:
            stream.seek(value_position)
            transfer_syntax = stream.read(length).rstrip(b"\x00 ").decode("ascii", errors="replace")
    if not seen_any:
        raise not_part10("DICM 标记之后没有文件元信息", "There is no File Meta Information after the DICM prefix")
    if not transfer_syntax:
        raise not_part10("文件元信息缺少传输语法 UID", "The File Meta Information has no Transfer Syntax UID")
    return transfer_syntax, position


def _check_prefix(head: bytes) -> None:
    if len(head) == _PREAMBLE_LENGTH + 4 and head[_PREAMBLE_LENGTH:] == b"DICM":
        return
    if not head:
        raise not_part10("文件为空", "The file is empty")
    # A bare data set (no preamble) usually starts with group 0002 or 0008, little endian.
    if head[:2] in (b"\x02\x00", b"\x08\x00") and len(head) >= 8:
        raise not_part10(
            "缺少 128 字节前导码和 DICM 标记：这是未按 Part 10 文件格式封装的 DICOM 数据",
            "The 128-byte preamble and DICM prefix are missing: this is DICOM data not in the Part 10 file format",
        )
    raise not_part10("这不是 DICOM 文件（没有 DICM 标记）", "This is not a DICOM file (there is no DICM prefix)")


def _inflate(stream: BinaryIO, start: int, end: int) -> BinaryIO:
    """Inflate a Deflated Explicit VR Little Endian data set (PS3.5 A.5).

    Bounded, so that a small crafted file cannot inflate into all of memory.
    """
    stream.seek(start)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        data = inflater.decompress(stream.read(end - start), MAX_INFLATED_SIZE + 1)
    except zlib.error as error:
        raise _malformed("the deflated data set cannot be inflated", "压缩（deflate）数据集无法解压") from error
    if len(data) > MAX_INFLATED_SIZE or inflater.unconsumed_tail:
        raise DicomRejected(
            "DICOM_TOO_LARGE",
            message_zh="压缩（deflate）数据集解压后过大",
            message_en="The deflated data set is too large once inflated",
        )
    if not inflater.eof:
        raise _truncated("the deflated data set ends early", "压缩（deflate）数据集提前结束")
    return io.BytesIO(data)


def scan_part10(stream: BinaryIO) -> Part10Layout:
    """Check the Part 10 structure of `stream` from its current position to its end, reading only headers.

    Raises DicomRejected with DICOM_NOT_PART10, DICOM_TRUNCATED, DICOM_MALFORMED or DICOM_TOO_LARGE.
    Leaves the stream position undefined; the caller seeks back.
    """
    base = stream.tell()
    end = stream.seek(0, io.SEEK_END)
    stream.seek(base)
    _check_prefix(stream.read(_PREAMBLE_LENGTH + 4))
    transfer_syntax, dataset_start = _read_file_meta(stream, base + _PREAMBLE_LENGTH + 4, end)
    if transfer_syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        inflated = _inflate(stream, dataset_start, end)
        body_end = inflated.seek(0, io.SEEK_END)
        walker = _Walker(inflated, body_end, little_endian=True)
        _, pixel = walker.dataset(0, implicit=False, depth=0, in_item=False)
    else:
        walker = _Walker(stream, end, little_endian=transfer_syntax != EXPLICIT_VR_BIG_ENDIAN)
        implicit = transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN
        _, pixel = walker.dataset(dataset_start, implicit=implicit, depth=0, in_item=False)
    native = transfer_syntax in NATIVE_TRANSFER_SYNTAXES
    if pixel is not None and pixel.encapsulated == native:
        raise _malformed(
            "the Pixel Data encoding does not match the transfer syntax", "像素数据的编码方式与传输语法不一致"
        )
    return Part10Layout(
        transfer_syntax_uid=transfer_syntax,
        size=end - base,
        has_pixel_data=pixel is not None,
        pixel_data_length=None if pixel is None else pixel.length,
        is_encapsulated=pixel is not None and pixel.encapsulated,
        pixel_data_offset=_direct_pixel_data_offset(pixel, transfer_syntax, base),
    )


def _direct_pixel_data_offset(pixel: _PixelElement | None, transfer_syntax: str, base: int) -> int | None:
    """The file offset of the Pixel Data value, when the value's position, its length and the transfer
    syntax are all a frame read needs.

    None for a deflated data set (the position is in the inflated stream, not the file), for Explicit
    VR Big Endian (the byte swap depends on the element's VR), for Float and Double Float Pixel Data
    (other value types) and for encapsulated Pixel Data after an Extended Offset Table (whose value would
    be needed too): frame reads of those walk the headers instead, as they are rare.
    """
    if (
        pixel is None
        or pixel.tag != _PIXEL_DATA
        or pixel.after_extended_offset_table
        or transfer_syntax in NO_DIRECT_OFFSET_TRANSFER_SYNTAXES
    ):
        return None
    return pixel.value_position - base
