"""The floor under 影像云's ingest figures: what our stack costs before it ingests anything, beside
what Orthanc takes to ingest, both measured in one run on this machine.

(b) One-instance studies. Orthanc's STOW-RS rate (4 client threads) against the rate at which our
    server answers, at the same concurrency, requests that ingest nothing:
    - ``GET /api/<code>/no-such-resource``: the middleware stack, the request's transaction and a
      JSON 404; no token and no row written;
    - ``GET /api/<code>/dicom-web/studies?PatientID=<none>``: what every STOW-RS request does besides
      ingesting (token, hospital context for row-level security, one indexed query, one audit event
      appended to the hospital's chain).
    If Orthanc ingests faster than we answer these, no change to our ingest can reach Orthanc's
    rate in this stack on this machine.
(a) The 512x512 CT series. Orthanc's time per instance (25 per request) against the work per
    instance that an archive with our duties cannot skip, done by the libraries alone on one core,
    in this process: pydicom reads the header, pydicom writes its DICOM JSON (WADO-RS metadata),
    SHA-256 and AES-256-GCM of the bytes.

    .venv/bin/python bench/floor.py [--studies 2000] [--slices 100]

Prints a table; nothing is timed in the test suite.
"""

import argparse
import hashlib
import io
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pydicom
import requests
import synth
from client import DicomWeb
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from run import load_average, measure_many_stow, measure_series_stow
from servers import HOSPITAL_CODE, Orthanc, Ours


def request_rate(url: str, headers: dict[str, str], count: int, threads: int, expect: int) -> dict[str, float]:
    """``count`` GETs of ``url`` from ``threads`` threads, each with its own keep-alive session."""
    sessions: dict[int, requests.Session] = {}

    def one(_: int) -> float:
        session = sessions.setdefault(threading.get_ident(), requests.Session())
        began = time.perf_counter()
        response = session.get(url, headers=headers, timeout=60)
        if response.status_code != expect:
            raise RuntimeError(f"{url}: {response.status_code} {response.text[:200]}")
        return time.perf_counter() - began

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        latencies = list(pool.map(one, range(count)))
    elapsed = time.perf_counter() - started
    return {"per_s": count / elapsed, "median_ms": statistics.median(latencies) * 1000}


def library_work(instances: list[bytes]) -> dict[str, float]:
    """Milliseconds per instance, in this process on one core, of the work no archive with our
    duties can skip (median of three passes over the instances)."""
    key = AESGCM(AESGCM.generate_key(bit_length=256))
    segment = 1024 * 1024

    def parse(data: bytes) -> Any:
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)

    def to_json(data: bytes) -> Any:
        return parse(data).to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=lambda _: "")

    def digest_and_seal(data: bytes) -> None:
        hashlib.sha256(data).digest()
        for start in range(0, len(data), segment):
            key.encrypt(os.urandom(12), data[start : start + segment], None)

    steps = {"pydicom header read": parse, "header read + DICOM JSON": to_json, "SHA-256 + AES-GCM": digest_and_seal}
    result = {}
    for name, step in steps.items():
        passes = []
        for _ in range(3):
            began = time.perf_counter()
            for data in instances:
                step(data)
            passes.append((time.perf_counter() - began) / len(instances) * 1000)
        result[name] = statistics.median(passes)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=2000, help="one-instance studies sent to Orthanc")
    parser.add_argument("--requests", type=int, default=2000, help="requests of each kind sent to 影像云")
    parser.add_argument("--slices", type=int, default=100, help="CT slices sent to Orthanc, 25 per request")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers for our server")
    args = parser.parse_args()
    print(f"load average before: {load_average()}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="yingxiang-floor-"))
    orthanc, ours = Orthanc(workdir), Ours(workdir, workers=args.workers)
    try:
        studies = synth.small_studies(args.studies, seed=41)
        series = synth.ct_series(args.slices, seed=42)
        orthanc.start()
        ours.start(synth.INSTITUTION)
        client = DicomWeb("Orthanc", orthanc.dicomweb_root, {"Accept-Encoding": "identity"})
        many = measure_many_stow(client, studies, args.threads)
        ct = measure_series_stow(client, series, 25)
        api = f"{ours.url}/api/{HOSPITAL_CODE}"
        headers = {**ours.headers, "Accept": "application/dicom+json"}
        unknown = request_rate(f"{api}/no-such-resource", {}, args.requests, args.threads, 404)
        search = request_rate(
            f"{api}/dicom-web/studies?PatientID=NO-SUCH-PATIENT", headers, args.requests, args.threads, 200
        )
        work = library_work(series.instances)
    finally:
        orthanc.stop()
        ours.stop()
        ours.drop_database()
    orthanc_ms = 1000 / ct["instances_per_s"]
    print(f"\nload average after: {load_average()}")
    print(f"\n(b) {args.threads} client threads; 影像云 on gunicorn with {args.workers} sync workers")
    print(f"  Orthanc, STOW-RS of one-instance studies        {many['instances_per_s']:8.1f} /s")
    print(f"  影像云, unknown /api/ path (JSON 404)             {unknown['per_s']:8.1f} /s")
    print(f"  影像云, QIDO-RS matching nothing (token, audit)   {search['per_s']:8.1f} /s")
    print(f"\n(a) 512x512 CT, per instance; Orthanc {ct['instances_per_s']:.1f} instances/s, 25 per request")
    print(f"  Orthanc, whole STOW-RS until queryable           {orthanc_ms:8.2f} ms")
    for name, ms in work.items():
        print(f"  libraries alone, one core: {name:<22}{ms:8.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
