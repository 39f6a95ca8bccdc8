"""Writing reports. Every change appends a ReportVersion; nothing is overwritten in place.

Text fields are stored exactly as given, HTML or script included: they are data, escaped when
rendered, never trusted as markup.
"""

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.accounts.roles import HospitalRole
from apps.accounts.services import hospital_roles
from apps.audit.services import audit_record
from apps.audit.vocabulary import Action, EntryPoint
from apps.imaging.models import Study
from apps.reports.models import Report, ReportVersion
from apps.reports.publication import publication_refresh, study_unpublish
from apps.reports.signing import (
    CONTENT_FIELDS,
    TEXT_FIELDS,
    canonical_bytes,
    content_hash,
    content_of,
    sign,
    signing_key_for,
)
from apps.reports.signing import version_verify as _version_verify
from apps.tenants.models import Hospital

MAX_TEXT_LENGTH = 20_000
DOCTOR_ROLES = frozenset({HospitalRole.REPORTING_DOCTOR, HospitalRole.REVIEWING_DOCTOR})


class ReportConflict(Exception):
    """The request raced another change (the API answers 409)."""


class StaleVersion(ReportConflict):
    pass


class ReportExists(ReportConflict):
    pass


def _require_doctor(user: Any, hospital: Hospital) -> None:
    if not hospital_roles(user, hospital) & DOCTOR_ROLES:
        raise PermissionDenied(_("Only a reporting or reviewing doctor of this hospital may do this."))


def _unstorable(value: str) -> bool:
    """Text the database and the signature cannot hold: a NUL character, or a lone UTF-16 surrogate
    (JSON's "\\ud800" decodes to one, and UTF-8 has no encoding for it)."""
    return "\x00" in value or any("\ud800" <= character <= "\udfff" for character in value)


def _clean_reason(reason: Any, required_message: str) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationError({"reason": required_message})
    if len(reason) > MAX_TEXT_LENGTH or _unstorable(reason):
        raise ValidationError({"reason": _("Too long or contains a character that cannot be stored.")})
    return reason


def _clean_fields(fields: Mapping[str, Any]) -> dict[str, str]:
    errors: dict[str, str] = {}
    clean: dict[str, str] = {}
    for name, value in fields.items():
        if name not in TEXT_FIELDS:
            errors[name] = _("Unknown field.")
        elif not isinstance(value, str):
            errors[name] = _("Must be text.")
        elif len(value) > MAX_TEXT_LENGTH or _unstorable(value):
            errors[name] = _("Too long or contains a character that cannot be stored.")
        else:
            clean[name] = value
    if errors:
        raise ValidationError(errors)
    return clean


def _require_amendable(report: Report) -> None:
    if report.status == Report.Status.ENTERED_IN_ERROR:
        raise ValidationError({"status": _("This report was entered in error and cannot be amended.")})
    if not report.is_signed:
        raise ValidationError(
            {"status": _("A draft or preliminary report is not signed yet: save the draft or sign it instead.")}
        )


def _require_report_doctor_or_admin(actor: Any, report: Report, base: ReportVersion) -> None:
    """The report's reporting or reviewing doctor (still a doctor there), or a hospital admin."""
    roles = hospital_roles(actor, report.hospital)
    own_report = actor.pk in (base.reporting_doctor_id, base.reviewing_doctor_id) and roles & DOCTOR_ROLES
    if not own_report and HospitalRole.HOSPITAL_ADMIN not in roles:
        raise PermissionDenied(_("Only the report's doctors or a hospital admin may do this."))


def _locked(report: Report, expected_version: int | None) -> Report:
    locked: Report = Report.objects.select_for_update().get(pk=report.pk)
    if expected_version is not None and locked.current_version != expected_version:
        raise StaleVersion(
            _("Version %(expected)s is not the current version (%(current)s).")
            % {"expected": expected_version, "current": locked.current_version}
        )
    return locked


def _latest(report: Report) -> ReportVersion:
    latest: ReportVersion = ReportVersion.objects.select_related("reporting_doctor", "reviewing_doctor").get(
        report=report, number=report.current_version
    )
    return latest


