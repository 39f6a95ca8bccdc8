import base64
import os

import pytest
from django.core.exceptions import ImproperlyConfigured

from apps.imaging.crypto import (
    AES_256_GCM,
    HEADER_SIZE,
    SM4_GCM,
    TAG_SIZE,
    CryptoIntegrityError,
    Header,
    KeyUnwrapError,
    ciphertext_range,
    decrypt_stream,
    encrypt_stream,
    master_key,
    new_key,
    unwrap_key,
    wrap_key,
)

SEGMENT = 1024
SUITES = [AES_256_GCM, SM4_GCM]
SIZES = [0, 1, SEGMENT, SEGMENT + 1, 5 * SEGMENT + 123]
OBJECT_ID = "objects/ab/" + "ab" * 16
OTHER_OBJECT_ID = "objects/cd/" + "cd" * 16


def plaintext_of(size: int) -> bytes:
    return bytes((index * 7 + index // 251) % 256 for index in range(size))


def encrypt(plaintext: bytes, *, key: bytes, suite: str, object_id: str = OBJECT_ID) -> bytes:
    # Odd chunk sizes exercise the re-buffering into segments.
    chunks = (plaintext[offset : offset + 700] for offset in range(0, len(plaintext), 700))
    pieces = encrypt_stream(
        chunks=chunks, key=key, suite=suite, object_id=object_id, segment_size=SEGMENT, plaintext_size=len(plaintext)
    )
    return b"".join(pieces)


def decrypt(stored: bytes, *, key: bytes, object_id: str = OBJECT_ID, start: int = 0, end: int | None = None) -> bytes:
    def read(offset: int, length: int) -> bytes:
        return stored[offset : offset + length]

    return b"".join(decrypt_stream(read=read, key=key, object_id=object_id, start=start, end=end))


def flip_bit(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]


def segment_offset(index: int) -> int:
    return HEADER_SIZE + index * (SEGMENT + TAG_SIZE)


@pytest.fixture(params=SUITES)
def suite(request) -> str:
    return request.param


@pytest.fixture
def key(suite: str) -> bytes:
    return new_key(suite)


@pytest.fixture
def several_segments(key: bytes, suite: str) -> tuple[bytes, bytes]:
    plaintext = plaintext_of(5 * SEGMENT + 123)
    return plaintext, encrypt(plaintext, key=key, suite=suite)


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_returns_the_plaintext(suite: str, key: bytes, size: int):
    plaintext = plaintext_of(size)

    stored = encrypt(plaintext, key=key, suite=suite)

    assert decrypt(stored, key=key) == plaintext
    assert len(stored) == Header(suite=suite, segment_size=SEGMENT, plaintext_size=size).ciphertext_size


def test_empty_object_still_has_one_authenticated_segment(suite: str, key: bytes):
    stored = encrypt(b"", key=key, suite=suite)

    assert len(stored) == HEADER_SIZE + TAG_SIZE


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (0, 0),
        (0, 1),
        (0, SEGMENT),
        (SEGMENT - 1, SEGMENT + 1),
        (SEGMENT, 2 * SEGMENT),
        (2 * SEGMENT - 1, 4 * SEGMENT + 1),
        (100, 4000),
        (5 * SEGMENT, 5 * SEGMENT + 123),
        (5 * SEGMENT + 122, None),
        (3000, 3000),
        (4000, 10**9),
    ],
)
def test_range_read_returns_exactly_the_slice(several_segments, key: bytes, start: int, end: int | None):
    plaintext, stored = several_segments

    assert decrypt(stored, key=key, start=start, end=end) == plaintext[start:end]


def test_range_read_fetches_only_the_segments_holding_the_range(several_segments, key: bytes):
    _plaintext, stored = several_segments
    reads = []

    def read(offset: int, length: int) -> bytes:
        reads.append((offset, length))
        return stored[offset : offset + length]

    b"".join(decrypt_stream(read=read, key=key, object_id=OBJECT_ID, start=SEGMENT + 5, end=2 * SEGMENT + 5))

    assert reads == [(0, HEADER_SIZE), (segment_offset(1), SEGMENT + TAG_SIZE), (segment_offset(2), SEGMENT + TAG_SIZE)]


def test_ciphertext_range_covers_whole_segments():
    header = Header(suite=AES_256_GCM, segment_size=SEGMENT, plaintext_size=5 * SEGMENT + 123)

    span = ciphertext_range(header=header, start=SEGMENT - 1, end=SEGMENT + 1)

    assert (span.offset, span.length, span.first_segment, span.stop_segment) == (
        HEADER_SIZE,
        2 * (SEGMENT + TAG_SIZE),
        0,
        2,
    )


