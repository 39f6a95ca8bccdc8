"""Entry tokens (QR and SMS link), shares with a doctor, and patients' contact details."""

from datetime import date, timedelta
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import Http404, HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.audit.services import audit_record
from apps.audit.vocabulary import Action, EntryPoint, Outcome
from apps.imaging.keys import blind_index, field_seal
from apps.imaging.models import Patient, Study
from apps.portal.models import EntryToken, PatientAccessPolicy, Share, WeChatBinding
from apps.portal.policy import policy_for, service_period_end, service_period_ended, service_period_last_day
from apps.portal.security import (
    code_hash,
    codes_match,
    keyed_hash,
    new_code,
    new_token,
    normalize_phone,
    token_hash,
)
from apps.reports.publication import publication_state
from apps.tenants.context import bind_token_hash, hospital_context
from apps.tenants.models import Hospital

SHARE_MIN_HOURS = 1
SHARE_MAX_HOURS = 30 * 24
SHARE_MAX_CODE_TRIES = 5


def public_url(path: str) -> str:
    return f"{settings.PORTAL_PUBLIC_ORIGIN.rstrip('/')}{path}"


def patient_contact_update(
    *, actor: Any, hospital: Hospital, patient: Patient, phone: str = "", id_number: str = ""
) -> None:
    """Record the phone number and ID-card number the hospital holds for a patient (from its
    HIS/registration system), sealed, with blind indexes for sign-in lookups."""
    fields = []
    if phone:
        normalized = normalize_phone(phone)
        if not normalized:
            raise ValidationError({"phone": _("Enter a valid phone number.")})
        patient.phone_sealed = field_seal(hospital, normalized, field="phone")
        patient.phone_index = blind_index(hospital, normalized, field="phone")
        fields += ["phone_sealed", "phone_index"]
    if id_number:
        cleaned = "".join(id_number.split()).upper()
        patient.id_number_sealed = field_seal(hospital, cleaned, field="id_number")
        patient.id_number_index = blind_index(hospital, cleaned, field="id_number")
        fields += ["id_number_sealed", "id_number_index"]
    if fields:
        patient.save(update_fields=fields)


def entry_token_create(*, actor: Any, hospital: Hospital, study: Study, kind: str) -> tuple[EntryToken, str]:
    """A new opaque token leading to ``study``; the raw token is returned once, only its hash kept."""
    raw = new_token()
    entry = EntryToken.objects.create(
        hospital=hospital, kind=kind, token_hash=token_hash(raw), study=study,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )  # fmt: skip
    return entry, raw


def entry_token_url(hospital: Hospital, entry: EntryToken, raw: str) -> str:
    if entry.kind == EntryToken.Kind.SMS:
        return public_url(reverse("short_link", args=[raw]))
    return public_url(reverse("portal:qr_entry", args=[hospital.code, raw]))


def entry_token_resolve(*, raw: str, hospital: Hospital | None, kind: str) -> EntryToken:
    """The token's entry, found by its hash before the hospital is known. An unknown token, one
    of another kind or (when ``hospital`` is given) of another hospital: the same 404."""
    if not (20 <= len(raw) <= 64):
        raise Http404
    digest = token_hash(raw)
    bind_token_hash(digest)
    entry = EntryToken.objects.select_related("hospital").filter(token_hash=digest, kind=kind).first()
    bind_token_hash("")
    if entry is None or not entry.hospital.is_active or (hospital is not None and entry.hospital_id != hospital.pk):
        raise Http404
    return entry


class EntryRefusal(StrEnum):
    """Why a real entry token no longer leads to its study (no code is sent for it)."""

    NOT_PUBLISHED = "not_published"
    SERVICE_PERIOD_ENDED = "service_period_ended"
    LINK_EXPIRED = "link_expired"


def entry_token_expires_on(entry: EntryToken, policy: PatientAccessPolicy) -> date:
    """The last day ``entry`` is usable: a QR token lives as long as its study's service period;
    an SMS link ``PORTAL_SMS_LINK_TTL_DAYS`` after it was sent (0: as long as a QR token)."""
    period_end = service_period_last_day(service_period_end(entry.study, policy))
    ttl_days = settings.PORTAL_SMS_LINK_TTL_DAYS
    if entry.kind != EntryToken.Kind.SMS or ttl_days <= 0:
        return period_end
    sent_on = timezone.localdate(entry.created_at)
    return min(period_end, sent_on + timedelta(days=ttl_days))


