"""The staff start pages: roles by their labels, a fitting message for platform duties, and the
back-office link only for those the back office lets in."""

import pytest
from django.urls import reverse

from apps.accounts.roles import HospitalRole, PlatformRole

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("role", "label"),
    [("reporting_doctor", "报告医生"), ("technologist", "技师/上传员"), ("hospital_admin", "医院管理员")],
)
def test_hospital_page_names_the_roles_by_label(client, sign_in, world, role, label):
    sign_in(world.first[role])
    html = client.get(reverse("core:hospital_home", args=["first"])).content.decode()
    assert f'<span class="tag">{label}</span>' in html
    assert f">{role}<" not in html


@pytest.mark.parametrize("role", [role.value for role in PlatformRole])
def test_start_page_names_platform_duties_by_label_with_a_fitting_message(client, sign_in, world, role):
    sign_in(world.platform[role])
    html = client.get(reverse("core:home")).content.decode()
    assert f"<li>{PlatformRole(role).label}</li>" in html
    assert f">{role}<" not in html
    assert "您尚未在任何医院担任角色" not in html
    assert "您未在医院担任角色；您的平台职责如下。" in html


def test_staff_without_any_role_are_told_to_ask_their_administrator(client, sign_in, world):
    from tests.factories import UserFactory

    sign_in(UserFactory(username="nobody"))
    assert "您尚未在任何医院担任角色，请联系医院管理员。" in client.get(reverse("core:home")).content.decode()


def _allowed_in_back_office(client) -> bool:
    status = client.get(reverse("admin:index")).status_code
    assert status in (200, 403)
    return status == 200


@pytest.mark.parametrize("role", [role.value for role in HospitalRole])
def test_back_office_link_only_for_hospital_roles_the_back_office_admits(client, sign_in, world, role):
    sign_in(world.first[role])
    allowed = _allowed_in_back_office(client)
    assert allowed == (role == HospitalRole.HOSPITAL_ADMIN)
    for page in (reverse("core:home"), reverse("core:hospital_home", args=["first"])):
        assert ('id="back-office"' in client.get(page).content.decode()) == allowed


@pytest.mark.parametrize("role", [role.value for role in PlatformRole])
def test_back_office_link_only_for_platform_duties_the_back_office_admits(client, sign_in, world, role):
    sign_in(world.platform[role])
    allowed = _allowed_in_back_office(client)
    assert allowed == (role != PlatformRole.QC_ADMIN)
    assert ('id="back-office"' in client.get(reverse("core:home")).content.decode()) == allowed


def test_the_hospital_is_named_in_the_pages_language(client, sign_in, world):
    from apps.tenants.models import Hospital

    Hospital.objects.filter(pk=world.first.hospital.pk).update(name_en="First People's Hospital")
    sign_in(world.first["reporting_doctor"])
    chinese = client.get("/h/first/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    english = client.get("/h/first/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "第一人民医院" in chinese
    assert "First People&#x27;s Hospital" in english and "第一人民医院" not in english
