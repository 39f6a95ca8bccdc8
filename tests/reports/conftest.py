"""Studies to report on, created directly in the archive index (no pixels are needed)."""

from collections.abc import Callable
from datetime import date

import pytest
from pydicom.uid import generate_uid

from apps.imaging.keys import field_seal
from apps.imaging.models import Patient, Study
from apps.tenants.context import hospital_context
from apps.tenants.models import Hospital

PATIENT_NAME = "王小明"
PATIENT_ID = "MRN-0001"


@pytest.fixture
def make_study(world) -> Callable[[Hospital], Study]:
    def _make(hospital: Hospital) -> Study:
        with hospital_context(hospital):
            patient = Patient.objects.create(
                hospital=hospital,
                mrn_sealed=field_seal(hospital, PATIENT_ID, field="mrn"),
                mrn_index=generate_uid(),
                name_sealed=field_seal(hospital, PATIENT_NAME, field="name"),
                birth_date_sealed=field_seal(hospital, "1970-01-02", field="birth"),
                sex="M",
            )
            return Study.objects.create(
                hospital=hospital, patient=patient, study_instance_uid=generate_uid(), accession_number="A1001",
                modalities="CT", study_date=date(2026, 11, 20),
            )  # fmt: skip

    return _make


@pytest.fixture
def study(world, make_study) -> Study:
    return make_study(world.first.hospital)


FINDINGS = {
    "exam_description": "胸部CT平扫",
    "technique": "螺旋CT, 层厚5mm",
    "findings": "右肺上叶见一结节, 直径约8mm。",
    "impression": "右肺上叶结节, 建议随访。",
    "recommendation": "3个月后复查",
}


@pytest.fixture
def final_report(world, study):
    """The study's report, written and signed by the first hospital's reporting doctor (version 2)."""
    from apps.reports.models import Report
    from apps.reports.services import report_create, report_sign

    doctor = world.first["reporting_doctor"]
    with hospital_context(world.first.hospital):
        version = report_create(hospital=world.first.hospital, study=study, actor=doctor, fields=FINDINGS)
        report_sign(report=version.report, actor=doctor, expected_version=1)
        return Report.objects.select_related("hospital", "study").get(pk=version.report.pk)


def tamper(owner_connection, report, **changes: object) -> None:
    """Change the latest version's row as the table owner (committed data only: use
    ``transaction=True``), acting for its hospital, with the append-only trigger briefly off."""
    sets = ", ".join(f"{column} = %({column})s" for column in changes)
    owner_connection.execute("SELECT set_config('app.hospital_id', %s, false)", [str(report.hospital_id)])
    owner_connection.execute("ALTER TABLE reports_reportversion DISABLE TRIGGER report_version_immutable")
    try:
        updated = owner_connection.execute(
            f"UPDATE reports_reportversion SET {sets} WHERE report_id = %(report)s AND number = %(number)s",
            {**changes, "report": report.pk, "number": report.current_version},
        ).rowcount
        assert updated == 1
    finally:
        owner_connection.execute("ALTER TABLE reports_reportversion ENABLE TRIGGER report_version_immutable")