def test_ciphertext_range_of_the_tail_ends_at_the_short_last_segment():
    header = Header(suite=AES_256_GCM, segment_size=SEGMENT, plaintext_size=5 * SEGMENT + 123)

    span = ciphertext_range(header=header, start=5 * SEGMENT, end=5 * SEGMENT + 123)

    assert (span.offset, span.offset + span.length, span.first_segment, span.stop_segment) == (
        segment_offset(5),
        header.ciphertext_size,
        5,
        6,
    )


def test_ciphertext_range_rejects_a_range_outside_the_object():
    header = Header(suite=AES_256_GCM, segment_size=SEGMENT, plaintext_size=10)

    with pytest.raises(ValueError):
        ciphertext_range(header=header, start=0, end=11)


@pytest.mark.parametrize("offset", range(HEADER_SIZE))
def test_flipped_bit_in_the_header_is_detected(several_segments, key: bytes, offset: int):
    _plaintext, stored = several_segments

    with pytest.raises(CryptoIntegrityError):
        decrypt(flip_bit(stored, offset), key=key)


def test_flipped_bit_in_a_segment_is_detected(several_segments, key: bytes):
    _plaintext, stored = several_segments

    with pytest.raises(CryptoIntegrityError):
        decrypt(flip_bit(stored, segment_offset(2) + 10), key=key)


def test_flipped_bit_in_a_tag_is_detected(several_segments, key: bytes):
    _plaintext, stored = several_segments

    with pytest.raises(CryptoIntegrityError):
        decrypt(flip_bit(stored, segment_offset(3) - 1), key=key)


def test_range_read_of_a_tampered_segment_is_detected(several_segments, key: bytes):
    _plaintext, stored = several_segments

    with pytest.raises(CryptoIntegrityError):
        decrypt(flip_bit(stored, segment_offset(2) + 10), key=key, start=2 * SEGMENT, end=2 * SEGMENT + 1)


def test_dropping_the_last_segment_is_detected(several_segments, key: bytes):
    _plaintext, stored = several_segments

    with pytest.raises(CryptoIntegrityError):
        decrypt(stored[: segment_offset(5)], key=key)


def test_dropping_the_last_byte_is_detected(several_segments, key: bytes):
    _plaintext, stored = several_segments

    with pytest.raises(CryptoIntegrityError):
        decrypt(stored[:-1], key=key)


def test_truncated_header_is_detected(several_segments, key: bytes):
    _plaintext, stored = several_segments

    with pytest.raises(CryptoIntegrityError):
        decrypt(stored[: HEADER_SIZE - 1], key=key)


def test_swapped_segments_are_detected(several_segments, key: bytes):
    _plaintext, stored = several_segments
    first, second = stored[segment_offset(0) : segment_offset(1)], stored[segment_offset(1) : segment_offset(2)]
    swapped = stored[:HEADER_SIZE] + second + first + stored[segment_offset(2) :]

    with pytest.raises(CryptoIntegrityError):
        decrypt(swapped, key=key)


def test_ciphertext_read_under_another_object_id_is_detected(several_segments, key: bytes):
    _plaintext, stored = several_segments

    with pytest.raises(CryptoIntegrityError):
        decrypt(stored, key=key, object_id=OTHER_OBJECT_ID)


def test_segment_spliced_from_another_object_is_detected(suite: str, key: bytes):
    # Even under one key (which object_put never does), a segment is bound to its object.
    plaintext = plaintext_of(3 * SEGMENT)
    first = encrypt(plaintext, key=key, suite=suite, object_id=OBJECT_ID)
    second = encrypt(plaintext, key=key, suite=suite, object_id=OTHER_OBJECT_ID)
    spliced = first[: segment_offset(1)] + second[segment_offset(1) : segment_offset(2)] + first[segment_offset(2) :]

    with pytest.raises(CryptoIntegrityError):
        decrypt(spliced, key=key)


def test_another_data_key_is_detected(several_segments, suite: str):
    _plaintext, stored = several_segments

    with pytest.raises(CryptoIntegrityError):
        decrypt(stored, key=new_key(suite))


