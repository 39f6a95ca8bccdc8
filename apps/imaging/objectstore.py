"""Encrypted object storage for DICOM objects, through Django's default storage (filesystem or S3).

Objects live under opaque keys, ``objects/<2 hex>/<32 hex>``, never anything derived from patient
data, because bucket listings, access logs and backups show keys in the clear. The bytes are in the
segmented format of :mod:`apps.imaging.crypto`, under a data key of their own that the hospital's key
wraps. The caller keeps the returned :class:`StoredObject` (on the instance's row): without its
wrapped key the stored bytes cannot be read.

The data key is wrapped after the bytes are encrypted, bound to the object's storage key, the SOP
Instance UID it was stored for and the SHA-256 of its bytes (:func:`_binding`). A row whose
stored-object columns name another instance's object (its key, its wrapped key, even its digest),
or an earlier version of its own instance under the current digest, cannot unwrap the data key: the
read fails before a byte of that object is returned. With every segment's AES-GCM tag verified (the
header fixes the length and the segment count, only the last segment carries the final flag), a
whole read then returns exactly the bytes whose digest the row records, without hashing them again;
the fixity sweep (``archive_verify``, :func:`object_verify`) still recomputes every digest.

Objects stored by releases before this binding (before 30 November 2026) have their data key bound
to the storage key alone. While ``STORAGE_LEGACY_KEY_WRAPPING`` is on (the default) they are still
read, with the SHA-256 check on every whole read, and the fixity sweep binds each once it passes.
Such a key ties nothing but the storage key, so a row copied whole from another legacy row would
read; once a full ``archive_verify`` has bound them all (none failed, none left unbound), turning
the setting off refuses every key wrapped that way, including old copies in backups.
"""

import hashlib
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from botocore.exceptions import ClientError
from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage, storages
from storages.backends.s3 import S3File

from apps.imaging.crypto import (
    AES_256_GCM,
    CiphertextRange,
    CryptoIntegrityError,
    Header,
    KeyUnwrapError,
    check_kek,
    ciphertext_range,
    decrypt_stream,
    encrypt_stream,
    new_key,
    unwrap_key,
    wrap_key,
)
from apps.imaging.durable import DeferredWrites, make_directory_fan, write_durably

OBJECT_KEY_PATTERN = re.compile(r"^objects/[0-9a-f]{2}/[0-9a-f]{32}$")
# How much of an object stored before the binding ``object_verify`` keeps for its caller to read
# the SOP Instance UID from (a header larger than this leaves the object unbound).
VERIFY_HEAD_SIZE = 8 * 1024 * 1024
# Ciphertext beyond this spills from memory to a temporary file while an upload is prepared.
_SPOOL_MAX_SIZE = 1024 * 1024


@dataclass(frozen=True)
class StoredObject:
    """What must be kept about a stored object to read it back and check it."""

    key: str
    suite: str
    wrapped_data_key: bytes
    segment_size: int
    plaintext_size: int
    stored_size: int
    sha256: str
    # The SOP Instance UID the object was stored for: part of what its data key is bound to.
    sop_instance_uid: str


# The columns a row (Instance, ReplacedInstanceVersion) keeps about its stored object.
STORED_OBJECT_FIELDS = ("storage_key", "cipher", "wrapped_data_key", "segment_size", "size", "stored_size", "sha256")


def instance_stored_object(instance: Any) -> StoredObject:
    """What the object store needs to read back and check the object of a row that keeps the
    ``STORED_OBJECT_FIELDS`` and has a ``sop_instance_uid`` (an Instance, or a
    ReplacedInstanceVersion, whose instance gives it)."""
    return StoredObject(
        key=instance.storage_key, suite=instance.cipher, wrapped_data_key=bytes(instance.wrapped_data_key),
        segment_size=instance.segment_size, plaintext_size=instance.size, stored_size=instance.stored_size,
        sha256=instance.sha256, sop_instance_uid=instance.sop_instance_uid,
    )  # fmt: skip


