"""Study and series rendered (PS3.18 10.4, rendered resources), and the audit of frame and
rendered retrievals."""

import email.parser
import email.policy
import io

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from PIL import Image

from apps.audit.models import AuditEvent
from apps.audit.vocabulary import Action
from apps.dicomweb import rendered
from apps.tenants.context import hospital_context
from tests.dicomweb.helpers import (
    api_get,
    encapsulated_ct,
    multiframe_ct,
    read_multipart,
    store_dataset,
    store_part10,
    token_for,
)
from tests.imaging.dicom_factory import make_instance

pytestmark = pytest.mark.django_db


def _study(client, token) -> tuple[str, str, list[str]]:
    """A study of two series: three CT slices (instance numbers 3, 1, 2, stored in that order) with
    distinct pixel values, and one more slice. Returns the study URL, the first series' URL and the
    instance URLs of that series by instance number."""
    first, _values = multiframe_ct(frames=1, InstanceNumber=3)
    study_uid, series_uid = first.StudyInstanceUID, first.SeriesInstanceUID
    urls = {3: store_dataset(client, token, first)}
    for number in (1, 2):
        pixels = (np.arange(256, dtype=np.uint16).reshape(16, 16) * (number + 2) + 900).astype("<u2").tobytes()
        ds = make_instance("CT", StudyInstanceUID=study_uid, SeriesInstanceUID=series_uid, InstanceNumber=number,
                           PixelData=pixels)  # fmt: skip
        urls[number] = store_dataset(client, token, ds)
    other = make_instance("CT", StudyInstanceUID=study_uid, SeriesNumber=2, InstanceNumber=1)
    store_dataset(client, token, other)
    study_url = f"/api/first/dicom-web/studies/{study_uid}"
    return study_url, f"{study_url}/series/{series_uid}", [urls[n] for n in (1, 2, 3)]


def _parts(response, status: int = 200) -> list[bytes]:
    assert response.status_code == status, getattr(response, "content", b"")
    return read_multipart(b"".join(response.streaming_content), response["Content-Type"])


def test_a_series_renders_each_instance_in_instance_order(client, token):
    _study_url, series_url, instance_urls = _study(client, token)
    window = "1500,3000"  # wide enough that the three slices' values look different
    response = api_get(
        client, token, f"{series_url}/rendered", accept_header='multipart/related; type="image/png"', window=window
    )
    assert response["Content-Type"].startswith('multipart/related; type="image/png"')
    assert "no-store" in response["Cache-Control"]
    parts = _parts(response)
    # Each part is exactly what the instance's own rendered resource answers.
    singles = [
        api_get(client, token, f"{url}/rendered", accept_header="image/png", window=window).content
        for url in instance_urls
    ]
    assert parts == singles
    assert len({bytes(part) for part in parts}) == 3


def test_a_study_renders_every_series_as_jpeg_by_default(client, token):
    study_url, _series_url, _instance_urls = _study(client, token)
    response = api_get(client, token, f"{study_url}/rendered")
    assert response["Content-Type"].startswith('multipart/related; type="image/jpeg"')
    parts = _parts(response)
    assert len(parts) == 4
    assert {Image.open(io.BytesIO(part)).format for part in parts} == {"JPEG"}


def test_rendering_parameters_apply_to_every_part(client, token):
    _study_url, series_url, _instance_urls = _study(client, token)
    response = api_get(client, token, f"{series_url}/rendered", accept="image/png", viewport="8,8")
    assert [Image.open(io.BytesIO(part)).size for part in _parts(response)] == [(8, 8)] * 3
    assert api_get(client, token, f"{series_url}/rendered", window="40").status_code == 400
    assert api_get(client, token, f"{series_url}/rendered", accept_header="text/html").status_code == 406


