"""The public verification page behind a printed report's QR code.

Whoever holds the printed report may check that it is genuine: the page confirms the signature,
the version and its content hash, and says whether a later version supersedes it. It shows
nothing the printout does not already show, and no report text at all.
"""

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils.crypto import salted_hmac

from apps.audit.services import audit_record
from apps.audit.vocabulary import Action, EntryPoint
from apps.reports.models import Report, ReportVerificationToken, ReportVersion
from apps.reports.signing import version_verify
from apps.tenants.context import activate_hospital, bind_token_hash
from apps.tenants.models import Hospital

# base64url of 32 bytes, no padding.
TOKEN_LENGTH = 43


def _token_of(version: ReportVersion) -> str:
    digest = salted_hmac("apps.reports.verification", str(version.public_id), algorithm="sha256").digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def verification_token_for(version: ReportVersion) -> str:
    """The version's verification token (256 bits), recorded on first use. Call inside the
    version's hospital context."""
    token = _token_of(version)
    digest = _hash(token)
    if not ReportVerificationToken.objects.filter(hospital_id=version.hospital_id, token_hash=digest).exists():
        try:
            with transaction.atomic():
                ReportVerificationToken.objects.create(
                    hospital_id=version.hospital_id, version=version, token_hash=digest
                )
        except IntegrityError:
            pass  # A concurrent print recorded it first.
    return token


def verification_path(version: ReportVersion) -> str:
    return reverse("reports_public:verify", args=[verification_token_for(version)])


@dataclass(frozen=True)
class VerificationResult:
    hospital: Hospital
    version: ReportVersion
    signature_valid: bool
    latest_number: int
    report_status: str

    @property
    def superseded(self) -> bool:
        return self.latest_number != self.version.number

    @property
    def signed(self) -> bool:
        return self.version.signature is not None

    @property
    def entered_in_error(self) -> bool:
        return self.report_status == Report.Status.ENTERED_IN_ERROR


def report_verify_token(*, token: str, request: HttpRequest | None = None) -> VerificationResult | None:
    """Find the version a token names and check it; None for an unknown token (the caller 404s).

    Must run inside a transaction: the lookup binds the token's hash, then the hospital, to the
    database session. Audited as REPORT_VERIFIED, with the outcome.
    """
    if len(token) != TOKEN_LENGTH or not token.isascii():
        return None
    digest = _hash(token)
    bind_token_hash(digest)
    row: Any = ReportVerificationToken.objects.select_related("hospital").filter(token_hash=digest).first()
    if row is None:
        return None
    hospital = row.hospital
    activate_hospital(hospital)
    version = ReportVersion.objects.select_related("report", "signed_by", "signing_key").get(
        hospital=hospital, pk=row.version_id
    )
    result = VerificationResult(
        hospital=hospital,
        version=version,
        signature_valid=version_verify(version, version.report),
        latest_number=version.report.current_version,
        report_status=version.report.status,
    )
    audit_record(
        action=Action.REPORT_VERIFIED,
        request=request,
        actor_name="verification-link",
        hospital=hospital,
        entry_point=EntryPoint.PORTAL,
        object_type="report",
        object_id=str(version.report.public_id),
        details={
            "version": version.number,
            "verified": result.signature_valid,
            "current_version": result.latest_number,
            "sha256": version.content_sha256,
        },
    )
    return result