def _binding(*, key: str, sop_instance_uid: str, sha256: str) -> bytes:
    """The context a data key is wrapped under: the storage key, the SOP Instance UID and the SHA-256
    of the plaintext, each length-prefixed so that no two different triples encode alike."""
    parts = [b"yingxiang object v2", key.encode(), sop_instance_uid.encode(), sha256.encode()]
    return b"".join(len(part).to_bytes(2, "big") + part for part in parts)


def _storage() -> Storage:
    return storages["default"]


# The object directories of the filesystem storages this process has made sure of.
_fanned_out: set[str] = set()


def _fan_out(storage: FileSystemStorage) -> None:
    """Make the 256 directories that objects are spread over, once per process and storage, so that
    the first objects of a new archive do not each make one on the way (a directory sync apiece)."""
    root = storage.path("objects")
    if root not in _fanned_out:
        make_directory_fan(Path(root), (f"{number:02x}" for number in range(256)))
        _fanned_out.add(root)


def _check_object_key(key: str) -> None:
    if not OBJECT_KEY_PATTERN.match(key):
        raise ValueError(f"{key!r} is not an object key.")


def _chunks(source: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    while chunk := source.read(chunk_size):
        yield chunk


def _hashed_chunks(source: BinaryIO, digest: "hashlib._Hash", chunk_size: int) -> Iterator[bytes]:
    for chunk in _chunks(source, chunk_size):
        digest.update(chunk)
        yield chunk


def object_put(
    *,
    hospital_key: bytes,
    source: BinaryIO,
    size: int,
    sop_instance_uid: str,
    suite: str | None = None,
    segment_size: int | None = None,
    writes: DeferredWrites | None = None,
    sha256: str | None = None,
) -> StoredObject:
    """Encrypt ``size`` bytes from ``source`` under a fresh data key and store them under a new opaque key.

    On the filesystem storage the ciphertext is written straight to the object's file and fsync'd. On
    other storages it goes through a temporary file (spilling to disk past 1 MiB), because the storage
    API saves seekable files and S3 multipart uploads need known parts. Plaintext never touches the
    disk. A source holding more or fewer than ``size`` bytes raises ValueError and stores nothing.

    ``writes``: on the filesystem storage, the file's fsyncs run in the background and the caller
    waits for them (``DeferredWrites.wait``) before it commits the row that names the object.
    ``sha256``: the caller's digest of exactly these bytes, when it holds them in memory (they
    cannot change under it); otherwise the digest is taken while encrypting.
    ``sop_instance_uid``: the instance the object is stored for; with the digest, the data key is
    bound to it, and a read must name it again.
    """
    if not sop_instance_uid:
        raise ValueError("An object is stored for a SOP Instance UID; none was given.")
    check_kek(hospital_key)  # the key is wrapped only after the write: a wrong one fails first
    chosen_suite: str = suite or settings.STORAGE_CIPHER or AES_256_GCM
    chosen_segment_size: int = segment_size or settings.STORAGE_SEGMENT_SIZE
    object_id = uuid.uuid4().hex
    key = f"objects/{object_id[:2]}/{object_id}"
    data_key = new_key(chosen_suite)
    digest = hashlib.sha256()
    chunks = _chunks(source, chosen_segment_size) if sha256 else _hashed_chunks(source, digest, chosen_segment_size)
    pieces = encrypt_stream(
        chunks=chunks,
        key=data_key,
        suite=chosen_suite,
        object_id=key,
        segment_size=chosen_segment_size,
        plaintext_size=size,
    )
    storage = _storage()
    if isinstance(storage, FileSystemStorage):
        # Durable before the caller commits the row that names it: the staged copy goes then.
        _fan_out(storage)
        path = Path(storage.path(key))
        stored_size = writes.write(path, pieces, new=True) if writes else write_durably(path, pieces, new=True)
    else:
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_MAX_SIZE, dir=settings.FILE_UPLOAD_TEMP_DIR) as spool:
            for piece in pieces:
                spool.write(piece)
            stored_size = spool.tell()
            spool.seek(0)
            saved_key = storage.save(key, File(spool, name=key))
        if saved_key != key:
            # A renamed object would be unreadable: the data key and every segment are bound to the key.
            storage.delete(saved_key)
            raise RuntimeError(f"The storage saved {key!r} as {saved_key!r}; object keys must be kept exactly.")
    # Wrapped only now that the digest of what was encrypted is known: the key is bound to it.
    sha256 = sha256 or digest.hexdigest()
    binding = _binding(key=key, sop_instance_uid=sop_instance_uid, sha256=sha256)
    return StoredObject(
        key=key,
        suite=chosen_suite,
        wrapped_data_key=wrap_key(kek=hospital_key, key=data_key, context=binding),
        segment_size=chosen_segment_size,
        plaintext_size=size,
        stored_size=stored_size,
        sha256=sha256,
        sop_instance_uid=sop_instance_uid,
    )


