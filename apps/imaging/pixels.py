"""Image frames inside stored objects: where they are, and reading one without reading the rest.

Ingest records where the Pixel Data value starts (and a native value's length) on the Instance, and
`pixel_data_at` reads frames from there: only the storage segments that hold the frame are decrypted.
Rows stored before that, and the rare encodings ingest does not record (see
apps.imaging.dicom.part10._direct_pixel_data_offset), go through `pixel_data_locate`, which walks the
element headers of the data set from the start of the object, seeking over values, up to the top-level
Pixel Data header. Headers are read through a window of one decrypted storage segment (1 MiB by
default), because the store decrypts whole segments anyway; for the usual object, whose header ends
well inside the first segment, locating Pixel Data costs one segment read, and a large value before
Pixel Data (a private blob, an ICC profile) is skipped, not read. The frame itself is then read as a
byte range.

A Deflated Explicit VR Little Endian data set has no byte ranges to seek to: it is inflated as a
stream from its start up to the frame and discarded as it goes, so memory stays bounded but the time
grows with the frame's position.

Frames are returned as little-endian bytes, the transfer syntax of application/octet-stream bulk data
(PS3.18 8.7.3.3.2); Explicit VR Big Endian words are swapped.
"""

import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from pydicom.encaps import get_frame

from apps.imaging.dicom.part10 import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    MAX_INFLATED_SIZE,
    NATIVE_TRANSFER_SYNTAXES,
)
from apps.imaging.objectstore import StoredObject, object_open

PIXEL_DATA = 0x7FE00010
FLOAT_PIXEL_DATA = 0x7FE00008
DOUBLE_FLOAT_PIXEL_DATA = 0x7FE00009
_PIXEL_TAGS = frozenset({PIXEL_DATA, FLOAT_PIXEL_DATA, DOUBLE_FLOAT_PIXEL_DATA})
_EXTENDED_OFFSET_TABLE = 0x7FE00001
_EXTENDED_OFFSET_TABLE_LENGTHS = 0x7FE00002
_ITEM = 0xFFFEE000
_ITEM_DELIMITER = 0xFFFEE00D
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_UNDEFINED_LENGTH = 0xFFFFFFFF
_PREAMBLE_AND_PREFIX = 132
_LONG_LENGTH_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_MAX_DEPTH = 32
_CHUNK_SIZE = 1024 * 1024


class PixelDataError(Exception):
    """The stored object does not hold the pixels its header describes (a damaged or inconsistent object)."""


class FrameUnsupported(Exception):
    """The frame exists but cannot be returned in the form asked for (the caller answers 406)."""


@dataclass(frozen=True)
class ImageGeometry:
    """The Image Pixel attributes that say how a frame is laid out (PS3.3 C.7.6.3)."""

    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    high_bit: int
    pixel_representation: int
    photometric_interpretation: str
    planar_configuration: int
    number_of_frames: int

    @property
    def frame_bits(self) -> int:
        # YBR_FULL_422 keeps two samples per pixel, not three (PS3.3 C.7.6.3.1.2).
        samples = 2 if self.photometric_interpretation == "YBR_FULL_422" else self.samples_per_pixel
        return self.rows * self.columns * samples * self.bits_allocated


def json_values(document: dict[str, Any], tag: str) -> list[Any]:
    """The values of one element of a DICOM JSON object (PS3.18 F.2), empty when absent."""
    element = document.get(tag)
    return list(element.get("Value") or []) if isinstance(element, dict) else []


def _json_int(document: dict[str, Any], tag: str, default: int | None = None) -> int | None:
    values = json_values(document, tag)
    try:
        return int(values[0]) if values and values[0] is not None else default
    except (TypeError, ValueError):
        return default


def image_geometry(document: dict[str, Any]) -> ImageGeometry | None:
    """The frame layout from an instance's DICOM JSON header; None when it is not an image."""
    rows, columns = _json_int(document, "00280010"), _json_int(document, "00280011")
    bits_allocated = _json_int(document, "00280100")
    if not rows or not columns or not bits_allocated:
        return None
    bits_stored = _json_int(document, "00280101", bits_allocated) or bits_allocated
    photometric = json_values(document, "00280004")
    return ImageGeometry(
        rows=rows,
        columns=columns,
        samples_per_pixel=_json_int(document, "00280002", 1) or 1,
        bits_allocated=bits_allocated,
        bits_stored=bits_stored,
        high_bit=_json_int(document, "00280102", bits_stored - 1) or 0,
        pixel_representation=_json_int(document, "00280103", 0) or 0,
        photometric_interpretation=str(photometric[0]).strip() if photometric else "MONOCHROME2",
        planar_configuration=_json_int(document, "00280006", 0) or 0,
        number_of_frames=max(_json_int(document, "00280008", 1) or 1, 1),
    )


