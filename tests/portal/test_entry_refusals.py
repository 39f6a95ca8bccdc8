"""QR tokens and SMS links that no longer lead to their study: the study is not (or no longer)
published, its service period has ended, or the SMS link has expired. No code is sent, nothing
about the study or patient is revealed, the sign-in is offered instead, and one refusal event is
audited."""

from datetime import date, timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pydicom.uid import generate_uid

from apps.audit.models import AuditEvent
from apps.audit.vocabulary import Action
from apps.imaging.models import Study
from apps.notify.models import OutboundMessage
from apps.notify.providers import ConsoleProvider
from apps.portal.models import EntryToken, VerificationCode
from apps.portal.policy import policy_for
from apps.portal.services import entry_token_create, entry_token_expires_on
from apps.tenants.context import hospital_context
from tests.portal.conftest import PHONE, last_code, sms_to

pytestmark = pytest.mark.django_db

NOT_AVAILABLE = "该检查结果暂时无法在线查看"
LINK_EXPIRED = "此链接已失效"


def _token(study: Study, kind: str) -> tuple[EntryToken, str]:
    with hospital_context(study.hospital):
        return entry_token_create(actor=None, hospital=study.hospital, study=study, kind=kind)


def _url(study: Study, kind: str, raw: str) -> str:
    if kind == EntryToken.Kind.SMS:
        return reverse("short_link", args=[raw])
    return reverse("portal:qr_entry", args=[study.hospital.code, raw])


def _withdraw(world, study: Study) -> None:
    from apps.reports.publication import study_unpublish

    with hospital_context(study.hospital):
        study_unpublish(actor=world.first["reporting_doctor"], study=study, reason="患者信息录入错误")


def _enter_in_error(world, study: Study) -> None:
    from apps.reports.models import Report
    from apps.reports.services import report_enter_in_error

    with hospital_context(study.hospital):
        report = Report.objects.get(study=study)
        report_enter_in_error(actor=world.first["reporting_doctor"], report=report, reason="报告录入错误")


def _unreported_study(world, record) -> Study:
    """A study whose report is not signed yet: the QR on its exam slip is printed the same day."""
    with hospital_context(record.hospital):
        return Study.objects.create(
            hospital=record.hospital, patient=record.patient, study_instance_uid=generate_uid(),
            accession_number="A2", modalities="CT", study_date=date.today(), encounter_type="outpatient",
        )  # fmt: skip


def _sent(hospital) -> tuple[int, int, int]:
    """(messages the SMS provider was given, outbox rows, challenges) so far."""
    with hospital_context(hospital):
        return len(ConsoleProvider.outbox), OutboundMessage.objects.count(), VerificationCode.objects.count()


def _events(hospital) -> list[AuditEvent]:
    with hospital_context(hospital):
        return list(AuditEvent.objects.filter(hospital=hospital).order_by("sequence"))


def _age(entry: EntryToken, days: int) -> None:
    with hospital_context(entry.hospital):
        EntryToken.objects.filter(pk=entry.pk).update(created_at=timezone.now() - timedelta(days=days))