def object_open(
    *, hospital_key: bytes, stored: StoredObject, start: int = 0, end: int | None = None, rehash: bool = False
) -> Iterator[bytes]:
    """Stream the plaintext bytes [start, end) of a stored object, checking every segment read.

    The data key is unwrapped before this returns, so a wrong hospital key, or a row that does not
    name the object's own key, SOP Instance UID and digest, fails at the call, before any byte is
    read; the storage is opened when iteration begins, and its size checked. ``rehash``:
    recompute the SHA-256 of a whole read and compare it with the recorded one (the fixity sweep);
    objects stored before the binding are always rehashed on a whole read. That check can only come
    after the last byte. Failures raise CryptoIntegrityError.
    ``end`` past the object is clamped.
    """
    _check_object_key(stored.key)
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"Invalid range [{start}, {end}).")
    data_key, bound = _data_key(hospital_key, stored)
    # Stored before the binding, the digest is what ties the row to the bytes: a whole read rehashes.
    rehash = rehash or not bound
    header = _header(stored)
    stop = header.plaintext_size if end is None else min(end, header.plaintext_size)
    return _plaintext_pieces(
        stored=stored, data_key=data_key, header=header, start=min(start, stop), end=stop, rehash=rehash
    )


def _header(stored: StoredObject) -> Header:
    """The header the object must carry, as its row records it."""
    return Header(suite=stored.suite, segment_size=stored.segment_size, plaintext_size=stored.plaintext_size)


def _stored_binding(stored: StoredObject) -> bytes:
    return _binding(key=stored.key, sop_instance_uid=stored.sop_instance_uid, sha256=stored.sha256)


def _data_key(hospital_key: bytes, stored: StoredObject) -> tuple[bytes, bool]:
    """The object's data key, and whether it is bound to the row's SOP Instance UID and digest
    (else it was stored before 30 November 2026, with its key bound to the storage key alone).
    A row that is not the object's own raises KeyUnwrapError either way."""
    binding = _stored_binding(stored)
    try:
        return unwrap_key(kek=hospital_key, wrapped=stored.wrapped_data_key, context=binding), True
    except KeyUnwrapError:
        if not settings.STORAGE_LEGACY_KEY_WRAPPING:
            raise
        return unwrap_key(kek=hospital_key, wrapped=stored.wrapped_data_key, context=stored.key.encode()), False


@dataclass(frozen=True)
class Verified:
    """What :func:`object_verify` found besides that the object passed."""

    # For an object stored before the binding: its data key wrapped under the binding, for the
    # caller to record on the row in place of the old one once it has checked ``head``.
    rewrapped: bytes | None = None
    # For such an object, its first plaintext bytes (``VERIFY_HEAD_SIZE``), where the SOP Instance UID
    # it was stored for can be read: the old wrapping did not vouch for it.
    head: bytes = b""


