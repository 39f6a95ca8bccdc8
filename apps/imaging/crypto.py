"""Envelope encryption for stored DICOM objects, and the segmented format the bytes are kept in.

Every object has its own random data key. The hospital's key wraps the data key (AES-256-GCM, with
associated data naming the object: its storage key, its SOP Instance UID and digest, see
apps.imaging.objectstore; so a wrapped key copied onto another object, or tried with another
hospital's key, does not unwrap), and :func:`master_key` wraps the hospital keys in turn.

Objects are encrypted in independent segments, so that a byte range (one frame, a resumed download)
is decrypted without reading the whole object and memory stays bounded for objects of any size.
Format version 1, integers big-endian::

    header, 18 bytes
        magic             4 bytes   b"YXC1"
        version           1 byte    1
        suite id          1 byte    1 = aes-256-gcm (32-byte data key), 2 = sm4-gcm (16-byte data key)
        segment size      uint32    plaintext bytes per segment, the last one may be shorter
        plaintext length  uint64
    segments 0 .. n-1
        the segment's ciphertext (as long as its plaintext), then its 16-byte GCM tag

n is ceil(plaintext length / segment size), and 1 for an empty object, so that even an empty object
carries a tag that authenticates its header. Segment i uses the nonce ``4 zero bytes || uint64 i``,
which never repeats under one key because no data key encrypts two objects. Its associated data is::

    header || uint16 len(object id) || object id (UTF-8) || uint64 i || final flag (1 byte)

so a flipped bit anywhere, segments swapped or moved to another object, a header rewritten to claim
another length or segment size, and an object cut short (the header fixes the segment count, and only
the last segment carries the final flag) all fail authentication. The length sits in the header, not
in a trailer, because every writer knows it (uploads arrive with a size) and a range read then needs
no extra round trip to learn where the object ends.
"""

import base64
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

AES_256_GCM = "aes-256-gcm"
SM4_GCM = "sm4-gcm"
MAGIC = b"YXC1"
FORMAT_VERSION = 1
NONCE_SIZE = 12
TAG_SIZE = 16
KEK_SIZE = 32
# A reader holds one segment in memory, and trusts the header's segment size only up to this bound.
MAX_SEGMENT_SIZE = 16 * 1024 * 1024
_HEADER = struct.Struct(">4sBBIQ")
HEADER_SIZE = _HEADER.size
# Suite name -> (id written in the header, data key length).
_SUITES = {AES_256_GCM: (1, 32), SM4_GCM: (2, 16)}
_SUITE_BY_ID = {suite_id: name for name, (suite_id, _) in _SUITES.items()}
_MASTER_KEY_INFO = b"yingxiang storage master key"


class CryptoIntegrityError(Exception):
    """Stored bytes or a wrapped key failed authentication: tampered with, truncated or misplaced."""


class KeyUnwrapError(CryptoIntegrityError):
    """A wrapped key does not unwrap with this key-encryption key and context."""


def _key_size(suite: str) -> int:
    try:
        return _SUITES[suite][1]
    except KeyError:
        raise ValueError(f"Unknown cipher suite {suite!r}; expected one of {sorted(_SUITES)}.") from None


def master_key() -> bytes:
    """Return the 32-byte key that wraps hospital keys.

    Without ``STORAGE_MASTER_KEY`` (the demo and the tests) the key is derived from ``SECRET_KEY``, so
    a demo keeps reading its own objects across restarts; production settings require the real one.
    """
    configured = settings.STORAGE_MASTER_KEY
    if not configured:
        hkdf = HKDF(algorithm=hashes.SHA256(), length=KEK_SIZE, salt=None, info=_MASTER_KEY_INFO)
        return hkdf.derive(settings.SECRET_KEY.encode())
    return _decoded_master_key(configured, "STORAGE_MASTER_KEY")


def master_key_fallbacks() -> list[bytes]:
    """The previous master keys (``STORAGE_MASTER_KEY_FALLBACKS``), which still unwrap hospital keys
    until ``manage.py storage_keys_rewrap`` has wrapped them all under the current one."""
    return [
        _decoded_master_key(value, "STORAGE_MASTER_KEY_FALLBACKS") for value in settings.STORAGE_MASTER_KEY_FALLBACKS
    ]


