"""The back office: each role sees exactly its own screens and its own hospital's rows."""

import csv
import io
import json

import pytest
from django.urls import reverse

from apps.accounts.models import Membership, PlatformRoleGrant, User
from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from apps.audit.vocabulary import Action
from apps.tenants.context import hospital_context, platform_scope

pytestmark = pytest.mark.django_db


def _audit_events(action: Action) -> list[AuditEvent]:
    with platform_scope("audit"):
        return list(AuditEvent.objects.filter(action=action).order_by("id"))


def _inline_management(prefix: str, total: int, initial: int = 0) -> dict[str, str]:
    return {
        f"{prefix}-TOTAL_FORMS": str(total),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }


def _user_change_form(target, *, platform_roles: list[str]) -> dict[str, str]:
    """The security admin's user change form, adding the given platform roles."""
    data = {
        "username": target.username,
        "display_name": target.display_name,
        "email": "",
        "is_active": "on",
        "locked_until_0": "",
        "locked_until_1": "",
        **_inline_management("memberships", 0, 0),
        **_inline_management("platform_roles", len(platform_roles)),
    }
    data.update({f"platform_roles-{index}-role": role for index, role in enumerate(platform_roles)})
    return data


def test_clinician_gets_403_in_the_back_office(client, sign_in, world):
    sign_in(world.first["clinician"])
    assert client.get(reverse("admin:index")).status_code == 403


def test_hospital_admin_lists_only_their_own_staff(client, sign_in, world):
    sign_in(world.first["hospital_admin"])
    response = client.get(reverse("admin:accounts_user_changelist"))
    assert response.status_code == 200
    usernames = {user.username for user in response.context["cl"].result_list}
    assert usernames == {f"first-{role}" for role in world.first.users}


def test_hospital_admin_gets_404_for_a_user_of_the_other_hospital(client, sign_in, world):
    sign_in(world.first["hospital_admin"])
    other = world.second["clinician"]
    response = client.get(reverse("admin:accounts_user_change", args=[other.pk]))
    assert response.status_code == 404
    absent = client.get(reverse("admin:accounts_user_change", args=[999999]))
    assert absent.status_code == 404


def test_hospital_admin_sees_only_their_hospitals_audit_events(client, sign_in, world):
    first_event = audit_record(action=Action.LOGIN, hospital=world.first.hospital, actor_name="a")
    second_event = audit_record(action=Action.LOGIN, hospital=world.second.hospital, actor_name="b")
    sign_in(world.first["hospital_admin"])
    response = client.get(reverse("admin:audit_auditevent_changelist"))
    assert response.status_code == 200
    hospitals = {event.hospital_id for event in response.context["cl"].result_list}
    assert hospitals == {world.first.hospital.pk}
    assert client.get(reverse("admin:audit_auditevent_change", args=[first_event.pk])).status_code == 200
    assert client.get(reverse("admin:audit_auditevent_change", args=[second_event.pk])).status_code == 404


def test_reading_the_audit_log_is_audited(client, sign_in, world):
    sign_in(world.first["hospital_admin"])
    client.get(reverse("admin:audit_auditevent_changelist") + "?action__exact=login")
    [used] = _audit_events(Action.AUDIT_LOG_VIEWED)
    assert used.event_id == "110101"
    assert used.actor_id == world.first["hospital_admin"].pk
    assert used.hospital_id == world.first.hospital.pk
    assert used.details == {"filters": {"action__exact": "login"}}


