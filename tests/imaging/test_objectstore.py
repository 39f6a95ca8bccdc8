import dataclasses
import hashlib
import io
import os
import re
import tracemalloc
import uuid

import pytest
from pydicom.uid import generate_uid

import apps.imaging.objectstore
from apps.imaging.crypto import (
    AES_256_GCM,
    HEADER_SIZE,
    SM4_GCM,
    TAG_SIZE,
    CryptoIntegrityError,
    KeyUnwrapError,
    unwrap_key,
    wrap_key,
)
from apps.imaging.objectstore import StoredObject, _binding, object_delete, object_open, object_put

SEGMENT = 1024
KEY_PATTERN = re.compile(r"^objects/[0-9a-f]{2}/[0-9a-f]{32}$")
# A distinctive string standing in for patient data that must never reach the storage in the clear.
MARKER = b"PATIENT^ZHANG^SAN^MARKER-20240101"


def plaintext_of(size: int) -> bytes:
    body = bytes((index * 13) % 256 for index in range(size))
    if size > len(MARKER) * 3:
        middle = size // 2
        body = body[:middle] + MARKER + body[middle + len(MARKER) :]
    return body


def put(data: bytes, hospital_key: bytes, **options) -> StoredObject:
    options.setdefault("sop_instance_uid", generate_uid())
    return object_put(hospital_key=hospital_key, source=io.BytesIO(data), size=len(data), **options)


def read_back(stored: StoredObject, hospital_key: bytes, start: int = 0, end: int | None = None) -> bytes:
    return b"".join(object_open(hospital_key=hospital_key, stored=stored, start=start, end=end))


def read_back_rehashed(stored: StoredObject, hospital_key: bytes) -> bytes:
    return b"".join(object_open(hospital_key=hospital_key, stored=stored, rehash=True))


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stored_bytes(storage, key: str) -> bytes:
    with storage.open(key, "rb") as opened:
        return opened.read()


def overwrite(storage, key: str, data: bytes) -> None:
    storage.delete(key)
    assert storage.save(key, io.BytesIO(data)) == key


def flip_bit(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]


@pytest.fixture
def hospital_key() -> bytes:
    return os.urandom(32)


class GeneratedSource(io.RawIOBase):
    """A large, deterministic source produced on demand, so the test itself holds none of it."""

    def __init__(self, size: int) -> None:
        self.remaining = size
        self.block = bytes(range(256)) * 256

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = min(len(buffer), self.remaining, len(self.block))
        buffer[:count] = self.block[:count]
        self.remaining -= count
        return count


# --- Filesystem storage ---------------------------------------------------------------------


@pytest.mark.parametrize("suite", [AES_256_GCM, SM4_GCM])
@pytest.mark.parametrize("size", [0, 1, SEGMENT, SEGMENT + 1, 4 * SEGMENT + 200])
def test_put_then_open_returns_the_plaintext(local_storage, hospital_key: bytes, suite: str, size: int):
    data = plaintext_of(size)

    stored = put(data, hospital_key, suite=suite, segment_size=SEGMENT)

    assert read_back(stored, hospital_key) == data


def test_put_records_what_reading_back_needs(local_storage, hospital_key: bytes):
    data = plaintext_of(3 * SEGMENT + 5)

    stored = put(data, hospital_key, suite=SM4_GCM, segment_size=SEGMENT)

    assert (stored.suite, stored.segment_size, stored.plaintext_size) == (SM4_GCM, SEGMENT, len(data))
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.stored_size == local_storage.size(stored.key) == HEADER_SIZE + len(data) + 4 * TAG_SIZE


def test_put_defaults_to_the_configured_suite_and_segment_size(local_storage, settings, hospital_key: bytes):
    settings.STORAGE_CIPHER = SM4_GCM
    settings.STORAGE_SEGMENT_SIZE = 2048

    stored = put(b"dicom", hospital_key)

    assert (stored.suite, stored.segment_size) == (SM4_GCM, 2048)