@pytest.mark.parametrize("kind", [EntryToken.Kind.SMS, EntryToken.Kind.QR])
@pytest.mark.parametrize("state", ["withdrawn", "entered_in_error", "never_published"])
def test_token_of_an_unpublished_study_sends_no_code(
    client, world, patient, make_published_study, django_capture_on_commit_callbacks, kind, state
):
    if state == "never_published":
        study = _unreported_study(world, patient)
    else:
        study = make_published_study(patient)
        (_withdraw if state == "withdrawn" else _enter_in_error)(world, study)
    _entry, raw = _token(study, kind)
    hospital = world.first.hospital
    before, events_before = _sent(hospital), len(_events(hospital))
    with django_capture_on_commit_callbacks(execute=True):
        landing = client.get(_url(study, kind, raw))
        sent = client.post(_url(study, kind, raw))
    for response in (landing, sent):
        html = response.content.decode()
        assert response.status_code == 404
        assert NOT_AVAILABLE in html
        assert 'id="send-code"' not in html
        assert reverse("portal:login", args=["first"]) in html
        assert "no-store" in response["Cache-Control"]
    assert _sent(hospital) == before
    assert sms_to(PHONE) == []
    # One refusal event per request, and nothing else (no code issued, no lock).
    events = _events(hospital)[events_before:]
    assert [(event.action, event.outcome, event.details.get("refused")) for event in events] == [
        (Action.PATIENT_ENTRY_REFUSED, 4, "not_published"),
        (Action.PATIENT_ENTRY_REFUSED, 4, "not_published"),
    ]
    assert all(event.object_id == str(study.public_id) and PHONE not in str(event.details) for event in events)
    # A refused login attempt in DICOM terms (User Authentication / Login), not a code issued.
    assert {(event.event_id, event.event_type, event.action_code) for event in events} == {("110114", "110122", "E")}


def test_unpublished_page_says_neither_why_nor_whose(client, world, patient, make_published_study):
    """Withdrawn, entered in error or not reported yet: the same page, naming no one."""
    withdrawn = make_published_study(patient, description="头颅MRI")
    _withdraw(world, withdrawn)
    pending = _unreported_study(world, patient)
    pages = []
    for study in (withdrawn, pending):
        _entry, raw = _token(study, EntryToken.Kind.QR)
        pages.append(client.get(_url(study, EntryToken.Kind.QR, raw)).content.decode())
    assert pages[0] == pages[1]
    for word in ("王小明", "头颅", "录入错误", "撤回", PHONE[-4:]):
        assert word not in pages[0]


