"""Reads for the viewer: a study's series and instances, and its latest signed report."""

from django.db.models import QuerySet

from apps.imaging.models import Instance, Series, Study
from apps.tenants.models import Hospital


def study_series(hospital: Hospital, study: Study) -> QuerySet[Series]:
    return Series.objects.filter(hospital=hospital, study=study).order_by("series_number", "id")


def series_instances(hospital: Hospital, series: Series) -> QuerySet[Instance]:
    return (
        Instance.objects.filter(hospital=hospital, series=series)
        .select_related("series", "series__study")
        .order_by("instance_number", "id")
    )


def latest_signed_report(hospital: Hospital, study: Study) -> object | None:
    """The latest signed ReportVersion of the study's report, read through apps.reports, or None."""
    from apps.reports import selectors as report_selectors

    report = report_selectors.report_of_study(hospital, study)
    if report is None:
        return None
    return report_selectors.report_versions(report).filter(signed_at__isnull=False).order_by("-number").first()
