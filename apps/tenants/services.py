"""Hospitals and their API tokens."""

import hashlib
import secrets
from typing import Any

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from apps.audit.services import audit_record
from apps.audit.vocabulary import Action, EntryPoint
from apps.tenants.context import activate_hospital
from apps.tenants.models import ApiToken, Hospital

TOKEN_PREFIX = "yxy_"


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def hospital_create(
    *, code: str, name_zh: str, name_en: str = "", institution_name: str = "", actor: Any = None
) -> Hospital:
    """Create a hospital (the code is validated like the admin form does)."""
    hospital = Hospital(code=code, name_zh=name_zh, name_en=name_en, institution_name=institution_name or name_zh)
    hospital.full_clean()
    with transaction.atomic():
        hospital.save()
        audit_record(
            action=Action.HOSPITAL_CHANGED,
            actor=actor,
            hospital=hospital,
            entry_point=EntryPoint.COMMAND,
            object_type="hospital",
            object_id=str(hospital.public_id),
            details={"created": True},
        )
    return hospital


def api_token_issue(
    *,
    hospital: Hospital,
    name: str,
    scopes: list[str],
    actor: Any = None,
    entry_point: EntryPoint = EntryPoint.COMMAND,
    request: HttpRequest | None = None,
) -> tuple[ApiToken, str]:
    """Create a token for ``hospital``; return it with its secret, which is shown only this once.

    ``request`` is the back office's, so the event carries the address it was issued from (a
    token issued by the management command has none)."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        activate_hospital(hospital)
        token = ApiToken.objects.create(
            hospital=hospital, name=name, prefix=raw[:12], token_hash=token_hash(raw), scopes=scopes
        )
        audit_record(
            action=Action.API_TOKEN_ISSUED,
            request=request,
            actor=actor,
            hospital=hospital,
            entry_point=entry_point,
            object_type="api_token",
            object_id=str(token.public_id),
            details={"scopes": scopes, "name": name},
        )
    return token, raw


def api_token_revoke(
    *,
    token: ApiToken,
    actor: Any = None,
    entry_point: EntryPoint = EntryPoint.ADMIN,
    request: HttpRequest | None = None,
) -> None:
    """Revoke ``token`` (once; revoking a revoked token records nothing)."""
    with transaction.atomic():
        if ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now()):
            audit_record(
                action=Action.API_TOKEN_REVOKED,
                request=request,
                actor=actor,
                hospital=token.hospital,
                entry_point=entry_point,
                object_type="api_token",
                object_id=str(token.public_id),
            )
