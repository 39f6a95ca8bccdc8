"""pydicom does not judge (and log) the values the archive reads: the archive's own rules do."""

import io
import logging
import warnings

import pytest
from pydicom import dcmread

from apps.imaging.dicom.header import header_json
from apps.imaging.dicom.parse import parse_part10
from tests.imaging.dicom_factory import make_instance, to_part10_bytes

MARKER = "SECRET-NAME"


def test_values_pydicom_would_call_invalid_are_read_without_a_warning_or_a_log(caplog):
    ds = make_instance("CT", PatientName=MARKER + "^X" * 40, PatientID=f"{MARKER}\\{MARKER}", StudyDate="2026-11-29")
    data = to_part10_bytes(ds)
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        parsed = parse_part10(io.BytesIO(data))
        header_json(dcmread(io.BytesIO(data), stop_before_pixels=True))
    assert parsed.patient_name.startswith(MARKER)
    assert MARKER not in caplog.text


@pytest.mark.parametrize("vr_value", ["2026-11-29"])
def test_our_rules_still_see_the_value(vr_value):
    ds = make_instance("CT", StudyDate=vr_value)
    parsed = parse_part10(io.BytesIO(to_part10_bytes(ds)))
    assert parsed.study_date is None  # not a DICOM DA: no date, rather than a wrong one