def _decoded_master_key(value: str, name: str) -> bytes:
    try:
        key = base64.b64decode(value, validate=True)
    except ValueError as error:
        raise ImproperlyConfigured(f"{name} is not valid base64 (expected 32 random bytes).") from error
    if len(key) != KEK_SIZE:
        raise ImproperlyConfigured(f"{name} must decode to {KEK_SIZE} bytes, not {len(key)}.")
    return key


def new_key(suite: str) -> bytes:
    """Return a fresh random data key of the length ``suite`` takes."""
    return os.urandom(_key_size(suite))


def check_kek(kek: bytes) -> None:
    if len(kek) != KEK_SIZE:
        raise ValueError(f"A key-encryption key must be {KEK_SIZE} bytes, not {len(kek)}.")


def wrap_key(*, kek: bytes, key: bytes, context: bytes) -> bytes:
    """Encrypt ``key`` under ``kek``, bound to ``context`` so the result only unwraps where it belongs."""
    check_kek(kek)
    nonce = os.urandom(NONCE_SIZE)
    return nonce + AESGCM(kek).encrypt(nonce, key, context)


def unwrap_key(*, kek: bytes, wrapped: bytes, context: bytes) -> bytes:
    """Recover a key from :func:`wrap_key`; a wrong key, context or any altered byte raises KeyUnwrapError."""
    check_kek(kek)
    if len(wrapped) < NONCE_SIZE + TAG_SIZE:
        raise KeyUnwrapError("The wrapped key is too short.")
    try:
        return AESGCM(kek).decrypt(wrapped[:NONCE_SIZE], wrapped[NONCE_SIZE:], context)
    except InvalidTag:
        raise KeyUnwrapError("The wrapped key does not unwrap with this key and context.") from None