def entry_token_refusal(*, request: HttpRequest, entry: EntryToken) -> EntryRefusal | None:
    """None while ``entry`` may send a code for its study; else why not, audited once.

    A study that is not (or no longer) published to its patient (not yet reported, withdrawn,
    report entered in error) sends no code: a withdrawn study's link must not text the patient.
    The refusal is one event with outcome minor failure and ``refused`` naming the reason:
    PATIENT_ENTRY_REFUSED, or STUDY_ACCESS_EXPIRED past the service period (as on the study
    pages). The token's hospital must be the active one (the study is read under its row-level
    security)."""
    study = entry.study
    policy = policy_for(entry.hospital)
    today = timezone.localdate()
    period_end = service_period_end(study, policy)
    refusal: EntryRefusal | None = None
    if not publication_state(study)[0]:
        refusal = EntryRefusal.NOT_PUBLISHED
    elif today >= period_end:  # service_period_ended
        refusal = EntryRefusal.SERVICE_PERIOD_ENDED
    elif today > entry_token_expires_on(entry, policy):
        refusal = EntryRefusal.LINK_EXPIRED
    if refusal is None:
        return None
    details: dict[str, Any] = {"entry": str(entry.kind), "token": str(entry.public_id), "refused": refusal.value}
    if refusal == EntryRefusal.SERVICE_PERIOD_ENDED:
        details["period_end"] = period_end.isoformat()
    audit_record(
        action=(
            Action.STUDY_ACCESS_EXPIRED
            if refusal == EntryRefusal.SERVICE_PERIOD_ENDED
            else Action.PATIENT_ENTRY_REFUSED
        ),
        request=request, hospital=entry.hospital, actor_role="patient", entry_point=EntryPoint.PORTAL,
        outcome=Outcome.MINOR_FAILURE, object_type="study", object_id=str(study.public_id), details=details,
    )  # fmt: skip
    return refusal


def share_create(
    *, request: HttpRequest | None, hospital: Hospital, patient: Patient, study: Study, hours: int
) -> tuple[Share, str, str]:
    """A link for a doctor to one of the patient's studies, valid ``hours``, with a six-digit access
    code. Returns the share, the raw token and the access code (shown to the patient once)."""
    if not isinstance(hours, int) or not SHARE_MIN_HOURS <= hours <= SHARE_MAX_HOURS:
        raise ValidationError({"hours": _("Choose a validity between 1 hour and 30 days.")})
    if study.patient_id != patient.pk:
        raise Http404
    raw, access_code = new_token(), new_code()
    with transaction.atomic():
        share = Share(
            hospital=hospital, study=study, patient=patient, token_hash=token_hash(raw),
            expires_at=timezone.now() + timedelta(hours=hours),
        )  # fmt: skip
        share.access_code_hash = code_hash(str(share.public_id), access_code)
        share.save()
        _share_audit(Action.SHARE_CREATED, request=request, share=share, details={"hours": hours})
    return share, raw, access_code


def share_revoke(*, request: HttpRequest | None, share: Share) -> Share:
    with transaction.atomic():
        if share.revoked_at is None:
            share.revoked_at = timezone.now()
            share.save(update_fields=["revoked_at"])
            _share_audit(Action.SHARE_REVOKED, request=request, share=share)
    return share


def share_is_live(share: Share) -> bool:
    return (
        share.revoked_at is None and share.expires_at > timezone.now() and share.failed_attempts < SHARE_MAX_CODE_TRIES
    )


def share_open(*, request: HttpRequest, share: Share, access_code: str) -> str:
    """Check the doctor's access code; '' when it opens, else the message to show. Five wrong
    codes close the share."""
    with transaction.atomic():
        share = Share.objects.select_for_update().get(pk=share.pk)
        if not share_is_live(share):
            _share_audit(Action.SHARE_OPENED, request=request, share=share, outcome=Outcome.MINOR_FAILURE,
                         details={"reason": "closed"})  # fmt: skip
            return _("This link has expired or was withdrawn by the patient.")
        code = "".join(access_code.split())
        if not codes_match(share.access_code_hash, str(share.public_id), code):
            share.failed_attempts += 1
            share.save(update_fields=["failed_attempts"])
            _share_audit(Action.SHARE_OPENED, request=request, share=share, outcome=Outcome.MINOR_FAILURE,
                         details={"reason": "wrong_code", "tries": share.failed_attempts})  # fmt: skip
            if share.failed_attempts >= SHARE_MAX_CODE_TRIES:
                return _("Too many wrong access codes: this link is now closed. Ask the patient for a new one.")
            return _("The access code is not right.")
        _share_audit(Action.SHARE_OPENED, request=request, share=share)
        return ""


