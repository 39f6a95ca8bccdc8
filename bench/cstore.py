"""Benchmark: ingest over DICOM C-STORE, 影像云's gateway against Orthanc's DICOM server.

    .venv/bin/python bench/cstore.py                  # 300-slice CT and 1,000 one-instance studies
    .venv/bin/python bench/cstore.py --studies 300    # shorter

DCMTK's storescu sends the same files to both, as a modality or a PACS would: one association for
the whole CT series, and the small studies over ``--associations`` associations side by side. The
clock stops when QIDO-RS finds every instance (Orthanc indexes before it answers a C-STORE; our
gateway answers once the object is staged durably, and Celery workers ingest it afterwards), so
the figure is what a sender's images take to become readable. Our side runs the gateway
(``manage.py dicom_gateway``), ``--celery`` Celery worker processes on a Redis broker and gunicorn
for QIDO-RS. Prints a table with ratios and, for ours, CPU seconds per instance by process kind.
"""

# ruff: noqa: RUF001, S603, S607 - it starts known local programs; the table uses the multiplication sign

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import synth
from client import DicomWeb
from run import load_average, machine, ratio, source_state
from servers import PYTHON, ROOT, VENV_BIN, Orthanc, Ours, free_port

SCU_AE = "BENCHSCU"
GATEWAY_AE = "YINGXIANG"
ORTHANC_AE = "ORTHANC"
REDIS_DB_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes and their reaped children, from /proc."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(value) for value in fields[11:15])
    return total / CLOCK_TICKS


def write_files(directory: Path, objects: list[bytes]) -> list[Path]:
    directory.mkdir(parents=True)
    paths = []
    for index, data in enumerate(objects):
        path = directory / f"{index:06d}.dcm"
        path.write_bytes(data)
        paths.append(path)
    return paths


