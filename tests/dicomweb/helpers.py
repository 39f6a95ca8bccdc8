"""Building STOW-RS requests and reading WADO-RS responses in tests."""

import email.parser
import email.policy
import io
import uuid
from typing import Any

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGLosslessSV1

from apps.tenants.services import api_token_issue
from tests.imaging.dicom_factory import make_instance, to_part10_bytes


def multipart_related(parts: list[bytes], part_type: str = "application/dicom") -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = b""
    for part in parts:
        body += f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode() + part + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def read_multipart(content: bytes, content_type: str) -> list[bytes]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + content
    )
    return [part.get_payload(decode=True) for part in message.iter_parts()]


def token_for(hospital, scopes=("read", "write")) -> str:
    _token, raw = api_token_issue(hospital=hospital, name="test", scopes=list(scopes))
    return raw


def stow(client, hospital_code: str, token: str, parts: list[bytes], study_uid: str | None = None, **extra):
    body, content_type = multipart_related(parts)
    path = f"/api/{hospital_code}/dicom-web/studies" + (f"/{study_uid}" if study_uid else "")
    return client.generic("POST", path, body, content_type=content_type, HTTP_AUTHORIZATION=f"Bearer {token}", **extra)


# --- Image instances stored through STOW-RS and read back by URL -------------------------------


def ct_frames(frames: int, rows: int = 16, columns: int = 16) -> np.ndarray:
    """Distinct 12-bit values per frame: frame k (from 0) holds 800 + k * 800 + 6 * (0, 1, 2, ...)."""
    pixels = np.arange(rows * columns, dtype=np.uint16).reshape(rows, columns) % 256 * 6 + 800
    return np.stack([pixels + index * 800 for index in range(frames)])


def multiframe_ct(frames: int = 3, **attributes) -> tuple[Dataset, np.ndarray]:
    values = ct_frames(frames, attributes.get("Rows", 16), attributes.get("Columns", 16))
    ds = make_instance("CT", NumberOfFrames=frames, PixelData=values.astype("<u2").tobytes(), **attributes)
    return ds, values


def store_dataset(client, token, ds: Dataset, transfer_syntax: str | None = None, hospital: str = "first") -> str:
    data = to_part10_bytes(ds) if transfer_syntax is None else to_part10_bytes(ds, transfer_syntax)
    return store_part10(client, token, data, ds, hospital)


def store_part10(client, token, data: bytes, ds: Dataset, hospital: str = "first") -> str:
    response = stow(client, hospital, token, [data])
    assert response.status_code == 200, response.content
    study, series, instance = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    return f"/api/{hospital}/dicom-web/studies/{study}/series/{series}/instances/{instance}"


def api_get(client, token, url, accept_header: str | None = None, **params):
    extra = {"HTTP_ACCEPT": accept_header} if accept_header is not None else {}
    return client.get(url, params, HTTP_AUTHORIZATION=f"Bearer {token}", **extra)


def encapsulated_ct(
    frames: list[bytes], transfer_syntax: str = JPEGLosslessSV1, **attributes: Any
) -> tuple[bytes, Dataset]:
    """A CT with the given codestreams as its frames, in ``transfer_syntax`` (JPEG Lossless unless
    said; the codestreams are not checked), with ``attributes`` as make_instance takes them."""
    ds = make_instance("CT", NumberOfFrames=len(frames), PixelData=None, **attributes)
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue(), ds
