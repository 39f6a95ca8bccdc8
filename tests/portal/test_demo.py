"""seed_demo leaves a demo patient who can sign in to the portal and see a study with images."""

import pytest
from django.core.management import call_command
from django.urls import reverse

from apps.portal.demo import DEMO_ID_NUMBER, DEMO_PHONE
from tests.portal.conftest import last_code

pytestmark = pytest.mark.django_db


def test_demo_patient_signs_in_and_sees_the_demo_study(client, local_storage, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        call_command("seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
        call_command("seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115 (idempotent)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("portal:login", args=["demo"]), {"phone": DEMO_PHONE, "identity": DEMO_ID_NUMBER[-4:]}
        )
    assert response.status_code == 302
    client.post(reverse("portal:verify", args=["demo"]), {"code": last_code(DEMO_PHONE)})
    home = client.get(reverse("portal:home", args=["demo"]))
    assert home.status_code == 200
    rows = home.context["rows"]
    assert len(rows) == 1 and rows[0].study.number_of_instances == 8
