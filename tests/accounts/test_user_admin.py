"""Staff accounts in the back office: a hospital admin's new account always has a role there,
and the header greets the admin by display name."""

import pytest
from django.urls import reverse

from apps.accounts.models import Membership, User
from apps.tenants.context import hospital_context

pytestmark = pytest.mark.django_db

ADD = "admin:accounts_user_add"


def _new_user(username: str, roles: list[str], *, extra_rows: int = 0) -> dict[str, str]:
    data = {
        "username": username,
        "display_name": "新同事",
        "email": "",
        "password1": "Sturdy-Pass-2026",
        "password2": "Sturdy-Pass-2026",
        "memberships-TOTAL_FORMS": str(len(roles) + extra_rows),
        "memberships-INITIAL_FORMS": "0",
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
        "platform_roles-TOTAL_FORMS": "0",
        "platform_roles-INITIAL_FORMS": "0",
        "platform_roles-MIN_NUM_FORMS": "0",
        "platform_roles-MAX_NUM_FORMS": "1000",
    }
    data.update({f"memberships-{index}-role": role for index, role in enumerate(roles)})
    data.update({f"memberships-{len(roles) + index}-role": "" for index in range(extra_rows)})
    return data


def test_a_hospital_admin_cannot_create_an_account_without_a_role(client, sign_in, world):
    sign_in(world.first["hospital_admin"])

    response = client.post(reverse(ADD), _new_user("no-role", [], extra_rows=1), HTTP_ACCEPT_LANGUAGE="zh-hans")

    assert response.status_code == 200
    [formset] = response.context["inline_admin_formsets"]
    assert formset.formset.non_form_errors() == [
        "请为新账号在 第一人民医院 (first) 至少指定一个角色；否则该账号不会出现在本院的人员列表中。"
    ]
    assert not User.objects.filter(username="no-role").exists()


def test_a_hospital_admins_new_account_with_a_role_is_in_their_staff_list(client, sign_in, world):
    sign_in(world.first["hospital_admin"])

    response = client.post(reverse(ADD), _new_user("with-role", ["clinician"]))

    assert response.status_code == 302
    listed = client.get(reverse("admin:accounts_user_changelist"))
    assert "with-role" in {user.username for user in listed.context["cl"].result_list}
    with hospital_context(world.first.hospital):
        assert Membership.objects.filter(user__username="with-role", role="clinician").exists()


def test_the_security_admin_may_create_a_platform_account_without_a_hospital_role(client, sign_in, world):
    sign_in(world.platform["security_admin"])

    response = client.post(reverse(ADD), _new_user("platform-new", []))

    assert response.status_code == 302
    assert User.objects.filter(username="platform-new").exists()


def test_the_header_greets_the_admin_by_display_name(client, sign_in, world):
    admin = world.first["hospital_admin"]
    admin.display_name = "王管理员"
    admin.save(update_fields=["display_name"])
    sign_in(admin)

    page = client.get(reverse("admin:index"), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()

    assert "<strong>王管理员</strong>" in page
