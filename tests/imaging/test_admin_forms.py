"""Hospital-scoped back-office forms: a duplicate of a per-hospital unique row is a form error,
never a database error (the hospital is not a form field, so Django alone would not check it)."""

import pytest
from django.urls import reverse

from apps.imaging.models import ValidationRuleSetting
from apps.tenants.context import hospital_context

pytestmark = pytest.mark.django_db

ADD = "admin:imaging_validationrulesetting_add"


def _setting(modality: str, severity: str = "warn") -> dict[str, str]:
    return {"code": "LOSSY_TRANSFER_SYNTAX", "modality": modality, "severity": severity}


def _settings(hospital) -> list[tuple[str, str, str]]:
    with hospital_context(hospital):
        return list(ValidationRuleSetting.objects.order_by("id").values_list("code", "modality", "severity"))


def test_a_setting_that_exists_in_other_case_is_a_form_error_in_chinese(client, sign_in, world):
    sign_in(world.first["hospital_admin"])
    assert client.post(reverse(ADD), _setting("us")).status_code == 302

    response = client.post(reverse(ADD), _setting("US"), HTTP_ACCEPT_LANGUAGE="zh-hans")

    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors() == ["本院已有该规则和模态的设置；请修改那一条。"]
    assert _settings(world.first.hospital) == [("LOSSY_TRANSFER_SYNTAX", "US", "warn")]


def test_changing_a_setting_into_another_existing_one_is_a_form_error(client, sign_in, world):
    sign_in(world.first["hospital_admin"])
    client.post(reverse(ADD), _setting("US"))
    client.post(reverse(ADD), _setting("CT", "reject"))
    with hospital_context(world.first.hospital):
        ct = ValidationRuleSetting.objects.get(modality="CT")

    response = client.post(
        reverse("admin:imaging_validationrulesetting_change", args=[ct.pk]), _setting(" us ", "reject")
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors()
    assert sorted(_settings(world.first.hospital)) == [
        ("LOSSY_TRANSFER_SYNTAX", "CT", "reject"),
        ("LOSSY_TRANSFER_SYNTAX", "US", "warn"),
    ]


def test_another_hospital_may_hold_the_same_setting(client, sign_in, world):
    sign_in(world.second["hospital_admin"])
    client.post(reverse(ADD), _setting("US"))
    sign_in(world.first["hospital_admin"])

    response = client.post(reverse(ADD), _setting("US"))

    assert response.status_code == 302
    assert _settings(world.first.hospital) == [("LOSSY_TRANSFER_SYNTAX", "US", "warn")]
    assert _settings(world.second.hospital) == [("LOSSY_TRANSFER_SYNTAX", "US", "warn")]