def test_instances_this_archive_does_not_render_are_left_out(client, token):
    data, ds = encapsulated_ct([b"\xff\xd8" + bytes(16) + b"\xff\xd9"])
    store_part10(client, token, data, ds)
    series_url = f"/api/first/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
    only_compressed = api_get(client, token, f"{series_url}/rendered")
    assert only_compressed.status_code == 406
    assert only_compressed.json()["error"] == "not_acceptable"
    native = make_instance("CT", StudyInstanceUID=ds.StudyInstanceUID, SeriesInstanceUID=ds.SeriesInstanceUID,
                           InstanceNumber=2)  # fmt: skip
    store_dataset(client, token, native)
    # The answer holds the image it renders, and says it is partial, and why.
    partial = api_get(client, token, f"{series_url}/rendered")
    assert len(_parts(partial, 206)) == 1
    assert partial["Warning"].startswith("299 testserver ")
    assert "1 instance(s) with compressed pixel data were not rendered" in partial["Warning"]


def test_a_series_rendered_holds_at_most_the_configured_images(client, token, settings):
    _study_url, series_url, instance_urls = _study(client, token)
    settings.RENDERED_MAX_INSTANCES = 2
    with CaptureQueriesContext(connection) as queries:
        capped = api_get(client, token, f"{series_url}/rendered")
    # The rows rendered are read, one more to know the cap was reached, and no others.
    [listing] = [q["sql"] for q in queries.captured_queries if '"imaging_instance"."metadata_sealed"' in q["sql"]]
    assert listing.endswith("LIMIT 3")
    assert _locations(capped, 206) == [f"http://testserver{url}/rendered" for url in instance_urls[:2]]
    assert "Only the first 2 of 3 images were rendered" in capped["Warning"]
    settings.RENDERED_MAX_INSTANCES = 3
    whole = api_get(client, token, f"{series_url}/rendered")
    assert len(_parts(whole)) == 3 and not whole.has_header("Warning")


def test_unknown_and_other_hospitals_studies_are_404(client, token, world):
    study_url, series_url, _instance_urls = _study(client, token)
    other = token_for(world.second.hospital)
    for url in (f"{study_url}/rendered", f"{series_url}/rendered"):
        response = api_get(client, other, url.replace("/first/", "/second/"))
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"
    assert api_get(client, token, "/api/first/dicom-web/studies/1.2.3.4/rendered").status_code == 404


def test_frame_and_rendered_retrievals_are_audited(client, token, world):
    study_url, series_url, instance_urls = _study(client, token)
    asked = [
        (f"{instance_urls[0]}/frames/1", "frames", 1),
        (f"{instance_urls[0]}/rendered", "rendered", 1),
        (f"{instance_urls[0]}/frames/1/rendered", "rendered", 1),
        (f"{series_url}/rendered", "rendered", 3),
        (f"{study_url}/rendered", "rendered", 4),
    ]
    for url, _kind, _count in asked:
        response = api_get(client, token, url)
        assert response.status_code == 200
        if response.streaming:
            b"".join(response.streaming_content)
    # A refused retrieval (a frame that does not exist) is not an access.
    assert api_get(client, token, f"{instance_urls[0]}/frames/9").status_code == 400
    with hospital_context(world.first.hospital):
        events = list(
            AuditEvent.objects.filter(action=Action.INSTANCES_ACCESSED).order_by("id").values_list("details", flat=True)
        )
    assert [(e["retrieve"], e["instances"]) for e in events] == [(kind, count) for _url, kind, count in asked]


def _locations(response, status: int = 200) -> list[str]:
    assert response.status_code == status
    content = b"".join(response.streaming_content)
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {response['Content-Type']}\r\n\r\n".encode() + content
    )
    return [part["Content-Location"] for part in message.iter_parts()]


def test_each_part_names_the_instance_it_renders(client, token):
    _study_url, series_url, instance_urls = _study(client, token)
    response = api_get(client, token, f"{series_url}/rendered")
    assert _locations(response) == [f"http://testserver{url}/rendered" for url in instance_urls]


