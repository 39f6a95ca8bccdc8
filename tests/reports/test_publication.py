"""Publication: a study reaches its patient only when its report is signed and its images are
complete; withdrawal needs a reason; the portal hears of publications and amendments."""

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from apps.audit.models import AuditEvent
from apps.audit.vocabulary import Action
from apps.reports import signals
from apps.reports.models import Report, ReportVersion, StudyPublication
from apps.reports.publication import (
    patient_report_version,
    publication_for,
    published_studies,
    study_images_mark_complete,
    study_is_published,
    study_unpublish,
)
from apps.reports.services import report_amend, report_create, report_sign
from apps.tenants.context import hospital_context
from tests.reports.conftest import FINDINGS


@pytest.fixture
def received(django_capture_on_commit_callbacks):
    """Signals sent after commit, as (name, kwargs)."""
    calls: list[tuple[str, dict]] = []

    def listener(name):
        def receive(sender, **kwargs):
            calls.append((name, kwargs))

        return receive

    receivers = {
        signals.study_published: listener("published"),
        signals.published_report_amended: listener("amended"),
        signals.study_withdrawn: listener("withdrawn"),
    }
    for signal, receiver in receivers.items():
        signal.connect(receiver, weak=False)
    yield calls
    for signal, receiver in receivers.items():
        signal.disconnect(receiver)


def _write_and_sign(world, study) -> Report:
    doctor = world.first["reporting_doctor"]
    version = report_create(hospital=world.first.hospital, study=study, actor=doctor, fields=FINDINGS)
    report_sign(report=version.report, actor=doctor, expected_version=1)
    return Report.objects.get(pk=version.report.pk)


def test_signed_report_alone_does_not_publish(world, study):
    with hospital_context(world.first.hospital):
        _write_and_sign(world, study)
        assert not study_is_published(study)
        assert patient_report_version(study) is None
        assert list(published_studies(hospital=world.first.hospital, patient=study.patient)) == []


def test_complete_images_alone_do_not_publish(world, study):
    with hospital_context(world.first.hospital):
        publication = study_images_mark_complete(actor=world.first["technologist"], study=study)
        assert publication.images_complete_at is not None
        assert publication.published_at is None
        assert not study_is_published(study)


def test_images_complete_after_signing_publishes_with_the_delay_from_approval(
    world, study, received, django_capture_on_commit_callbacks
):
    with hospital_context(world.first.hospital):
        report = _write_and_sign(world, study)
        signed_at = ReportVersion.objects.get(report=report, number=2).signed_at
        assert signed_at is not None
        with django_capture_on_commit_callbacks(execute=True):
            publication = study_images_mark_complete(actor=world.first["technologist"], study=study)
        assert publication.published_at is not None
        assert publication.report_approved_at == signed_at
        expected = int((publication.published_at - signed_at).total_seconds())
        assert publication.approval_to_publication_seconds == expected
        assert study_is_published(study)
        assert [s.pk for s in published_studies(hospital=world.first.hospital, patient=study.patient)] == [study.pk]
        assert patient_report_version(study).number == 2
        assert [name for name, _ in received] == ["published"]
        assert AuditEvent.objects.filter(action=Action.STUDY_PUBLISHED, object_id=str(study.public_id)).count() == 1


def test_signing_after_images_complete_publishes_at_signing(world, study, received, django_capture_on_commit_callbacks):
    with hospital_context(world.first.hospital):
        study_images_mark_complete(actor=world.first["technologist"], study=study)
        with django_capture_on_commit_callbacks(execute=True):
            _write_and_sign(world, study)
        publication = publication_for(study)
        assert publication.is_visible
        assert publication.approval_to_publication_seconds == 0
        assert [name for name, _ in received] == ["published"]


def test_marking_complete_twice_publishes_once(world, study):
    with hospital_context(world.first.hospital):
        _write_and_sign(world, study)
        first = study_images_mark_complete(actor=world.first["technologist"], study=study)
        second = study_images_mark_complete(actor=world.first["reporting_doctor"], study=study)
        assert second.published_at == first.published_at
        assert second.images_complete_by == world.first["technologist"]
        assert AuditEvent.objects.filter(action=Action.STUDY_PUBLISHED).count() == 1


def test_amending_a_published_report_tells_the_portal_once(world, study, received, django_capture_on_commit_callbacks):
    with hospital_context(world.first.hospital):
        report = _write_and_sign(world, study)
        study_images_mark_complete(actor=world.first["technologist"], study=study)
        received.clear()
        with django_capture_on_commit_callbacks(execute=True):
            amended = report_amend(
                report=report,
                actor=world.first["reporting_doctor"],
                expected_version=2,
                fields={"impression": "右肺上叶结节, 良性可能大。"},
                reason="复核后修正诊断意见",
            )
        assert [(name, kwargs["version"].number) for name, kwargs in received] == [("amended", 3)]
        assert patient_report_version(study).pk == amended.pk
        assert AuditEvent.objects.filter(action=Action.STUDY_PUBLISHED).count() == 1


def test_amending_an_unpublished_report_sends_nothing(world, study, received, django_capture_on_commit_callbacks):
    with hospital_context(world.first.hospital):
        report = _write_and_sign(world, study)
        with django_capture_on_commit_callbacks(execute=True):
            report_amend(
                report=report,
                actor=world.first["reporting_doctor"],
                expected_version=2,
                fields={"findings": "更正"},
                reason="笔误",
            )
        assert received == []