class _Reader(Protocol):
    def read_at(self, position: int, count: int) -> bytes: ...

    def chunks(self, start: int, end: int) -> Iterator[bytes]: ...


class _StoredObjectReader:
    """Random access to a stored object's plaintext, keeping the last decrypted segment."""

    def __init__(self, *, hospital_key: bytes, stored: StoredObject) -> None:
        self._hospital_key = hospital_key
        self._stored = stored
        self._window_start = 0
        self._window = b""

    def _in_window(self, start: int, end: int) -> bool:
        return self._window_start <= start and end <= self._window_start + len(self._window)

    def read_at(self, position: int, count: int) -> bytes:
        if count >= self._stored.segment_size and not self._in_window(position, position + count):
            # A whole compressed frame: one ranged read rather than a storage request per segment.
            return b"".join(self.chunks(position, position + count))
        parts = []
        while count > 0 and position < self._stored.plaintext_size:
            if not self._in_window(position, position + 1):
                start = position - position % self._stored.segment_size
                end = start + self._stored.segment_size
                self._window = b"".join(object_open(hospital_key=self._hospital_key, stored=self._stored,
                                                    start=start, end=end))  # fmt: skip
                self._window_start = start
            piece = self._window[position - self._window_start :][:count]
            if not piece:
                break
            parts.append(piece)
            position += len(piece)
            count -= len(piece)
        return b"".join(parts)

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        if self._in_window(start, end):
            yield self._window[start - self._window_start : end - self._window_start]
            return
        yield from object_open(hospital_key=self._hospital_key, stored=self._stored, start=start, end=end)


def _inflate(deflated: Iterator[bytes]) -> Iterator[bytes]:
    """Inflate a raw deflate stream in bounded pieces, refusing more than MAX_INFLATED_SIZE bytes."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    try:
        for piece in deflated:
            pending = piece
            while pending or inflater.unconsumed_tail:
                out = inflater.decompress(pending or inflater.unconsumed_tail, _CHUNK_SIZE)
                pending = b""
                total += len(out)
                if total > MAX_INFLATED_SIZE:
                    raise PixelDataError("The deflated data set inflates past the size allowed at ingest.")
                if out:
                    yield out
                if inflater.eof:
                    return
        if tail := inflater.flush():
            yield tail
    except zlib.error as error:
        raise PixelDataError(f"The deflated data set cannot be inflated: {error}") from error


class _InflatedReader:
    """Forward reads of a deflated data set, inflating from its start again when asked to go back."""

    def __init__(self, open_deflated: Callable[[], Iterator[bytes]]) -> None:
        self._open_deflated = open_deflated
        self._restart()

    def _restart(self) -> None:
        self._pieces = _inflate(self._open_deflated())
        self._buffer = bytearray()
        self._buffer_start = 0

    def read_at(self, position: int, count: int) -> bytes:
        if position < self._buffer_start:
            self._restart()
        while self._buffer_start + len(self._buffer) < position + count:
            drop = min(position - self._buffer_start, len(self._buffer))
            del self._buffer[:drop]
            self._buffer_start += drop
            piece = next(self._pieces, None)
            if piece is None:
                break
            self._buffer += piece
        offset = position - self._buffer_start
        return bytes(self._buffer[offset : offset + count])

    def chunks(self, start: int, end: int) -> Iterator[bytes]:
        position = start
        while position < end:
            data = self.read_at(position, min(_CHUNK_SIZE, end - position))
            if not data:
                raise PixelDataError("The deflated data set ends inside Pixel Data.")
            yield data
            position += len(data)


class _ReaderFile:
    """A reader seen as a file (read, seek, tell), for pydicom's encapsulated frame parser."""

    def __init__(self, reader: _Reader, position: int) -> None:
        self._reader = reader
        self._position = position

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            raise PixelDataError("An unbounded read of the stored object was attempted.")
        data = self._reader.read_at(self._position, size)
        self._position += len(data)
        return data

    def seek(self, offset: int, whence: int = 0, /) -> int:
        if whence not in (0, 1):
            raise PixelDataError("Seeking from the end of a stored object is not supported.")
        self._position = offset if whence == 0 else self._position + offset
        return self._position

    def tell(self) -> int:
        return self._position


