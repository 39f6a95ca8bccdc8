"""The RIS publication endpoints: images complete, withdraw, state; other hospitals get 404."""

from apps.reports.models import StudyPublication
from apps.tenants.context import hospital_context
from tests.dicomweb.helpers import token_for
from tests.reports.test_api import api, signed  # noqa: F401  (fixtures)


def _publication(world, study) -> StudyPublication | None:
    with hospital_context(world.first.hospital):
        return StudyPublication.objects.filter(study=study).first()


def test_images_complete_after_signing_publishes(api, signed, study, world):  # noqa: F811
    path = f"studies/{study.study_instance_uid}/publication"
    assert api("GET", path).json()["published"] is False
    response = api("POST", f"{path}/images-complete", {"actor": "first-technologist"})
    assert response.status_code == 200
    body = response.json()
    assert body["published"] is True
    assert body["images_complete_source"] == "staff"
    assert isinstance(body["approval_to_publication_seconds"], int)
    assert api("GET", path).json()["published_at"] == body["published_at"]


def test_withdraw_needs_a_reason_and_hides_the_study(api, signed, study, world):  # noqa: F811
    path = f"studies/{study.study_instance_uid}/publication"
    api("POST", f"{path}/images-complete", {"actor": "first-technologist"})
    missing = api("POST", f"{path}/withdraw", {"actor": "first-reporting_doctor"})
    assert missing.status_code == 400
    assert "reason" in missing.json()["fields"]
    assert _publication(world, study).is_visible
    done = api("POST", f"{path}/withdraw", {"actor": "first-reporting_doctor", "reason": "报告作废"})
    assert done.status_code == 200
    assert (done.json()["published"], done.json()["withdrawn_reason"]) == (False, "报告作废")


def test_a_clinician_may_not_mark_images_complete(api, signed, study, world):  # noqa: F811
    path = f"studies/{study.study_instance_uid}/publication/images-complete"
    response = api("POST", path, {"actor": "first-clinician"})
    assert response.status_code == 403
    assert _publication(world, study).images_complete_at is None


def test_another_hospitals_token_gets_404_and_changes_nothing(api, signed, study, world):  # noqa: F811
    other = token_for(world.second.hospital)
    path = f"studies/{study.study_instance_uid}/publication"
    response = api("POST", f"{path}/images-complete", {"actor": "second-technologist"}, bearer=other, code="second")
    assert response.status_code == 404
    assert api("GET", path, bearer=other, code="second").status_code == 404
    assert _publication(world, study).images_complete_at is None


def test_a_body_that_is_not_an_object_is_a_clear_400(api, signed, study):  # noqa: F811
    path = f"studies/{study.study_instance_uid}/publication/images-complete"
    from django.test import Client

    response = Client().post(
        f"/api/first/reports/{path}", "[1, 2]", content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token_for(study.hospital)}",
    )  # fmt: skip
    assert response.status_code == 400