def share_resolve(*, raw: str, hospital: Hospital) -> Share:
    if not (20 <= len(raw) <= 64):
        raise Http404
    share = Share.objects.for_hospital(hospital).select_related("study").filter(token_hash=token_hash(raw)).first()
    if share is None:
        raise Http404
    return share


def _share_audit(action: Action, *, request: HttpRequest | None, share: Share, outcome: Outcome = Outcome.SUCCESS,
                 details: dict[str, Any] | None = None) -> None:  # fmt: skip
    audit_record(
        action=action,
        request=request,
        hospital=share.hospital,
        actor_name="share" if action == Action.SHARE_OPENED else f"patient:{share.patient.public_id}",
        actor_role="share" if action == Action.SHARE_OPENED else "patient",
        entry_point=EntryPoint.PORTAL,
        outcome=outcome,
        object_type="share",
        object_id=str(share.public_id),
        details={"study": str(share.study.public_id), **(details or {})},
    )


def share_study_visible(share: Share) -> bool:
    """The shared study is still published to its patient (not withdrawn by the hospital)."""
    return publication_state(share.study)[0]


def share_grant_is_valid(hospital: Hospital, grant: dict[str, Any]) -> bool:
    """The viewer's validator for "share" grants: the share still exists, is not revoked and has
    not expired, and its study is still published and within its service period; checked on
    every viewer request so a revocation, a withdrawal or the end of the period acts at once."""
    share_id = grant.get("share")
    if not share_id:
        return False
    # The viewer asks before it activates the hospital; the share is read in its own context.
    with hospital_context(hospital):
        try:
            share = (
                Share.objects.for_hospital(hospital)
                .select_related("study__publication")
                .filter(public_id=share_id)
                .first()
            )
        except ValidationError:
            return False
        return (
            share is not None
            and share_is_live(share)
            and str(share.study.public_id) == grant.get("study")
            and share_study_visible(share)
            and not service_period_ended(share.study, policy_for(hospital), timezone.localdate())
        )


def patient_grant_is_valid(hospital: Hospital, grant: dict[str, Any]) -> bool:
    """The viewer's validator for "patient" grants, which the portal gives a published study
    for the rest of a (short) portal session: refused once the hospital withdraws the study."""
    with hospital_context(hospital):
        try:
            study = (
                Study.objects.for_hospital(hospital)
                .select_related("publication")
                .filter(public_id=str(grant.get("study")))
                .first()
            )
        except ValidationError:
            return False
        return study is not None and not publication_state(study)[1]


def wechat_patient(*, hospital: Hospital, openid: str) -> Patient | None:
    """The patient this WeChat openid was bound to at ``hospital``, if any."""
    binding = (
        WeChatBinding.objects.for_hospital(hospital)
        .select_related("patient")
        .filter(openid_hash=keyed_hash("openid", f"{hospital.public_id}:{openid}"))
        .first()
    )
    return binding.patient if binding else None


def wechat_bind(*, request: HttpRequest | None, hospital: Hospital, patient: Patient, openid: str) -> None:
    """Bind an openid to the patient who just verified a code, audited WECHAT_BOUND: a new
    openid (also a second WeChat account of the same patient) adds a binding; an openid bound to
    another patient moves, and the event names that patient's public id (``moved_from``) so the
    trail shows who lost the binding. The same openid bound again to its patient changes
    nothing and records nothing. Neither the openid nor its hash is recorded."""
    digest = keyed_hash("openid", f"{hospital.public_id}:{openid}")
    with transaction.atomic():
        binding = WeChatBinding.objects.for_hospital(hospital).select_for_update().filter(openid_hash=digest).first()
        if binding is None:
            try:
                with transaction.atomic():
                    WeChatBinding.objects.create(hospital=hospital, patient=patient, openid_hash=digest)
            except IntegrityError:
                # Bound by a concurrent sign-in that committed first: carry on from its binding.
                binding = (
                    WeChatBinding.objects.for_hospital(hospital).select_for_update().filter(openid_hash=digest).get()
                )
        if binding is not None and binding.patient_id == patient.pk:
            return
        details: dict[str, Any] = {}
        if binding is not None:
            details["moved_from"] = str(binding.patient.public_id)
            binding.patient = patient
            binding.save(update_fields=["patient"])
        audit_record(
            action=Action.WECHAT_BOUND, request=request, hospital=hospital, actor_name=f"patient:{patient.public_id}",
            actor_role="patient", entry_point=EntryPoint.PORTAL, object_type="patient",
            object_id=str(patient.public_id), details=details,
        )  # fmt: skip
