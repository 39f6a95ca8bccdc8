"""Sealed spooling of bytes that arrive piece by piece: uploaded files and C-STORE data sets.

Django's ``TemporaryFileUploadHandler`` and pynetdicom's chunked C-STORE receive write what they
receive in plaintext to the temporary directory, and a crash leaves it there. Here each file is
spooled to an anonymous temporary file as a sealed stream (the staged files' format) under a data
key held only in this process's memory, so neither the file nor its remains after a crash can be
read by anyone; readers get a seekable view of the plaintext that decrypts one segment at a time.

Upload handlers and pynetdicom push their bytes through :class:`SealedSpool`'s ``write()``;
:func:`sealed_spool` takes them from an iterable (a STOW-RS request body).
"""

import os
import tempfile
import uuid
from collections.abc import Iterable
from typing import Any, BinaryIO

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler

from apps.imaging.crypto import AES_256_GCM, StreamHeader, _SegmentCipher, new_key, wrap_key
from apps.imaging.staging import _reader


class SealedSpool:
    """A write-only anonymous temporary file that seals what is written to it.

    ``write()`` as often as needed, then ``finish()`` for a seekable reader of the plaintext (which
    owns the file from then on; closing it deletes the file). ``close()`` before ``finish()`` drops
    everything. At most one segment of plaintext is held in memory.
    """

    def __init__(self) -> None:
        self._key = new_key(AES_256_GCM)
        self._object_id = f"spool/{uuid.uuid4().hex}"
        # The format carries a wrapped key; this one is wrapped by a key forgotten at once.
        self._header = StreamHeader(
            suite=AES_256_GCM,
            segment_size=settings.STORAGE_SEGMENT_SIZE,
            wrapped_key=wrap_key(kek=os.urandom(32), key=self._key, context=self._object_id.encode()),
        )
        header_bytes = self._header.to_bytes()
        self._cipher = _SegmentCipher(
            suite=AES_256_GCM, key=self._key, object_id=self._object_id, header_bytes=header_bytes
        )
        # Anonymous (O_TMPFILE where the system has it): nothing to clean up after a crash.
        self._handle: BinaryIO | None = tempfile.TemporaryFile(dir=settings.FILE_UPLOAD_TEMP_DIR)  # noqa: SIM115
        self._handle.write(header_bytes)
        self._buffer = bytearray()
        self._index = 0
        self.size = 0

    def _open_handle(self) -> BinaryIO:
        if self._handle is None:
            raise ValueError("The spool is finished or closed.")
        return self._handle

    def write(self, data: bytes) -> int:
        handle = self._open_handle()
        self._buffer += data
        self.size += len(data)
        segment_size = self._header.segment_size
        # A full segment is sealed only once a byte after it has arrived: the last one is sealed final.
        while len(self._buffer) > segment_size:
            handle.write(
                self._cipher.seal(index=self._index, final=False, plaintext=bytes(self._buffer[:segment_size]))
            )
            del self._buffer[:segment_size]
            self._index += 1
        return len(data)

    def finish(self) -> BinaryIO:
        """Seal the last segment and return a seekable reader of everything written."""
        handle = self._open_handle()
        handle.write(self._cipher.seal(index=self._index, final=True, plaintext=bytes(self._buffer)))
        handle.flush()
        self._buffer = bytearray()
        self._handle = None
        return _reader(handle, self._header, self._key, self._object_id)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        self._buffer = bytearray()


def sealed_spool(chunks: Iterable[bytes]) -> BinaryIO:
    """Spool ``chunks`` sealed and return a seekable reader of the plaintext (close it to delete
    the file). For bytes that must reach the disk only for a while (a request body being split)."""
    spool = SealedSpool()
    try:
        for chunk in chunks:
            spool.write(chunk)
        return spool.finish()
    except BaseException:
        spool.close()
        raise


class SealedUploadedFile(UploadedFile):
    """An uploaded file kept in a sealed spool; reads and seeks decrypt (closing deletes it)."""

    def open(self, mode: str | None = None, *args: Any, **kwargs: Any) -> "SealedUploadedFile":
        if self.file is None or self.closed:
            raise ValueError("The uploaded file has been closed and its sealed spool deleted.")
        self.file.seek(0)
        return self


class SealedFileUploadHandler(FileUploadHandler):
    """Spools each uploaded file sealed, in place of Django's ``TemporaryFileUploadHandler``.

    List it after ``MemoryFileUploadHandler`` in ``FILE_UPLOAD_HANDLERS``: small requests stay in
    memory, everything else reaches the disk only encrypted.
    """

    _spool: SealedSpool | None = None

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self._spool = SealedSpool()

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        assert self._spool is not None
        self._spool.write(raw_data)
        return None

    def file_complete(self, file_size: int) -> SealedUploadedFile:
        assert self._spool is not None
        reader = self._spool.finish()
        self._spool = None
        return SealedUploadedFile(
            file=reader,
            name=self.file_name,
            content_type=self.content_type,
            size=file_size,
            charset=self.charset,
            content_type_extra=self.content_type_extra,
        )

    def upload_interrupted(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None