def test_audit_admin_reads_every_hospital_and_exports(client, sign_in, world):
    audit_record(action=Action.LOGIN, hospital=world.first.hospital, actor_name="甲")
    audit_record(action=Action.LOGIN, hospital=world.second.hospital, actor_name="乙")
    sign_in(world.platform["audit_admin"])
    response = client.get(reverse("admin:audit_auditevent_changelist"))
    assert response.status_code == 200
    hospitals = {event.hospital_id for event in response.context["cl"].result_list}
    assert {world.first.hospital.pk, world.second.hospital.pk} <= hospitals

    exported = client.get(reverse("admin:audit_auditevent_export_csv") + "?action__exact=login")
    assert exported.status_code == 200
    assert "no-store" in exported["Cache-Control"]
    rows = list(csv.DictReader(io.StringIO(b"".join(exported.streaming_content).decode("utf-8-sig"))))
    assert [row["actor_name"] for row in rows] == ["甲", "乙"]
    assert all(len(row["hash"]) == 64 for row in rows)

    as_json = client.get(reverse("admin:audit_auditevent_export_json") + "?action__exact=login")
    events = json.loads(as_json.content)["events"]
    assert [event["actor_name"] for event in events] == ["甲", "乙"]
    exports = _audit_events(Action.AUDIT_LOG_EXPORTED)
    assert [export.details["count"] for export in exports] == [2, 2]


def test_nobody_can_edit_or_delete_audit_events(client, sign_in, world):
    event = audit_record(action=Action.LOGIN, hospital=world.first.hospital, actor_name="a")
    sign_in(world.platform["audit_admin"])
    change = client.post(reverse("admin:audit_auditevent_change", args=[event.pk]), {"actor_name": "x"})
    assert change.status_code == 403
    delete = client.post(reverse("admin:audit_auditevent_delete", args=[event.pk]), {"post": "yes"})
    assert delete.status_code == 403
    assert client.get(reverse("admin:audit_auditevent_add")).status_code == 403


def test_vendor_operator_sees_hospitals_but_no_people_or_audit(client, sign_in, world):
    sign_in(world.platform["vendor_operator"])
    assert client.get(reverse("admin:tenants_hospital_changelist")).status_code == 200
    assert client.get(reverse("admin:accounts_user_changelist")).status_code == 403
    assert client.get(reverse("admin:audit_auditevent_changelist")).status_code == 403
    assert client.get(reverse("admin:tenants_apitoken_changelist")).status_code == 403
    # Read-only: a change is refused.
    response = client.post(
        reverse("admin:tenants_hospital_change", args=[world.first.hospital.pk]), {"name_zh": "改名"}
    )
    assert response.status_code == 403


def test_system_admin_cannot_read_the_audit_trail(client, sign_in, world):
    sign_in(world.platform["system_admin"])
    assert client.get(reverse("admin:audit_auditevent_changelist")).status_code == 403
    assert client.get(reverse("admin:tenants_hospital_changelist")).status_code == 200


