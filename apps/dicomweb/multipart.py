"""multipart/related bodies (RFC 2387) as STOW-RS sends and WADO-RS returns them.

Reading: the request body is spooled to a temporary file and parts are located with mmap, so a
multi-GB body never sits in memory. Writing: parts are yielded as they are produced.
"""

import mmap
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from email.utils import collapse_rfc2231_value
from typing import IO, Protocol

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


def spool(stream: SupportsRead, *, max_size: int, chunk_size: int = 1024 * 1024) -> IO[bytes]:
    """Copy the request body to a temporary file, refusing more than ``max_size`` bytes."""
    spooled = tempfile.TemporaryFile()  # noqa: SIM115 - returned to the caller, who closes it
    total = 0
    while chunk := stream.read(chunk_size):
        total += len(chunk)
        if total > max_size:
            spooled.close()
            raise MultipartError("too large")
        spooled.write(chunk)
    spooled.seek(0)
    return spooled


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


def split_parts(body: IO[bytes], boundary: str) -> tuple[mmap.mmap | None, list[Part]]:
    """Locate the parts of a multipart body. Returns the mapping (close it) and the parts."""
    if not _BOUNDARY_OK.match(boundary) or boundary.endswith(" "):
        raise MultipartError("invalid boundary")
    body.seek(0, 2)
    if body.tell() == 0:
        raise MultipartError("empty body")
    mapped = mmap.mmap(body.fileno(), 0, access=mmap.ACCESS_READ)
    delimiter = b"--" + boundary.encode("latin-1")
    parts: list[Part] = []
    position = mapped.find(delimiter)
    if position < 0:
        mapped.close()
        raise MultipartError("boundary not found")
    while True:
        after = position + len(delimiter)
        if mapped[after : after + 2] == b"--":
            break  # close delimiter
        if len(parts) >= MAX_PARTS:
            mapped.close()
            raise MultipartError(f"more than {MAX_PARTS} parts")
        header_end = mapped.find(b"\r\n\r\n", after, after + MAX_PART_HEADER)
        if header_end < 0:
            mapped.close()
            raise MultipartError("part headers missing or too long")
        headers = _headers(mapped[after:header_end])
        content_start = header_end + 4
        next_delimiter = mapped.find(b"\r\n" + delimiter, content_start)
        if next_delimiter < 0:
            mapped.close()
            raise MultipartError("missing close delimiter")
        parts.append(Part(headers, content_start, next_delimiter))
        position = next_delimiter + 2
    return mapped, parts


def part_chunks(mapped: mmap.mmap, part: Part, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
    for offset in range(part.start, part.end, chunk_size):
        yield mapped[offset : min(offset + chunk_size, part.end)]


def encode_part_header(boundary: str, content_type: str, extra: dict[str, str] | None = None) -> bytes:
    lines = [f"--{boundary}", f"Content-Type: {content_type}"]
    lines += [f"{name}: {value}" for name, value in (extra or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
