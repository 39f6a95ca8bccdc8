"""Canonical report content, doctors' signing keys (Ed25519 by default, SM2 as the national-cryptography
option), and verification of stored versions."""

import base64
import hashlib
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction

from apps.imaging.keys import field_seal, field_unseal
from apps.reports.models import DoctorSigningKey, Report, ReportVersion
from apps.reports.sm2 import sm2_generate, sm2_sign, sm2_verify
from apps.tenants.models import Hospital

# The free-text content of a report; every version carries all of them.
TEXT_FIELDS = ("exam_description", "technique", "findings", "impression", "recommendation")
# What a diff compares: the text plus who reports and who reviews.
CONTENT_FIELDS = (*TEXT_FIELDS, "reporting_doctor", "reviewing_doctor")


def _user_id(user: Any) -> str | None:
    return str(user.public_id) if user is not None else None


def content_of(version: ReportVersion) -> dict[str, Any]:
    """The content fields of ``version``, doctors named by public id."""
    content: dict[str, Any] = {name: getattr(version, name) for name in TEXT_FIELDS}
    content["reporting_doctor"] = _user_id(version.reporting_doctor)
    content["reviewing_doctor"] = _user_id(version.reviewing_doctor)
    return content


def canonical_bytes(version: ReportVersion, report: Report) -> bytes:
    """What is hashed and signed: content, report public id, version number, status and reason,
    as JSON with sorted keys, no insignificant whitespace, UTF-8."""
    payload = {
        **content_of(version),
        "report": str(report.public_id),
        "number": version.number,
        "status": version.status,
        "reason": version.reason,
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def content_hash(version: ReportVersion, report: Report) -> str:
    return hashlib.sha256(canonical_bytes(version, report)).hexdigest()


def _seal_context(user: Any) -> str:
    return f"signing-key:{user.public_id}"


def signing_algorithm() -> str:
    """The algorithm of new keys: ``REPORT_SIGNING_ALGORITHM`` ("ed25519", the default, or "sm2").
    A doctor's existing key keeps its own algorithm until it is replaced."""
    configured = str(getattr(settings, "REPORT_SIGNING_ALGORITHM", "") or DoctorSigningKey.Algorithm.ED25519)
    if configured not in DoctorSigningKey.Algorithm.values:
        raise ImproperlyConfigured(f"REPORT_SIGNING_ALGORITHM must be one of {DoctorSigningKey.Algorithm.values}.")
    return configured


def signing_key_for(*, hospital: Hospital, user: Any) -> DoctorSigningKey:
    """The user's active key at ``hospital``, created on first use. Call inside the hospital's context."""
    key = DoctorSigningKey.objects.filter(hospital=hospital, user=user, is_active=True).first()
    if key is not None:
        return key
    algorithm = signing_algorithm()
    if algorithm == DoctorSigningKey.Algorithm.SM2:
        raw_private, public_key = sm2_generate()
    else:
        private = Ed25519PrivateKey.generate()
        raw_private = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        public_key = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    try:
        with transaction.atomic():
            return DoctorSigningKey.objects.create(
                hospital=hospital,
                user=user,
                algorithm=algorithm,
                public_key=public_key,
                private_key_sealed=field_seal(
                    hospital, base64.b64encode(raw_private).decode("ascii"), field=_seal_context(user)
                ),
            )
    except IntegrityError:
        # A concurrent first signature created it; use theirs.
        return DoctorSigningKey.objects.get(hospital=hospital, user=user, is_active=True)


def sign(key: DoctorSigningKey, message: bytes) -> bytes:
    raw = base64.b64decode(field_unseal(key.hospital, key.private_key_sealed, field=_seal_context(key.user)))
    if key.algorithm == DoctorSigningKey.Algorithm.SM2:
        return sm2_sign(raw, bytes(key.public_key), message)
    return Ed25519PrivateKey.from_private_bytes(raw).sign(message)


def version_verify(version: ReportVersion, report: Report) -> bool:
    """True when ``version`` still hashes to its stored digest and, if signed, the signature
    over its canonical bytes checks against the signer's public key."""
    message = canonical_bytes(version, report)
    if hashlib.sha256(message).hexdigest() != version.content_sha256:
        return False
    signed_statuses = (Report.Status.FINAL, Report.Status.AMENDED)
    if version.signature is None:
        return version.status not in signed_statuses and version.signed_by_id is None
    key = version.signing_key
    if key is None or key.user_id != version.signed_by_id or key.hospital_id != version.hospital_id:
        return False
    if key.algorithm == DoctorSigningKey.Algorithm.SM2:
        return sm2_verify(bytes(key.public_key), bytes(version.signature), message)
    try:
        Ed25519PublicKey.from_public_bytes(bytes(key.public_key)).verify(bytes(version.signature), message)
    except (InvalidSignature, ValueError):
        return False
    return True
