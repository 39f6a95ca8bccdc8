"""The viewer's access rule: staff of the hospital (doctor mode), a session grant, or the same 404."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.tenants.context import platform_scope
from apps.viewer import grants
from apps.viewer.grants import register_grant_validator, viewer_url
from tests.viewer.helpers import grant_session

pytestmark = pytest.mark.django_db


def _events(hospital, action):
    with platform_scope("audit"):
        return list(AuditEvent.objects.filter(hospital=hospital, action=action).order_by("sequence"))


@pytest.fixture
def validators():
    saved = dict(grants._validators)
    yield grants._validators
    grants._validators.clear()
    grants._validators.update(saved)


def test_viewer_url_names_hospital_code_and_study_public_id(ct_study):
    assert viewer_url(ct_study) == f"/viewer/first/studies/{ct_study.public_id}/"


def test_signed_in_doctor_opens_study_in_doctor_mode(client, sign_in, world, ct_study):
    sign_in(world.first["reporting_doctor"])
    response = client.get(viewer_url(ct_study))
    assert response.status_code == 200
    assert response.context["access"].mode == "doctor"
    assert b'id="display-warning"' in response.content
    assert b'id="reference-banner"' not in response.content
    assert "no-store" in response["Cache-Control"]
    [opened] = _events(world.first.hospital, "study_opened")
    assert (opened.object_id, opened.details["mode"]) == (str(ct_study.public_id), "doctor")


def test_staff_of_the_other_hospital_gets_404(client, sign_in, world, ct_study):
    sign_in(world.second["reporting_doctor"])
    assert client.get(viewer_url(ct_study)).status_code == 404
    assert _events(world.first.hospital, "study_opened") == []


def test_staff_without_second_factor_gets_404(client, world, ct_study):
    client.force_login(world.first["reporting_doctor"])
    assert client.get(viewer_url(ct_study)).status_code == 404


def test_anonymous_without_grant_gets_404(client, ct_study):
    assert client.get(viewer_url(ct_study)).status_code == 404


def test_unknown_study_and_malformed_id_give_404(client, sign_in, world, ct_study):
    sign_in(world.first["reporting_doctor"])
    assert client.get("/viewer/first/studies/00000000-0000-0000-0000-000000000000/").status_code == 404
    assert client.get("/viewer/first/studies/not-a-uuid/").status_code == 404
    assert client.get(f"/viewer/nowhere/studies/{ct_study.public_id}/").status_code == 404


def test_patient_grant_opens_in_reference_mode(client, world, ct_study):
    grant_session(client, ct_study, mode="patient")
    response = client.get(viewer_url(ct_study))
    assert response.status_code == 200
    assert response.context["access"].mode == "patient"
    assert "影像仅供参考，不作诊断依据。" in response.content.decode()
    # A way back to the portal's page of this study (on a phone there is no other).
    assert f'href="/portal/first/studies/{ct_study.public_id}/"' in response.content.decode()
    [opened] = _events(world.first.hospital, "study_opened")
    assert opened.entry_point == "portal"


def test_expired_grant_gives_404(client, ct_study):
    grant_session(client, ct_study, expires_at=timezone.now() - timedelta(seconds=1))
    assert client.get(viewer_url(ct_study)).status_code == 404


def test_grant_opens_only_its_own_study(client, world, ct_study, local_storage):
    from tests.viewer.helpers import ct_series_parts, study_store

    other = study_store(world.first.hospital, ct_series_parts(1, rows=8, columns=8))
    grant_session(client, other)
    assert client.get(viewer_url(ct_study)).status_code == 404
    assert client.get(viewer_url(other)).status_code == 200


def test_share_grant_refused_once_its_validator_says_so(client, ct_study, validators):
    revoked: set[str] = set()
    seen: list[dict] = []

    def share_valid(hospital, grant):
        seen.append(grant)
        return grant["share"] not in revoked

    register_grant_validator("share", share_valid)
    grant_session(client, ct_study, mode="share", share_public_id="share-1")
    assert client.get(viewer_url(ct_study)).status_code == 200
    assert seen[0]["study"] == str(ct_study.public_id) and seen[0]["hospital"] == "first"
    revoked.add("share-1")
    assert client.get(viewer_url(ct_study)).status_code == 404


def test_grant_rejects_unknown_mode_and_naive_expiry(ct_study, rf):
    from datetime import datetime

    from django.contrib.sessions.backends.db import SessionStore

    request = rf.get("/")
    request.session = SessionStore()
    with pytest.raises(ValueError):
        grants.viewer_grant_add(request, study=ct_study, mode="doctor", expires_at=timezone.now())
    with pytest.raises(ValueError):
        grants.viewer_grant_add(request, study=ct_study, mode="patient", expires_at=datetime(2030, 1, 1))
    with pytest.raises(ValueError):
        register_grant_validator("doctor", lambda hospital, grant: True)


def test_grants_clear_ends_access(client, ct_study, rf):
    key = grant_session(client, ct_study)
    assert client.get(viewer_url(ct_study)).status_code == 200
    from django.contrib.sessions.backends.db import SessionStore

    request = rf.get("/")
    request.session = SessionStore(session_key=key)
    grants.viewer_grants_clear(request)
    request.session.save()
    assert client.get(viewer_url(ct_study)).status_code == 404


def test_page_csp_allows_wasm_and_workers_only_on_the_viewer(client, sign_in, world, ct_study):
    sign_in(world.first["reporting_doctor"])
    policy = client.get(viewer_url(ct_study))["Content-Security-Policy"]
    assert "'wasm-unsafe-eval'" in policy and "worker-src 'self' blob:" in policy
    elsewhere = client.get("/accounts/login/")["Content-Security-Policy"]
    assert "wasm-unsafe-eval" not in elsewhere and "worker-src" not in elsewhere


def test_page_escapes_report_text_and_passes_strings_as_json(client, sign_in, world, ct_study):
    sign_in(world.first["reporting_doctor"])
    content = client.get(viewer_url(ct_study)).content.decode()
    assert 'id="viewer-config" type="application/json"' in content
    assert '"mode": "doctor"' in content
    assert 'href="/portal/' not in content  # the way back to the portal is the patient's only


def test_report_panel_shows_latest_signed_version_with_markup_inert(client, sign_in, world, ct_study):
    from apps.reports.services import report_create, report_sign
    from apps.tenants.context import hospital_context

    doctor = world.first["reporting_doctor"]
    fields = {"findings": "<script>alert(1)</script>右肺上叶结节", "impression": "建议随访"}
    with hospital_context(world.first.hospital):
        version = report_create(hospital=world.first.hospital, study=ct_study, actor=doctor, fields=fields)
    sign_in(doctor)
    unsigned = client.get(viewer_url(ct_study)).content.decode()
    assert "右肺上叶结节" not in unsigned  # a draft is not shown
    with hospital_context(world.first.hospital):
        report_sign(report=version.report, actor=doctor, expected_version=1)
    content = client.get(viewer_url(ct_study)).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;右肺上叶结节" in content
    assert "<script>alert(1)" not in content


def test_only_the_decoder_worker_may_evaluate_code(client, sign_in, world, ct_study):
    sign_in(world.first["reporting_doctor"])
    page_policy = client.get(viewer_url(ct_study))["Content-Security-Policy"]
    assert "'unsafe-eval'" not in page_policy
    worker = client.get("/viewer/first/decode-worker.js")
    assert worker.status_code == 200
    assert worker["Content-Type"].startswith("text/javascript")
    assert worker.content.decode().startswith('import "/static/viewer/dist/assets/decodeImageFrameWorker')
    policy = worker["Content-Security-Policy"]
    assert "script-src 'self' 'unsafe-eval' 'wasm-unsafe-eval'" in policy and "default-src 'none'" in policy
