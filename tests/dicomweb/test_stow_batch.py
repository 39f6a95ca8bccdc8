"""STOW-RS ingests a request's instances as a batch: shared lookups, counters written once, and
still every guarantee of the one-object pipeline."""

import hashlib
import io

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from pydicom import dcmread
from pydicom.uid import generate_uid

from apps.imaging.models import Instance, Patient, Series, StagedObject, Study
from apps.tenants.context import hospital_context
from tests.dicomweb.helpers import stow, token_for
from tests.imaging.dicom_factory import make_ct_series, make_ct_slice, make_mr_slice

pytestmark = pytest.mark.django_db


@pytest.fixture
def first(world, local_storage):
    return world.first.hospital, token_for(world.first.hospital)


def test_counters_of_a_multi_series_request_are_exact(client, first):
    hospital, token = first
    ct = make_ct_series(5, PatientID="BATCH01")
    study_uid = dcmread(io.BytesIO(ct[0])).StudyInstanceUID
    mr_series = generate_uid()
    mr = [
        make_mr_slice(StudyInstanceUID=study_uid, SeriesInstanceUID=mr_series, InstanceNumber=n, PatientID="BATCH01")
        for n in (1, 2)
    ]
    assert stow(client, "first", token, ct[:3] + mr[:1]).status_code == 200
    # A second request: two more CT slices, one more MR, and a repeat (a duplicate adds nothing).
    assert stow(client, "first", token, ct[3:] + mr[1:] + ct[:1]).status_code == 200
    with hospital_context(hospital):
        study = Study.objects.get(study_instance_uid=study_uid)
        assert (study.number_of_instances, study.number_of_series, study.modalities) == (7, 2, "CT\\MR")
        counts = dict(Series.objects.filter(study=study).values_list("modality", "number_of_instances"))
        assert counts == {"CT": 5, "MR": 2}
        assert Instance.objects.filter(series__study=study).count() == 7
        assert Patient.objects.count() == 1


def test_the_digest_is_taken_while_staging(client, first):
    hospital, token = first
    blob = make_ct_slice(PatientID="BATCH02")
    assert stow(client, "first", token, [blob]).status_code == 200
    with hospital_context(hospital):
        staged = StagedObject.objects.get()
        assert staged.sha256 == hashlib.sha256(blob).hexdigest() == staged.instance.sha256


def test_a_refused_part_leaves_no_patient_or_study_behind(client, first):
    hospital, token = first
    good = make_ct_slice(PatientID="BATCH03")
    # Same study, another patient: refused before anything of it is written.
    study_uid = dcmread(io.BytesIO(good)).StudyInstanceUID
    intruder = make_ct_slice(PatientID="BATCH04", PatientName="Other^Person", StudyInstanceUID=study_uid)
    response = stow(client, "first", token, [good, intruder])
    assert response.status_code == 202
    with hospital_context(hospital):
        assert Patient.objects.count() == 1
        assert Study.objects.get().number_of_instances == 1
        assert StagedObject.objects.filter(error_code="STUDY_MULTIPLE_PATIENTS").count() == 1


def test_a_series_costs_a_bounded_number_of_statements_per_slice(client, first):
    """The lookups of patient, study and series are made once per request, not per slice."""
    _hospital, token = first
    series = make_ct_series(25, PatientID="BATCH05")
    with CaptureQueriesContext(connection) as five:
        assert stow(client, "first", token, series[:5]).status_code == 200
    with CaptureQueriesContext(connection) as twenty:
        assert stow(client, "first", token, series[5:]).status_code == 200
    per_slice = (len(twenty.captured_queries) - len(five.captured_queries)) / 15
    # Per slice: staged row insert and update, the SOP Instance UID check, the instance insert
    # and the savepoint around it.
    assert per_slice <= 6, per_slice