def object_verify(*, hospital_key: bytes, stored: StoredObject) -> Verified:
    """Read the whole object and check everything there is to check: the key's binding, the stored
    size, every segment's tag and, recomputed, the SHA-256 (failures raise CryptoIntegrityError).
    An object stored before the binding comes back with its key re-wrapped (:class:`Verified`)."""
    _check_object_key(stored.key)
    data_key, bound = _data_key(hospital_key, stored)
    header = _header(stored)
    pieces = _plaintext_pieces(
        stored=stored, data_key=data_key, header=header, start=0, end=header.plaintext_size, rehash=True
    )
    head = b""
    for piece in pieces:
        if not bound and len(head) < VERIFY_HEAD_SIZE:
            head += piece[: VERIFY_HEAD_SIZE - len(head)]
    if bound:
        return Verified()
    binding = _stored_binding(stored)
    return Verified(rewrapped=wrap_key(kek=hospital_key, key=data_key, context=binding), head=head)


def _plaintext_pieces(
    *, stored: StoredObject, data_key: bytes, header: Header, start: int, end: int, rehash: bool
) -> Iterator[bytes]:
    digest = hashlib.sha256() if rehash and start == 0 and end == header.plaintext_size else None
    with _storage().open(stored.key, "rb") as opened:
        if opened.size != stored.stored_size:
            raise CryptoIntegrityError(f"{stored.key} holds {opened.size} bytes, not the {stored.stored_size} stored.")
        read = _reader(opened, ciphertext_range(header=header, start=start, end=end))
        try:
            pieces = decrypt_stream(
                read=read, key=data_key, object_id=stored.key, start=start, end=end, expected_header=header
            )
            for piece in pieces:
                if digest is not None:
                    digest.update(piece)
                yield piece
        finally:
            if isinstance(read, _S3RangeReader):
                read.close()
    if digest is not None and digest.hexdigest() != stored.sha256:
        raise CryptoIntegrityError(f"{stored.key} does not match the SHA-256 recorded when it was stored.")


def _reader(opened: File, span: CiphertextRange) -> Callable[[int, int], bytes]:
    if isinstance(opened, S3File):
        return _S3RangeReader(opened.obj, span_start=span.offset, span_stop=span.offset + span.length)

    def read(offset: int, length: int) -> bytes:
        opened.seek(offset)
        return opened.read(length)

    return read


class _S3RangeReader:
    """Reads an S3 object by HTTP range, keeping one response streaming across consecutive reads.

    Reading through S3File would first download the whole object into memory (django-storages spools
    it with no size limit by default), which neither a 2 GB study nor a one-frame range can afford.
    """

    def __init__(self, s3_object: Any, *, span_start: int, span_stop: int) -> None:
        self._object = s3_object
        self._span_start = span_start
        self._span_stop = span_stop
        self._body: Any = None
        self._position = -1

    def __call__(self, offset: int, length: int) -> bytes:
        if self._body is None or offset != self._position:
            self.close()
            # A read that leads into the needed segments streams on to their end in the same request.
            leads_into_span = offset < self._span_stop and offset + length >= self._span_start
            last_byte = max(offset + length, self._span_stop if leads_into_span else 0) - 1
            try:
                response = self._object.get(Range=f"bytes={offset}-{last_byte}")
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") == "InvalidRange":
                    return b""  # past the end of a truncated object; the caller sees a short read
                raise
            self._body = response["Body"]
            self._position = offset
        parts = []
        remaining = length
        while remaining > 0 and (part := self._body.read(remaining)):
            parts.append(part)
            remaining -= len(part)
        data = b"".join(parts)
        self._position += len(data)
        return data

    def close(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None


def object_delete(key: str, *, writes: DeferredWrites | None = None) -> None:
    """Delete a stored object; only object keys are accepted, so a stray name cannot delete other files.
    ``writes``: the deferred writes it was put with, if any (its syncing is let finish first)."""
    _check_object_key(key)
    storage = _storage()
    if writes is not None and isinstance(storage, FileSystemStorage):
        writes.settle(Path(storage.path(key)))
    storage.delete(key)
