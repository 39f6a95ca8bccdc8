"""WeChat snsapi_base OAuth against a local fake WeChat server: the openid is bound after the
first verified sign-in; later a bound openid gets a code sent to the phone on record. Every
change of a binding is audited WECHAT_BOUND, without the openid."""

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler

import pytest
from django.test import Client
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.audit.vocabulary import Action
from apps.portal.models import WeChatBinding
from apps.portal.services import wechat_bind, wechat_patient
from apps.tenants.context import hospital_context
from tests.portal.conftest import PHONE, last_code, sms_to
from tests.portal.fake_wechat import fake_wechat_server

pytestmark = pytest.mark.django_db

OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
# A second WeChat account (another phone of the same patient, say): another code, another openid.
OTHER_OPENID = "oUpF8uAnotherAccount0000000x"
OPENIDS = {"good-code": OPENID, "other-code": OTHER_OPENID}


@pytest.fixture
def fake_wechat(settings):
    """Answers the token exchange for the codes of OPENIDS with their openid, anything else
    with errcode."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            seen.append(query)
            openid = OPENIDS.get(query.get("code", ""))
            ok = openid is not None and query.get("secret") == "wx-secret" and query.get("appid") == "wx123"
            body = json.dumps(
                {"openid": openid, "access_token": "t", "scope": "snsapi_base"}
                if ok
                else {"errcode": 40029, "errmsg": "invalid code"}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with fake_wechat_server(settings, Handler):
        yield seen


def _start(client) -> str:
    response = client.get(reverse("portal:wechat_start", args=["first"]))
    assert response.status_code == 302
    location = urllib.parse.urlsplit(response["Location"])
    query = dict(urllib.parse.parse_qsl(location.query))
    assert query["scope"] == "snsapi_base" and query["appid"] == "wx123"
    assert location.fragment == "wechat_redirect"
    return query["state"]


def test_first_visit_binds_after_verification_then_skips_typing(
    client, world, patient, study, fake_wechat, request_code, django_capture_on_commit_callbacks
):
    state = _start(client)
    response = client.get(reverse("portal:wechat_callback", args=["first"]), {"code": "good-code", "state": state})
    assert response["Location"] == reverse("portal:login", args=["first"])
    request_code()
    client.post(reverse("portal:verify", args=["first"]), {"code": last_code(PHONE)})
    with hospital_context(world.first.hospital):
        assert WeChatBinding.objects.count() == 1
        assert OPENID not in WeChatBinding.objects.get().openid_hash
        assert AuditEvent.objects.filter(action=Action.WECHAT_BOUND).count() == 1
    # Next visit, signed out: the bound openid gets a code sent to the phone on record.
    client.post(reverse("portal:logout", args=["first"]))
    sent = len(sms_to(PHONE))
    state = _start(client)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.get(reverse("portal:wechat_callback", args=["first"]), {"code": "good-code", "state": state})
    assert response["Location"] == reverse("portal:verify", args=["first"])
    assert len(sms_to(PHONE)) == sent + 1
    response = client.post(reverse("portal:verify", args=["first"]), {"code": last_code(PHONE)})
    assert response["Location"] == reverse("portal:home", args=["first"])
    # Signing in with the bound openid binds nothing again.
    with hospital_context(world.first.hospital):
        assert WeChatBinding.objects.count() == 1
        assert AuditEvent.objects.filter(action=Action.WECHAT_BOUND).count() == 1


def _bound_events(hospital) -> list[AuditEvent]:
    with hospital_context(hospital):
        return list(AuditEvent.objects.filter(action=Action.WECHAT_BOUND).order_by("sequence"))


def test_a_second_wechat_account_of_the_same_patient_is_bound_and_audited(
    client, world, patient, study, fake_wechat, request_code
):
    for code in ("good-code", "other-code"):
        browser = Client()
        state = _start(browser)
        callback = browser.get(reverse("portal:wechat_callback", args=["first"]), {"code": code, "state": state})
        assert callback["Location"] == reverse("portal:login", args=["first"])
        request_code(on=browser)
        browser.post(reverse("portal:verify", args=["first"]), {"code": last_code(PHONE)})
    hospital = world.first.hospital
    with hospital_context(hospital):
        assert list(WeChatBinding.objects.values_list("patient", flat=True)) == [patient.patient.pk] * 2
    events = _bound_events(hospital)
    assert [(event.object_type, event.object_id, event.details) for event in events] == [
        ("patient", str(patient.patient.public_id), {}),
        ("patient", str(patient.patient.public_id), {}),
    ]
    for event in events:
        assert OPENID not in str(event.details) + event.actor_name
        assert OTHER_OPENID not in str(event.details) + event.actor_name


def test_binding_the_same_openid_again_to_its_patient_records_nothing(world, patient):
    hospital = world.first.hospital
    with hospital_context(hospital):
        wechat_bind(request=None, hospital=hospital, patient=patient.patient, openid=OPENID)
        wechat_bind(request=None, hospital=hospital, patient=patient.patient, openid=OPENID)
        assert WeChatBinding.objects.count() == 1
    assert len(_bound_events(hospital)) == 1


def test_an_openid_moved_to_another_patient_is_audited_with_the_previous_one(world, patient, make_patient):
    hospital = world.first.hospital
    other = make_patient(hospital, phone="13900139000", id_number="110101198501015678", name="李四")
    with hospital_context(hospital):
        wechat_bind(request=None, hospital=hospital, patient=patient.patient, openid=OPENID)
        wechat_bind(request=None, hospital=hospital, patient=other.patient, openid=OPENID)
        assert WeChatBinding.objects.get().patient_id == other.patient.pk
        assert wechat_patient(hospital=hospital, openid=OPENID) == other.patient
    moved = _bound_events(hospital)[-1]
    assert (moved.object_id, moved.actor_name, moved.details) == (
        str(other.patient.public_id),
        f"patient:{other.patient.public_id}",
        {"moved_from": str(patient.patient.public_id)},
    )
    assert OPENID not in str(moved.details) and "13900139000" not in str(moved.details)


def test_bad_state_or_code_is_refused_cleanly(client, world, fake_wechat):
    state = _start(client)
    bad_state = client.get(reverse("portal:wechat_callback", args=["first"]), {"code": "good-code", "state": "x"})
    assert bad_state.status_code == 400
    state = _start(client)
    bad_code = client.get(reverse("portal:wechat_callback", args=["first"]), {"code": "stolen", "state": state})
    assert bad_code.status_code == 502
    assert "微信登录未完成" in bad_code.content.decode()


def test_wechat_off_without_an_app_id(client, world, settings):
    settings.WECHAT_APP_ID = ""
    assert client.get(reverse("portal:wechat_start", args=["first"])).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_two_first_bindings_of_one_openid_at_once_leave_one_binding(world, patient):
    """Two sign-ins bind the same new openid at the same moment: the second insert waits on the
    first's unique key, then finds its binding instead of failing."""
    from django.db import connection, transaction

    hospital = world.first.hospital
    first_inserted, release_first = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with transaction.atomic(), hospital_context(hospital):
                wechat_bind(request=None, hospital=hospital, patient=patient.patient, openid=OPENID)
                first_inserted.set()
                release_first.wait(10)
        except BaseException as error:  # noqa: BLE001 - reported to the test thread
            errors.append(error)
        finally:
            first_inserted.set()
            connection.close()

    def second() -> None:
        try:
            with hospital_context(hospital):
                wechat_bind(request=None, hospital=hospital, patient=patient.patient, openid=OPENID)
        except BaseException as error:  # noqa: BLE001 - reported to the test thread
            errors.append(error)
        finally:
            connection.close()

    one = threading.Thread(target=first)
    one.start()
    assert first_inserted.wait(10)
    two = threading.Thread(target=second)
    two.start()
    two.join(0.5)  # blocked on the first's uncommitted unique key
    assert two.is_alive()
    release_first.set()
    one.join(10)
    two.join(10)
    assert errors == []
    with hospital_context(hospital):
        assert WeChatBinding.objects.count() == 1
    assert len(_bound_events(hospital)) == 1