@dataclass(frozen=True)
class Header:
    """The fixed header at the start of every encrypted object."""

    suite: str
    segment_size: int
    plaintext_size: int

    def __post_init__(self) -> None:
        _key_size(self.suite)
        if not 0 < self.segment_size <= MAX_SEGMENT_SIZE:
            raise ValueError(f"Segment size must be between 1 and {MAX_SEGMENT_SIZE} bytes, not {self.segment_size}.")
        if not 0 <= self.plaintext_size < 2**64:
            raise ValueError(f"Plaintext size {self.plaintext_size} does not fit the format.")

    @property
    def segment_count(self) -> int:
        return max(1, -(-self.plaintext_size // self.segment_size))

    @property
    def ciphertext_size(self) -> int:
        return HEADER_SIZE + self.plaintext_size + self.segment_count * TAG_SIZE

    def segment_offset(self, index: int) -> int:
        """Where segment ``index`` starts in the stored bytes."""
        return HEADER_SIZE + index * (self.segment_size + TAG_SIZE)

    def segment_plaintext_size(self, index: int) -> int:
        return min(self.segment_size, self.plaintext_size - index * self.segment_size)

    def to_bytes(self) -> bytes:
        return _HEADER.pack(MAGIC, FORMAT_VERSION, _SUITES[self.suite][0], self.segment_size, self.plaintext_size)

    @classmethod
    def from_bytes(cls, data: bytes) -> "Header":
        """Parse a header; anything this code did not write raises CryptoIntegrityError."""
        if len(data) != HEADER_SIZE:
            raise CryptoIntegrityError("The object is truncated inside its header.")
        magic, version, suite_id, segment_size, plaintext_size = _HEADER.unpack(data)
        if magic != MAGIC or version != FORMAT_VERSION or suite_id not in _SUITE_BY_ID:
            raise CryptoIntegrityError("The object header is not a version 1 encrypted object header.")
        try:
            return cls(suite=_SUITE_BY_ID[suite_id], segment_size=segment_size, plaintext_size=plaintext_size)
        except ValueError as error:
            raise CryptoIntegrityError(f"The object header is invalid: {error}") from None


@dataclass(frozen=True)
class CiphertextRange:
    """The stored bytes holding a plaintext range: whole segments, since each is authenticated whole."""

    offset: int
    length: int
    first_segment: int
    stop_segment: int  # one past the last segment


def ciphertext_range(*, header: Header, start: int, end: int) -> CiphertextRange:
    """Map the plaintext range [start, end) to the segments that hold it.

    An empty range still maps to one segment, so that reading it authenticates the header.
    """
    if not 0 <= start <= end <= header.plaintext_size:
        raise ValueError(f"Range [{start}, {end}) is outside an object of {header.plaintext_size} bytes.")
    first = min(start // header.segment_size, header.segment_count - 1)
    stop = max(first + 1, -(-end // header.segment_size))
    offset = header.segment_offset(first)
    finish = header.segment_offset(stop - 1) + header.segment_plaintext_size(stop - 1) + TAG_SIZE
    return CiphertextRange(offset=offset, length=finish - offset, first_segment=first, stop_segment=stop)


class _SegmentCipher:
    """Seals and opens the segments of one object, binding each to the header, object and position."""

    def __init__(self, *, suite: str, key: bytes, object_id: str, header_bytes: bytes) -> None:
        if len(key) != _key_size(suite):
            raise ValueError(f"A {suite} data key must be {_key_size(suite)} bytes, not {len(key)}.")
        encoded_id = object_id.encode()
        if not 0 < len(encoded_id) <= 0xFFFF:
            raise ValueError("The object id must be between 1 and 65535 bytes of UTF-8.")
        self._suite = suite
        self._key = key
        self._aes = AESGCM(key) if suite == AES_256_GCM else None
        self._aad_prefix = header_bytes + struct.pack(">H", len(encoded_id)) + encoded_id

    def _nonce_and_aad(self, index: int, final: bool) -> tuple[bytes, bytes]:
        return bytes(4) + index.to_bytes(8, "big"), self._aad_prefix + struct.pack(">QB", index, final)

    def seal(self, *, index: int, final: bool, plaintext: bytes) -> bytes:
        nonce, aad = self._nonce_and_aad(index, final)
        if self._aes is not None:
            return self._aes.encrypt(nonce, plaintext, aad)
        encryptor = Cipher(algorithms.SM4(self._key), modes.GCM(nonce)).encryptor()
        encryptor.authenticate_additional_data(aad)
        return encryptor.update(plaintext) + encryptor.finalize() + encryptor.tag

    def open(self, *, index: int, final: bool, sealed: bytes) -> bytes:
        nonce, aad = self._nonce_and_aad(index, final)
        try:
            if self._aes is not None:
                return self._aes.decrypt(nonce, sealed, aad)
            ciphertext, tag = sealed[:-TAG_SIZE], sealed[-TAG_SIZE:]
            decryptor = Cipher(algorithms.SM4(self._key), modes.GCM(nonce, tag)).decryptor()
            decryptor.authenticate_additional_data(aad)
            return decryptor.update(ciphertext) + decryptor.finalize()
        except InvalidTag:
            raise CryptoIntegrityError(f"Segment {index} failed authentication.") from None


def encrypt_stream(
    *, chunks: Iterable[bytes], key: bytes, suite: str, object_id: str, segment_size: int, plaintext_size: int
) -> Iterator[bytes]:
    """Encrypt ``chunks`` into the segmented format, yielding the header and then one piece per segment.

    Arguments are checked before the first piece is produced; a total that differs from
    ``plaintext_size`` raises ValueError while iterating, before the final segment is written.
    Chunks no larger than a segment keep at most two segments in memory.
    """
    header = Header(suite=suite, segment_size=segment_size, plaintext_size=plaintext_size)
    header_bytes = header.to_bytes()
    cipher = _SegmentCipher(suite=suite, key=key, object_id=object_id, header_bytes=header_bytes)
    return _encrypted_pieces(chunks=chunks, header=header, header_bytes=header_bytes, cipher=cipher)


def _encrypted_pieces(
    *, chunks: Iterable[bytes], header: Header, header_bytes: bytes, cipher: _SegmentCipher
) -> Iterator[bytes]:
    yield header_bytes
    last = header.segment_count - 1
    buffer = bytearray()
    received = 0
    index = 0
    for chunk in chunks:
        received += len(chunk)
        if received > header.plaintext_size:
            raise ValueError(f"The source holds more than the declared {header.plaintext_size} bytes.")
        buffer += chunk
        while len(buffer) >= header.segment_size:
            yield cipher.seal(index=index, final=index == last, plaintext=bytes(buffer[: header.segment_size]))
            del buffer[: header.segment_size]
            index += 1
    if received != header.plaintext_size:
        raise ValueError(f"The source held {received} bytes, not the declared {header.plaintext_size}.")
    if index == last:  # a short (or, for an empty object, empty) final segment is still to come
        yield cipher.seal(index=index, final=True, plaintext=bytes(buffer))


def decrypt_stream(
    *,
    read: Callable[[int, int], bytes],
    key: bytes,
    object_id: str,
    start: int = 0,
    end: int | None = None,
    expected_header: Header | None = None,
) -> Iterator[bytes]:
    """Yield exactly plaintext[start:end], reading the header and only the segments that hold the range.

    ``read(offset, length)`` returns stored bytes (fewer at the end of the object). Every segment read
    is authenticated before any of its bytes are yielded; tampering, truncation or a header that differs
    from ``expected_header`` (the metadata kept beside the object) raise CryptoIntegrityError. A range
    read vouches only for the segments it reads. ``end`` past the object is clamped, like a slice.
    """
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"Invalid range [{start}, {end}).")
    return _decrypted_pieces(
        read=read, key=key, object_id=object_id, start=start, end=end, expected_header=expected_header
    )


def _decrypted_pieces(
    *,
    read: Callable[[int, int], bytes],
    key: bytes,
    object_id: str,
    start: int,
    end: int | None,
    expected_header: Header | None,
) -> Iterator[bytes]:
    header_bytes = read(0, HEADER_SIZE)
    header = Header.from_bytes(header_bytes)
    if expected_header is not None and header != expected_header:
        raise CryptoIntegrityError("The object header does not match the recorded object.")
    if len(key) != _key_size(header.suite):
        raise CryptoIntegrityError(f"The header names {header.suite}, which this data key does not fit.")
    stop = header.plaintext_size if end is None else min(end, header.plaintext_size)
    begin = min(start, stop)
    span = ciphertext_range(header=header, start=begin, end=stop)
    cipher = _SegmentCipher(suite=header.suite, key=key, object_id=object_id, header_bytes=header_bytes)
    last = header.segment_count - 1
    for index in range(span.first_segment, span.stop_segment):
        sealed_size = header.segment_plaintext_size(index) + TAG_SIZE
        sealed = read(header.segment_offset(index), sealed_size)
        if len(sealed) != sealed_size:
            raise CryptoIntegrityError(f"The object is truncated in segment {index}.")
        plaintext = cipher.open(index=index, final=index == last, sealed=sealed)
        segment_start = index * header.segment_size
        piece = plaintext[max(begin - segment_start, 0) : stop - segment_start]
        if piece:
            yield piece


# --- Sealed streams: the same segments, for bytes whose length is not known in advance ---------------
#
# Staging receives bytes before their length is known (a request body part, a zip entry, a C-STORE
# data set written as it arrives), so its files cannot use the format above, whose header fixes the
# length. A sealed stream carries its wrapped data key instead and marks its end with the final flag:
#
#     header    magic b"YXS1", version 1, suite id, uint32 segment size, uint16 len(wrapped key),
#               wrapped key
#     segments  every one holds ``segment size`` plaintext bytes except the last, which holds 0 to
#               ``segment size`` bytes and alone carries the final flag
#
# The associated data of segment i is the same as above (header || object id || i || final flag), so
# tampering, reordering and splicing fail as before; a stream cut short at a segment boundary ends in a
# segment sealed as not final, and one cut inside a segment fails its tag.

STREAM_MAGIC = b"YXS1"
_STREAM_HEADER = struct.Struct(">4sBBIH")


@dataclass(frozen=True)
class StreamHeader:
    """The header of a sealed stream: its suite, segment size and wrapped data key."""

    suite: str
    segment_size: int
    wrapped_key: bytes

    def __post_init__(self) -> None:
        _key_size(self.suite)
        if not 0 < self.segment_size <= MAX_SEGMENT_SIZE:
            raise ValueError(f"Segment size must be between 1 and {MAX_SEGMENT_SIZE} bytes, not {self.segment_size}.")
        if not 0 < len(self.wrapped_key) <= 0xFFFF:
            raise ValueError("The wrapped key must be between 1 and 65535 bytes.")

    @property
    def size(self) -> int:
        return _STREAM_HEADER.size + len(self.wrapped_key)

    def to_bytes(self) -> bytes:
        fixed = _STREAM_HEADER.pack(
            STREAM_MAGIC, FORMAT_VERSION, _SUITES[self.suite][0], self.segment_size, len(self.wrapped_key)
        )
        return fixed + self.wrapped_key

    @classmethod
    def read_from(cls, read: Callable[[int, int], bytes]) -> "StreamHeader":
        """Read a header with ``read(offset, length)``; anything else raises CryptoIntegrityError."""
        fixed = read(0, _STREAM_HEADER.size)
        if len(fixed) != _STREAM_HEADER.size:
            raise CryptoIntegrityError("The stream is truncated inside its header.")
        magic, version, suite_id, segment_size, key_length = _STREAM_HEADER.unpack(fixed)
        if magic != STREAM_MAGIC or version != FORMAT_VERSION or suite_id not in _SUITE_BY_ID:
            raise CryptoIntegrityError("The stream header is not a version 1 sealed stream header.")
        wrapped_key = read(_STREAM_HEADER.size, key_length)
        if len(wrapped_key) != key_length:
            raise CryptoIntegrityError("The stream is truncated inside its header.")
        try:
            return cls(suite=_SUITE_BY_ID[suite_id], segment_size=segment_size, wrapped_key=wrapped_key)
        except ValueError as error:
            raise CryptoIntegrityError(f"The stream header is invalid: {error}") from None


def stream_encrypt(*, chunks: Iterable[bytes], key: bytes, header: StreamHeader, object_id: str) -> Iterator[bytes]:
    """Seal ``chunks`` of any total length as a sealed stream: the header, then one piece per segment.

    At most one segment and one chunk are held in memory: a full segment is sealed only once a byte
    after it has arrived, since the last segment must be sealed as final.
    """
    header_bytes = header.to_bytes()
    cipher = _SegmentCipher(suite=header.suite, key=key, object_id=object_id, header_bytes=header_bytes)
    return _stream_pieces(chunks=chunks, header_bytes=header_bytes, segment_size=header.segment_size, cipher=cipher)


def _stream_pieces(
    *, chunks: Iterable[bytes], header_bytes: bytes, segment_size: int, cipher: _SegmentCipher
) -> Iterator[bytes]:
    yield header_bytes
    buffer = bytearray()
    index = 0
    for chunk in chunks:
        buffer += chunk
        while len(buffer) > segment_size:
            yield cipher.seal(index=index, final=False, plaintext=bytes(buffer[:segment_size]))
            del buffer[:segment_size]
            index += 1
    yield cipher.seal(index=index, final=True, plaintext=bytes(buffer))


class StreamDecryptor:
    """Opens the segments of one sealed stream of ``stored_size`` bytes, in any order.

    The layout follows from the stored size; a size no sealed stream can have raises
    CryptoIntegrityError here, and a stream cut at a segment boundary fails on its last segment.
    """

    def __init__(self, *, header: StreamHeader, key: bytes, object_id: str, stored_size: int) -> None:
        if len(key) != _key_size(header.suite):
            raise CryptoIntegrityError(f"The header names {header.suite}, which this data key does not fit.")
        self.header = header
        self._cipher = _SegmentCipher(suite=header.suite, key=key, object_id=object_id, header_bytes=header.to_bytes())
        body = stored_size - header.size
        sealed_segment = header.segment_size + TAG_SIZE
        self.segment_count = max(1, -(-body // sealed_segment))
        last_sealed = body - (self.segment_count - 1) * sealed_segment
        if last_sealed < TAG_SIZE:
            raise CryptoIntegrityError("The stream is truncated inside a segment.")
        self.plaintext_size = (self.segment_count - 1) * header.segment_size + last_sealed - TAG_SIZE

    def segment_offset(self, index: int) -> int:
        return self.header.size + index * (self.header.segment_size + TAG_SIZE)

    def segment_sealed_size(self, index: int) -> int:
        return min(self.header.segment_size, self.plaintext_size - index * self.header.segment_size) + TAG_SIZE

    def open(self, *, index: int, sealed: bytes) -> bytes:
        """Authenticate and decrypt segment ``index`` (its stored bytes)."""
        if len(sealed) != self.segment_sealed_size(index):
            raise CryptoIntegrityError(f"The stream is truncated in segment {index}.")
        return self._cipher.open(index=index, final=index == self.segment_count - 1, sealed=sealed)
