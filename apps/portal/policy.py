"""Per-hospital patient-access policy and the service period of a study."""

from datetime import date, timedelta

from apps.imaging.models import Study
from apps.portal.models import PatientAccessPolicy
from apps.tenants.models import Hospital


def policy_for(hospital: Hospital) -> PatientAccessPolicy:
    """The hospital's policy, or the defaults (unsaved) when it has none."""
    policy = PatientAccessPolicy.objects.filter(hospital=hospital).first()
    return policy or PatientAccessPolicy(hospital=hospital)


def _add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def service_period_end(study: Study, policy: PatientAccessPolicy) -> date:
    """15 years from an outpatient exam, 30 from an inpatient one (by policy); other encounters
    count as outpatient. The exam date is the study date, or the day it was archived.

    The end is exclusive: from this day on the study can no longer be viewed online (see
    ``service_period_last_day`` for the day to show)."""
    start = study.study_date or study.created_at.date()
    years = policy.inpatient_years if study.encounter_type == Study.EncounterType.INPATIENT else policy.outpatient_years
    return _add_years(start, years)


def service_period_last_day(period_end: date) -> date:
    """The last day of a service period ending (exclusively) on ``period_end``: the day patients
    and staff are told, "until <day> (inclusive)"."""
    return period_end - timedelta(days=1)


def service_period_ended(study: Study, policy: PatientAccessPolicy, today: date) -> bool:
    return today >= service_period_end(study, policy)
