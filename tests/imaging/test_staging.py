"""Staging at rest: staged files hold a sealed stream, never the DICOM in the clear, and still ingest."""

import hashlib
import io
import os
import tracemalloc
import uuid

import pytest

from apps.imaging.crypto import TAG_SIZE, CryptoIntegrityError, KeyUnwrapError
from apps.imaging.ingest import staged_object_create, staged_object_process
from apps.imaging.keys import hospital_key
from apps.imaging.models import Instance, StagedObject
from apps.imaging.objectstore import StoredObject, object_open
from apps.imaging.staging import staging_open, staging_path, staging_write
from apps.tenants.context import hospital_context
from tests.imaging.dicom_factory import make_ct_slice

PATIENT_NAME = "STAGING^SECRET^NAME"
PATIENT_ID = "STAGEID-734921"
SEGMENT = 1024


@pytest.fixture
def staging_dir(settings, tmp_path):
    settings.STAGING_DIR = tmp_path / "staging"
    settings.STORAGE_SEGMENT_SIZE = SEGMENT
    return settings.STAGING_DIR


@pytest.fixture
def kek() -> bytes:
    return os.urandom(32)


def write(data: bytes, kek: bytes, *, chunk: int = 700) -> uuid.UUID:
    public_id = uuid.uuid4()
    chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    assert staging_write(public_id, chunks, hospital_key=kek, max_size=1 << 40) == (
        len(data),
        hashlib.sha256(data).hexdigest(),
    )
    return public_id


def read(public_id: uuid.UUID, kek: bytes) -> bytes:
    with staging_open(public_id, hospital_key=kek) as source:
        return source.read()


# --- The sealed staging file, without a database ----------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT, 3 * SEGMENT + 17])
def test_staged_bytes_read_back_exactly(staging_dir, kek: bytes, size: int):
    data = bytes((i * 7) % 256 for i in range(size))
    assert read(write(data, kek), kek) == data


def test_staged_file_holds_no_plaintext(staging_dir, kek: bytes):
    data = b"\0" * 300 + b"PATIENT^ZHANG^SAN" + b"\0" * 3000
    stored = staging_path(write(data, kek)).read_bytes()
    assert b"PATIENT^ZHANG^SAN" not in stored
    assert b"\0" * 64 not in stored


def test_staged_reader_seeks_across_segments(staging_dir, kek: bytes):
    data = bytes((i * 31) % 256 for i in range(5 * SEGMENT + 3))
    with staging_open(write(data, kek), hospital_key=kek) as source:
        source.seek(2 * SEGMENT - 5)
        assert source.read(10) == data[2 * SEGMENT - 5 : 2 * SEGMENT + 5]
        source.seek(-4, io.SEEK_END)
        assert source.read(100) == data[-4:]
        source.seek(3)
        assert source.tell() == 3
        assert source.read(2) == data[3:5]


def test_staged_file_opens_only_with_its_hospital_key(staging_dir, kek: bytes):
    public_id = write(b"x" * 3000, kek)
    with pytest.raises(KeyUnwrapError):
        staging_open(public_id, hospital_key=os.urandom(32))


def test_staged_file_renamed_to_another_id_does_not_open(staging_dir, kek: bytes):
    public_id, other = write(b"x" * 3000, kek), uuid.uuid4()
    staging_path(other).parent.mkdir(parents=True, exist_ok=True)
    staging_path(public_id).rename(staging_path(other))
    with pytest.raises(KeyUnwrapError):
        staging_open(other, hospital_key=kek)


def test_staged_file_cut_at_a_segment_boundary_is_detected(staging_dir, kek: bytes):
    public_id = write(bytes(3 * SEGMENT + 10), kek)
    path = staging_path(public_id)
    stored = path.read_bytes()
    path.write_bytes(stored[: len(stored) - (10 + TAG_SIZE)])  # drop the short final segment whole
    with pytest.raises(CryptoIntegrityError):
        read(public_id, kek)


def test_flipped_bit_in_a_staged_file_is_detected(staging_dir, kek: bytes):
    public_id = write(bytes(2 * SEGMENT), kek)
    path = staging_path(public_id)
    stored = bytearray(path.read_bytes())
    stored[-SEGMENT] ^= 1
    path.write_bytes(bytes(stored))
    with pytest.raises(CryptoIntegrityError):
        read(public_id, kek)


