"""Study completeness against a manifest: the selector publication relies on, and the QC sweep."""

import io
from datetime import timedelta

import pytest
from django.utils import timezone
from pydicom import dcmread

from apps.imaging.ingest import staged_object_create, staged_object_process
from apps.imaging.manifest import ManifestError, study_manifest_set
from apps.imaging.models import StagedObject, Study, StudyManifest, ValidationFinding
from apps.imaging.selectors import study_images_complete
from apps.imaging.tasks import study_completeness_sweep
from apps.tenants.context import hospital_context
from tests.imaging.dicom_factory import make_ct_series

pytestmark = pytest.mark.django_db


def ingest(hospital, blobs):
    with hospital_context(hospital):
        for blob in blobs:
            staged = staged_object_create(hospital=hospital, source="stow", chunks=[blob])
            assert staged_object_process(staged=staged).status == StagedObject.Status.STORED


def uids(blob: bytes) -> tuple[str, str]:
    dataset = dcmread(io.BytesIO(blob))
    return dataset.StudyInstanceUID, dataset.SeriesInstanceUID


@pytest.fixture
def series(world, local_storage):
    return make_ct_series(4, PatientID="MAN0001")


def set_manifest(hospital, study_uid, counts):
    with hospital_context(hospital):
        return study_manifest_set(hospital=hospital, study_instance_uid=study_uid, series_counts=counts, actor=None)


def study_of(hospital, study_uid) -> Study:
    with hospital_context(hospital):
        return Study.objects.get(study_instance_uid=study_uid)


def complete(hospital, study) -> bool:
    with hospital_context(hospital):
        return study_images_complete(study)


def test_without_a_manifest_a_stored_study_is_complete(world, series):
    hospital = world.first.hospital
    ingest(hospital, series[:1])
    assert complete(hospital, study_of(hospital, uids(series[0])[0])) is True


def test_a_study_short_of_its_manifest_is_incomplete_until_the_rest_arrives(world, series):
    hospital = world.first.hospital
    study_uid, series_uid = uids(series[0])
    set_manifest(hospital, study_uid, {series_uid: 4})
    ingest(hospital, series[:3])
    study = study_of(hospital, study_uid)
    assert complete(hospital, study) is False
    ingest(hospital, series[3:])
    assert complete(hospital, study) is True


def test_a_series_named_by_the_manifest_that_never_came_makes_it_incomplete(world, series):
    hospital = world.first.hospital
    study_uid, series_uid = uids(series[0])
    ingest(hospital, series)
    set_manifest(hospital, study_uid, {series_uid: 4, "1.2.826.0.1.3680043.8.498.999": 20})
    assert complete(hospital, study_of(hospital, study_uid)) is False


def test_the_sweep_records_one_finding_once_arrivals_are_quiet(world, series):
    hospital = world.first.hospital
    study_uid, series_uid = uids(series[0])
    set_manifest(hospital, study_uid, {series_uid: 6})
    ingest(hospital, series)
    assert study_completeness_sweep() == 0  # still arriving: no finding yet
    with hospital_context(hospital):
        an_hour_ago = timezone.now() - timedelta(hours=1)
        StagedObject.objects.update(created_at=an_hour_ago)
        StudyManifest.objects.update(updated_at=an_hour_ago)
    assert study_completeness_sweep() == 1
    assert study_completeness_sweep() == 0  # reported once
    with hospital_context(hospital):
        [finding] = ValidationFinding.objects.filter(code="STUDY_INCOMPLETE")
        assert (finding.details["expected"], finding.details["received"], finding.details["missing"]) == (6, 4, 2)
        assert finding.severity == "warn" and "MAN0001" not in finding.message_en


def test_a_complete_study_gets_no_finding(world, series):
    hospital = world.first.hospital
    study_uid, series_uid = uids(series[0])
    set_manifest(hospital, study_uid, {series_uid: 4})
    ingest(hospital, series)
    with hospital_context(hospital):
        StagedObject.objects.update(created_at=timezone.now() - timedelta(hours=1))
        StudyManifest.objects.update(updated_at=timezone.now() - timedelta(hours=1))
    assert study_completeness_sweep() == 0


@pytest.mark.parametrize(
    "study_uid, counts",
    [
        ("not-a-uid", {"1.2.3": 1}),
        ("1.2.3", {}),
        ("1.2.3", {"1.2.3.4": 0}),
        ("1.2.3", {"1.2.3.4": -1}),
        ("1.2.3", {"1.2.3.4": "5"}),
        ("1.2.3", {"1.2.3.4": True}),
        ("1.2.3", {"01.2": 3}),
        ("1.2.3", {"1." + "2" * 70: 3}),
    ],
)
def test_malformed_manifests_are_refused_and_nothing_is_written(world, study_uid, counts):
    hospital = world.first.hospital
    with pytest.raises(ManifestError):
        set_manifest(hospital, study_uid, counts)
    with hospital_context(hospital):
        assert not StudyManifest.objects.exists()


def test_another_hospitals_manifest_does_not_apply(world, series):
    hospital = world.first.hospital
    study_uid, series_uid = uids(series[0])
    ingest(hospital, series[:2])
    set_manifest(world.second.hospital, study_uid, {series_uid: 4})
    assert complete(hospital, study_of(hospital, study_uid)) is True
