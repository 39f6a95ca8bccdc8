"""The key hierarchy below the master key, and patient-field sealing with blind indexes.

master key (environment) -> hospital key (HospitalKey row, wrapped) -> per-object data keys
(apps.imaging.objectstore) and, through HKDF, the hospital's field-sealing and blind-index keys.
"""

import hashlib
import hmac
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.db import IntegrityError, transaction

from apps.imaging.crypto import master_key, unwrap_key, wrap_key
from apps.imaging.models import HospitalKey
from apps.tenants.models import Hospital

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
        return unwrap_key(kek=master_key(), wrapped=bytes(row.wrapped_key), context=_context(hospital))
    key = unwrap_key(kek=master_key(), wrapped=bytes(row.wrapped_key), context=_context(hospital))
    _unwrapped[str(hospital.public_id)] = key
    return key


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