def _append(
    report: Report,
    *,
    base: ReportVersion | None,
    actor: Any,
    status: str,
    fields: Mapping[str, str],
    reason: str = "",
    reviewing_doctor: Any = None,
    signed: bool = False,
) -> ReportVersion:
    """Write version ``current + 1`` from ``base`` with ``fields`` applied, and point the report at it."""
    text = {name: getattr(base, name) if base else "" for name in TEXT_FIELDS}
    text.update(fields)
    version = ReportVersion(
        hospital=report.hospital,
        report=report,
        number=report.current_version + 1,
        status=status,
        reporting_doctor=base.reporting_doctor if base else actor,
        reviewing_doctor=reviewing_doctor or (base.reviewing_doctor if base else None),
        author=actor,
        reason=reason,
        **text,
    )
    version.content_sha256 = content_hash(version, report)
    if signed:
        key = signing_key_for(hospital=report.hospital, user=actor)
        version.signature = sign(key, canonical_bytes(version, report))
        version.signing_key = key
        version.signed_by = actor
        version.signed_at = timezone.now()
    version.save(force_insert=True)
    report.current_version = version.number
    report.status = status
    report.save(update_fields=["current_version", "status", "updated_at"])
    return version


def _audit(
    action: Action,
    *,
    version: ReportVersion,
    actor: Any,
    before: str,
    request: HttpRequest | None,
    entry_point: EntryPoint,
) -> None:
    audit_record(
        action=action,
        request=request,
        actor=actor,
        hospital=version.hospital,
        entry_point=entry_point,
        object_type="report",
        object_id=str(version.report.public_id),
        details={
            "version": version.number,
            "status": version.status,
            "sha256_before": before,
            "sha256_after": version.content_sha256,
        },
    )


def report_create(
    *,
    hospital: Hospital,
    study: Study,
    actor: Any,
    fields: Mapping[str, Any],
    request: HttpRequest | None = None,
    entry_point: EntryPoint = EntryPoint.WEB,
) -> ReportVersion:
    """Open the study's report as draft version 1, with ``actor`` (a doctor) as reporting doctor."""
    if study.hospital_id != hospital.pk:
        raise PermissionDenied
    _require_doctor(actor, hospital)
    clean = _clean_fields(fields)
    try:
        with transaction.atomic():
            report = Report.objects.create(hospital=hospital, study=study)
            version = _append(report, base=None, actor=actor, status=Report.Status.DRAFT, fields=clean)
            _audit(Action.REPORT_CREATED, version=version, actor=actor, before="", request=request,
                   entry_point=entry_point)  # fmt: skip
    except IntegrityError as error:
        raise ReportExists(_("This study already has a report.")) from error
    return version


def report_save_draft(
    *,
    report: Report,
    actor: Any,
    expected_version: int,
    fields: Mapping[str, Any],
    preliminary: bool = False,
    request: HttpRequest | None = None,
    entry_point: EntryPoint = EntryPoint.WEB,
) -> ReportVersion:
    """Append a draft (or preliminary) version to an unsigned report."""
    _require_doctor(actor, report.hospital)
    clean = _clean_fields(fields)
    with transaction.atomic():
        report = _locked(report, expected_version)
        if report.status == Report.Status.ENTERED_IN_ERROR:
            raise ValidationError({"status": _("This report was entered in error and cannot be changed.")})
        if report.status not in (Report.Status.DRAFT, Report.Status.PRELIMINARY):
            raise ValidationError({"status": _("A signed report changes only by amendment.")})
        base = _latest(report)
        status = Report.Status.PRELIMINARY if preliminary else Report.Status.DRAFT
        version = _append(report, base=base, actor=actor, status=status, fields=clean)
        _audit(Action.REPORT_DRAFT_SAVED, version=version, actor=actor, before=base.content_sha256,
               request=request, entry_point=entry_point)  # fmt: skip
    return version


def report_sign(
    *,
    report: Report,
    actor: Any,
    expected_version: int,
    request: HttpRequest | None = None,
    entry_point: EntryPoint = EntryPoint.WEB,
) -> ReportVersion:
    """Sign off the current draft as final, with the actor's Ed25519 key (created on first use).

    Only a reporting or reviewing doctor of the report's hospital may sign; a signer other than
    the reporting doctor becomes the reviewing doctor. The impression must not be empty.
    """
    _require_doctor(actor, report.hospital)
    with transaction.atomic():
        report = _locked(report, expected_version)
        if report.status not in (Report.Status.DRAFT, Report.Status.PRELIMINARY):
            raise ValidationError({"status": _("Only a draft or preliminary report can be signed.")})
        base = _latest(report)
        if not base.impression.strip():
            raise ValidationError({"impression": _("The impression (诊断意见) is required to sign.")})
        reviewer = actor if actor.pk != base.reporting_doctor_id else None
        version = _append(report, base=base, actor=actor, status=Report.Status.FINAL, fields={},
                          reviewing_doctor=reviewer, signed=True)  # fmt: skip
        _audit(Action.REPORT_SIGNED, version=version, actor=actor, before=base.content_sha256,
               request=request, entry_point=entry_point)  # fmt: skip
        publication_refresh(study=report.study, actor=actor, request=request, entry_point=entry_point)
    return version