def test_object_keys_are_opaque_and_distinct(local_storage, hospital_key: bytes):
    first, second = put(MARKER, hospital_key), put(MARKER, hospital_key)

    assert KEY_PATTERN.match(first.key)
    assert KEY_PATTERN.match(second.key)
    assert first.key != second.key


def test_stored_bytes_do_not_contain_the_plaintext(local_storage, hospital_key: bytes):
    stored = put(plaintext_of(4 * SEGMENT), hospital_key, segment_size=SEGMENT)

    assert MARKER not in stored_bytes(local_storage, stored.key)


@pytest.mark.parametrize(
    ("start", "end"),
    [(0, 0), (0, 10), (SEGMENT - 3, SEGMENT + 3), (SEGMENT, 3 * SEGMENT), (4 * SEGMENT, None), (10, 10**9)],
)
def test_open_range_returns_exactly_the_slice(local_storage, hospital_key: bytes, start: int, end: int | None):
    data = plaintext_of(4 * SEGMENT + 200)
    stored = put(data, hospital_key, segment_size=SEGMENT)

    assert read_back(stored, hospital_key, start, end) == data[start:end]


def test_open_with_another_hospital_key_fails_at_the_call(local_storage, hospital_key: bytes):
    stored = put(b"dicom", hospital_key)

    with pytest.raises(KeyUnwrapError):
        object_open(hospital_key=os.urandom(32), stored=stored)


def test_wrapped_key_moved_to_another_object_does_not_unwrap(local_storage, hospital_key: bytes):
    first, second = put(b"first", hospital_key), put(b"second", hospital_key)

    with pytest.raises(KeyUnwrapError):
        object_open(
            hospital_key=hospital_key, stored=dataclasses.replace(second, wrapped_data_key=first.wrapped_data_key)
        )


def test_bytes_copied_over_another_object_are_detected(local_storage, hospital_key: bytes):
    first, second = put(b"first object", hospital_key), put(b"other object", hospital_key)
    overwrite(local_storage, second.key, stored_bytes(local_storage, first.key))

    with pytest.raises(CryptoIntegrityError):
        read_back(second, hospital_key)


def test_flipped_bit_in_storage_is_detected(local_storage, hospital_key: bytes):
    stored = put(plaintext_of(3 * SEGMENT), hospital_key, segment_size=SEGMENT)
    overwrite(local_storage, stored.key, flip_bit(stored_bytes(local_storage, stored.key), HEADER_SIZE + SEGMENT))

    with pytest.raises(CryptoIntegrityError):
        read_back(stored, hospital_key)


def test_truncated_object_is_detected(local_storage, hospital_key: bytes):
    stored = put(plaintext_of(3 * SEGMENT), hospital_key, segment_size=SEGMENT)
    overwrite(local_storage, stored.key, stored_bytes(local_storage, stored.key)[: -(SEGMENT + TAG_SIZE)])

    with pytest.raises(CryptoIntegrityError):
        read_back(stored, hospital_key)


def test_a_row_recording_another_digest_does_not_unwrap(local_storage, hospital_key: bytes):
    stored = put(b"dicom", hospital_key)

    with pytest.raises(KeyUnwrapError):
        object_open(hospital_key=hospital_key, stored=dataclasses.replace(stored, sha256=sha256_of(b"other")))


def test_a_row_naming_another_instances_object_does_not_unwrap(local_storage, hospital_key: bytes):
    """A wrong-patient image: a row carrying everything of another instance's object (key, wrapped
    key, digest, sizes) but its own SOP Instance UID fails before a byte is read."""
    theirs = put(b"the other patient's image", hospital_key)
    ours = put(b"this patient's image", hospital_key)

    with pytest.raises(KeyUnwrapError):
        object_open(
            hospital_key=hospital_key, stored=dataclasses.replace(theirs, sop_instance_uid=ours.sop_instance_uid)
        )


