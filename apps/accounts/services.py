"""Staff sign-in, lockout and role management."""

import hashlib
import hmac
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.accounts.models import Membership, PlatformRoleGrant, User
from apps.accounts.roles import SEPARATED_DUTIES, HospitalRole, PlatformRole
from apps.audit.services import audit_record
from apps.audit.vocabulary import Action, EntryPoint, Outcome
from apps.tenants.models import Hospital

# Checked against when the username is unknown, so both paths take as long.
_DUMMY_PASSWORD_HASH = make_password("no such user, timing only")


def _username_digest(username: str) -> str:
    """A keyed digest of an unknown username: repeated tries of one name can be correlated
    without storing what was typed."""
    key = f"unknown-username:{settings.AUDIT_CHAIN_KEY}".encode()
    return hmac.new(key, username.encode("utf-8", "replace"), hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True)
class SignInResult:
    user: User | None
    error: str = ""


def _register_failure(*, user: User, request: HttpRequest, action: Action) -> None:
    user.failed_login_count += 1
    fields = ["failed_login_count"]
    if user.failed_login_count >= settings.LOGIN_FAILURE_LIMIT:
        user.locked_until = timezone.now() + timedelta(seconds=settings.LOGIN_LOCKOUT_SECONDS)
        user.failed_login_count = 0
        fields.append("locked_until")
        audit_record(
            action=Action.ACCOUNT_LOCKED, request=request, actor=user, hospital=user.home_hospital,
            outcome=Outcome.MINOR_FAILURE,
        )  # fmt: skip
    user.save(update_fields=fields)
    audit_record(action=action, request=request, actor=user, hospital=user.home_hospital, outcome=Outcome.MINOR_FAILURE)


def password_sign_in(*, request: HttpRequest, username: str, password: str) -> SignInResult:
    """First factor. Failures count toward a lockout; every attempt is audited.

    The message is the same for an unknown user, a wrong password and a locked account, so the
    form reveals nothing about which accounts exist.
    """
    generic = _("The username or password is incorrect, or the account is locked for now.")
    with transaction.atomic():
        user = User.objects.select_for_update().filter(username=username).first()
        if user is None:
            check_password(password, _DUMMY_PASSWORD_HASH)
            # What was typed is not kept: it is sometimes a password typed in the wrong field.
            audit_record(
                action=Action.LOGIN_FAILED,
                request=request,
                outcome=Outcome.MINOR_FAILURE,
                details={"reason": "unknown_user", "username_hmac": _username_digest(username)},
            )
            return SignInResult(None, generic)
        if user.is_locked():
            audit_record(
                action=Action.LOGIN_FAILED,
                request=request,
                actor=user,
                hospital=user.home_hospital,
                outcome=Outcome.MINOR_FAILURE,
                details={"reason": "locked"},
            )
            return SignInResult(None, generic)
        if not user.is_active or not user.check_password(password):
            _register_failure(user=user, request=request, action=Action.LOGIN_FAILED)
            return SignInResult(None, generic)
        return SignInResult(user)


def second_factor_required(user: User) -> bool:
    return bool(settings.STAFF_OTP_REQUIRED)


def confirmed_totp_device(user: User) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


def second_factor_verify(*, request: HttpRequest, user: User, device: TOTPDevice, token: str) -> bool:
    """Check a TOTP code; a wrong one counts toward the lockout and is audited."""
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user.pk)
        if user.is_locked():
            audit_record(
                action=Action.SECOND_FACTOR_FAILED,
                request=request,
                actor=user,
                hospital=user.home_hospital,
                outcome=Outcome.MINOR_FAILURE,
                details={"reason": "locked"},
            )
            return False
        if device.verify_token(token.strip()):
            return True
        _register_failure(user=user, request=request, action=Action.SECOND_FACTOR_FAILED)
        return False


def sign_in_completed(*, request: HttpRequest, user: User, second_factor: bool) -> None:
    User.objects.filter(pk=user.pk).update(failed_login_count=0, locked_until=None)
    audit_record(
        action=Action.LOGIN, request=request, actor=user, hospital=user.home_hospital,
        details={"second_factor": second_factor},
    )  # fmt: skip


def totp_device_confirm(*, request: HttpRequest, user: User, device: TOTPDevice) -> None:
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        audit_record(action=Action.SECOND_FACTOR_ENROLLED, request=request, actor=user, hospital=user.home_hospital)


def hospital_roles(user: Any, hospital: Hospital) -> set[str]:
    if not getattr(user, "is_authenticated", False):
        return set()
    return set(Membership.objects.filter(user=user, hospital=hospital).values_list("role", flat=True))


def platform_roles(user: Any) -> set[str]:
    if not getattr(user, "is_authenticated", False):
        return set()
    return set(PlatformRoleGrant.objects.filter(user=user).values_list("role", flat=True))


def membership_grant(
    *, actor: Any, hospital: Hospital, user: User, role: HospitalRole, request: HttpRequest | None = None
) -> Membership:
    """Give ``user`` a role at ``hospital`` (idempotent) and audit the change."""
    with transaction.atomic():
        membership, created = Membership.objects.get_or_create(hospital=hospital, user=user, role=role)
        if created:
            audit_record(
                action=Action.ROLE_GRANTED,
                request=request,
                actor=actor,
                hospital=hospital,
                entry_point=EntryPoint.ADMIN if request else EntryPoint.COMMAND,
                object_type="user",
                object_id=str(user.public_id),
                details={"role": str(role)},
            )
    return membership


def membership_revoke(*, actor: Any, membership: Membership, request: HttpRequest | None = None) -> None:
    with transaction.atomic():
        audit_record(
            action=Action.ROLE_REVOKED,
            request=request,
            actor=actor,
            hospital=membership.hospital,
            entry_point=EntryPoint.ADMIN if request else EntryPoint.COMMAND,
            object_type="user",
            object_id=str(membership.user.public_id),
            details={"role": membership.role},
        )
        membership.delete()


def platform_role_grant(
    *, actor: Any, user: User, role: PlatformRole, request: HttpRequest | None = None
) -> PlatformRoleGrant:
    """Give a platform role. Refuses a second of the separated duties (三员分立)."""
    with transaction.atomic():
        existing = platform_roles(user)
        if role in existing:
            return PlatformRoleGrant.objects.get(user=user, role=role)
        if role in SEPARATED_DUTIES and existing & SEPARATED_DUTIES:
            raise ValidationError(
                _("An account may hold only one of system, security and audit administrator."),
                code="separated_duties",
            )
        try:
            with transaction.atomic():
                grant = PlatformRoleGrant.objects.create(user=user, role=role)
        except IntegrityError as error:
            raise ValidationError(
                _("An account may hold only one of system, security and audit administrator."),
                code="separated_duties",
            ) from error
        audit_record(
            action=Action.ROLE_GRANTED,
            request=request,
            actor=actor,
            entry_point=EntryPoint.ADMIN if request else EntryPoint.COMMAND,
            object_type="user",
            object_id=str(user.public_id),
            details={"platform_role": str(role)},
        )
    return grant


def platform_role_revoke(*, actor: Any, grant: PlatformRoleGrant, request: HttpRequest | None = None) -> None:
    with transaction.atomic():
        audit_record(
            action=Action.ROLE_REVOKED,
            request=request,
            actor=actor,
            entry_point=EntryPoint.ADMIN if request else EntryPoint.COMMAND,
            object_type="user",
            object_id=str(grant.user.public_id),
            details={"platform_role": grant.role},
        )
        grant.delete()
