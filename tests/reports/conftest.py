"""Studies to report on, created directly in the archive index (no pixels are needed)."""

from collections.abc import Callable

import pytest
from pydicom.uid import generate_uid

from apps.imaging.models import Patient, Study
from apps.tenants.context import hospital_context
from apps.tenants.models import Hospital


@pytest.fixture
def make_study(world) -> Callable[[Hospital], Study]:
    def _make(hospital: Hospital) -> Study:
        with hospital_context(hospital):
            patient = Patient.objects.create(
                hospital=hospital, mrn_sealed=b"sealed", mrn_index=generate_uid(), name_sealed=b"sealed"
            )
            return Study.objects.create(hospital=hospital, patient=patient, study_instance_uid=generate_uid())

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
