"""In-process look at where 影像云's DICOMweb requests spend their time: SQL statements per request
(count and time, by statement kind and table) and a cProfile of one-instance STOW-RS requests.

run.py --profile starts this with the bench server's environment (database, storage, token), after
the timed measurements. By hand:

    BENCH_TOKEN=yxy_... DJANGO_SETTINGS_MODULE=config.settings.base DATABASE_URL=... VAR_DIR=... \
        .venv/bin/python bench/profile_stow.py --studies 200

Requests go through django.test.Client (the whole middleware stack, no HTTP server). The test
client keeps one database connection, so the per-request connection set-up that gunicorn pays with
DB_CONN_MAX_AGE=0 does not appear here (py-spy on the real server shows it).
"""

import argparse
import cProfile
import io
import os
import pstats
import re
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

import django  # noqa: E402

django.setup()

import synth  # noqa: E402
from client import multipart_body  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

_TABLE = re.compile(r'(?:FROM|INTO|UPDATE)\s+"?(\w+)"?', re.IGNORECASE)


class QueryLog:
    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.kinds: Counter[str] = Counter()
        self.kind_seconds: dict[str, float] = defaultdict(float)

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        began = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            elapsed = time.perf_counter() - began
            words = sql.lstrip().split(None, 1)
            verb = words[0].upper() if words else "?"
            match = _TABLE.search(sql)
            kind = f"{verb} {match.group(1) if match else ''}".strip()
            if verb in {"SAVEPOINT", "RELEASE", "ROLLBACK"}:
                kind = verb
            elif "set_config" in sql:
                kind = "SELECT set_config"
            self.count += 1
            self.seconds += elapsed
            self.kinds[kind] += 1
            self.kind_seconds[kind] += elapsed


def run(client: Client, code: str, token: str, label: str, requests: list[Callable[[Client], Any]]) -> None:
    log = QueryLog()
    times = []
    with connection.execute_wrapper(log):
        for request in requests:
            began = time.perf_counter()
            response = request(client)
            times.append(time.perf_counter() - began)
            if response.status_code not in {200, 204}:
                raise SystemExit(f"{label}: {response.status_code} {response.content[:300]!r}")
    n = len(requests)
    print(
        f"\n== {label}: {n} requests, median {statistics.median(times) * 1000:.1f} ms; "
        f"{log.count / n:.1f} SQL statements per request, {log.seconds / n * 1000:.1f} ms of SQL per request"
    )
    for kind, count in log.kinds.most_common(18):
        print(f"   {count / n:6.2f}/req  {log.kind_seconds[kind] / n * 1000:6.2f} ms/req  {kind}")


def explain(code: str, patient_id: str, month: str) -> None:
    """EXPLAIN ANALYZE of the two QIDO study searches, as the application role under RLS."""
    from apps.imaging import selectors
    from apps.tenants.context import hospital_context
    from apps.tenants.models import Hospital

    hospital = Hospital.objects.get(code=code)
    for label, params in (("PatientID", {"PatientID": patient_id}), ("one-month StudyDate", {"StudyDate": month})):
        with hospital_context(hospital):
            queryset = selectors.studies_matching(hospital, params)[:200]
            sql, sql_params = queryset.query.sql_with_params()
            with connection.cursor() as cursor:
                cursor.execute(f"EXPLAIN (ANALYZE, COSTS OFF) {sql}", sql_params)
                plan = [row[0] for row in cursor.fetchall()]
        print(f"\n== EXPLAIN ANALYZE, QIDO studies by {label}")
        print("\n".join("   " + line for line in plan))


# Steps of one STOW-RS request, by function name (file suffix, function), for the breakdown below.
_COMPONENTS = [
    ("request body spooled to a temporary file", "apps/dicomweb/multipart.py", "spool"),
    ("multipart parts located", "apps/dicomweb/multipart.py", "split_parts"),
    ("token and hospital resolved", "apps/tenants/api.py", "_resolve"),
    ("in-memory objects: whole pipeline", "apps/imaging/ingest.py", "received_object_ingest"),
    ("staged objects: part written and fsync'd, row inserted", "apps/imaging/ingest.py", "staged_object_create"),
    ("  of which staging_write (write + 2 fsyncs)", "apps/imaging/staging.py", "staging_write"),
    ("parse_part10 (pydicom, up to Pixel Data)", "apps/imaging/dicom/parse.py", "parse_part10"),
    ("per-instance validation rules", "apps/imaging/dicom/rules.py", "validate_instance"),
    ("duplicate check (series list or UID lookup)", "apps/imaging/indexing.py", "check_existing"),
    ("patient identity findings", "apps/imaging/indexing.py", "identity_findings"),
    ("placement (study, series, patient checks)", "apps/imaging/indexing.py", "placement"),
    ("metadata to DICOM JSON (when the request parses itself)", "apps/imaging/dicom/header.py", "metadata_document"),
    ("waiting for the parse helper's result", "apps/imaging/parse_pool.py", "receive"),
    ("metadata document sealed", "apps/imaging/metadata.py", "seal_document"),
    ("object_put (hash, AES-GCM, durable write)", "apps/imaging/objectstore.py", "object_put"),
    ("index_instance (patient, study, series, instance rows)", "apps/imaging/indexing.py", "index_instance"),
    ("_finish (StagedObject insert or update)", "apps/imaging/ingest.py", "_finish"),
    ("series-level review of the batch", "apps/imaging/series_review.py", "batch_review"),
    ("RetrieveURL of each instance", "apps/dicomweb/stow.py", "_instance_url"),
    ("audit record (chain head locked)", "apps/dicomweb/base.py", "audit"),
]


