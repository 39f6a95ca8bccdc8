"""Hospital admins set the patient-access policy of their own hospital in the back office."""

import pytest

from apps.audit.models import AuditEvent
from apps.audit.vocabulary import Action
from apps.portal.models import PatientAccessPolicy
from apps.tenants.context import hospital_context

pytestmark = pytest.mark.django_db
URL = "/admin/portal/patientaccesspolicy/add/"


def test_hospital_admin_sets_the_policy_of_their_hospital(client, world, sign_in):
    sign_in(world.first["hospital_admin"])
    response = client.post(URL, {"identity_check": "birth_date", "downloads_allowed": "", "sharing_allowed": "on",
                                 "outpatient_years": 15, "inpatient_years": 30, "code_ttl_seconds": 300})  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:2000]
    with hospital_context(world.first.hospital):
        policy = PatientAccessPolicy.objects.get()
        assert AuditEvent.objects.filter(action=Action.HOSPITAL_CHANGED, object_type="patient_access_policy").exists()
    assert policy.hospital == world.first.hospital
    assert policy.identity_check == "birth_date" and policy.downloads_allowed is False


def test_doctors_and_other_hospitals_do_not_see_it(client, world, sign_in):
    sign_in(world.first["reporting_doctor"])
    assert client.get(URL).status_code in (302, 403)
    with hospital_context(world.second.hospital):
        PatientAccessPolicy.objects.create(hospital=world.second.hospital)
    sign_in(world.first["hospital_admin"])
    listing = client.get("/admin/portal/patientaccesspolicy/")
    assert listing.status_code == 200
    assert listing.context["cl"].result_count == 0  # the second hospital's policy is not listed