@dataclass(frozen=True)
class _Header:
    tag: int
    vr: bytes | None
    length: int
    value_position: int


class _HeaderWalker:
    """Walks element headers through a reader, seeking over values (the walk of apps.imaging.dicom.part10,
    stopping at Pixel Data instead of checking the whole file)."""

    def __init__(self, reader: _Reader, *, little_endian: bool, implicit: bool) -> None:
        self._reader = reader
        self._order = "<" if little_endian else ">"
        self._implicit = implicit

    def header(self, position: int, *, implicit: bool) -> _Header | None:
        head = self._reader.read_at(position, 8)
        if len(head) < 8:
            return None
        group, element = struct.unpack(f"{self._order}HH", head[:4])
        vr = head[4:6]
        if implicit or group == 0xFFFE or not (vr.isalpha() and vr.isupper()):
            return _Header(group << 16 | element, None, struct.unpack(f"{self._order}I", head[4:])[0], position + 8)
        if vr in _LONG_LENGTH_VRS:
            length = self._reader.read_at(position + 8, 4)
            if len(length) < 4:
                return None
            return _Header(group << 16 | element, vr, struct.unpack(f"{self._order}I", length)[0], position + 12)
        return _Header(group << 16 | element, vr, struct.unpack(f"{self._order}H", head[6:])[0], position + 8)

    def _required_header(self, position: int, *, implicit: bool) -> _Header:
        header = self.header(position, implicit=implicit)
        if header is None:
            raise PixelDataError("The object ends inside a sequence or encapsulated value.")
        return header

    def _past_undefined_length(self, header: _Header, *, implicit: bool, depth: int) -> int:
        if depth > _MAX_DEPTH:
            raise PixelDataError("Sequences are nested too deeply.")
        if header.vr is not None and header.vr not in (b"SQ", b"UN"):
            return self._past_fragments(header.value_position)
        # An undefined-length UN holds a sequence encoded as Implicit VR Little Endian (PS3.5 6.2.2).
        return self._past_sequence(header.value_position, implicit=implicit or header.vr == b"UN", depth=depth + 1)

    def _past_sequence(self, position: int, *, implicit: bool, depth: int) -> int:
        while True:
            item = self._required_header(position, implicit=True)
            if item.tag == _SEQUENCE_DELIMITER:
                return item.value_position
            if item.tag != _ITEM:
                raise PixelDataError("A sequence holds something other than items.")
            if item.length != _UNDEFINED_LENGTH:
                position = item.value_position + item.length
                continue
            position = item.value_position
            while (element := self._required_header(position, implicit=implicit)).tag != _ITEM_DELIMITER:
                if element.length != _UNDEFINED_LENGTH:
                    position = element.value_position + element.length
                else:
                    position = self._past_undefined_length(element, implicit=implicit, depth=depth)
            position = element.value_position

    def _past_fragments(self, position: int) -> int:
        while (item := self._required_header(position, implicit=True)).tag != _SEQUENCE_DELIMITER:
            if item.tag != _ITEM or item.length == _UNDEFINED_LENGTH:
                raise PixelDataError("Encapsulated data holds an invalid fragment.")
            position = item.value_position + item.length
        return item.value_position

    def file_meta_end(self) -> int:
        """Where the data set starts: past the File Meta Information (group 0002, Explicit VR Little Endian)."""
        if self._reader.read_at(128, 4) != b"DICM":
            raise PixelDataError("The stored object is not a DICOM Part 10 file.")
        position = _PREAMBLE_AND_PREFIX
        while (header := self.header(position, implicit=False)) is not None and header.tag >> 16 == 0x0002:
            position = header.value_position + header.length
        return position

    def top_level(self, position: int) -> Iterator[_Header]:
        """The top-level element headers from `position` up to and including Pixel Data."""
        while (header := self.header(position, implicit=self._implicit)) is not None:
            yield header
            if header.tag in _PIXEL_TAGS or header.tag > PIXEL_DATA:
                return
            if header.length != _UNDEFINED_LENGTH:
                position = header.value_position + header.length
            else:
                position = self._past_undefined_length(header, implicit=self._implicit, depth=0)