def test_a_row_naming_its_earlier_version_under_the_current_digest_does_not_unwrap(local_storage, hospital_key):
    uid = generate_uid()
    earlier, current = (
        put(b"version one", hospital_key, sop_instance_uid=uid),
        put(b"version 2", hospital_key, sop_instance_uid=uid),
    )
    pointing_back = dataclasses.replace(current, key=earlier.key, wrapped_data_key=earlier.wrapped_data_key)

    with pytest.raises(KeyUnwrapError):
        object_open(hospital_key=hospital_key, stored=pointing_back)
    assert read_back(earlier, hospital_key) == b"version one"


def test_a_whole_read_of_a_bound_object_does_not_hash_it_again(local_storage, hospital_key: bytes, monkeypatch):
    data = plaintext_of(3 * SEGMENT)
    stored = put(data, hospital_key, segment_size=SEGMENT)

    def no_hashing(*_args):
        raise AssertionError("a whole read hashed the object")

    monkeypatch.setattr(apps.imaging.objectstore.hashlib, "sha256", no_hashing)
    assert read_back(stored, hospital_key) == data
    with pytest.raises(AssertionError, match="hashed"):
        read_back_rehashed(stored, hospital_key)


def test_rehash_finds_bytes_that_differ_from_the_digest_they_were_stored_under(local_storage, hospital_key: bytes):
    """What the fixity sweep adds: a caller that passed a wrong digest bound the key to it, so the
    tags pass; recomputing the digest does not."""
    stored = put(b"dicom", hospital_key, sha256=sha256_of(b"not these bytes"))

    assert read_back(stored, hospital_key) == b"dicom"
    with pytest.raises(CryptoIntegrityError, match="SHA-256"):
        read_back_rehashed(stored, hospital_key)
    assert read_back_rehashed(put(b"dicom", hospital_key), hospital_key) == b"dicom"


def legacy(stored: StoredObject, hospital_key: bytes) -> StoredObject:
    """``stored`` as objects were kept before 30 November 2026: the data key bound to the storage key only."""
    binding = _binding(key=stored.key, sop_instance_uid=stored.sop_instance_uid, sha256=stored.sha256)
    data_key = unwrap_key(kek=hospital_key, wrapped=stored.wrapped_data_key, context=binding)
    return dataclasses.replace(
        stored, wrapped_data_key=wrap_key(kek=hospital_key, key=data_key, context=stored.key.encode())
    )


def test_an_object_stored_before_the_binding_still_reads_and_is_rehashed(local_storage, hospital_key: bytes):
    data = plaintext_of(3 * SEGMENT)
    old = legacy(put(data, hospital_key, segment_size=SEGMENT), hospital_key)

    assert read_back(old, hospital_key) == data
    assert read_back(old, hospital_key, SEGMENT, 2 * SEGMENT) == data[SEGMENT : 2 * SEGMENT]
    # Its row is tied to its bytes by the digest alone, so every whole read checks it.
    with pytest.raises(CryptoIntegrityError, match="SHA-256"):
        read_back(dataclasses.replace(old, sha256=sha256_of(b"other")), hospital_key)
    other = put(b"another object", hospital_key)
    with pytest.raises(KeyUnwrapError):
        object_open(hospital_key=hospital_key, stored=dataclasses.replace(old, key=other.key))


def test_with_legacy_key_wrapping_off_only_bound_keys_unwrap(local_storage, hospital_key: bytes, settings):
    """Once every object is bound, an old wrapped key (a backup's, say) no longer opens anything."""
    bound = put(b"bound object", hospital_key)
    old = legacy(put(b"legacy object", hospital_key), hospital_key)
    settings.STORAGE_LEGACY_KEY_WRAPPING = False

    assert read_back(bound, hospital_key) == b"bound object"
    with pytest.raises(KeyUnwrapError):
        object_open(hospital_key=hospital_key, stored=old)


def test_source_shorter_than_declared_stores_nothing(local_storage, hospital_key: bytes):
    with pytest.raises(ValueError, match="declared"):
        object_put(hospital_key=hospital_key, source=io.BytesIO(b"short"), size=6, sop_instance_uid=generate_uid())

    # No object and no partial file (the object's directory may have been made already).
    files = [name for _root, _dirs, names in os.walk(local_storage.location) for name in names]
    assert files == []


