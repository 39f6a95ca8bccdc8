"""Building STOW-RS requests and reading WADO-RS responses in tests."""

import email.parser
import email.policy
import uuid

from apps.tenants.services import api_token_issue


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
