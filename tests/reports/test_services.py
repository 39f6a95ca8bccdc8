import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError, connection, transaction

from apps.audit.models import AuditEvent
from apps.audit.vocabulary import Action
from apps.imaging.keys import field_unseal
from apps.reports.models import DoctorSigningKey, ImmutableVersionError, Report, ReportVersion
from apps.reports.services import (
    StaleVersion,
    report_amend,
    report_create,
    report_save_draft,
    report_sign,
    report_verify,
    version_diff,
)
from apps.tenants.context import hospital_context
from tests.reports.conftest import FINDINGS

VERSION_FIELDS = [field.attname for field in ReportVersion._meta.concrete_fields]


def _snapshot(report: Report) -> list[dict]:
    rows = ReportVersion.objects.filter(report=report).order_by("number").values(*VERSION_FIELDS)
    return [
        {key: bytes(value) if isinstance(value, memoryview) else value for key, value in row.items()} for row in rows
    ]


def _count(report: Report) -> int:
    return ReportVersion.objects.filter(report=report).count()


@pytest.fixture
def signed_report(world, study) -> Report:
    doctor = world.first["reporting_doctor"]
    with hospital_context(world.first.hospital):
        version = report_create(hospital=world.first.hospital, study=study, actor=doctor, fields=FINDINGS)
        report_sign(report=version.report, actor=doctor, expected_version=1)
        return Report.objects.get(pk=version.report.pk)


def test_create_opens_an_unsigned_draft_version_one(world, study):
    with hospital_context(world.first.hospital):
        version = report_create(
            hospital=world.first.hospital, study=study, actor=world.first["reporting_doctor"], fields=FINDINGS
        )
        assert (version.number, version.status, version.signature) == (1, Report.Status.DRAFT, None)
        assert version.reporting_doctor == world.first["reporting_doctor"]
        assert report_verify(version)


def test_sign_appends_a_final_version_that_verifies(world, signed_report):
    with hospital_context(world.first.hospital):
        final = ReportVersion.objects.get(report=signed_report, number=2)
        assert signed_report.status == Report.Status.FINAL
        assert final.status == Report.Status.FINAL
        assert final.signed_by == world.first["reporting_doctor"]
        assert report_verify(final)
        assert AuditEvent.objects.filter(action=Action.REPORT_SIGNED, object_id=str(signed_report.public_id)).exists()


def test_signing_key_is_created_once_and_stored_sealed(world, signed_report):
    doctor = world.first["reporting_doctor"]
    with hospital_context(world.first.hospital):
        report_amend(report=signed_report, actor=doctor, expected_version=2, fields={"findings": "x"}, reason="typo")
        key = DoctorSigningKey.objects.get(user=doctor)
        sealed = bytes(key.private_key_sealed)
        assert len(field_unseal(world.first.hospital, sealed, field=f"signing-key:{doctor.public_id}")) == 44
        assert bytes(key.public_key) not in sealed


def test_amendment_keeps_every_prior_version_byte_for_byte(world, signed_report):
    with hospital_context(world.first.hospital):
        before = _snapshot(signed_report)
        amended = report_amend(
            report=signed_report,
            actor=world.first["reporting_doctor"],
            expected_version=2,
            fields={"impression": "右肺上叶结节, 考虑良性。"},
            reason="复核后修正诊断意见",
        )
        after = _snapshot(signed_report)
        assert after[:2] == before
        assert (amended.number, amended.status) == (3, Report.Status.AMENDED)
        assert report_verify(amended)
        assert Report.objects.get(pk=signed_report.pk).current_version == 3


def test_diff_names_exactly_the_changed_fields(world, signed_report):
    with hospital_context(world.first.hospital):
        amended = report_amend(
            report=signed_report,
            actor=world.first["reporting_doctor"],
            expected_version=2,
            fields={"findings": "新所见", "recommendation": "1个月后复查"},
            reason="补充",
        )
        final = ReportVersion.objects.get(report=signed_report, number=2)
        assert version_diff(final, amended) == {
            "findings": (FINDINGS["findings"], "新所见"),
            "recommendation": (FINDINGS["recommendation"], "1个月后复查"),
        }


def test_stale_amendment_is_refused_and_saves_nothing(world, signed_report):
    with hospital_context(world.first.hospital):
        with pytest.raises(StaleVersion):
            report_amend(report=signed_report, actor=world.first["reporting_doctor"], expected_version=1,
                         fields={"findings": "x"}, reason="r")  # fmt: skip
        assert _count(signed_report) == 2


def test_tampered_version_fails_verification(world, signed_report):
    # The table refuses UPDATE (ORM, privileges and a trigger), so tampering is simulated on the
    # loaded row: verification reads only the row, whatever way it was altered.
    with hospital_context(world.first.hospital):
        version = ReportVersion.objects.get(report=signed_report, number=2)
        version.impression = "未见异常"
        assert report_verify(version) is False


def test_forged_hash_with_old_signature_fails_verification(world, signed_report):
    from apps.reports.signing import content_hash

    with hospital_context(world.first.hospital):
        version = ReportVersion.objects.get(report=signed_report, number=2)
        version.impression = "未见异常"
        version.content_sha256 = content_hash(version, signed_report)
        assert report_verify(version) is False


