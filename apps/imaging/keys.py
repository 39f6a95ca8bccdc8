"""The key hierarchy below the master key, and patient-field sealing with blind indexes.

master key (environment) -> hospital key (HospitalKey row, wrapped) -> per-object data keys
(apps.imaging.objectstore) and, through HKDF, the hospital's field-sealing and blind-index keys.

Rotating the master key: the new one becomes ``STORAGE_MASTER_KEY`` and the old one goes to
``STORAGE_MASTER_KEY_FALLBACKS``, which still unwraps hospital keys (with a warning in the log);
``manage.py storage_keys_rewrap`` then wraps every hospital key under the new one
(:func:`hospital_key_rewrap`), after which the fallback can be removed. Hospital keys themselves,
and everything below them, are unchanged: nothing stored is re-encrypted.
"""

import hashlib
import hmac
import logging
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.db import IntegrityError, transaction

from apps.imaging.crypto import KeyUnwrapError, master_key, master_key_fallbacks, unwrap_key, wrap_key
from apps.imaging.models import HospitalKey
from apps.tenants.models import Hospital

logger = logging.getLogger(__name__)

_NONCE = 12


def _context(hospital: Hospital) -> bytes:
    return f"hospital-key:{hospital.public_id}".encode()


_unwrapped: dict[str, bytes] = {}


def hospital_key(hospital: Hospital) -> bytes:
    """The hospital's 32-byte key, created on first use. Call inside the hospital's context.

    Unwrapped keys are kept in process memory, keyed by the hospital's random public id.
    """
    cached = _unwrapped.get(str(hospital.public_id))
    if cached is not None:
        return cached
    row = HospitalKey.objects.filter(hospital=hospital).first()
    if row is None:
        try:
            with transaction.atomic():
                row = HospitalKey.objects.create(
                    hospital=hospital,
                    wrapped_key=wrap_key(kek=master_key(), key=os.urandom(32), context=_context(hospital)),
                )
        except IntegrityError:
            row = HospitalKey.objects.get(hospital=hospital)
        # Not cached: the transaction that created it may still roll back.
        return _unwrapped_hospital_key(hospital, bytes(row.wrapped_key))[0]
    key = _unwrapped_hospital_key(hospital, bytes(row.wrapped_key))[0]
    _unwrapped[str(hospital.public_id)] = key
    return key


def _unwrapped_hospital_key(hospital: Hospital, wrapped: bytes) -> tuple[bytes, bool]:
    """The hospital's key, and whether it is wrapped under the current master key (else under one
    of the fallbacks). Under none of them: KeyUnwrapError."""
    try:
        return unwrap_key(kek=master_key(), wrapped=wrapped, context=_context(hospital)), True
    except KeyUnwrapError:
        for fallback in master_key_fallbacks():
            try:
                key = unwrap_key(kek=fallback, wrapped=wrapped, context=_context(hospital))
            except KeyUnwrapError:
                continue
            logger.warning(
                "The key of hospital %s is wrapped under a previous master key; run manage.py storage_keys_rewrap.",
                hospital.code,
            )
            return key, False
        raise


def hospital_key_rewrap(hospital: Hospital) -> bool:
    """Wrap ``hospital``'s key under the current master key if a fallback wraps it now; True if it
    did. Call inside the hospital's context and a transaction (the row is locked until it ends)."""
    row = HospitalKey.objects.select_for_update().filter(hospital=hospital).first()
    if row is None:
        return False
    key, current = _unwrapped_hospital_key(hospital, bytes(row.wrapped_key))
    if current:
        return False
    rewrapped = wrap_key(kek=master_key(), key=key, context=_context(hospital))
    HospitalKey.objects.filter(pk=row.pk).update(wrapped_key=rewrapped)
    return True


def _derive(hospital: Hospital, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(hospital_key(hospital))


def field_seal(hospital: Hospital, value: str, *, field: str) -> bytes:
    """Encrypt one patient field; the field name is bound in, so values cannot be swapped."""
    if value == "":
        return b""
    nonce = os.urandom(_NONCE)
    key = _derive(hospital, b"patient fields")
    return nonce + AESGCM(key).encrypt(nonce, value.encode("utf-8"), field.encode())


def field_unseal(hospital: Hospital, sealed: bytes | memoryview, *, field: str) -> str:
    sealed = bytes(sealed)
    if not sealed:
        return ""
    key = _derive(hospital, b"patient fields")
    return AESGCM(key).decrypt(sealed[:_NONCE], sealed[_NONCE:], field.encode()).decode("utf-8")


def blind_index(hospital: Hospital, value: str, *, field: str) -> str:
    """Keyed hash for exact lookups of a sealed field; empty for an empty value."""
    normalized = " ".join(value.split()).upper()
    if not normalized:
        return ""
    key = _derive(hospital, b"blind index")
    return hmac.new(key, f"{field}\x1f{normalized}".encode(), hashlib.sha256).hexdigest()