def test_hospital_admin_adds_staff_with_a_role_and_it_is_audited(client, sign_in, world):
    admin = world.first["hospital_admin"]
    sign_in(admin)
    data = {
        "username": "new-tech",
        "display_name": "新技师",
        "email": "",
        "password1": "Sturdy-Pass-2026",
        "password2": "Sturdy-Pass-2026",
        **_inline_management("memberships", 1),
        "memberships-0-role": "technologist",
    }
    response = client.post(reverse("admin:accounts_user_add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    user = User.objects.get(username="new-tech")
    with hospital_context(world.first.hospital):
        assert list(Membership.objects.filter(user=user).values_list("hospital__code", "role")) == [
            ("first", "technologist")
        ]
    [grant] = _audit_events(Action.ROLE_GRANTED)
    assert grant.actor_id == admin.pk
    assert grant.hospital_id == world.first.hospital.pk
    assert grant.object_id == str(user.public_id)
    assert grant.details == {"role": "technologist"}


def test_weak_password_for_new_staff_is_a_form_error(client, sign_in, world):
    sign_in(world.first["hospital_admin"])
    data = {
        "username": "weak",
        "password1": "password",
        "password2": "password",
        **_inline_management("memberships", 0),
    }
    response = client.post(reverse("admin:accounts_user_add"), data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert not User.objects.filter(username="weak").exists()


def test_security_admin_cannot_give_two_separated_duties(client, sign_in, world):
    sign_in(world.platform["security_admin"])
    target = world.first["clinician"]
    data = _user_change_form(target, platform_roles=["system_admin", "audit_admin"])
    response = client.post(reverse("admin:accounts_user_change", args=[target.pk]), data)
    assert response.status_code == 200
    assert not PlatformRoleGrant.objects.filter(user=target).exists()


def test_separated_duties_are_refused_by_service_and_database(world):
    from django.core.exceptions import ValidationError
    from django.db import IntegrityError, transaction

    from apps.accounts.services import platform_role_grant

    auditor = world.platform["audit_admin"]
    with pytest.raises(ValidationError):
        platform_role_grant(actor=None, user=auditor, role="security_admin")
    with pytest.raises(IntegrityError), transaction.atomic():
        PlatformRoleGrant.objects.create(user=auditor, role="system_admin")
    # A non-separated role may be added.
    platform_role_grant(actor=None, user=auditor, role="qc_admin")
    assert set(PlatformRoleGrant.objects.filter(user=auditor).values_list("role", flat=True)) == {
        "audit_admin",
        "qc_admin",
    }


def test_hospital_admin_issues_a_token_shown_once(client, sign_in, world):
    sign_in(world.first["hospital_admin"])
    response = client.post(reverse("admin:tenants_apitoken_add"), {"name": "RIS", "scopes": ["read"]}, follow=True)
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    assert any("yxy_" in message for message in shown)
    assert [e.details["name"] for e in _audit_events(Action.API_TOKEN_ISSUED)] == ["RIS"]


def test_security_admin_grants_one_separated_duty(client, sign_in, world):
    sign_in(world.platform["security_admin"])
    target = world.first["clinician"]
    data = _user_change_form(target, platform_roles=["audit_admin"])
    response = client.post(reverse("admin:accounts_user_change", args=[target.pk]), data)
    assert response.status_code == 302
    assert list(PlatformRoleGrant.objects.filter(user=target).values_list("role", flat=True)) == ["audit_admin"]
    [grant] = _audit_events(Action.ROLE_GRANTED)
    assert grant.details == {"platform_role": "audit_admin"}
    assert grant.actor_id == world.platform["security_admin"].pk


def test_hospital_admin_cannot_change_a_colleague_owned_by_another_hospital(client, sign_in, world):
    from tests.factories import MembershipFactory

    shared = world.second["reporting_doctor"]  # owned by "second", also working at "first"
    with hospital_context(world.first.hospital):
        MembershipFactory(hospital=world.first.hospital, user=shared, role="reporting_doctor")
    sign_in(world.first["hospital_admin"])
    assert client.get(reverse("admin:accounts_user_change", args=[shared.pk])).status_code == 200  # can look
    response = client.post(
        reverse("admin:accounts_user_change", args=[shared.pk]),
        {"username": shared.username, "is_active": "", **_inline_management("memberships", 0)},
    )
    assert response.status_code == 403
    shared.refresh_from_db()
    assert shared.is_active


def test_hospital_admin_can_deactivate_their_own_staff(client, sign_in, world):
    own = world.first["clinician"]
    sign_in(world.first["hospital_admin"])
    response = client.post(
        reverse("admin:accounts_user_change", args=[own.pk]),
        {
            "username": own.username, "display_name": own.display_name, "email": "", "locked_until_0": "",
            "locked_until_1": "", **_inline_management("memberships", 0),
        },
    )  # fmt: skip
    assert response.status_code == 302
    own.refresh_from_db()
    assert not own.is_active
    changed = _audit_events(Action.USER_CHANGED)
    assert changed[-1].details == {"fields": ["is_active"]}


def test_hospital_admins_see_their_staffs_sign_in_events(client, sign_in, world):
    staff = world.first["clinician"]
    client.post(reverse("accounts:login"), {"username": staff.username, "password": "Wrong-Password-9"})
    client.post(reverse("accounts:login"), {"username": world.second["clinician"].username, "password": "Nope-Nope-99"})
    sign_in(world.first["hospital_admin"])
    response = client.get(reverse("admin:audit_auditevent_changelist") + "?action__exact=login_failed")
    names = [event.actor_name for event in response.context["cl"].result_list]
    assert names == [staff.username]
