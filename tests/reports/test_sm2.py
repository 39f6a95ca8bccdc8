"""SM2 report signatures (the national-cryptography option), checked against an independent
verifier written here from GB/T 32918.2 (SM3 from OpenSSL through hashlib)."""

import hashlib

import pytest

from apps.reports.models import DoctorSigningKey, ReportVersion
from apps.reports.services import report_amend, report_create, report_sign, report_verify
from apps.reports.sm2 import sm2_generate, sm2_sign, sm2_verify
from apps.tenants.context import hospital_context
from tests.reports.conftest import FINDINGS

# The SM2 recommended curve (GB/T 32918.5).
P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
G = (
    0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7,
    0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0,
)
DEFAULT_ID = b"1234567812345678"


def _add(p, q):
    if p is None:
        return q
    if q is None:
        return p
    if p[0] == q[0] and (p[1] + q[1]) % P == 0:
        return None
    doubling = p == q
    numerator = 3 * p[0] * p[0] + A if doubling else q[1] - p[1]
    denominator = 2 * p[1] if doubling else q[0] - p[0]
    slope = numerator * pow(denominator, -1, P) % P
    x = (slope * slope - p[0] - q[0]) % P
    return x, (slope * (p[0] - x) - p[1]) % P


def _mul(k, point):
    result = None
    while k:
        if k & 1:
            result = _add(result, point)
        point = _add(point, point)
        k >>= 1
    return result


def _sm3(data: bytes) -> bytes:
    return hashlib.new("sm3", data).digest()


def _independent_verify(public: bytes, signature: bytes, message: bytes) -> bool:
    x, y = int.from_bytes(public[:32], "big"), int.from_bytes(public[32:], "big")
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    coordinates = b"".join(v.to_bytes(32, "big") for v in (A, B, *G, x, y))
    z = _sm3(len(DEFAULT_ID * 8).to_bytes(2, "big") + DEFAULT_ID + coordinates)
    e = int.from_bytes(_sm3(z + message), "big")
    point = _add(_mul(s, G), _mul((r + s) % N, (x, y)))
    return point is not None and (e + point[0]) % N == r


def test_sm3_is_the_standard_one():
    # GB/T 32905 example 1.
    assert _sm3(b"abc").hex() == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"


def test_public_key_is_the_private_scalar_times_g():
    private, public = sm2_generate()
    x, y = _mul(int.from_bytes(private, "big"), G)
    assert public == x.to_bytes(32, "big") + y.to_bytes(32, "big")


@pytest.mark.parametrize("message", [b"", "影像所见".encode(), bytes(range(256)) * 3])
def test_signatures_verify_independently_and_not_when_changed(message):
    private, public = sm2_generate()
    signature = sm2_sign(private, public, message)
    assert _independent_verify(public, signature, message)
    assert sm2_verify(public, signature, message)
    assert not sm2_verify(public, signature, message + b"x")
    assert not sm2_verify(sm2_generate()[1], signature, message)
    assert not sm2_verify(public, signature[:63], message)
    assert not sm2_verify(public, bytes(64), message)


def test_nonces_are_fresh():
    private, public = sm2_generate()
    assert sm2_sign(private, public, b"m") != sm2_sign(private, public, b"m")


def test_reports_signed_with_sm2_verify_and_detect_a_wrong_key(world, study, settings):
    settings.REPORT_SIGNING_ALGORITHM = "sm2"
    doctor = world.first["reporting_doctor"]
    with hospital_context(world.first.hospital):
        draft = report_create(hospital=world.first.hospital, study=study, actor=doctor, fields=FINDINGS)
        final = report_sign(report=draft.report, actor=doctor, expected_version=1)
        assert final.signing_key.algorithm == DoctorSigningKey.Algorithm.SM2
        assert report_verify(final)
        amended = report_amend(report=final.report, actor=doctor, expected_version=2,
                               fields={"impression": "良性"}, reason="复核")  # fmt: skip
        stored = ReportVersion.objects.select_related("report", "signing_key").get(pk=amended.pk)
        assert report_verify(stored)
        from apps.reports.signing import canonical_bytes

        assert _independent_verify(
            bytes(stored.signing_key.public_key), bytes(stored.signature), canonical_bytes(stored, stored.report)
        )


def test_unknown_algorithm_setting_is_refused(world, study, settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.REPORT_SIGNING_ALGORITHM = "rsa"
    doctor = world.first["reporting_doctor"]
    with hospital_context(world.first.hospital):
        draft = report_create(hospital=world.first.hospital, study=study, actor=doctor, fields=FINDINGS)
        with pytest.raises(ImproperlyConfigured):
            report_sign(report=draft.report, actor=doctor, expected_version=1)
        assert ReportVersion.objects.filter(report=draft.report).count() == 1