def test_a_stored_object_is_written_under_its_key_only(local_storage, hospital_key: bytes):
    stored = put(b"dicom bytes", hospital_key)

    files = [
        os.path.relpath(os.path.join(root, name), local_storage.location)
        for root, _dirs, names in os.walk(local_storage.location)
        for name in names
    ]
    assert files == [stored.key]
    assert os.path.getsize(os.path.join(local_storage.location, stored.key)) == stored.stored_size
    assert read_back(stored, hospital_key) == b"dicom bytes"


def test_delete_removes_the_object(local_storage, hospital_key: bytes):
    stored = put(b"dicom", hospital_key)

    object_delete(stored.key)

    assert not local_storage.exists(stored.key)


def test_delete_refuses_a_name_that_is_not_an_object_key(local_storage):
    with pytest.raises(ValueError):
        object_delete("../settings.py")


def test_large_object_streams_in_bounded_memory(local_storage, hospital_key: bytes):
    size = 64 * 1024 * 1024
    expected = hashlib.sha256()
    source = GeneratedSource(size)
    while chunk := source.read(1024 * 1024):
        expected.update(chunk)

    tracemalloc.start()
    try:
        stored = object_put(
            hospital_key=hospital_key, source=GeneratedSource(size), size=size, sop_instance_uid=generate_uid()
        )
        digest, received = hashlib.sha256(), 0
        for piece in object_open(hospital_key=hospital_key, stored=stored):
            digest.update(piece)
            received += len(piece)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert (received, digest.hexdigest()) == (size, expected.hexdigest())
    assert stored.sha256 == expected.hexdigest()
    assert peak < 16 * 1024 * 1024


# --- S3 storage (moto server) ---------------------------------------------------------------


def test_s3_put_then_open_returns_the_plaintext(s3_storage, hospital_key: bytes):
    data = plaintext_of(5 * SEGMENT + 7)

    stored = put(data, hospital_key, segment_size=SEGMENT)

    assert read_back(stored, hospital_key) == data
    assert stored.stored_size == s3_storage.size(stored.key)


@pytest.mark.parametrize(("start", "end"), [(0, 0), (SEGMENT - 3, SEGMENT + 3), (2 * SEGMENT, 2 * SEGMENT + 1)])
def test_s3_open_range_returns_exactly_the_slice(s3_storage, hospital_key: bytes, start: int, end: int):
    data = plaintext_of(5 * SEGMENT + 7)
    stored = put(data, hospital_key, segment_size=SEGMENT)

    assert read_back(stored, hospital_key, start, end) == data[start:end]


def test_s3_empty_object_round_trips(s3_storage, hospital_key: bytes):
    stored = put(b"", hospital_key, suite=SM4_GCM)

    assert read_back(stored, hospital_key) == b""


def test_s3_bucket_holds_only_opaque_ciphertext(s3_storage, s3_server, hospital_key: bytes):
    stored = put(plaintext_of(4 * SEGMENT), hospital_key, segment_size=SEGMENT)
    client = s3_server.client()

    keys = [item["Key"] for item in client.list_objects_v2(Bucket=s3_server.bucket).get("Contents", [])]
    body = client.get_object(Bucket=s3_server.bucket, Key=stored.key)["Body"].read()

    assert stored.key in keys
    assert all(KEY_PATTERN.match(key) for key in keys)
    assert MARKER not in body


def test_s3_truncated_object_is_detected(s3_storage, s3_server, hospital_key: bytes):
    stored = put(plaintext_of(3 * SEGMENT), hospital_key, segment_size=SEGMENT)
    client = s3_server.client()
    body = client.get_object(Bucket=s3_server.bucket, Key=stored.key)["Body"].read()
    client.put_object(Bucket=s3_server.bucket, Key=stored.key, Body=body[: -(SEGMENT + TAG_SIZE)])

    with pytest.raises(CryptoIntegrityError):
        read_back(stored, hospital_key)