def test_the_accept_query_parameter_and_preferences_choose_the_part_type(client, token):
    _study_url, series_url, _instance_urls = _study(client, token)
    by_query = api_get(client, token, f"{series_url}/rendered", accept='multipart/related; type="image/png"')
    assert by_query["Content-Type"].startswith('multipart/related; type="image/png"')
    assert {Image.open(io.BytesIO(part)).format for part in _parts(by_query)} == {"PNG"}
    refused_png = 'multipart/related; type="image/png"; q=0, multipart/related; type="image/jpeg"'
    by_preference = api_get(client, token, f"{series_url}/rendered", accept_header=refused_png)
    assert by_preference["Content-Type"].startswith('multipart/related; type="image/jpeg"')
    unavailable = api_get(client, token, f"{series_url}/rendered", accept_header='multipart/related; type="image/gif"')
    assert unavailable.status_code == 406


def test_a_multiframe_instance_gives_its_first_frame(client, token):
    ds, values = multiframe_ct(frames=3)
    url = store_dataset(client, token, ds)
    series_url = url.rsplit("/instances/", 1)[0]
    [part] = _parts(api_get(client, token, f"{series_url}/rendered", accept="image/png", window="1500,3000"))
    first = api_get(client, token, f"{url}/frames/1/rendered", accept_header="image/png", window="1500,3000").content
    second = api_get(client, token, f"{url}/frames/2/rendered", accept_header="image/png", window="1500,3000").content
    assert part == first != second
    assert values.shape[0] == 3


def test_an_instance_that_fails_while_streaming_is_left_out_and_the_answer_stays_whole(client, token, monkeypatch):
    """The second instance's stored object cannot be read (a fault outside our code, simulated)
    after the answer has started: the others are sent, in a well-formed multipart."""
    _study_url, series_url, instance_urls = _study(client, token)
    first_frame, calls = rendered._first_frame, []

    def failing_second(hospital, loaded, number, rendering):
        calls.append(loaded.instance.pk)
        if len(calls) == 2:
            raise OSError("read error")
        return first_frame(hospital, loaded, number, rendering)

    monkeypatch.setattr(rendered, "_first_frame", failing_second)
    response = api_get(client, token, f"{series_url}/rendered")
    assert _locations(response) == [f"http://testserver{url}/rendered" for url in (instance_urls[0], instance_urls[2])]


def _key_object(study_uid: str, series_uid: str):
    """A Key Object Selection in the series, sorted before its images: no Image Pixel Module."""
    no_image = dict.fromkeys(
        ("PixelData", "Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated",
         "BitsStored", "HighBit", "PixelRepresentation", "PixelSpacing", "SliceThickness",
         "ImagePositionPatient", "ImageOrientationPatient"),
    )  # fmt: skip
    return make_instance(
        "CT", StudyInstanceUID=study_uid, SeriesInstanceUID=series_uid, InstanceNumber=0, Modality="KO",
        SOPClassUID="1.2.840.10008.5.1.4.1.1.88.59", **no_image,
    )  # fmt: skip


def test_the_cap_counts_images_only(client, token, settings):
    """Objects that are not images are no part of a rendered answer: they neither take a place
    under the cap nor make the answer partial."""
    study_url, series_url, instance_urls = _study(client, token)
    study_uid, series_uid = series_url.split("/")[-3], series_url.split("/")[-1]
    store_dataset(client, token, _key_object(study_uid, series_uid))
    settings.RENDERED_MAX_INSTANCES = 3
    series = api_get(client, token, f"{series_url}/rendered")
    assert _locations(series) == [f"http://testserver{url}/rendered" for url in instance_urls]
    assert not series.has_header("Warning")
    settings.RENDERED_MAX_INSTANCES = 1
    study = api_get(client, token, f"{study_url}/rendered")
    assert _locations(study, 206) == [f"http://testserver{instance_urls[0]}/rendered"]
    assert "Only the first 1 of 4 images were rendered" in study["Warning"]