def report_amend(
    *,
    report: Report,
    actor: Any,
    expected_version: int,
    fields: Mapping[str, Any],
    reason: str,
    request: HttpRequest | None = None,
    entry_point: EntryPoint = EntryPoint.WEB,
) -> ReportVersion:
    """Amend a signed report: version N+1 with status amended, signed by the actor.

    Allowed to the report's reporting or reviewing doctor (who must still be a doctor there) and
    to the hospital's admins. A reason is required; every earlier version stays as it was.
    """
    clean = _clean_fields(fields)
    reason = _clean_reason(reason, _("A reason is required for an amendment."))
    with transaction.atomic():
        report = _locked(report, expected_version)
        _require_amendable(report)
        base = _latest(report)
        roles = hospital_roles(actor, report.hospital)
        own_report = actor.pk in (base.reporting_doctor_id, base.reviewing_doctor_id) and roles & DOCTOR_ROLES
        if not own_report and HospitalRole.HOSPITAL_ADMIN not in roles:
            raise PermissionDenied(_("Only the report's doctors or a hospital admin may amend it."))
        if all(getattr(base, name) == value for name, value in clean.items()):
            raise ValidationError({"fields": _("The amendment changes nothing.")})
        if not clean.get("impression", base.impression).strip():
            raise ValidationError({"impression": _("The impression (诊断意见) is required.")})
        version = _append(report, base=base, actor=actor, status=Report.Status.AMENDED, fields=clean,
                          reason=reason, signed=True)  # fmt: skip
        _audit(Action.REPORT_AMENDED, version=version, actor=actor, before=base.content_sha256,
               request=request, entry_point=entry_point)  # fmt: skip
        publication_refresh(study=report.study, amended_version=version, actor=actor, request=request,
                            entry_point=entry_point)  # fmt: skip
    return version


def report_enter_in_error(
    *,
    actor: Any,
    report: Report,
    reason: str,
    expected_version: int | None = None,
    request: HttpRequest | None = None,
    entry_point: EntryPoint = EntryPoint.WEB,
) -> ReportVersion:
    """Mark the report entered in error: version N+1 with the same content, status
    entered_in_error and the reason, signed by the actor; the study is withdrawn from its patient.

    Allowed to the report's reporting or reviewing doctor and to the hospital's admins; a reason
    is required. Every earlier version stays; the report cannot be signed or amended afterwards.
    """
    reason = _clean_reason(reason, _("A reason is required to mark a report entered in error."))
    with transaction.atomic():
        report = _locked(report, expected_version)
        if report.status == Report.Status.ENTERED_IN_ERROR:
            raise ValidationError({"status": _("This report is already marked entered in error.")})
        base = _latest(report)
        _require_report_doctor_or_admin(actor, report, base)
        version = _append(report, base=base, actor=actor, status=Report.Status.ENTERED_IN_ERROR, fields={},
                          reason=reason.strip(), signed=True)  # fmt: skip
        _audit(Action.REPORT_ENTERED_IN_ERROR, version=version, actor=actor, before=base.content_sha256,
               request=request, entry_point=entry_point)  # fmt: skip
        study_unpublish(actor=actor, study=report.study, reason=reason.strip(), request=request,
                        entry_point=entry_point)  # fmt: skip
    return version


def report_verify(version: ReportVersion) -> bool:
    """Recompute the canonical bytes of ``version``; check its SHA-256 and its signature."""
    return _version_verify(version, version.report)


def version_diff(a: ReportVersion, b: ReportVersion) -> dict[str, tuple[Any, Any]]:
    """The content fields that differ from ``a`` to ``b``, as ``{field: (old, new)}``.
    Doctors are named by public id."""
    old, new = content_of(a), content_of(b)
    return {name: (old[name], new[name]) for name in CONTENT_FIELDS if old[name] != new[name]}