def test_header_that_differs_from_the_recorded_one_is_detected(several_segments, key: bytes, suite: str):
    _plaintext, stored = several_segments
    recorded = Header(suite=suite, segment_size=SEGMENT, plaintext_size=5 * SEGMENT)

    with pytest.raises(CryptoIntegrityError):
        b"".join(
            decrypt_stream(
                read=lambda offset, length: stored[offset : offset + length],
                key=key,
                object_id=OBJECT_ID,
                expected_header=recorded,
            )
        )


def test_source_shorter_than_declared_is_rejected(suite: str, key: bytes):
    pieces = encrypt_stream(
        chunks=[b"x" * 10], key=key, suite=suite, object_id=OBJECT_ID, segment_size=SEGMENT, plaintext_size=11
    )

    with pytest.raises(ValueError, match="declared"):
        list(pieces)


def test_source_longer_than_declared_is_rejected(suite: str, key: bytes):
    pieces = encrypt_stream(
        chunks=[b"x" * SEGMENT, b"y"], key=key, suite=suite, object_id=OBJECT_ID, segment_size=SEGMENT,
        plaintext_size=SEGMENT,
    )  # fmt: skip

    with pytest.raises(ValueError, match="declared"):
        list(pieces)


def test_unknown_suite_is_rejected():
    with pytest.raises(ValueError, match="Unknown cipher suite"):
        new_key("des-cbc")


@pytest.mark.parametrize(("suite_name", "length"), [(AES_256_GCM, 32), (SM4_GCM, 16)])
def test_data_keys_have_the_length_of_their_suite(suite_name: str, length: int):
    assert len(new_key(suite_name)) == length


def test_data_key_of_the_wrong_length_is_rejected():
    with pytest.raises(ValueError, match="data key"):
        encrypt_stream(
            chunks=[], key=new_key(SM4_GCM), suite=AES_256_GCM, object_id=OBJECT_ID, segment_size=SEGMENT,
            plaintext_size=0,
        )  # fmt: skip


def test_wrapped_key_unwraps_with_its_key_and_context():
    kek, data_key = os.urandom(32), new_key(AES_256_GCM)

    wrapped = wrap_key(kek=kek, key=data_key, context=OBJECT_ID.encode())

    assert unwrap_key(kek=kek, wrapped=wrapped, context=OBJECT_ID.encode()) == data_key


def test_wrapped_key_does_not_unwrap_in_another_context():
    kek = os.urandom(32)
    wrapped = wrap_key(kek=kek, key=new_key(AES_256_GCM), context=OBJECT_ID.encode())

    with pytest.raises(KeyUnwrapError):
        unwrap_key(kek=kek, wrapped=wrapped, context=OTHER_OBJECT_ID.encode())


def test_wrapped_key_does_not_unwrap_with_another_key():
    wrapped = wrap_key(kek=os.urandom(32), key=new_key(AES_256_GCM), context=OBJECT_ID.encode())

    with pytest.raises(KeyUnwrapError):
        unwrap_key(kek=os.urandom(32), wrapped=wrapped, context=OBJECT_ID.encode())


def test_truncated_wrapped_key_does_not_unwrap():
    kek = os.urandom(32)
    wrapped = wrap_key(kek=kek, key=new_key(AES_256_GCM), context=OBJECT_ID.encode())

    with pytest.raises(KeyUnwrapError):
        unwrap_key(kek=kek, wrapped=wrapped[:-1], context=OBJECT_ID.encode())


def test_unwrap_failure_is_an_integrity_error():
    assert issubclass(KeyUnwrapError, CryptoIntegrityError)


def test_master_key_is_derived_from_the_secret_key_when_unset(settings):
    settings.STORAGE_MASTER_KEY = ""
    settings.SECRET_KEY = "first-secret-key-for-the-derivation-test-0123456789"
    derived = master_key()
    settings.SECRET_KEY = "other-secret-key-for-the-derivation-test-0123456789"

    assert len(derived) == 32
    assert master_key() != derived


def test_master_key_derivation_is_deterministic(settings):
    settings.STORAGE_MASTER_KEY = ""

    assert master_key() == master_key()


def test_master_key_is_read_from_settings(settings):
    configured = os.urandom(32)
    settings.STORAGE_MASTER_KEY = base64.b64encode(configured).decode()

    assert master_key() == configured


@pytest.mark.parametrize("value", ["not base64!", "c2hvcnQ=", base64.b64encode(bytes(33)).decode()])
def test_master_key_that_is_not_32_bytes_of_base64_is_a_configuration_error(settings, value: str):
    settings.STORAGE_MASTER_KEY = value

    with pytest.raises(ImproperlyConfigured, match="STORAGE_MASTER_KEY"):
        master_key()
