"""Publication: when a study becomes visible to its patient.

A study is published once both hold: its report is signed (final or amended) and its images are
complete (a staff "complete" action, or the archive's manifest check). Whichever comes second
publishes it, in the same transaction. The seconds from the report's approval (its first
signature) to publication are kept for the QC timeliness metric. A withdrawal (the report was
entered in error) needs a reason, is audited, and hides the study until it is published again
by a new signature.

The portal hears of publications and amendments of published reports through
``apps.reports.signals``, after commit.
"""

from typing import Any

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.accounts.roles import HospitalRole
from apps.accounts.services import hospital_roles
from apps.audit.services import audit_record
from apps.audit.vocabulary import Action, EntryPoint
from apps.imaging.models import Patient, Study
from apps.reports import signals
from apps.reports.models import Report, ReportVersion, StudyPublication
from apps.tenants.models import Hospital

# Who may declare a study's images complete: the staff who send and read them.
COMPLETING_ROLES = frozenset(
    {
        HospitalRole.TECHNOLOGIST,
        HospitalRole.REPORTING_DOCTOR,
        HospitalRole.REVIEWING_DOCTOR,
        HospitalRole.HOSPITAL_ADMIN,
    }
)
SIGNED_STATUSES = (Report.Status.FINAL, Report.Status.AMENDED)


def _locked_publication(study: Study) -> StudyPublication:
    publication, _created = StudyPublication.objects.get_or_create(hospital_id=study.hospital_id, study=study)
    return StudyPublication.objects.select_for_update().get(pk=publication.pk)


def _first_signature_at(report: Report) -> Any:
    first = (
        ReportVersion.objects.filter(hospital_id=report.hospital_id, report=report, status__in=SIGNED_STATUSES)
        .order_by("number")
        .values_list("signed_at", flat=True)
        .first()
    )
    return first


def _signed_report(study: Study) -> Report | None:
    return Report.objects.filter(hospital_id=study.hospital_id, study=study, status__in=SIGNED_STATUSES).first()


def _publication_audit(
    action: Action,
    *,
    publication: StudyPublication,
    actor: Any,
    request: HttpRequest | None,
    entry_point: EntryPoint,
    details: dict[str, Any],
) -> None:
    audit_record(
        action=action,
        request=request,
        actor=actor,
        actor_name="" if actor is not None or request is not None else "system",
        hospital=publication.hospital,
        entry_point=entry_point,
        object_type="study",
        object_id=str(publication.study.public_id),
        details=details,
    )


def publication_refresh(
    *,
    study: Study,
    amended_version: ReportVersion | None = None,
    actor: Any = None,
    request: HttpRequest | None = None,
    entry_point: EntryPoint = EntryPoint.WEB,
) -> StudyPublication:
    """Publish ``study`` if its report is signed and its images complete; idempotent.

    Called by report signing and amendment and by the images-complete action, inside their
    transactions. With ``amended_version`` and a study already visible, the portal is told of the
    amendment after commit.
    """
    with transaction.atomic():
        publication = _locked_publication(study)
        report = _signed_report(study)
        if publication.is_visible:
            if amended_version is not None:
                transaction.on_commit(
                    lambda: signals.published_report_amended.send_robust(
                        sender=StudyPublication, study=study, version=amended_version
                    )
                )
            return publication
        if report is None or publication.images_complete_at is None:
            return publication
        if publication.withdrawn_at is not None and amended_version is None:
            # Withdrawn: only a new signed version (an amendment) brings the study back.
            return publication
        now = timezone.now()
        approved_at = _first_signature_at(report) or now
        publication.report_approved_at = approved_at
        publication.published_at = now
        publication.approval_to_publication_seconds = max(0, int((now - approved_at).total_seconds()))
        publication.withdrawn_at = None
        publication.withdrawn_by = None
        publication.withdrawn_reason = ""
        publication.save()
        _publication_audit(
            Action.STUDY_PUBLISHED,
            publication=publication,
            actor=actor,
            request=request,
            entry_point=entry_point,
            details={
                "report_version": report.current_version,
                "approval_to_publication_seconds": publication.approval_to_publication_seconds,
            },
        )
        transaction.on_commit(
            lambda: signals.study_published.send_robust(sender=StudyPublication, study=study, publication=publication)
        )
    return publication


def study_images_mark_complete(
    *,
    actor: Any,
    study: Study,
    source: str = StudyPublication.Source.STAFF,
    request: HttpRequest | None = None,
    entry_point: EntryPoint = EntryPoint.WEB,
) -> StudyPublication:
    """Declare the study's images complete (a staff action, or the manifest check with no actor),
    then publish it if its report is already signed. Marking twice changes nothing."""
    if source == StudyPublication.Source.STAFF and not hospital_roles(actor, study.hospital) & COMPLETING_ROLES:
        raise PermissionDenied(_("Only the hospital's technologists, doctors or admins may do this."))
    with transaction.atomic():
        publication = _locked_publication(study)
        if publication.images_complete_at is not None:
            return publication
        publication.images_complete_at = timezone.now()
        publication.images_complete_by = actor if source == StudyPublication.Source.STAFF else None
        publication.images_complete_source = source
        publication.save()
        _publication_audit(
            Action.STUDY_IMAGES_COMPLETED,
            publication=publication,
            actor=actor,
            request=request,
            entry_point=entry_point,
            details={"source": source, "instances": study.number_of_instances, "series": study.number_of_series},
        )
        return publication_refresh(study=study, actor=actor, request=request, entry_point=entry_point)


