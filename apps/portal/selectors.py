"""Reads of the portal: a patient's studies, their reports, and who opened them."""

from dataclasses import dataclass
from datetime import date
from typing import Any

from django.core.exceptions import ValidationError
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from apps.audit.models import AuditEvent
from apps.audit.vocabulary import Action, EntryPoint
from apps.imaging.models import Patient, Study
from apps.portal.models import PatientAccessPolicy, Share
from apps.portal.policy import service_period_end, service_period_last_day
from apps.tenants.models import Hospital


@dataclass
class PatientStudy:
    study: Study
    report: Any  # ReportVersion | None
    amended: bool
    period_end: date  # the first day it can no longer be viewed
    expired: bool

    @property
    def last_day(self) -> date:
        """The last day the study can be viewed online (inclusive): what patients are told."""
        return service_period_last_day(self.period_end)


def _reports() -> Any:
    from apps.reports import publication

    return publication


def patient_studies(*, hospital: Hospital, patient: Patient, policy: PatientAccessPolicy) -> list[PatientStudy]:
    """The patient's published studies at ``hospital``, newest first, with report and period."""
    today = timezone.localdate()
    rows = []
    for study in _reports().published_studies(hospital=hospital, patient=patient):
        rows.append(_patient_study(study, policy, today))
    return rows


def _patient_study(study: Study, policy: PatientAccessPolicy, today: date) -> PatientStudy:
    version = _reports().patient_report_version(study)
    end = service_period_end(study, policy)
    return PatientStudy(
        study=study,
        report=version,
        amended=bool(version is not None and version.number > 1 and str(version.status) == "amended"),
        period_end=end,
        expired=today >= end,  # service_period_ended
    )


def patient_study_or_404(
    *, hospital: Hospital, patient: Patient, study_id: str, policy: PatientAccessPolicy
) -> PatientStudy:
    """One of the patient's published studies; any other study (another patient's, another
    hospital's, unpublished, withdrawn, unknown) is the same 404."""
    try:
        study = _reports().published_studies(hospital=hospital, patient=patient).filter(public_id=study_id).first()
    except (ValueError, ValidationError) as error:  # a malformed UUID
        raise Http404 from error
    if study is None:
        raise Http404
    return _patient_study(study, policy, timezone.localdate())


@dataclass
class AccessEntry:
    occurred_at: Any
    what: str
    who: str
    study: Study | None
    outcome_ok: bool


def _staff_roles(events: list[AuditEvent], hospital: Hospital) -> dict[int, list[str]]:
    """The roles (labels, never names) the staff behind ``events`` hold at ``hospital`` now, for
    events recorded without a role (the report screens, the back office)."""
    from apps.accounts.models import Membership

    actor_ids = {event.actor_id for event in events if event.actor_id is not None and not event.actor_role}
    if not actor_ids:
        return {}
    labels = _role_labels()
    roles: dict[int, list[str]] = {}
    memberships = Membership.objects.for_hospital(hospital).filter(user_id__in=actor_ids).order_by("role")
    for user_id, role in memberships.values_list("user_id", "role"):
        if role in labels:
            roles.setdefault(user_id, []).append(labels[role])
    return roles


def _role_labels() -> dict[str, str]:
    """Hospital roles' labels in the current language."""
    from apps.accounts.roles import HospitalRole

    return {choice.value: str(choice.label) for choice in HospitalRole}


def _who(event: AuditEvent, staff_roles: dict[int, list[str]] | None = None) -> str:
    """Who opened: the staff's role, never their name; the patient; a doctor by share link; or
    the hospital's own systems (API)."""
    mode = event.details.get("mode") if isinstance(event.details, dict) else None
    if event.actor_role == "patient" or mode == "patient":
        return _("You")
    if event.actor_role == "share" or event.object_type == "share" or mode == "share":
        return _("A doctor you shared with")
    if event.actor_id is not None:
        labels = _role_labels()
        role = event.actor_role
        if role in labels:  # not written by the app today (staff events carry the user); kept for old rows
            return _("Hospital staff (%(role)s)") % {"role": labels[role]}
        held = (staff_roles or {}).get(event.actor_id, [])
        if held:
            return _("Hospital staff (%(role)s)") % {"role": "、".join(held)}
        return _("Hospital staff")
    if event.entry_point == EntryPoint.API:
        return _("Hospital information system")
    return _("System")


SHOWN_ACTIONS = {
    Action.STUDY_OPENED: gettext_lazy("Images opened"),
    Action.INSTANCES_ACCESSED: gettext_lazy("Images retrieved"),
    Action.REPORT_VIEWED: gettext_lazy("Report viewed"),
    Action.REPORT_PRINTED: gettext_lazy("Report printed"),
    Action.REPORT_EXPORTED: gettext_lazy("Report exported"),
    Action.PATIENT_RECORD_VIEWED: gettext_lazy("Exam record looked up (exam-slip QR code issued)"),
    Action.STUDY_DOWNLOADED: gettext_lazy("Downloaded"),
    Action.SHARE_OPENED: gettext_lazy("Share link used"),
    Action.SHARE_CREATED: gettext_lazy("Share link created"),
    Action.SHARE_REVOKED: gettext_lazy("Share link revoked"),
}


def access_history(*, hospital: Hospital, patient: Patient, limit: int = 200) -> list[AccessEntry]:
    """Every recorded opening, printing, download and share use of the patient's studies and
    reports, newest first: by the patient, by doctors they shared with, by hospital staff (shown
    by role), by the hospital's systems through the API and in the back office.

    Events name their object by public id: a study, a share or (staff report screens, the API,
    the back office) a report."""
    from apps.reports.models import Report

    studies = {str(study.public_id): study for study in Study.objects.for_hospital(hospital).filter(patient=patient)}
    shares = {
        str(share.public_id): studies.get(str(share.study.public_id))
        for share in Share.objects.for_hospital(hospital).filter(patient=patient).select_related("study")
    }
    reports = {
        str(report.public_id): studies.get(str(report.study.public_id))
        for report in Report.objects.for_hospital(hospital).filter(study__patient=patient).select_related("study")
    }
    events = list(
        AuditEvent.objects.filter(hospital=hospital, action__in=[str(a) for a in SHOWN_ACTIONS])
        .filter(object_id__in=[*studies, *shares, *reports])
        .order_by("-occurred_at")[:limit]
    )
    staff_roles = _staff_roles(events, hospital)
    entries = []
    for event in events:
        study = studies.get(event.object_id) or shares.get(event.object_id) or reports.get(event.object_id)
        entries.append(
            AccessEntry(
                occurred_at=event.occurred_at,
                what=str(SHOWN_ACTIONS.get(Action(event.action), event.action)),
                who=_who(event, staff_roles),
                study=study,
                outcome_ok=event.outcome == 0,
            )
        )
    return entries


def patient_shares(*, hospital: Hospital, patient: Patient) -> list[Share]:
    return list(
        Share.objects.for_hospital(hospital).filter(patient=patient).select_related("study").order_by("-created_at")
    )


def share_uses(*, hospital: Hospital, share: Share) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(
            hospital=hospital, action=Action.SHARE_OPENED, object_type="share", object_id=str(share.public_id)
        ).order_by("-occurred_at")
    )
