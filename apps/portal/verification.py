"""Verification codes: issue one to the phone on a patient's record, and check a code.

Every path does the same work and gives the same answer whether or not the phone number (and
the identity check) matches a patient: a code row is written either way, but only a real match
gets a real code and an SMS. Every issue, try, success, failure and lock is audited.
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from apps.audit.services import audit_record, client_ip
from apps.audit.vocabulary import Action, EntryPoint, Outcome
from apps.imaging.keys import blind_index, field_unseal
from apps.imaging.models import Patient, Study
from apps.notify.services import message_enqueue
from apps.portal.models import PatientAccessPolicy, VerificationCode
from apps.portal.policy import policy_for
from apps.portal.security import (
    ascii_folded,
    code_hash,
    codes_match,
    ip_limits,
    new_code,
    normalize_phone,
    phone_daily_limit,
    phone_key,
    phone_limits,
    secrets_equal,
    throttle_hit,
    throttle_locked,
    token_limit,
)
from apps.tenants.models import Hospital

MAX_TRIES_PER_CODE = 5


class CodeRefused(Exception):
    """A code was not issued (rate limit or lock); the message is safe to show."""


@dataclass(frozen=True)
class VerifyResult:
    patient: Patient | None
    study: Study | None
    error: str = ""


def _audit(action: Action, *, request: HttpRequest | None, hospital: Hospital, outcome: Outcome = Outcome.SUCCESS,
           object_type: str = "", object_id: str = "", details: dict[str, Any] | None = None) -> None:  # fmt: skip
    audit_record(
        action=action,
        request=request,
        hospital=hospital,
        actor_role="patient",
        entry_point=EntryPoint.PORTAL,
        outcome=outcome,
        object_type=object_type,
        object_id=object_id,
        details=details,
    )


def _identity_matches(hospital: Hospital, patient: Patient, policy: PatientAccessPolicy, answer: str) -> bool:
    answer = "".join(ascii_folded(answer).split()).upper()
    if not answer:
        return False
    if policy.identity_check == PatientAccessPolicy.IdentityCheck.BIRTH_DATE:
        expected = field_unseal(hospital, patient.birth_date_sealed, field="birth")
        return bool(expected) and secrets_equal(expected.replace("-", ""), answer.replace("-", ""))
    expected = field_unseal(hospital, patient.id_number_sealed, field="id_number").upper()
    return len(expected) >= 4 and secrets_equal(expected[-4:], answer[-4:]) and len(answer) == 4


def patient_phone(hospital: Hospital, patient: Patient) -> str:
    return normalize_phone(field_unseal(hospital, patient.phone_sealed, field="phone"))


LOCKED_MESSAGE = gettext_lazy("Too many wrong codes. Sign-in is locked for a while; please try again later.")
# The same for every phone number, known or not: only the client address is over its limit.
NETWORK_LIMIT_MESSAGE = gettext_lazy(
    "Too many attempts from this network (a hospital's Wi-Fi, for example). Please try again later, "
    "or switch to mobile data."
)


def _check_issue_limits(
    *, hospital: Hospital, request: HttpRequest, phone_value: str, token: str = "", entry_point: str,
    object_type: str = "", object_id: str = "",
) -> None:  # fmt: skip
    """Raise CodeRefused when the phone or the address is locked or a per-phone, per-address or
    per-token limit is exceeded. The counts are kept whether or not a patient has that phone.
    Every refusal is audited, so a lock-out (even one caused by someone else) leaves a trace."""
    codes_per_phone, failures_per_phone = phone_limits()
    codes_per_ip, failures_per_ip = ip_limits()
    address = client_ip(request) or "unknown"
    reason = ""
    if throttle_locked(failures_per_phone.scope, phone_value):
        reason = "phone_locked"
    elif throttle_locked(failures_per_ip.scope, address):
        reason = "address_locked"
    elif not throttle_hit(codes_per_ip, address):
        reason = "address_limit"
    elif token and not throttle_hit(token_limit(), token):
        reason = "token_limit"
    elif not throttle_hit(codes_per_phone, phone_value):
        reason = "phone_limit"
    elif not throttle_hit(phone_daily_limit(), phone_value):
        reason = "phone_daily_limit"
    if not reason:
        return
    _audit(Action.CODE_ISSUED, request=request, hospital=hospital, outcome=Outcome.MINOR_FAILURE,
           object_type=object_type, object_id=object_id, details={"entry": entry_point, "refused": reason})  # fmt: skip
    if reason.startswith("address_"):
        raise CodeRefused(str(NETWORK_LIMIT_MESSAGE))
    if reason.endswith("_locked"):
        raise CodeRefused(str(LOCKED_MESSAGE))
    raise CodeRefused(_("Too many requests. Please wait a while and try again."))


def _create_code(
    *, hospital: Hospital, policy: PatientAccessPolicy, patient: Patient | None, study: Study | None,
    key: str, entry_point: str,
) -> tuple[VerificationCode, str]:  # fmt: skip
    code = new_code()
    challenge = VerificationCode(
        hospital=hospital,
        patient=patient,
        study=study,
        entry_point=entry_point,
        phone_key=key,
        expires_at=timezone.now() + timedelta(seconds=policy.code_ttl_seconds),
    )
    # A challenge without a patient gets the hash of a code nobody was told.
    challenge.code_hash = code_hash(str(challenge.public_id), code if patient is not None else new_code() + "x")
    challenge.save()
    return challenge, code


def _send(hospital: Hospital, phone: str, code: str, policy: PatientAccessPolicy) -> None:
    minutes = str(max(1, policy.code_ttl_seconds // 60))
    message_enqueue(
        hospital=hospital, phone=phone, template="verification_code", params={"code": code, "minutes": minutes}
    )


def code_issue_for_login(
    *, request: HttpRequest, hospital: Hospital, phone: str, identity: str, entry_point: str = "login"
) -> VerificationCode:
    """Portal sign-in: a phone number plus the identity check the hospital's policy names.

    Returns a challenge in every case; an SMS goes out only when a patient of ``hospital`` has
    that phone and passes the identity check. Raises CodeRefused on limits and locks, alike
    for known and unknown numbers.
    """
    policy = policy_for(hospital)
    normalized = normalize_phone(phone)
    key = phone_key(hospital, normalized or phone.strip())
    # Counted outside the block below, so a refusal keeps its count.
    _check_issue_limits(hospital=hospital, request=request, phone_value=key, entry_point=entry_point)
    with transaction.atomic():
        match: Patient | None = None
        if normalized:
            candidates = Patient.objects.for_hospital(hospital).filter(
                phone_index=blind_index(hospital, normalized, field="phone")
            )
            for candidate in candidates:
                if _identity_matches(hospital, candidate, policy, identity):
                    match = candidate
                    break
        challenge, code = _create_code(
            hospital=hospital, policy=policy, patient=match, study=None, key=key, entry_point=entry_point
        )
        if match is not None:
            _send(hospital, normalized, code, policy)
        _audit(
            Action.CODE_ISSUED,
            request=request,
            hospital=hospital,
            outcome=Outcome.SUCCESS if match else Outcome.MINOR_FAILURE,
            object_type="patient" if match else "",
            object_id=str(match.public_id) if match else "",
            details={"entry": entry_point, "challenge": str(challenge.public_id), "matched": match is not None},
        )
    return challenge


def code_issue_for_patient(
    *, request: HttpRequest, hospital: Hospital, patient: Patient, study: Study | None, entry_point: str, token: str
) -> VerificationCode:
    """QR, SMS-link and bound-WeChat entries: the code goes to the phone on the patient's record
    (nothing is typed but the code). A patient without a phone gets a challenge that cannot
    succeed and no SMS."""
    policy = policy_for(hospital)
    phone = patient_phone(hospital, patient)
    key = phone_key(hospital, phone) if phone else phone_key(hospital, f"none:{patient.public_id}")
    _check_issue_limits(
        hospital=hospital, request=request, phone_value=key, token=token, entry_point=entry_point,
        object_type="study" if study else "patient", object_id=str(study.public_id if study else patient.public_id),
    )  # fmt: skip
    with transaction.atomic():
        challenge, code = _create_code(
            hospital=hospital, policy=policy, patient=patient if phone else None, study=study, key=key,
            entry_point=entry_point,
        )  # fmt: skip
        if phone:
            _send(hospital, phone, code, policy)
        _audit(
            Action.CODE_ISSUED,
            request=request,
            hospital=hospital,
            outcome=Outcome.SUCCESS if phone else Outcome.MINOR_FAILURE,
            object_type="study" if study else "patient",
            object_id=str(study.public_id if study else patient.public_id),
            details={"entry": entry_point, "challenge": str(challenge.public_id), "matched": bool(phone)},
        )
    return challenge


def code_verify(*, request: HttpRequest, hospital: Hospital, challenge_id: str, code: str) -> VerifyResult:
    """Check a code against its challenge: wrong, expired, reused and over-tried codes are
    refused with a clear message; repeated failures lock the phone, and the address they come
    from (audited), so no more codes are sent to it or accepted from there for a while."""
    _codes_per_phone, failures_per_phone = phone_limits()
    _codes_per_ip, failures_per_ip = ip_limits()
    code = "".join(ascii_folded(code).split())
    address = client_ip(request) or "unknown"
    with transaction.atomic():
        challenge = (
            VerificationCode.objects.for_hospital(hospital)
            .select_for_update(of=("self",))
            .select_related("patient", "study")
            .filter(public_id=challenge_id)
            .first()
        )
        if challenge is None:
            return VerifyResult(None, None, _("This code has expired. Please request a new one."))
        details = {"challenge": str(challenge.public_id), "entry": challenge.entry_point}

        def refuse(reason: str, message: str) -> VerifyResult:
            _audit(Action.CODE_REJECTED, request=request, hospital=hospital, outcome=Outcome.MINOR_FAILURE,
                   details={**details, "reason": reason})  # fmt: skip
            return VerifyResult(None, None, message)

        if throttle_locked(failures_per_phone.scope, challenge.phone_key):
            return refuse("locked", str(LOCKED_MESSAGE))
        if throttle_locked(failures_per_ip.scope, address):
            return refuse("address_locked", str(NETWORK_LIMIT_MESSAGE))
        if challenge.used_at is not None:
            return refuse("reused", _("This code has already been used. Please request a new one."))
        if challenge.expires_at <= timezone.now():
            return refuse("expired", _("This code has expired. Please request a new one."))
        if challenge.attempts >= MAX_TRIES_PER_CODE:
            return refuse("too_many_tries", _("Too many wrong tries for this code. Please request a new one."))
        challenge.attempts += 1
        if not (len(code) == 6 and code.isdigit() and codes_match(challenge.code_hash, str(challenge.public_id), code)):
            challenge.save(update_fields=["attempts"])
            phone_ok = throttle_hit(failures_per_phone, challenge.phone_key)
            address_ok = throttle_hit(failures_per_ip, address)
            result = refuse("wrong", _("The code is not right. Please check it and try again."))
            if not (phone_ok and address_ok):
                _audit(Action.PATIENT_LOCKED, request=request, hospital=hospital, outcome=Outcome.SERIOUS_FAILURE,
                       object_type="patient" if challenge.patient and not phone_ok else "",
                       object_id=str(challenge.patient.public_id) if challenge.patient and not phone_ok else "",
                       details={**details, "scope": "phone" if not phone_ok else "address"})  # fmt: skip
                result = VerifyResult(None, None, str(LOCKED_MESSAGE))
            return result
        challenge.used_at = timezone.now()
        challenge.save(update_fields=["attempts", "used_at"])
        assert challenge.patient is not None  # a challenge without a patient has no findable code
        _audit(Action.CODE_ACCEPTED, request=request, hospital=hospital, object_type="patient",
               object_id=str(challenge.patient.public_id), details=details)  # fmt: skip
        return VerifyResult(challenge.patient, challenge.study)
