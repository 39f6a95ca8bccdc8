"""Patient-facing error pages stay in the portal's layout and lead back to the portal, with the
same status codes and the same non-revealing text; the hospital code form."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

NOT_FOUND_TEXT = "此链接无效，或此处没有您可查看的内容。"


def _assert_portal_404(response, back: str) -> None:
    html = response.content.decode()
    assert response.status_code == 404
    assert 'class="portal"' in html and NOT_FOUND_TEXT in html
    assert f'id="portal-back" href="{back}"' in html
    # Not the staff site: no language switcher, no way to the staff sign-in.
    assert "set_language" not in html and "/i18n/setlang/" not in html and 'href="/"' not in html


@pytest.mark.parametrize(
    "path",
    ["/portal/first/q/not-a-real-token-0123456789abcdef/", "/portal/first/share/not-a-real-token-0123456789abcdef/"],
    ids=["qr", "share"],
)
def test_unknown_tokens_at_a_hospital_lead_back_to_its_portal(client, world, path):
    response = client.get(path)
    _assert_portal_404(
        response, reverse("portal:home", args=["first"]) if "/share/" in path else reverse("portal:index")
    )


def test_unknown_short_link_leads_back_to_the_portal(client, world):
    _assert_portal_404(client.get("/s/not-a-real-token-0123456789abcdef"), reverse("portal:index"))


def test_unknown_hospital_leads_back_to_the_portal(client, world):
    _assert_portal_404(client.get("/portal/nowhere/login/"), reverse("portal:index"))


def test_wechat_when_not_configured_is_a_portal_404(client, world, settings):
    settings.WECHAT_APP_ID = ""
    _assert_portal_404(
        client.get(reverse("portal:wechat_start", args=["first"])), reverse("portal:home", args=["first"])
    )


def test_staff_pages_keep_the_staff_404(client, sign_in, world):
    sign_in(world.first["technologist"])
    response = client.get(
        reverse("portal:staff_slip", args=["first"]), {"study": "00000000-0000-0000-0000-000000000000"}
    )
    assert response.status_code == 404
    assert 'class="portal"' not in response.content.decode()
    assert client.get("/h/nowhere/").status_code == 404


def test_unknown_hospital_code_shows_one_error_and_keeps_the_input(client, world):
    response = client.get(reverse("portal:index"), {"hospital": "nope"})
    html = response.content.decode()
    assert response.status_code == 200
    assert "没有该代码对应的医院。" in html and "该字段是必填项。" not in html
    assert 'name="hospital" value="nope"' in html


def test_hospital_code_form_goes_to_the_sign_in(client, world):
    response = client.get(reverse("portal:index"), {"hospital": " First "})
    assert response.status_code == 302 and response["Location"] == reverse("portal:login", args=["first"])
    # Printed links with ?h= still work.
    assert client.get(reverse("portal:index"), {"h": "first"})["Location"] == reverse("portal:login", args=["first"])


def test_empty_hospital_code_is_required(client, world):
    html = client.get(reverse("portal:index"), {"hospital": ""}).content.decode()
    assert "该字段是必填项。" in html and "没有该代码对应的医院。" not in html
