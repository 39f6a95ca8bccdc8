import cProfile, pstats, time, io
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from apps.imaging.models import Series
from apps.tenants.context import hospital_context
from apps.viewer.grants import viewer_url
from tests.viewer.helpers import ct_series_parts, study_store

pytestmark = pytest.mark.django_db

def test_profile(client, sign_in, world, local_storage):
    study = study_store(world.first.hospital, ct_series_parts(20, rows=512, columns=512))
    with hospital_context(world.first.hospital):
        series = Series.objects.get(hospital=world.first.hospital, study=study)
    base = f"{viewer_url(study)}series/{series.public_id}/"
    sign_in(world.first["reporting_doctor"])
    docs = client.get(base + "metadata").json()
    urls = [d["7FE00010"]["BulkDataURI"] + "/frames/1" for d in docs]
    with CaptureQueriesContext(connection) as ctx:
        r = client.get(urls[0]); b"".join(r.streaming_content)
    for q in ctx.captured_queries:
        print(q["sql"][:300])
    t = time.perf_counter()
    for u in urls:
        r = client.get(u); b"".join(r.streaming_content)
    print("per request ms", (time.perf_counter() - t) / len(urls) * 1000)
    pr = cProfile.Profile(); pr.enable()
    for u in urls:
        r = client.get(u); b"".join(r.streaming_content)
    pr.disable()
    s = io.StringIO(); pstats.Stats(pr, stream=s).sort_stats("cumulative").print_stats(45); print(s.getvalue())
    s = io.StringIO(); pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(25); print(s.getvalue())
