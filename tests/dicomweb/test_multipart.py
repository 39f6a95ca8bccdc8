"""multipart/related splitting: boundaries across read chunks, empty parts, bounded reads."""

import io
import tempfile
from typing import IO

import pytest

from apps.dicomweb.multipart import MultipartError, part_chunks, split_parts


def _body(parts: list[bytes], boundary: str = "b0undary", preamble: bytes = b"") -> io.BytesIO:
    data = preamble
    for part in parts:
        data += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + part + b"\r\n"
    data += f"--{boundary}--\r\n".encode()
    return io.BytesIO(data)


def _on_disk(body: io.BytesIO) -> IO[bytes]:
    handle = tempfile.TemporaryFile()  # noqa: SIM115 - the caller closes it (with)
    handle.write(body.getvalue())
    handle.seek(0)
    return handle


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 1024 * 1024])
def test_parts_are_found_whatever_the_read_size(chunk_size, monkeypatch):
    """A body in a file is searched a chunk at a time: a delimiter may straddle two reads."""
    import apps.dicomweb.multipart as multipart

    original = multipart._occurrences
    monkeypatch.setattr(
        multipart,
        "_occurrences",
        lambda body, needle, start, chunk_size_=chunk_size: original(body, needle, start, chunk_size_),
    )
    contents = [b"first", b"", b"x" * 5000 + b"\r\n--b0undaR" + b"y" * 10, b"\r\n"]
    with _on_disk(_body(contents, preamble=b"ignored preamble\r\n")) as body:
        parts = split_parts(body, "b0undary")
        assert [b"".join(part_chunks(body, part, chunk_size=3)) for part in parts] == contents
    assert all(part.content_type == "application/dicom" for part in parts)


def test_a_body_in_memory_is_split_as_the_same_body_in_a_file():
    contents = [b"first", b"", b"x" * 5000 + b"\r\n--b0undaR" + b"y" * 10, b"\r\n", b"x--b0undary" * 3]
    held = _body(contents, preamble=b"ignored preamble\r\n")
    with _on_disk(held) as on_disk:
        assert split_parts(held, "b0undary") == split_parts(on_disk, "b0undary")
    assert [b"".join(part_chunks(held, part)) for part in split_parts(held, "b0undary")] == contents


def test_a_missing_close_delimiter_is_refused():
    data = b"--b\r\nContent-Type: application/dicom\r\n\r\nno end"
    with pytest.raises(MultipartError):
        split_parts(io.BytesIO(data), "b")


def test_spooled_body_is_sealed_on_disk_and_reads_back():
    from apps.dicomweb.multipart import spool

    marker = b"PATIENT^SPOOL^MARKER"
    data = b"--b\r\n\r\n" + b"\0" * 5000 + marker + b"\0" * 3_000_000 + b"\r\n--b--\r\n"
    body = spool(io.BytesIO(data), max_size=len(data))
    try:
        disk = body._handle  # the temporary file under the reader
        disk.seek(0)
        on_disk = disk.read()
        assert marker not in on_disk and b"\0" * 64 not in on_disk
        assert body.read() == data
        [part] = split_parts(body, "b")
        assert (part.start, part.end) == (7, len(data) - 9)
    finally:
        body.close()


def test_spool_refuses_a_body_over_the_limit():
    from apps.dicomweb.multipart import spool

    with pytest.raises(MultipartError):
        spool(io.BytesIO(b"x" * 100), max_size=99)
