"""The audit trail in the back office says which time zone its times are in, and every screen
agrees with the others and with the export (UTC)."""

import json
from datetime import UTC, datetime
from unittest import mock

import pytest
from django.urls import reverse

from apps.audit.services import audit_record
from apps.audit.vocabulary import Action

pytestmark = pytest.mark.django_db

# 21:08:08 UTC is 05:08:08 the next day in Shanghai (TIME_ZONE), where the back office shows it.
MOMENT = datetime(2026, 11, 29, 21, 8, 8, tzinfo=UTC)
ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}


@pytest.fixture
def event(world):
    with mock.patch("django.utils.timezone.now", return_value=MOMENT):
        return audit_record(action=Action.STUDY_DOWNLOADED, hospital=world.first.hospital, actor_name="patient:x")


def test_the_list_names_its_time_zone_and_shows_local_times_with_their_offset(client, sign_in, world, event):
    sign_in(world.first["hospital_admin"])

    response = client.get(reverse("admin:audit_auditevent_changelist"), **ZH)

    page = response.content.decode()
    assert "时间（Asia/Shanghai）" in page
    assert "2026-11-30 05:08:08 +08:00" in page
    assert "时间（UTC）" not in page


def test_the_detail_shows_local_time_and_utc_and_the_actions_label(client, sign_in, world, event):
    sign_in(world.first["hospital_admin"])

    response = client.get(reverse("admin:audit_auditevent_change", args=[event.pk]), **ZH)

    page = response.content.decode()
    assert "检查已下载 · 2026-11-30 05:08:08 +08:00" in page  # the title and subtitle
    assert "2026-11-29 21:08:08 +00:00" in page
    assert "时间（UTC）" in page and "时间（Asia/Shanghai）" in page
    assert "study_downloaded" not in page.replace('value="study_downloaded"', "")
    assert "2026-11-29 21:08:08 study_downloaded" not in page


def test_the_export_gives_the_same_moment_in_utc(client, sign_in, world, event):
    sign_in(world.first["hospital_admin"])

    response = client.get(reverse("admin:audit_auditevent_export_json") + "?action__exact=study_downloaded")

    [exported] = json.loads(response.content)["events"]
    assert datetime.fromisoformat(exported["occurred_at"]) == MOMENT
    assert exported["occurred_at"].endswith("+00:00")