def storescu(port: int, called: str, paths: list[Path], associations: int) -> None:
    """Send ``paths`` in ``associations`` storescu processes at once; each must succeed."""
    groups = [paths[first::associations] for first in range(associations)]
    processes = [
        subprocess.Popen(
            ["storescu", "-aet", SCU_AE, "-aec", called, "127.0.0.1", str(port), *map(str, group)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for group in groups
        if group
    ]
    failures = []
    for process in processes:
        output, _ = process.communicate(timeout=3600)
        if process.returncode != 0:
            failures.append(output.decode(errors="replace")[-1500:])
    if failures:
        raise RuntimeError("storescu failed:\n" + "\n".join(failures))


def wait_until(check: Callable[[], bool], timeout: float = 1800) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not queryable within {timeout:.0f} s")
        time.sleep(0.05)


def instances_at_least(client: DicomWeb, study_uid: str, count: int) -> bool:
    return client.instance_count(study_uid) >= count


def studies_at_least(client: DicomWeb, count: int) -> Callable[[], bool]:
    """True once QIDO-RS finds ``count`` studies (the last of them, at offset count - 1)."""

    def check() -> bool:
        return len(client.qido("studies", {"StudyDate": "19000101-29991231", "offset": count - 1, "limit": 1})) == 1

    return check


class Measured:
    def __init__(self, name: str, cpu_of: Callable[[], dict[str, list[int]]]) -> None:
        self.name = name
        self.cpu_of = cpu_of

    def run(self, label: str, count: int, send: Callable[[], None], ready: Callable[[], bool]) -> dict[str, Any]:
        before = {kind: cpu_seconds(pids) for kind, pids in self.cpu_of().items()}
        started = time.perf_counter()
        send()
        sent = time.perf_counter() - started
        wait_until(ready)
        elapsed = time.perf_counter() - started
        after = {kind: cpu_seconds(pids) for kind, pids in self.cpu_of().items()}
        cpu_ms = {kind: (after[kind] - before.get(kind, 0.0)) * 1000 / count for kind in after}
        log(
            f"  {self.name} {label}: {count / elapsed:.1f} instances/s ({elapsed:.1f} s; storescu done after "
            f"{sent:.1f} s); CPU ms per instance: " + ", ".join(f"{kind} {value:.1f}" for kind, value in cpu_ms.items())
        )
        return {"seconds": elapsed, "sent_seconds": sent, "instances_per_s": count / elapsed, "cpu_ms": cpu_ms}


class OurGateway:
    """Gateway and Celery workers beside the bench's gunicorn (which answers QIDO-RS)."""

    def __init__(self, ours: Ours, celery: int) -> None:
        self.ours = ours
        self.celery = celery
        self.port = free_port()
        self.gateway: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import redis

        redis.Redis.from_url(REDIS_DB_URL).flushdb()
        self.ours.manage(
            "shell",
            "-c",
            "from apps.tenants.models import Hospital\n"
            "from apps.tenants.context import hospital_context\n"
            "from apps.imaging.models import DicomNode\n"
            "h = Hospital.objects.get(code='bench')\n"
            "with hospital_context(h):\n"
            f"    DicomNode.objects.create(hospital=h, ae_title='{SCU_AE}')\n",
        )
        workdir = self.ours.workdir
        with open(workdir / "gateway.log", "wb") as out:
            self.gateway = subprocess.Popen(
                [str(PYTHON), "manage.py", "dicom_gateway", "--port", str(self.port), "--ae-title", GATEWAY_AE],
                cwd=ROOT, env=self.ours.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        with open(workdir / "celery.log", "wb") as out:
            self.worker = subprocess.Popen(
                [str(VENV_BIN / "celery"), "-A", "config", "worker", "--concurrency", str(self.celery),
                 "--loglevel", "warning", "--without-gossip", "--without-mingle", "--without-heartbeat"],
                cwd=ROOT, env=self.ours.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while subprocess.run(
            ["echoscu", "-aet", SCU_AE, "-aec", GATEWAY_AE, "127.0.0.1", str(self.port)], capture_output=True
        ).returncode:
            if time.monotonic() > deadline or self.gateway.poll() is not None:
                tail = (workdir / "gateway.log").read_text()[-2000:]
                raise RuntimeError(f"the gateway did not answer C-ECHO:\n{tail}")
            time.sleep(0.3)

    def cpu_pids(self) -> dict[str, list[int]]:
        from servers import children

        kinds = {"gateway": [self.gateway.pid] if self.gateway else []}
        if self.worker:
            kinds["celery"] = [self.worker.pid, *children(self.worker.pid)]
        kinds["gunicorn"] = self.ours.pids()
        return kinds

    def stop(self) -> None:
        from servers import _stop

        _stop(self.worker)
        _stop(self.gateway)


def orthanc_with_dicom(workdir: Path) -> tuple[Orthanc, int]:
    orthanc = Orthanc(workdir)
    port = free_port()
    orthanc.extra_config = {
        "DicomServerEnabled": True,
        "DicomPort": port,
        "DicomAet": ORTHANC_AE,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowStore": True,
    }
    return orthanc, port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--studies", type=int, default=1000)
    parser.add_argument("--associations", type=int, default=4, help="storescu processes for the small studies")
    parser.add_argument("--celery", type=int, default=2, help="Celery worker processes for ours (default 2)")
    parser.add_argument("--only", choices=["orthanc", "ours"], help="measure one server only")
    parser.add_argument("--json", help="also write every figure to this JSON file")
    args = parser.parse_args()
    if not shutil.which("storescu"):
        log("storescu not found: apt-get install dcmtk")
        return 2

    # DCMTK, as Debian builds it (storescu, and Orthanc's DICOM server), leaves Nagle's algorithm on
    # unless TCP_NODELAY=1 is in its environment; each C-STORE then waits about 40 ms for a delayed
    # ACK (Orthanc: 50 ms per object per association instead of 7). Both are run with it set.
    os.environ["TCP_NODELAY"] = "1"
    workdir = Path(tempfile.mkdtemp(prefix="yingxiang-cstore-"))
    log(f"source {source_state()}; load average {load_average()}")
    log(f"generating {args.slices}-slice CT and {args.studies} one-instance studies under {workdir}")
    series = synth.ct_series(args.slices)
    studies = synth.small_studies(args.studies)
    ct_files = write_files(workdir / "ct", series.instances)
    small_files = write_files(workdir / "small", studies.instances)
    del series.instances[:], studies.instances[:]

    results: dict[str, Any] = {"settings": vars(args), "machine": machine()}
    orthanc, orthanc_port = orthanc_with_dicom(workdir)
    ours = Ours(workdir)
    ours.env.update(REDIS_URL=REDIS_DB_URL, CELERY_TASK_ALWAYS_EAGER="false")
    gateway = OurGateway(ours, args.celery)
    try:
        plans: list[tuple[Measured, DicomWeb, int, str]] = []
        if args.only != "ours":
            orthanc.start()
            their_client = DicomWeb(orthanc.name, orthanc.dicomweb_root)
            plans.append(
                (Measured("Orthanc", lambda: {"Orthanc": orthanc.pids()}), their_client, orthanc_port, ORTHANC_AE)
            )
        if args.only != "orthanc":
            ours.start(synth.INSTITUTION)
            gateway.start()
            our_client = DicomWeb(ours.name, ours.dicomweb_root, ours.headers)
            plans.append((Measured("影像云", gateway.cpu_pids), our_client, gateway.port, GATEWAY_AE))
        for measured, client, port, called in plans:
            results[client.name] = {
                "series": measured.run(
                    f"C-STORE of a {args.slices}-slice CT, one association",
                    args.slices,
                    partial(storescu, port, called, ct_files, 1),
                    partial(instances_at_least, client, series.study_uid, args.slices),
                ),
                "many": measured.run(
                    f"C-STORE of {args.studies} one-instance studies, {args.associations} associations",
                    args.studies,
                    partial(storescu, port, called, small_files, args.associations),
                    studies_at_least(client, args.studies + 1),
                ),
            }
    finally:
        gateway.stop()
        ours.stop()
        orthanc.stop()
        ours.drop_database()
        shutil.rmtree(workdir, ignore_errors=True)

    rows = [("(a) CT series, 1 association: inst/s", "series"), ("(b) small studies: inst/s", "many")]
    print(f"\nSource: {source_state()}; load average after {load_average()}")
    print("| measure | Orthanc | 影像云 | 影像云/Orthanc |\n|---|---|---|---|")
    for label, key in rows:
        theirs = results.get("Orthanc", {}).get(key, {}).get("instances_per_s")
        mine = results.get("影像云", {}).get(key, {}).get("instances_per_s")
        cells = [f"{v:.1f}" if v else "-" for v in (theirs, mine)]
        share = f"{ratio(mine, theirs):.2f}×" if theirs and mine else "-"
        print(f"| {label} | {cells[0]} | {cells[1]} | {share} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
