"""SM2 signatures (GB/T 32918.2 with SM3 and the default signer ID ``1234567812345678``), the
national-cryptography (商用密码) option for doctors' report signatures.

The curve arithmetic comes from the pure-Python ``gmssl`` package. Two of its habits are worked
around here: its default nonce comes from ``random`` (not a CSPRNG), so every nonce is drawn from
``secrets``; and its constructor strips "0"/"4" characters off the front of a public key, so the
key is set on the object directly. Keys are raw bytes: a 32-byte private scalar and a 64-byte
public point ``x || y``; signatures are 64 bytes ``r || s``.
"""

import secrets

from gmssl import sm2

_TABLE = sm2.default_ecc_table
_N = int(_TABLE["n"], 16)


def _crypt(*, private: bytes = b"", public: bytes = b"") -> sm2.CryptSM2:
    crypt = sm2.CryptSM2(private_key=private.hex(), public_key="")
    crypt.public_key = public.hex()
    return crypt


def sm2_generate() -> tuple[bytes, bytes]:
    """A new key pair ``(private, public)``; the private scalar is uniform in [1, n-2]."""
    scalar = secrets.randbelow(_N - 2) + 1
    private = scalar.to_bytes(32, "big")
    public = bytes.fromhex(_crypt(private=private)._kg(scalar, _TABLE["g"]))
    return private, public


def sm2_sign(private: bytes, public: bytes, message: bytes) -> bytes:
    crypt = _crypt(private=private, public=public)
    while True:
        nonce = secrets.randbelow(_N - 1) + 1
        signature = crypt.sign_with_sm3(message, f"{nonce:064x}")
        if signature:  # None for the (negligible) degenerate nonces; draw another.
            return bytes.fromhex(signature)


def sm2_verify(public: bytes, signature: bytes, message: bytes) -> bool:
    if len(public) != 64 or len(signature) != 64:
        return False
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    if not (1 <= r < _N and 1 <= s < _N):
        return False
    try:
        return bool(_crypt(public=public).verify_with_sm3(signature.hex(), message))
    except (ValueError, TypeError, ZeroDivisionError):
        return False
