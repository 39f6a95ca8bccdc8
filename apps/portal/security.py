"""Secrets of patient access: random tokens and codes, their keyed hashes, and rate limits.

Nothing here stores a phone number, code or token in clear: counters and rows carry HMACs keyed
with a key derived from SECRET_KEY.
"""

import hashlib
import hmac
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.portal.models import Throttle
from apps.tenants.models import Hospital

TOKEN_BYTES = 24  # 192 bits; at least 128 are required


def _key(purpose: str) -> bytes:
    return hashlib.sha256(f"portal:{purpose}:{settings.SECRET_KEY}".encode()).digest()


def keyed_hash(purpose: str, value: str) -> str:
    return hmac.new(_key(purpose), value.encode(), hashlib.sha256).hexdigest()


def new_token() -> str:
    """An opaque, URL-safe token of 192 random bits."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    return keyed_hash("token", token)


def new_code() -> str:
    """Six random digits."""
    return f"{secrets.randbelow(1_000_000):06d}"


def code_hash(challenge_id: str, code: str) -> str:
    return keyed_hash("code", f"{challenge_id}:{code}")


def codes_match(expected_hash: str, challenge_id: str, code: str) -> bool:
    return hmac.compare_digest(expected_hash, code_hash(challenge_id, code))


def ascii_folded(raw: str) -> str:
    """NFKC-folded: the full-width digits and letters of a Chinese keyboard (U+FF10 to U+FF19,
    U+FF38 for the X of an ID number) become ASCII, so what a patient types compares with what the
    hospital holds."""
    return unicodedata.normalize("NFKC", raw)


def secrets_equal(expected: str, given: str) -> bool:
    """Constant-time comparison of two strings of any characters (``hmac.compare_digest``
    raises TypeError on non-ASCII ``str``, which would be a 500 on odd input)."""
    return hmac.compare_digest(expected.encode(), given.encode())


def normalize_phone(raw: str) -> str:
    """ASCII digits only, without a +86 / 0086 country prefix; empty if it cannot be a phone number."""
    digits = "".join(ch for ch in ascii_folded(raw) if "0" <= ch <= "9")
    for prefix in ("0086", "86"):
        if len(digits) > 11 and digits.startswith(prefix):
            digits = digits[len(prefix) :]
    return digits if 7 <= len(digits) <= 15 else ""


def phone_key(hospital: Hospital, phone: str) -> str:
    """The rate-limit key of a phone number at one hospital (whether or not a patient has it)."""
    return keyed_hash("phone", f"{hospital.public_id}:{phone}")


@dataclass(frozen=True)
class Limit:
    scope: str
    count: int
    window_seconds: int
    lock_seconds: int = 0


def _row(key: str) -> Throttle:
    now = timezone.now()
    row, _created = Throttle.objects.select_for_update().get_or_create(
        key=key, defaults={"window_started_at": now, "count": 0}
    )
    return row


def throttle_hit(limit: Limit, value: str) -> bool:
    """Count one event for ``value``; False when the limit is exceeded or the key is locked.

    Past the limit the key is locked for ``lock_seconds`` when given.
    """
    key = keyed_hash("throttle", f"{limit.scope}:{value}")
    now = timezone.now()
    with transaction.atomic():
        row = _row(key)
        if row.locked_until and row.locked_until > now:
            return False
        if row.locked_until:
            # A lock that ran out starts a fresh count; else the next event would lock again.
            row.locked_until = None
            row.window_started_at = now
            row.count = 0
        if row.window_started_at <= now - timedelta(seconds=limit.window_seconds):
            row.window_started_at = now
            row.count = 0
        row.count += 1
        allowed = row.count <= limit.count
        if not allowed and limit.lock_seconds:
            row.locked_until = now + timedelta(seconds=limit.lock_seconds)
        row.save()
        return allowed


def throttle_locked(scope: str, value: str) -> bool:
    key = keyed_hash("throttle", f"{scope}:{value}")
    row = Throttle.objects.filter(key=key).only("locked_until").first()
    return bool(row and row.locked_until and row.locked_until > timezone.now())


def phone_limits() -> tuple[Limit, Limit]:
    """(codes sent to one phone per hour, wrong codes before that phone is locked)."""
    return (
        Limit("phone-codes", settings.PORTAL_CODES_PER_PHONE_PER_HOUR, 3600),
        Limit("phone-failures", settings.PORTAL_FAILURES_BEFORE_LOCK, 3600, settings.PORTAL_LOCKOUT_SECONDS),
    )


def phone_daily_limit() -> Limit:
    """Codes sent to one phone per day, so the hourly limit cannot add up to a stream of SMS."""
    return Limit("phone-codes-day", getattr(settings, "PORTAL_CODES_PER_PHONE_PER_DAY", 10), 24 * 3600)


def ip_limits() -> tuple[Limit, Limit]:
    """(codes requested from one client address per hour, wrong codes from it before it is locked).

    Generous, because one address is often many patients (a hospital's Wi-Fi, a carrier's NAT)
    and a lock refuses all of them; the per-phone limits are what protect each patient."""
    return (
        Limit("ip-codes", settings.PORTAL_CODES_PER_IP_PER_HOUR, 3600, settings.PORTAL_LOCKOUT_SECONDS),
        Limit("ip-failures", settings.PORTAL_FAILURES_PER_IP_BEFORE_LOCK, 3600, settings.PORTAL_LOCKOUT_SECONDS),
    )


def token_limit() -> Limit:
    """Codes sent through one QR or SMS-link token per hour, then the token is locked for a while
    (wrong codes count against the patient's phone, which locks too)."""
    return Limit("token-codes", settings.PORTAL_CODES_PER_TOKEN_PER_HOUR, 3600, settings.PORTAL_LOCKOUT_SECONDS)


def throttles_prune(*, older_than: timedelta = timedelta(days=1)) -> int:
    """Delete counters whose window and lock are long over; returns how many."""
    cutoff = timezone.now() - older_than
    deleted, _kinds = (
        Throttle.objects.filter(window_started_at__lt=cutoff).exclude(locked_until__gt=timezone.now()).delete()
    )
    return deleted
