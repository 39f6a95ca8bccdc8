"""Durable, encrypted staging: received bytes reach the disk (fsync'd) before anything else happens.

Staged files are named by the staged object's random public id, never by anything in the data, and
hold the bytes as a sealed stream (apps.imaging.crypto): a data key of their own, wrapped by the
hospital's key (bound to the staged object's id), so a disk image or a backup of the staging
directory shows no patient data. The SHA-256 of the plaintext is taken while writing; readers get a
seekable file that decrypts one segment at a time, so objects of any size stay in bounded memory.
"""

import hashlib
import io
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from django.conf import settings

from apps.imaging.crypto import (
    AES_256_GCM,
    StreamDecryptor,
    StreamHeader,
    new_key,
    stream_encrypt,
    unwrap_key,
    wrap_key,
)
from apps.imaging.durable import write_durably


class StagingTooLarge(Exception):
    pass


def staging_path(public_id: uuid.UUID) -> Path:
    return Path(settings.STAGING_DIR) / public_id.hex[:2] / public_id.hex


def _object_id(public_id: uuid.UUID) -> str:
    return f"staging/{public_id.hex}"


def _counted(chunks: Iterable[bytes], digest: "hashlib._Hash", max_size: int, sizes: list[int]) -> Iterator[bytes]:
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > max_size:
            raise StagingTooLarge(size)
        digest.update(chunk)
        yield chunk
    sizes.append(size)


def staging_write(
    public_id: uuid.UUID, chunks: Iterable[bytes], *, hospital_key: bytes, max_size: int, new: bool = False
) -> tuple[int, str]:
    """Encrypt ``chunks`` into the staging file of ``public_id`` and fsync it; return the plaintext's
    size and SHA-256 (hashed on the way, so ingest need not read the file once more for it).

    Writes to a temporary name and renames, so a staged file is either complete or absent; ``new``:
    ``public_id`` is fresh and its row is inserted only after this returns, so the file is written
    under its own name at once (``write_durably(new=True)``: a rename and a directory change
    fewer); a crash half-way then leaves a partial file, but one no row names, which
    ``archive_sweep`` removes (nothing reads a staged file before its row exists).
    """
    suite: str = settings.STORAGE_CIPHER or AES_256_GCM
    data_key = new_key(suite)
    object_id = _object_id(public_id)
    header = StreamHeader(
        suite=suite,
        segment_size=settings.STORAGE_SEGMENT_SIZE,
        wrapped_key=wrap_key(kek=hospital_key, key=data_key, context=object_id.encode()),
    )
    digest = hashlib.sha256()
    sizes: list[int] = []
    plaintext = _counted(chunks, digest, max_size, sizes)
    write_durably(
        staging_path(public_id),
        stream_encrypt(chunks=plaintext, key=data_key, header=header, object_id=object_id),
        new=new,
    )
    return sizes[0], digest.hexdigest()


class PlaintextView(io.RawIOBase):
    """Base of read-only, seekable views of encrypted bytes' plaintext (``_size`` bytes long):
    the position bookkeeping; subclasses read."""

    _position = 0
    _size = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._position = base + offset
        return self._position


class _StagedReader(PlaintextView):
    """A read-only, seekable view of a staged file's plaintext; keeps one decrypted segment."""

    def __init__(self, handle: BinaryIO, decryptor: StreamDecryptor) -> None:
        self._handle = handle
        self._decryptor = decryptor
        self._size = decryptor.plaintext_size
        self._position = 0
        self._segment_index = -1
        self._segment = b""

    def _load(self, index: int) -> bytes:
        if index != self._segment_index:
            self._handle.seek(self._decryptor.segment_offset(index))
            sealed = self._handle.read(self._decryptor.segment_sealed_size(index))
            self._segment = self._decryptor.open(index=index, sealed=sealed)
            self._segment_index = index
        return self._segment

    def readinto(self, buffer: "bytearray | memoryview") -> int:  # type: ignore[override]
        """Fill ``buffer`` as far as the plaintext goes (across segments: never a short read before EOF)."""
        view = memoryview(buffer).cast("B")
        filled = 0
        segment_size = self._decryptor.header.segment_size
        while filled < len(view) and self._position < self._decryptor.plaintext_size:
            index, within = divmod(self._position, segment_size)
            segment = self._load(index)
            count = min(len(view) - filled, len(segment) - within)
            view[filled : filled + count] = memoryview(segment)[within : within + count]
            filled += count
            self._position += count
        return filled

    def read(self, size: int | None = -1) -> bytes:
        remaining = max(self._decryptor.plaintext_size - self._position, 0)
        wanted = remaining if size is None or size < 0 else min(size, remaining)
        buffer = bytearray(wanted)
        return bytes(buffer[: self.readinto(buffer)])

    def readall(self) -> bytes:
        return self.read(-1)

    def close(self) -> None:
        self._handle.close()
        self._segment = b""
        super().close()


def staging_open(public_id: uuid.UUID, *, hospital_key: bytes) -> BinaryIO:
    """Open the staged plaintext of ``public_id`` for reading (seekable; use it as a context manager).

    A file altered, cut short or not sealed for this hospital raises CryptoIntegrityError, at the
    call for its header and key, while reading for its segments.
    """
    object_id = _object_id(public_id)
    handle = open(staging_path(public_id), "rb")  # noqa: SIM115 - closed by the reader
    try:

        def read(offset: int, length: int) -> bytes:
            handle.seek(offset)
            return handle.read(length)

        header = StreamHeader.read_from(read)
        data_key = unwrap_key(kek=hospital_key, wrapped=header.wrapped_key, context=object_id.encode())
        return _reader(handle, header, data_key, object_id)
    except BaseException:
        handle.close()
        raise


def _reader(handle: BinaryIO, header: StreamHeader, data_key: bytes, object_id: str) -> BinaryIO:
    decryptor = StreamDecryptor(
        header=header, key=data_key, object_id=object_id, stored_size=os.fstat(handle.fileno()).st_size
    )
    # Not wrapped in io.BufferedReader: pydicom would take that for a file and re-read deferred
    # values from the file by its name, which holds ciphertext.
    return _StagedReader(handle, decryptor)  # type: ignore[return-value]


def staging_remove(public_id: uuid.UUID) -> None:
    staging_path(public_id).unlink(missing_ok=True)