def test_versions_cannot_be_updated_or_deleted(world, signed_report):
    with hospital_context(world.first.hospital):
        version = ReportVersion.objects.get(report=signed_report, number=1)
        with pytest.raises(ImmutableVersionError):
            version.save()
        with pytest.raises(ImmutableVersionError):
            ReportVersion.objects.filter(pk=version.pk).update(findings="x")
        with pytest.raises(ImmutableVersionError):
            version.delete()
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE reports_reportversion SET findings = 'x' WHERE id = %s", [version.pk])


def test_amending_a_draft_is_refused(world, study):
    doctor = world.first["reporting_doctor"]
    with hospital_context(world.first.hospital):
        draft = report_create(hospital=world.first.hospital, study=study, actor=doctor, fields=FINDINGS)
        with pytest.raises(ValidationError) as error:
            report_amend(report=draft.report, actor=doctor, expected_version=1, fields={"findings": "x"}, reason="r")
        assert "status" in error.value.message_dict
        assert _count(draft.report) == 1


def test_amendment_without_reason_is_refused(world, signed_report):
    with hospital_context(world.first.hospital):
        with pytest.raises(ValidationError) as error:
            report_amend(report=signed_report, actor=world.first["reporting_doctor"], expected_version=2,
                         fields={"findings": "x"}, reason="  ")  # fmt: skip
        assert "reason" in error.value.message_dict
        assert _count(signed_report) == 2


def test_sign_with_empty_impression_is_refused(world, study):
    doctor = world.first["reporting_doctor"]
    with hospital_context(world.first.hospital):
        draft = report_create(hospital=world.first.hospital, study=study, actor=doctor,
                              fields={**FINDINGS, "impression": " "})  # fmt: skip
        with pytest.raises(ValidationError) as error:
            report_sign(report=draft.report, actor=doctor, expected_version=1)
        assert "impression" in error.value.message_dict
        assert _count(draft.report) == 1
        assert not DoctorSigningKey.objects.exists()


@pytest.mark.parametrize("signer", ["clinician", "technologist", "hospital_admin"])
def test_sign_by_a_non_doctor_is_refused(world, study, signer):
    with hospital_context(world.first.hospital):
        draft = report_create(hospital=world.first.hospital, study=study, actor=world.first["reporting_doctor"],
                              fields=FINDINGS)  # fmt: skip
        with pytest.raises(PermissionDenied):
            report_sign(report=draft.report, actor=world.first[signer], expected_version=1)
        assert _count(draft.report) == 1


def test_sign_by_a_doctor_of_another_hospital_is_refused(world, study):
    with hospital_context(world.first.hospital):
        draft = report_create(hospital=world.first.hospital, study=study, actor=world.first["reporting_doctor"],
                              fields=FINDINGS)  # fmt: skip
        with pytest.raises(PermissionDenied):
            report_sign(report=draft.report, actor=world.second["reporting_doctor"], expected_version=1)
        assert _count(draft.report) == 1


def test_reviewer_signing_becomes_reviewing_doctor(world, study):
    with hospital_context(world.first.hospital):
        draft = report_create(hospital=world.first.hospital, study=study, actor=world.first["reporting_doctor"],
                              fields=FINDINGS)  # fmt: skip
        final = report_sign(report=draft.report, actor=world.first["reviewing_doctor"], expected_version=1)
        assert final.reviewing_doctor == world.first["reviewing_doctor"]
        assert version_diff(draft, final) == {
            "reviewing_doctor": (None, str(world.first["reviewing_doctor"].public_id))
        }


def test_hospital_admin_may_amend(world, signed_report):
    with hospital_context(world.first.hospital):
        amended = report_amend(report=signed_report, actor=world.first["hospital_admin"], expected_version=2,
                               fields={"technique": "增强"}, reason="登记错误")  # fmt: skip
        assert amended.signed_by == world.first["hospital_admin"]
        assert report_verify(amended)


def test_draft_saves_append_versions(world, study):
    doctor = world.first["reporting_doctor"]
    with hospital_context(world.first.hospital):
        draft = report_create(hospital=world.first.hospital, study=study, actor=doctor, fields={})
        second = report_save_draft(report=draft.report, actor=doctor, expected_version=1,
                                   fields={"findings": "<script>alert(1)</script>"}, preliminary=True)  # fmt: skip
        assert (second.number, second.status) == (2, Report.Status.PRELIMINARY)
        assert second.findings == "<script>alert(1)</script>"
        assert ReportVersion.objects.get(pk=draft.pk).findings == ""


def test_amendment_by_a_doctor_not_on_the_report_is_refused(world, signed_report):
    with hospital_context(world.first.hospital):
        with pytest.raises(PermissionDenied):
            report_amend(report=signed_report, actor=world.first["reviewing_doctor"], expected_version=2,
                         fields={"findings": "x"}, reason="r")  # fmt: skip
        assert _count(signed_report) == 2