def test_large_staged_object_streams_in_bounded_memory(settings, tmp_path, kek: bytes):
    settings.STAGING_DIR = tmp_path / "staging"
    size, block = 64 * 1024 * 1024, bytes(range(256)) * 4096
    chunks = (block for _ in range(size // len(block)))
    tracemalloc.start()
    try:
        public_id = uuid.uuid4()
        staging_write(public_id, chunks, hospital_key=kek, max_size=size)
        digest, received = hashlib.sha256(), 0
        with staging_open(public_id, hospital_key=kek) as source:
            while piece := source.read(1024 * 1024):
                digest.update(piece)
                received += len(piece)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (received, digest.hexdigest()) == (size, hashlib.sha256(block * (size // len(block))).hexdigest())
    assert peak < 16 * 1024 * 1024


# --- Through the ingest pipeline ----------------------------------------------------------------------


@pytest.fixture
def blob() -> bytes:
    return make_ct_slice(PatientName=PATIENT_NAME, PatientID=PATIENT_ID)


def test_staged_object_holds_none_of_the_patient_data(world, local_storage, staging_dir, blob: bytes):
    hospital = world.first.hospital
    assert PATIENT_NAME.encode() in blob and PATIENT_ID.encode() in blob
    with hospital_context(hospital):
        staged = staged_object_create(hospital=hospital, source="stow", chunks=[blob])
    stored = staging_path(staged.public_id).read_bytes()
    assert PATIENT_NAME.encode() not in stored
    assert PATIENT_ID.encode() not in stored
    assert b"DICM" not in stored
    assert (staged.size, staged.sha256) == (len(blob), hashlib.sha256(blob).hexdigest())


def test_encrypted_staging_ingests_byte_identical(world, local_storage, staging_dir, blob: bytes):
    hospital = world.first.hospital
    with hospital_context(hospital):
        staged = staged_object_create(hospital=hospital, source="stow", chunks=[blob])
        outcome = staged_object_process(staged=staged)
        assert outcome.status == StagedObject.Status.STORED, outcome.staged.error_code
        instance = Instance.objects.get(pk=outcome.staged.instance_id)
        assert instance.sha256 == hashlib.sha256(blob).hexdigest()
        read_back = b"".join(object_open(hospital_key=hospital_key(hospital), stored=_stored(instance)))
    assert read_back == blob
    assert outcome.parsed is not None and outcome.parsed.patient_name == PATIENT_NAME


def test_a_staged_object_left_received_is_ingested_on_retry(world, local_storage, staging_dir, blob: bytes):
    hospital = world.first.hospital
    with hospital_context(hospital):
        public_id = staged_object_create(hospital=hospital, source="upload", chunks=[blob]).public_id
    # A crash between staging and processing: a later task loads the row afresh and carries on.
    with hospital_context(hospital):
        staged = StagedObject.objects.get(public_id=public_id)
        assert staged.status == StagedObject.Status.RECEIVED
        assert staged_object_process(staged=staged).status == StagedObject.Status.STORED


def test_a_tampered_staged_file_is_rejected_with_a_reason(world, local_storage, staging_dir, blob: bytes):
    hospital = world.first.hospital
    with hospital_context(hospital):
        staged = staged_object_create(hospital=hospital, source="upload", chunks=[blob])
    path = staging_path(staged.public_id)
    stored = bytearray(path.read_bytes())
    stored[-20] ^= 1
    path.write_bytes(bytes(stored))
    with hospital_context(hospital):
        outcome = staged_object_process(staged=staged)
        assert (outcome.status, outcome.staged.error_code) == (StagedObject.Status.REJECTED, "STAGING_DAMAGED")
        assert not Instance.objects.exists()


def _stored(instance: Instance) -> StoredObject:
    return StoredObject(
        key=instance.storage_key,
        suite=instance.cipher,
        wrapped_data_key=bytes(instance.wrapped_data_key),
        segment_size=instance.segment_size,
        plaintext_size=instance.size,
        stored_size=instance.stored_size,
        sha256=instance.sha256,
        sop_instance_uid=instance.sop_instance_uid,
    )