def _batches(items: list[bytes], size: int) -> list[list[bytes]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def components(client: Client, requests: list[Callable[[Client], Any]]) -> None:
    """Where the time of 25-slice STOW-RS requests goes, step by step (cProfile, cumulative)."""
    profiler = cProfile.Profile()
    began = time.perf_counter()
    profiler.enable()
    for request in requests:
        response = request(client)
        assert response.status_code in {200, 202}, response.content
    profiler.disable()
    wall = time.perf_counter() - began
    stats: dict[Any, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(entry[3] for key, entry in stats.items() if key[2].endswith("__call__") and "core/middleware" in key[0])
    total = total or wall
    print(
        f"\n== 25-slice STOW-RS, step by step: {len(requests)} requests, {total / len(requests) * 1000:.0f} ms each "
        "(under cProfile, which inflates Python-heavy steps)"
    )
    for label, suffix, name in _COMPONENTS:
        seconds = sum(entry[3] for key, entry in stats.items() if key[0].endswith(suffix) and key[2] == name)
        print(f"   {seconds / total * 100:5.1f}%  {seconds / len(requests) * 1000:7.1f} ms/req  {label}")
    sql = sum(entry[3] for key, entry in stats.items() if key[0].endswith("django/db/backends/utils.py")
              and key[2] == "execute")  # fmt: skip
    print(f"   {sql / total * 100:5.1f}%  {sql / len(requests) * 1000:7.1f} ms/req  (all SQL, across the steps)")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--studies", type=int, default=200)
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--code", default="bench")
    args = parser.parse_args()
    token = os.environ["BENCH_TOKEN"]
    code = args.code
    root = f"/api/{code}/dicom-web"
    client = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {token}")

    def stow(instances: list[bytes]) -> Callable[[Client], Any]:
        body = multipart_body(instances, "BENCHBOUNDARY")
        return lambda c: c.post(
            f"{root}/studies",
            data=body,
            content_type='multipart/related; type="application/dicom"; boundary=BENCHBOUNDARY',
        )

    def qido(params: dict[str, Any]) -> Callable[[Client], Any]:
        return lambda c: c.get(f"{root}/studies", params)

    studies = synth.small_studies(args.studies, seed=21)
    series = synth.ct_series(args.slices, seed=22)
    run(client, code, token, "STOW-RS, one 64x64 instance per request", [stow([d]) for d in studies.instances])
    run(
        client,
        code,
        token,
        "STOW-RS, 25 512x512 slices per request",
        [stow(series.instances[i : i + 25]) for i in range(0, len(series.instances), 25)],
    )
    run(
        client,
        code,
        token,
        "QIDO-RS by PatientID",
        [qido({"PatientID": p, "limit": 200}) for p in studies.patient_ids[:50]],
    )
    run(
        client,
        code,
        token,
        "QIDO-RS by a one-month StudyDate range",
        [qido({"StudyDate": m, "limit": 200}) for m in synth.month_ranges()[:30]],
    )

    explain(code, studies.patient_ids[0], synth.month_ranges()[14])

    components(client, [stow(batch) for batch in _batches(synth.ct_series(args.slices, seed=24).instances, 25)])

    more = synth.small_studies(args.studies, seed=23)
    profiler = cProfile.Profile()
    profiler.enable()
    for data in more.instances:
        response = stow([data])(client)
        assert response.status_code == 200, response.content
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(r"apps/|django/db/models/(query|base)\.py|pydicom/filereader|crypto", 40)
    print(f"\n== cProfile of {len(more.instances)} one-instance STOW-RS requests (cumulative, filtered)")
    print("\n".join(line for line in out.getvalue().splitlines()[5:] if line.strip()))
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(20)
    print("\n== cProfile of the same, by own time")
    print("\n".join(line for line in out.getvalue().splitlines()[5:] if line.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