def study_unpublish(
    *,
    actor: Any,
    study: Study,
    reason: str,
    request: HttpRequest | None = None,
    entry_point: EntryPoint = EntryPoint.WEB,
) -> StudyPublication:
    """Withdraw the study from its patient (its report was entered in error, say).

    Allowed to the hospital's admins and its reporting and reviewing doctors; a reason is
    required. Withdrawing a study that is not visible records the withdrawal all the same, so it
    will not be published by a later images-complete action.
    """
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationError({"reason": _("A reason is required to withdraw a study.")})
    roles = hospital_roles(actor, study.hospital)
    allowed = {HospitalRole.HOSPITAL_ADMIN, HospitalRole.REPORTING_DOCTOR, HospitalRole.REVIEWING_DOCTOR}
    if not roles & allowed:
        raise PermissionDenied(_("Only the hospital's doctors or admins may withdraw a study."))
    with transaction.atomic():
        publication = _locked_publication(study)
        was_visible = publication.is_visible
        publication.withdrawn_at = timezone.now()
        publication.withdrawn_by = actor
        publication.withdrawn_reason = reason.strip()
        publication.save()
        _publication_audit(
            Action.STUDY_UNPUBLISHED,
            publication=publication,
            actor=actor,
            request=request,
            entry_point=entry_point,
            details={"was_visible": was_visible},
        )
        transaction.on_commit(
            lambda: signals.study_withdrawn.send_robust(sender=StudyPublication, study=study, publication=publication)
        )
    return publication


def manifest_complete_studies_publish(*, hospital: Hospital) -> int:
    """Mark complete (source: manifest) every study of ``hospital`` whose received instances now
    meet its manifest and whose images are not yet complete, publishing those already reported.
    Run periodically (celery beat); returns how many studies were marked."""
    from apps.imaging.manifest import manifest_shortfall
    from apps.imaging.models import StudyManifest

    marked = 0
    manifests = StudyManifest.objects.filter(hospital=hospital)
    waiting = {m.study_instance_uid: m for m in manifests}
    studies = (
        Study.objects.for_hospital(hospital)
        .filter(study_instance_uid__in=list(waiting))
        .exclude(publication__images_complete_at__isnull=False)
    )
    for study in studies.select_related("hospital"):
        manifest = waiting[study.study_instance_uid]
        if manifest.series_counts and not manifest_shortfall(hospital=hospital, manifest=manifest):
            study_images_mark_complete(
                actor=None, study=study, source=StudyPublication.Source.MANIFEST, entry_point=EntryPoint.TASK
            )
            marked += 1
    return marked


# Selectors


def publication_for(study: Study) -> StudyPublication | None:
    return StudyPublication.objects.filter(hospital_id=study.hospital_id, study=study).first()


def unpublished_reasons(study: Study) -> list[str]:
    """Why ``study`` is not visible to its patient, for staff (empty when it is published)."""
    publication = publication_for(study)
    if publication is not None and publication.is_visible:
        return []
    if publication is not None and publication.withdrawn_at is not None:
        return [
            _("It was withdrawn from the patient (report entered in error); a newly signed version publishes it again.")
        ]
    reasons = []
    if _signed_report(study) is None:
        reasons.append(_("The report is not signed yet."))
    if publication is None or publication.images_complete_at is None:
        reasons.append(_("The images are not marked complete yet."))
    return reasons


def publication_state(study: Study) -> tuple[bool, bool]:
    """(published and visible now, withdrawn) from the study's publication row, which callers
    load with ``select_related("publication")`` so per-request checks stay one query."""
    try:
        publication = study.publication  # type: ignore[attr-defined]
    except ObjectDoesNotExist:
        return False, False
    return bool(publication.is_visible), publication.withdrawn_at is not None


def study_is_published(study: Study) -> bool:
    publication = publication_for(study)
    return publication is not None and publication.is_visible


def published_studies(*, hospital: Hospital, patient: Patient) -> QuerySet[Study]:
    """The patient's studies at ``hospital`` that the patient may see, newest first."""
    return (
        Study.objects.for_hospital(hospital)
        .filter(
            patient=patient,
            publication__published_at__isnull=False,
            publication__withdrawn_at__isnull=True,
        )
        .select_related("publication")
        .order_by("-study_date", "-created_at")
    )


def patient_report_version(study: Study) -> ReportVersion | None:
    """The latest signed version the patient may read, or None when the study is not visible.

    A version number above the first signed one means the report was amended.
    """
    if not study_is_published(study):
        return None
    return (
        ReportVersion.objects.filter(hospital_id=study.hospital_id, report__study=study, status__in=SIGNED_STATUSES)
        .select_related("report", "reporting_doctor", "reviewing_doctor", "signed_by")
        .order_by("-number")
        .first()
    )
