"""One DICOMweb client for both servers: STOW-RS, QIDO-RS, WADO-RS and rendered, over requests.

Each thread uses its own Session (keep-alive where the server allows it). Only the root URL and the
headers differ between the servers.
"""

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

MB = 1_000_000
_CHUNK = 1024 * 1024


class StowFailed(RuntimeError):
    pass


class FileMultipartBody:
    """A multipart/related body around one file, streamed with a Content-Length (not chunked)."""

    def __init__(self, path: Path, boundary: str) -> None:
        self.path = path
        self.head = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        self.tail = f"\r\n--{boundary}--\r\n".encode()
        self.size = path.stat().st_size

    def __len__(self) -> int:
        return len(self.head) + self.size + len(self.tail)

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        with open(self.path, "rb") as stream:
            while chunk := stream.read(_CHUNK):
                yield chunk
        yield self.tail


def multipart_body(instances: list[bytes], boundary: str) -> bytes:
    parts = []
    for data in instances:
        parts.append(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
        parts.append(data)
        parts.append(b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts)


class DicomWeb:
    def __init__(self, name: str, root: str, headers: dict[str, str] | None = None) -> None:
        self.name = name
        self.root = root.rstrip("/")
        self.headers = dict(headers or {})
        self._local = threading.local()
        self._lock = threading.Lock()
        self.warnings = 0  # STOW-RS responses that stored everything with warnings (202)

    @property
    def session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers.update(self.headers)
            self._local.session = session
        return session

    # --- STOW-RS ---------------------------------------------------------------------------
    def stow(
        self,
        instances: list[bytes] | None = None,
        *,
        body: Any = None,
        boundary: str | None = None,
        timeout: float = 600,
    ) -> dict[str, Any]:
        boundary = boundary or uuid.uuid4().hex
        data = body if body is not None else multipart_body(instances or [], boundary)
        response = self.session.post(
            f"{self.root}/studies",
            data=data,
            headers={
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                "Accept": "application/dicom+json",
            },
            timeout=timeout,
        )
        # 202 without failures: stored, with warnings (our series-level QC, for example).
        if response.status_code not in {200, 202}:
            raise StowFailed(f"{self.name}: STOW-RS answered {response.status_code}: {response.text[:300]}")
        result = response.json()
        if response.status_code == 202:
            with self._lock:
                self.warnings += 1
        if result.get("00081198", {}).get("Value"):  # FailedSOPSequence (Orthanc sends it empty)
            raise StowFailed(f"{self.name}: STOW-RS reported failures: {str(result['00081198'])[:300]}")
        return result

    def stow_file(self, path: Path, timeout: float = 3600) -> dict[str, Any]:
        boundary = uuid.uuid4().hex
        return self.stow(body=FileMultipartBody(path, boundary), boundary=boundary, timeout=timeout)

    # --- QIDO-RS ---------------------------------------------------------------------------
    def qido(self, path: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        response = self.session.get(
            f"{self.root}/{path.lstrip('/')}",
            params=params,
            headers={"Accept": "application/dicom+json"},
            timeout=120,
        )
        if response.status_code == 204:  # Orthanc answers an empty match with no content
            return []
        response.raise_for_status()
        return response.json() if response.content else []

    def instance_count(self, study_uid: str) -> int:
        return len(self.qido(f"studies/{study_uid}/instances", {"limit": 1000}))

    # --- WADO-RS ---------------------------------------------------------------------------
    def retrieve(self, path: str) -> int:
        """GET a study/series/instance as multipart/related application/dicom; return bytes read."""
        response = self.session.get(
            f"{self.root}/{path.lstrip('/')}",
            headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
            stream=True,
            timeout=600,
        )
        response.raise_for_status()
        total = 0
        for chunk in response.iter_content(_CHUNK):
            total += len(chunk)
        return total

    def rendered(self, path: str) -> tuple[int, int, str]:
        response = self.session.get(
            f"{self.root}/{path.lstrip('/')}/rendered", headers={"Accept": "image/jpeg"}, timeout=120
        )
        return response.status_code, len(response.content), response.headers.get("Content-Type", "")