def test_withdrawal_needs_a_reason_and_hides_the_study(world, study, received, django_capture_on_commit_callbacks):
    with hospital_context(world.first.hospital):
        _write_and_sign(world, study)
        study_images_mark_complete(actor=world.first["technologist"], study=study)
        for reason in ("", "   ", None):
            with pytest.raises(ValidationError):
                study_unpublish(actor=world.first["reporting_doctor"], study=study, reason=reason)
        assert study_is_published(study)
        with django_capture_on_commit_callbacks(execute=True):
            publication = study_unpublish(actor=world.first["hospital_admin"], study=study, reason="检查部位录入错误")
        assert publication.withdrawn_reason == "检查部位录入错误"
        assert publication.published_at is not None  # the history stays
        assert not study_is_published(study)
        assert patient_report_version(study) is None
        assert list(published_studies(hospital=world.first.hospital, patient=study.patient)) == []
        event = AuditEvent.objects.get(action=Action.STUDY_UNPUBLISHED)
        assert event.details == {"was_visible": True}
        assert received[-1][0] == "withdrawn"


def test_a_withdrawn_study_is_not_republished_by_marking_images_again(world, study):
    with hospital_context(world.first.hospital):
        _write_and_sign(world, study)
        study_unpublish(actor=world.first["reporting_doctor"], study=study, reason="报告作废")
        study_images_mark_complete(actor=world.first["technologist"], study=study)
        assert not study_is_published(study)


@pytest.mark.parametrize("role", ["clinician"])
def test_only_imaging_staff_mark_images_complete(world, study, role):
    with hospital_context(world.first.hospital):
        with pytest.raises(PermissionDenied):
            study_images_mark_complete(actor=world.first[role], study=study)
        assert publication_for(study) is None


def test_staff_of_another_hospital_cannot_mark_or_withdraw(world, study):
    with hospital_context(world.first.hospital):
        with pytest.raises(PermissionDenied):
            study_images_mark_complete(actor=world.second["technologist"], study=study)
        with pytest.raises(PermissionDenied):
            study_unpublish(actor=world.second["hospital_admin"], study=study, reason="x")
        assert publication_for(study) is None


def test_technologist_cannot_withdraw(world, study):
    with hospital_context(world.first.hospital):
        with pytest.raises(PermissionDenied):
            study_unpublish(actor=world.first["technologist"], study=study, reason="x")


def test_publication_rows_are_invisible_to_another_hospital(world, study):
    with hospital_context(world.first.hospital):
        _write_and_sign(world, study)
        study_images_mark_complete(actor=world.first["technologist"], study=study)
    with hospital_context(world.second.hospital):
        assert StudyPublication.objects.count() == 0
    with hospital_context(world.first.hospital):
        assert StudyPublication.objects.count() == 1


def test_publication_delay_is_seconds_since_first_signature(world, study, monkeypatch):
    """The delay is measured from the report's first signature, not from an amendment."""
    from django.utils import timezone

    with hospital_context(world.first.hospital):
        report = _write_and_sign(world, study)
        report_amend(
            report=report,
            actor=world.first["reporting_doctor"],
            expected_version=2,
            fields={"findings": "补充"},
            reason="补充所见",
        )
        first_signed = ReportVersion.objects.get(report=report, number=2).signed_at
        assert first_signed is not None
        later = first_signed + timedelta(hours=2)
        monkeypatch.setattr(timezone, "now", lambda: later)
        publication = study_images_mark_complete(actor=world.first["technologist"], study=study)
        assert publication.report_approved_at == first_signed
        assert publication.approval_to_publication_seconds == 7200


def _series(world, study, count: int) -> str:
    from pydicom.uid import generate_uid

    from apps.imaging.models import Series

    series = Series.objects.create(
        hospital=world.first.hospital, study=study, series_instance_uid=generate_uid(), number_of_instances=count
    )
    return series.series_instance_uid


def test_manifest_sweep_publishes_a_reported_study_once_its_images_meet_the_manifest(world, study):
    from apps.imaging.manifest import study_manifest_set
    from apps.reports.tasks import publication_manifest_sweep

    with hospital_context(world.first.hospital):
        _write_and_sign(world, study)
        series_uid = _series(world, study, 2)
        study_manifest_set(
            hospital=world.first.hospital, study_instance_uid=study.study_instance_uid,
            series_counts={series_uid: 3}, actor=None,
        )  # fmt: skip
    assert publication_manifest_sweep() == 0  # 2 of 3 instances: not complete
    with hospital_context(world.first.hospital):
        assert not study_is_published(study)
        study_manifest_set(
            hospital=world.first.hospital, study_instance_uid=study.study_instance_uid,
            series_counts={series_uid: 2}, actor=None,
        )  # fmt: skip
    assert publication_manifest_sweep() == 1
    assert publication_manifest_sweep() == 0  # idempotent
    with hospital_context(world.first.hospital):
        publication = publication_for(study)
        assert publication.is_visible
        assert publication.images_complete_source == StudyPublication.Source.MANIFEST
        assert publication.images_complete_by is None
