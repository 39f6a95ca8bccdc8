"""Reading reports of one hospital, with the users each version names."""

from django.db.models import QuerySet
from django.http import Http404

from apps.imaging.models import Study
from apps.reports.models import Report, ReportVersion
from apps.tenants.access import get_for_hospital_or_404
from apps.tenants.models import Hospital

VERSION_RELATIONS = ("report", "reporting_doctor", "reviewing_doctor", "author", "signed_by", "signing_key")


def study_by_uid_or_404(hospital: Hospital, study_uid: str) -> Study:
    """The hospital's study; unknown and another hospital's study are the same 404."""
    return get_for_hospital_or_404(Study.objects.all(), hospital, study_instance_uid=study_uid)


def report_for_study_or_404(hospital: Hospital, study: Study) -> Report:
    return get_for_hospital_or_404(Report.objects.select_related("hospital", "study"), hospital, study=study)


def report_versions(report: Report) -> QuerySet[ReportVersion]:
    return ReportVersion.objects.filter(hospital=report.hospital, report=report).select_related(*VERSION_RELATIONS)


def report_version_or_404(report: Report, number: int) -> ReportVersion:
    version = report_versions(report).filter(number=number).first()
    if version is None:
        raise Http404
    return version


WORKLIST_LIMIT = 100


def report_worklist(hospital: Hospital, *, status: str = "") -> QuerySet[Study]:
    """The hospital's studies, newest first, each with its report (if any) for the status column.

    ``status`` filters by report status; ``"none"`` means studies without a report yet.
    """
    studies = (
        Study.objects.for_hospital(hospital)
        .select_related("report", "patient", "publication")
        .order_by("-study_date", "-created_at")
    )
    if status == "none":
        studies = studies.filter(report__isnull=True)
    elif status:
        studies = studies.filter(report__status=status)
    return studies


def study_by_public_id_or_404(hospital: Hospital, public_id: object) -> Study:
    return get_for_hospital_or_404(Study.objects.select_related("patient"), hospital, public_id=public_id)


def report_of_study(hospital: Hospital, study: Study) -> Report | None:
    return Report.objects.select_related("hospital", "study").filter(hospital=hospital, study=study).first()