def test_s3_truncation_is_detected_even_when_the_recorded_size_agrees(s3_storage, s3_server, hospital_key: bytes):
    stored = put(plaintext_of(3 * SEGMENT), hospital_key, segment_size=SEGMENT)
    client = s3_server.client()
    body = client.get_object(Bucket=s3_server.bucket, Key=stored.key)["Body"].read()
    truncated = body[: -(SEGMENT + TAG_SIZE)]
    client.put_object(Bucket=s3_server.bucket, Key=stored.key, Body=truncated)

    with pytest.raises(CryptoIntegrityError, match="truncated"):
        read_back(dataclasses.replace(stored, stored_size=len(truncated)), hospital_key, 2 * SEGMENT, 3 * SEGMENT)


def test_s3_delete_removes_the_object(s3_storage, s3_server, hospital_key: bytes):
    stored = put(b"dicom", hospital_key)

    object_delete(stored.key)

    keys = [item["Key"] for item in s3_server.client().list_objects_v2(Bucket=s3_server.bucket).get("Contents", [])]
    assert stored.key not in keys


@pytest.fixture
def synced(monkeypatch) -> list[str]:
    """The paths fsync'd from now on, in order."""
    paths: list[str] = []
    fsync = os.fsync

    def recording_fsync(descriptor: int) -> None:
        paths.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    return paths


def test_a_stored_object_is_fsynced_with_its_directories_before_put_returns(local_storage, hospital_key, synced):
    """The row naming an object commits after object_put returns, and the staged copy is deleted
    then: the file, its directory and the directories made for it must be on the disk by then."""
    stored = put(b"dicom bytes", hospital_key)
    path = os.path.join(local_storage.location, stored.key)
    directory = os.path.dirname(path)
    # The directories made for it (each in its parent), the file (written under its own name: a
    # new object replaces nothing, and nothing names it before the row commits), and last the
    # directory that holds it.
    assert synced.count(path) == 1
    assert synced.index(os.path.dirname(directory)) < synced.index(path) < synced.index(directory)
    assert synced[-1] == directory
    assert os.listdir(directory) == [os.path.basename(path)]


def test_an_object_key_is_never_overwritten(local_storage, hospital_key, monkeypatch):
    from apps.imaging import objectstore

    first = put(b"first", hospital_key)
    fixed = uuid.UUID(hex=first.key.rsplit("/", 1)[1])
    monkeypatch.setattr(objectstore.uuid, "uuid4", lambda: fixed)
    with pytest.raises(FileExistsError):
        put(b"second", hospital_key)
    assert read_back(first, hospital_key) == b"first"


def test_the_first_put_makes_all_256_object_directories_at_once(local_storage, hospital_key, monkeypatch, synced):
    """A new archive's first objects do not each make (and sync) their directory: the first put of a
    process makes all of them, with one sync of their parent."""
    from apps.imaging import objectstore

    monkeypatch.setattr(objectstore, "_fanned_out", set())
    stored = put(b"dicom bytes", hospital_key)
    root = os.path.join(local_storage.location, "objects")
    assert sorted(os.listdir(root)) == [f"{n:02x}" for n in range(256)]
    assert synced.count(root) == 1
    del synced[:]
    second = put(b"more bytes", hospital_key)
    assert root not in synced  # made once per process
    assert read_back(stored, hospital_key) == b"dicom bytes" and read_back(second, hospital_key) == b"more bytes"


def test_an_object_directory_removed_behind_the_process_is_made_again(local_storage, hospital_key, monkeypatch):
    from apps.imaging import objectstore

    first = put(b"first", hospital_key)
    directory = os.path.join(local_storage.location, "objects", first.key.split("/")[1])
    os.remove(os.path.join(local_storage.location, first.key))
    os.rmdir(directory)
    fixed = uuid.UUID(hex=first.key.split("/")[2][:2] + "0" * 30)
    monkeypatch.setattr(objectstore.uuid, "uuid4", lambda: fixed)
    second = put(b"second", hospital_key)
    assert second.key.split("/")[1] == first.key.split("/")[1]
    assert read_back(second, hospital_key) == b"second"