@dataclass
class PixelData:
    """Where one stored object's pixels are, and reading its frames (numbered from 1)."""

    geometry: ImageGeometry
    transfer_syntax_uid: str
    tag: int
    vr: bytes | None
    value_position: int
    value_length: int | None  # None when encapsulated
    extended_offsets: tuple[bytes, bytes] | None
    _reader: _Reader

    @property
    def encapsulated(self) -> bool:
        return self.value_length is None

    def _native_range(self, number: int) -> tuple[int, int]:
        """The bit range [start, end) of frame `number` within the Pixel Data value."""
        start = (number - 1) * self.geometry.frame_bits
        end = start + self.geometry.frame_bits
        if self.value_length is None or (end + 7) // 8 > self.value_length:
            raise PixelDataError(f"Pixel Data is too short to hold frame {number}.")
        return start, end

    def frames_check(self, numbers: list[int]) -> None:
        """Raise PixelDataError unless native Pixel Data holds every frame in `numbers`, before streaming starts."""
        if not self.encapsulated:
            for number in numbers:
                self._native_range(number)

    def _swap_size(self) -> int:
        """Bytes per word to swap for little-endian output; 1 when none."""
        if self.transfer_syntax_uid != EXPLICIT_VR_BIG_ENDIAN:
            return 1
        if self.geometry.bits_allocated == 1:
            raise FrameUnsupported("1-bit frames of Explicit VR Big Endian objects are not served.")
        # An 8-bit image in an OW value is stored as 16-bit words (PS3.5 8.1.1).
        return max(self.geometry.bits_allocated // 8, 2 if self.vr == b"OW" else 1)

    def frame_chunks(self, number: int) -> Iterator[bytes]:
        """The native frame's bytes in pieces, little endian; only its byte range is read."""
        start_bit, end_bit = self._native_range(number)
        swap = self._swap_size()
        if start_bit % 8 or end_bit % 8 or swap > 1:
            yield self.frame_bytes(number)
            return
        yield from self._reader.chunks(self.value_position + start_bit // 8, self.value_position + end_bit // 8)

    def frame_bytes(self, number: int) -> bytes:
        """The native frame's bytes, little endian; 1-bit frames that start mid-byte are realigned."""
        start_bit, end_bit = self._native_range(number)
        first_byte, stop_byte = start_bit // 8, (end_bit + 7) // 8
        data = b"".join(self._reader.chunks(self.value_position + first_byte, self.value_position + stop_byte))
        if len(data) != stop_byte - first_byte:
            raise PixelDataError(f"The stored object ends inside frame {number}.")
        if start_bit % 8 or end_bit % 8:
            # Only 1-bit data packs frames mid-byte; the first pixel is the least significant bit (PS3.5 8.1.1).
            bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
            offset = start_bit % 8
            return np.packbits(bits[offset : offset + end_bit - start_bit], bitorder="little").tobytes()
        swap = self._swap_size()
        if swap > 1:
            return np.frombuffer(data, dtype=f">u{swap}").astype(f"<u{swap}").tobytes()
        return data

    def encapsulated_frame(self, number: int) -> bytes:
        """The compressed frame as stored: its fragments joined (PS3.5 A.4)."""
        try:
            return get_frame(
                _ReaderFile(self._reader, self.value_position),
                number - 1,
                number_of_frames=self.geometry.number_of_frames,
                extended_offsets=self.extended_offsets,
            )
        except (ValueError, struct.error) as error:
            raise PixelDataError(f"Frame {number} cannot be found in the encapsulated Pixel Data: {error}") from error


def pixel_data_locate(
    *, hospital_key: bytes, stored: StoredObject, transfer_syntax_uid: str, geometry: ImageGeometry
) -> PixelData | None:
    """Find the top-level Pixel Data of a stored object by walking its element headers; None if it has none.

    Reads the object through a one-segment window (see the module docstring). Raises PixelDataError if
    the headers cannot be walked, which ingest should have made impossible.
    """
    reader: _Reader = _StoredObjectReader(hospital_key=hospital_key, stored=stored)
    big_endian = transfer_syntax_uid == EXPLICIT_VR_BIG_ENDIAN
    data_set_start = _HeaderWalker(reader, little_endian=True, implicit=False).file_meta_end()
    if transfer_syntax_uid == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        reader = _InflatedReader(lambda: object_open(hospital_key=hospital_key, stored=stored, start=data_set_start))
        data_set_start = 0
    walker = _HeaderWalker(
        reader, little_endian=not big_endian, implicit=transfer_syntax_uid == IMPLICIT_VR_LITTLE_ENDIAN
    )
    tables: dict[int, bytes] = {}
    for header in walker.top_level(data_set_start):
        if (
            header.tag in (_EXTENDED_OFFSET_TABLE, _EXTENDED_OFFSET_TABLE_LENGTHS)
            and header.length != _UNDEFINED_LENGTH
        ):
            tables[header.tag] = reader.read_at(header.value_position, header.length)
        if header.tag not in _PIXEL_TAGS:
            continue
        encapsulated = header.length == _UNDEFINED_LENGTH
        if encapsulated == (transfer_syntax_uid in NATIVE_TRANSFER_SYNTAXES):
            raise PixelDataError("The Pixel Data encoding does not match the transfer syntax.")
        extended = (
            (tables[_EXTENDED_OFFSET_TABLE], tables[_EXTENDED_OFFSET_TABLE_LENGTHS]) if len(tables) == 2 else None
        )
        return PixelData(
            geometry=geometry,
            transfer_syntax_uid=transfer_syntax_uid,
            tag=header.tag,
            vr=header.vr,
            value_position=header.value_position,
            value_length=None if encapsulated else header.length,
            extended_offsets=extended,
            _reader=reader,
        )
    return None


def pixel_data_at(
    *,
    hospital_key: bytes,
    stored: StoredObject,
    transfer_syntax_uid: str,
    geometry: ImageGeometry,
    value_position: int,
    value_length: int | None,
) -> PixelData:
    """The Pixel Data whose value ingest found at `value_position` (with `value_length` bytes when native,
    None when encapsulated): no element header is read.

    Only for what ingest records (apps.imaging.dicom.part10._direct_pixel_data_offset): Pixel Data, not
    Float or Double Float, in a transfer syntax other than Deflated or Big Endian, and no Extended Offset
    Table. Raises PixelDataError if the facts contradict the transfer syntax.
    """
    if (value_length is None) == (transfer_syntax_uid in NATIVE_TRANSFER_SYNTAXES):
        raise PixelDataError("The recorded Pixel Data encoding does not match the transfer syntax.")
    return PixelData(
        geometry=geometry,
        transfer_syntax_uid=transfer_syntax_uid,
        tag=PIXEL_DATA,
        vr=None,
        value_position=value_position,
        value_length=value_length,
        extended_offsets=None,
        _reader=_StoredObjectReader(hospital_key=hospital_key, stored=stored),
    )


def frame_array(pixel_data: PixelData, frame: bytes) -> np.ndarray:
    """A native frame's stored values as an array: (rows, columns) or (rows, columns, samples).

    Values are the stored bits only (Bits Stored at High Bit), sign-extended when Pixel Representation
    is 1; Float and Double Float Pixel Data come back as floats.
    """
    geometry = pixel_data.geometry
    rows, columns, samples = geometry.rows, geometry.columns, geometry.samples_per_pixel
    if geometry.photometric_interpretation == "YBR_FULL_422":
        raise FrameUnsupported("Native YBR_FULL_422 frames are not rendered.")
    count = rows * columns * samples
    values: np.ndarray
    if pixel_data.tag in (FLOAT_PIXEL_DATA, DOUBLE_FLOAT_PIXEL_DATA):
        values = np.frombuffer(frame, dtype="<f4" if pixel_data.tag == FLOAT_PIXEL_DATA else "<f8", count=count)
    elif geometry.bits_allocated == 1:
        values = np.unpackbits(np.frombuffer(frame, dtype=np.uint8), bitorder="little", count=count)
    elif geometry.bits_allocated in (8, 16, 32):
        width = geometry.bits_allocated // 8
        # Wide enough for the shifts and the sign extension below.
        signed_type = np.int64 if width == 4 else np.int32
        raw = np.frombuffer(frame, dtype=f"<u{width}", count=count).astype(signed_type)
        stored = geometry.bits_stored
        raw = np.right_shift(raw, max(geometry.high_bit + 1 - stored, 0)) & ((1 << stored) - 1)
        if geometry.pixel_representation == 1:
            raw = np.where(raw >= 1 << (stored - 1), raw - (1 << stored), raw)
        values = raw
    else:
        raise FrameUnsupported(f"Bits Allocated {geometry.bits_allocated} is not rendered.")
    if samples == 1:
        return values.reshape(rows, columns)
    if geometry.planar_configuration == 1:
        return values.reshape(samples, rows, columns).transpose(1, 2, 0)
    return values.reshape(rows, columns, samples)