def test_unpublished_page_in_english(client, world, patient, make_published_study):
    study = make_published_study(patient)
    _withdraw(world, study)
    _entry, raw = _token(study, EntryToken.Kind.SMS)
    response = client.get(_url(study, EntryToken.Kind.SMS, raw), HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 404
    assert "cannot be viewed online at the moment" in response.content.decode()


def test_token_works_again_when_the_study_is_published_again(client, world, patient, make_published_study,
                                                           django_capture_on_commit_callbacks):  # fmt: skip
    study = _unreported_study(world, patient)
    _entry, raw = _token(study, EntryToken.Kind.QR)
    url = _url(study, EntryToken.Kind.QR, raw)
    assert client.get(url).status_code == 404
    from apps.reports.models import StudyPublication
    from apps.reports.publication import study_images_mark_complete
    from apps.reports.services import report_create, report_sign
    from tests.portal.conftest import FINDINGS

    doctor = world.first["reporting_doctor"]
    with hospital_context(study.hospital):
        version = report_create(hospital=study.hospital, study=study, actor=doctor, fields=FINDINGS)
        report_sign(report=version.report, actor=doctor, expected_version=1)
        study_images_mark_complete(actor=None, study=study, source=StudyPublication.Source.MANIFEST)
    assert client.get(url).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(url).status_code == 302
    assert last_code(PHONE)


def test_code_sent_before_a_withdrawal_leads_to_the_list_not_a_404(
    client, world, patient, study, django_capture_on_commit_callbacks
):
    _entry, raw = _token(study, EntryToken.Kind.SMS)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(_url(study, EntryToken.Kind.SMS, raw)).status_code == 302
    _withdraw(world, study)
    response = client.post(reverse("portal:verify", args=["first"]), {"code": last_code(PHONE)})
    assert response["Location"] == reverse("portal:home", args=["first"])
    assert str(study.public_id) not in client.get(response["Location"]).content.decode()


# --- Lifetimes ---------------------------------------------------------------------------


def test_sms_link_expires_after_its_lifetime(client, world, patient, study, settings,
                                            django_capture_on_commit_callbacks):  # fmt: skip
    settings.PORTAL_SMS_LINK_TTL_DAYS = 30
    entry, raw = _token(study, EntryToken.Kind.SMS)
    url = _url(study, EntryToken.Kind.SMS, raw)
    _age(entry, 29)
    assert client.get(url).status_code == 200
    _age(entry, 31)
    hospital = world.first.hospital
    before, events_before = _sent(hospital), len(_events(hospital))
    with django_capture_on_commit_callbacks(execute=True):
        landing = client.get(url)
        sent = client.post(url)
    for response in (landing, sent):
        html = response.content.decode()
        assert response.status_code == 410
        assert LINK_EXPIRED in html and 'id="send-code"' not in html
        # The sign-in is offered instead.
        assert f'id="portal-login" href="{reverse("portal:login", args=["first"])}"' in html
    assert _sent(hospital) == before
    events = _events(hospital)[events_before:]
    assert [(event.action, event.outcome, event.details.get("refused")) for event in events] == [
        (Action.PATIENT_ENTRY_REFUSED, 4, "link_expired"),
        (Action.PATIENT_ENTRY_REFUSED, 4, "link_expired"),
    ]
    assert events[0].details["token"] == str(entry.public_id)


def test_sms_link_lifetime_is_a_setting(client, world, patient, study, settings):
    entry, raw = _token(study, EntryToken.Kind.SMS)
    url = _url(study, EntryToken.Kind.SMS, raw)
    _age(entry, 3)
    settings.PORTAL_SMS_LINK_TTL_DAYS = 2
    assert client.get(url).status_code == 410
    settings.PORTAL_SMS_LINK_TTL_DAYS = 7
    assert client.get(url).status_code == 200
    # 0: the link lasts as long as the study's service period.
    settings.PORTAL_SMS_LINK_TTL_DAYS = 0
    _age(entry, 5 * 365)
    assert client.get(url).status_code == 200


def test_qr_token_lives_as_long_as_the_service_period(client, world, patient, make_published_study, settings,
                                                      django_capture_on_commit_callbacks):  # fmt: skip
    settings.PORTAL_SMS_LINK_TTL_DAYS = 30
    today = date.today()
    study = make_published_study(patient, study_date=today.replace(year=today.year - 15) + timedelta(days=2))
    entry, raw = _token(study, EntryToken.Kind.QR)
    url = _url(study, EntryToken.Kind.QR, raw)
    # Printed years ago, the slip still works inside the service period ...
    _age(entry, 14 * 365)
    assert client.get(url).status_code == 200
    with hospital_context(study.hospital):
        assert entry_token_expires_on(entry, policy_for(study.hospital)) == today + timedelta(days=1)
    # ... and stops with it.
    with hospital_context(study.hospital):
        Study.objects.filter(pk=study.pk).update(study_date=today.replace(year=today.year - 15))
    hospital = world.first.hospital
    before, events_before = _sent(hospital), len(_events(hospital))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url)
    assert response.status_code == 410
    assert "服务期" in response.content.decode() and 'id="portal-login"' in response.content.decode()
    assert _sent(hospital) == before
    events = _events(hospital)[events_before:]
    assert [(event.action, event.details.get("refused")) for event in events] == [
        (Action.STUDY_ACCESS_EXPIRED, "service_period_ended")
    ]
    assert events[0].details["period_end"] == today.isoformat()


def test_inpatient_qr_token_lives_thirty_years(client, world, patient, make_published_study):
    today = date.today()
    study = make_published_study(patient, study_date=today.replace(year=today.year - 20), encounter="inpatient")
    _entry, raw = _token(study, EntryToken.Kind.QR)
    assert client.get(_url(study, EntryToken.Kind.QR, raw)).status_code == 200


def test_expired_link_of_another_hospital_is_still_a_plain_404(client, world, patient, study):
    """The hospital check comes first: a real token under another hospital's code reveals nothing."""
    _entry, raw = _token(study, EntryToken.Kind.QR)
    _withdraw(world, study)
    response = Client().get(reverse("portal:qr_entry", args=["second", raw]))
    assert response.status_code == 404
    assert NOT_AVAILABLE not in response.content.decode()
