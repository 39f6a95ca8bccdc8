import pytest

from apps.reports.models import ReportVersion
from apps.tenants.context import hospital_context
from tests.dicomweb.helpers import token_for
from tests.reports.conftest import FINDINGS


@pytest.fixture
def api(client, world):
    token = token_for(world.first.hospital)

    def _call(method: str, path: str, body: dict | None = None, *, bearer: str | None = None, code: str = "first"):
        url = f"/api/{code}/reports/{path}"
        headers = {"HTTP_AUTHORIZATION": f"Bearer {bearer or token}"}
        if method == "GET":
            return client.get(url, body or {}, **headers)
        return client.post(url, body or {}, content_type="application/json", **headers)

    return _call


def _versions(world, study) -> int:
    with hospital_context(world.first.hospital):
        return ReportVersion.objects.filter(report__study=study).count()


@pytest.fixture
def signed(api, study):
    path = f"studies/{study.study_instance_uid}/report"
    assert api("POST", path, {"author": "first-reporting_doctor", **FINDINGS}).status_code == 201
    assert api("POST", f"{path}/sign", {"version": 1, "signer": "first-reporting_doctor"}).status_code == 201
    return path


def test_create_sign_and_read_a_report(api, signed):
    response = api("GET", signed)
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["current_version"]) == ("final", 2)
    assert body["version"]["verified"] is True
    assert body["version"]["signed_by"] == "first-reporting_doctor"
    assert [v["number"] for v in body["versions"]] == [1, 2]


def test_amend_then_read_versions_and_diff(api, signed):
    response = api("POST", f"{signed}/amend", {"version": 2, "signer": "first-reporting_doctor",
                                               "reason": "修正", "impression": "考虑良性"})  # fmt: skip
    assert response.status_code == 201
    assert (response.json()["number"], response.json()["status"]) == (3, "amended")
    first = api("GET", f"{signed}/versions/1").json()
    assert (first["impression"], first["status"], first["verified"]) == (FINDINGS["impression"], "draft", True)
    diff = api("GET", f"{signed}/diff", {"a": 2, "b": 3}).json()
    assert diff["changes"] == {"impression": {"old": FINDINGS["impression"], "new": "考虑良性"}}


def test_stale_amendment_gets_409(api, signed, world, study):
    response = api("POST", f"{signed}/amend", {"version": 1, "signer": "first-reporting_doctor",
                                               "reason": "r", "findings": "x"})  # fmt: skip
    assert response.status_code == 409
    assert response.json()["error"] == "conflict"
    assert _versions(world, study) == 2


def test_second_report_for_a_study_gets_409(api, signed):
    assert api("POST", signed, {"author": "first-reporting_doctor"}).status_code == 409


def test_token_of_the_other_hospital_gets_404(api, signed, world):
    other = token_for(world.second.hospital)
    response = api("GET", signed, bearer=other)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_study_of_the_other_hospital_gets_the_same_404_as_unknown(api, world, make_study):
    foreign = make_study(world.second.hospital)
    other_hospital = token_for(world.second.hospital)
    assert api("POST", f"studies/{foreign.study_instance_uid}/report", {"author": "second-reporting_doctor"},
               bearer=other_hospital, code="second").status_code == 201  # fmt: skip
    theirs = api("GET", f"studies/{foreign.study_instance_uid}/report")
    unknown = api("GET", "studies/1.2.3.4/report")
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json() == unknown.json()
    assert theirs.json()["error"] == "not_found"


@pytest.mark.parametrize("signer", ["first-clinician", "second-reporting_doctor", "nobody"])
def test_signer_who_is_not_a_doctor_here_gets_403(api, world, study, signer):
    path = f"studies/{study.study_instance_uid}/report"
    api("POST", path, {"author": "first-reporting_doctor", **FINDINGS})
    response = api("POST", f"{path}/sign", {"version": 1, "signer": signer})
    assert response.status_code == 403
    assert response.json()["error"] == "permission_denied"
    assert _versions(world, study) == 1


def test_missing_reason_gets_400_naming_the_field(api, signed, world, study):
    response = api("POST", f"{signed}/amend", {"version": 2, "signer": "first-reporting_doctor", "findings": "x"})
    assert response.status_code == 400
    assert "reason" in response.json()["fields"]
    assert _versions(world, study) == 2


def test_empty_impression_on_sign_gets_400(api, world, study):
    path = f"studies/{study.study_instance_uid}/report"
    api("POST", path, {"author": "first-reporting_doctor", **FINDINGS, "impression": ""})
    response = api("POST", f"{path}/sign", {"version": 1, "signer": "first-reporting_doctor"})
    assert response.status_code == 400
    assert "impression" in response.json()["fields"]
    assert _versions(world, study) == 1


def test_amending_a_draft_gets_400(api, world, study):
    path = f"studies/{study.study_instance_uid}/report"
    api("POST", path, {"author": "first-reporting_doctor", **FINDINGS})
    response = api("POST", f"{path}/amend", {"version": 1, "signer": "first-reporting_doctor", "reason": "r",
                                             "findings": "x"})  # fmt: skip
    assert response.status_code == 400
    assert "status" in response.json()["fields"]
    assert _versions(world, study) == 1


def test_read_only_token_cannot_write(api, world, study):
    read_only = token_for(world.first.hospital, scopes=("read",))
    response = api("POST", f"studies/{study.study_instance_uid}/report", {"author": "first-reporting_doctor"},
                   bearer=read_only)  # fmt: skip
    assert response.status_code == 403
    assert _versions(world, study) == 0


def test_script_in_text_is_stored_as_given(api, world, study):
    path = f"studies/{study.study_instance_uid}/report"
    payload = "<script>alert('x')</script>"
    assert api("POST", path, {"author": "first-reporting_doctor", "findings": payload}).status_code == 201
    assert api("GET", path).json()["version"]["findings"] == payload


@pytest.mark.parametrize(
    ("field", "value"),
    [("impression", "\ud800"), ("findings", "a\udc00b"), ("reason", "\ud800"), ("reason", "nul\x00reason")],
)
def test_text_the_database_cannot_hold_gets_400_and_saves_nothing(api, signed, world, study, field, value):
    """A lone surrogate (JSON "\\ud800") or a NUL character, in a text field or the reason."""
    body = {"version": 2, "signer": "first-reporting_doctor", "reason": "修正", "impression": "考虑良性"}
    body[field] = value
    response = api("POST", f"{signed}/amend", body)
    assert response.status_code == 400
    assert field in response.json()["fields"]
    assert _versions(world, study) == 2


def test_a_body_over_the_upload_limit_gets_a_json_413(api, signed, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = {"version": 2, "signer": "first-reporting_doctor", "reason": "r", "impression": "长" * 20_000}
    response = api("POST", f"{signed}/amend", body)
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"


def test_a_method_the_resource_lacks_gets_405_not_403(client, signed, world):
    token = token_for(world.first.hospital)
    response = client.delete(f"/api/first/reports/{signed}", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 405


def test_an_unknown_api_path_gets_a_json_404(client, world):
    token = token_for(world.first.hospital)
    response = client.get("/api/first/dicom-web/nothing-here", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["error"] == "not_found"
