"""multipart/related bodies (RFC 2387) as STOW-RS sends and WADO-RS returns them.

Reading: the request body is spooled to a sealed temporary file and parts are located with
bounded reads, so a multi-GB body never sits in memory. Writing: parts are yielded as they are produced.
"""

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from email.utils import collapse_rfc2231_value
from typing import IO, Protocol

from apps.imaging.spool import sealed_spool

MAX_PART_HEADER = 8 * 1024
MAX_PARTS = 10_000
_BOUNDARY_OK = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{1,70}$")


class SupportsRead(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


class MultipartError(ValueError):
    pass


@dataclass(frozen=True)
class ContentType:
    media_type: str
    params: dict[str, str]


def parse_content_type(header: str) -> ContentType:
    message = Message()
    message["content-type"] = header
    params = {
        key.lower(): collapse_rfc2231_value(value) if isinstance(value, tuple) else str(value)
        for key, value in message.get_params(failobj=[])[1:]
    }
    return ContentType(message.get_content_type().lower(), params)


@dataclass(frozen=True)
class Part:
    headers: dict[str, str]
    start: int
    end: int

    @property
    def content_type(self) -> str:
        return parse_content_type(self.headers.get("content-type", "application/octet-stream")).media_type


def spool(stream: SupportsRead, *, max_size: int, memory_max_size: int = 0, chunk_size: int = 1024 * 1024) -> IO[bytes]:
    """The request body as a seekable file, refusing more than ``max_size`` bytes.

    A body of up to ``memory_max_size`` bytes is kept in memory. A larger one is copied to a
    temporary file sealed under a key held only in memory (``apps.imaging.spool.sealed_spool``):
    the body names patients, and a deleted temporary file stays readable on the disk.
    """

    def chunks() -> Iterator[bytes]:
        total = 0
        while chunk := stream.read(chunk_size):
            total += len(chunk)
            if total > max_size:
                raise MultipartError("too large")
            yield chunk

    pieces = chunks()
    held = io.BytesIO()
    for chunk in pieces:
        held.write(chunk)
        if held.tell() > memory_max_size:
            return sealed_spool(_then(held, pieces))  # type: ignore[return-value]
    held.seek(0)
    return held


def _then(held: io.BytesIO, rest: Iterator[bytes]) -> Iterator[bytes]:
    """What was held in memory, released as it is passed on, then the rest."""
    first = [held.getvalue()]
    held.close()
    while first:
        yield first.pop()
    yield from rest


def _headers(block: bytes) -> dict[str, str]:
    headers = {}
    for line in block.decode("latin-1").split("\r\n"):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise MultipartError("malformed part header")
        headers[name.strip().lower()] = value.strip()
    return headers


def _read_at(body: IO[bytes], offset: int, length: int) -> bytes:
    body.seek(offset)
    return body.read(length)


def _occurrences(body: IO[bytes], needle: bytes, start: int, chunk_size: int = 1024 * 1024) -> Iterator[int]:
    """Offsets of ``needle`` in ``body`` from ``start`` on, reading a chunk at a time (a body held
    in memory is searched where it is)."""
    if isinstance(body, io.BytesIO):
        held = body.getvalue()  # the buffer itself, not a copy, once writing is over
        position = held.find(needle, start)
        while position >= 0:
            yield position
            position = held.find(needle, position + 1)
        return
    offset = start  # file offset of window[0]
    read_position = start
    window = b""
    # Seek before every read: the caller reads elsewhere in the file between our yields.
    while chunk := _read_at(body, read_position, chunk_size):
        read_position += len(chunk)
        window += chunk
        position = window.find(needle)
        while position >= 0:
            yield offset + position
            position = window.find(needle, position + 1)
        # Keep what could be the start of a match that the next chunk completes.
        keep = len(needle) - 1
        if len(window) > keep:
            offset += len(window) - keep
            window = window[len(window) - keep :]


def split_parts(body: IO[bytes], boundary: str) -> list[Part]:
    """Locate the parts of a multipart body spooled to a file.

    One sequential pass with bounded reads: the body never has to fit in, or be mapped into,
    memory. The whole body is checked before any part is used, so a malformed request stores
    nothing.
    """
    if not _BOUNDARY_OK.match(boundary) or boundary.endswith(" "):
        raise MultipartError("invalid boundary")
    body.seek(0, 2)
    size = body.tell()
    if size == 0:
        raise MultipartError("empty body")
    delimiter = b"--" + boundary.encode("latin-1")
    # The first delimiter may open the body; every later one follows a CRLF.
    if _read_at(body, 0, len(delimiter)) == delimiter:
        first = 0
    else:
        first = next(_occurrences(body, b"\r\n" + delimiter, 0), -1)
        if first < 0:
            raise MultipartError("boundary not found")
        first += 2
    later = _occurrences(body, b"\r\n" + delimiter, first + len(delimiter))
    parts: list[Part] = []
    position = first
    while True:
        after = position + len(delimiter)
        if _read_at(body, after, 2) == b"--":
            break  # close delimiter
        if len(parts) >= MAX_PARTS:
            raise MultipartError(f"more than {MAX_PARTS} parts")
        block = _read_at(body, after, MAX_PART_HEADER)
        header_end = block.find(b"\r\n\r\n")
        if header_end < 0:
            raise MultipartError("part headers missing or too long")
        headers = _headers(block[:header_end])
        content_start = after + header_end + 4
        next_delimiter = next((q for q in later if q >= content_start - 2), -1)
        if next_delimiter < 0:
            raise MultipartError("missing close delimiter")
        parts.append(Part(headers, content_start, max(next_delimiter, content_start)))
        position = next_delimiter + 2
    return parts


def part_bytes(body: IO[bytes], part: Part) -> bytes:
    """The part's content in one read (no list of chunks beside the joined bytes)."""
    return _read_at(body, part.start, part.end - part.start)


def part_chunks(body: IO[bytes], part: Part, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
    for offset in range(part.start, part.end, chunk_size):
        yield _read_at(body, offset, min(chunk_size, part.end - offset))


def encode_part_header(boundary: str, content_type: str, extra: dict[str, str] | None = None) -> bytes:
    lines = [f"--{boundary}", f"Content-Type: {content_type}"]
    lines += [f"{name}: {value}" for name, value in (extra or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
