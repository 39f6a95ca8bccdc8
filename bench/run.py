"""Benchmark: 影像云's DICOMweb against Orthanc's, on this machine, with the same synthetic data.

    .venv/bin/python bench/run.py            # full run (about 5 minutes on 2 cores)
    .venv/bin/python bench/run.py --quick    # short run (under 3 minutes)

Prints a side-by-side table with ratios; see bench/README.md for what each figure means. Both
servers are started here on free loopback ports and stopped, the bench database dropped and the
temporary directory removed at the end, whatever happens.
"""

# ruff: noqa: RUF001, S603, S607 - it starts known local programs; the table uses the multiplication sign

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg
import synth
from client import MB, DicomWeb
from memory import MiB, RssSampler, proc_status
from servers import ADMIN_URL, DB_NAME, PYTHON, ROOT, Orthanc, Ours

# Targets of the issue: ours / Orthanc.
TARGET_INGEST = 1.0  # instances/s at least Orthanc's
TARGET_QIDO = 1.5  # latency at most 1.5 x Orthanc's
TARGET_RETRIEVE = 0.5  # MB/s at least half of Orthanc's
TARGET_RSS_MB = 300  # peak RSS while ingesting a 2 GB object

FULL = {
    "slices": 300,
    "batch": 25,
    "series_runs": 5,
    "studies": 5000,
    "threads": 4,
    "queries": 200,
    "retrievals": 5,
    "rendered": 50,
    "large_mb": 2048,
    "profile_studies": 400,
    "profile_slices": 60,
}
QUICK = {
    "slices": 60,
    "batch": 25,
    "series_runs": 2,
    "studies": 500,
    "threads": 4,
    "queries": 60,
    "retrievals": 3,
    "rendered": 20,
    "large_mb": 256,
    "profile_studies": 150,
    "profile_slices": 25,
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = (len(ordered) - 1) * q
    low, high = int(index), min(int(index) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (index - low)


# --- the measurements --------------------------------------------------------------------------


def measure_series_stow(client: DicomWeb, series: synth.Series, batch: int) -> dict[str, float]:
    """(a) STOW-RS of one series, ``batch`` instances per request, until QIDO counts them all."""
    count = len(series.instances)
    started = time.perf_counter()
    for first in range(0, count, batch):
        client.stow(series.instances[first : first + batch])
    stored = time.perf_counter()
    deadline = stored + 300
    while (seen := client.instance_count(series.study_uid)) < count:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{client.name}: only {seen} of {count} instances queryable after 300 s")
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    return {
        "seconds": elapsed,
        "stow_seconds": stored - started,
        "instances_per_s": count / elapsed,
        "mb_per_s": series.nbytes / MB / elapsed,
    }


def measure_series_runs(
    clients: dict[str, DicomWeb], series: synth.Series, settings: dict[str, int], results: dict[str, Any]
) -> None:
    """(a), ``series_runs`` times: a new series each time (the first is the one (d) and (e) read),
    the two servers in turn and in alternating order, so that a slow spell of the shared machine
    falls on both. Each server's figure is its median run; the paired ratios are kept beside it."""
    runs: dict[str, list[dict[str, float]]] = {key: [] for key in clients}
    for number in range(settings["series_runs"]):
        current = series if number == 0 else synth.ct_series(settings["slices"], seed=100 + number)
        keys = list(clients) if number % 2 == 0 else list(reversed(clients))
        for key in keys:
            client = clients[key]
            log(f"(a) {client.name}: STOW-RS of a {settings['slices']}-slice series, run {number + 1}")
            runs[key].append(r := measure_series_stow(client, current, settings["batch"]))
            log(f"    {r['instances_per_s']:.1f} instances/s, {r['mb_per_s']:.1f} MB/s ({r['seconds']:.1f} s)")
        del current
    for key, measured in runs.items():
        rates = [run["instances_per_s"] for run in measured]
        # The median run (the lower of the middle two of an even number), its figures all from it.
        median_run = sorted(measured, key=lambda run: run["instances_per_s"])[(len(measured) - 1) // 2]
        results[key]["series"] = {**median_run, "runs": rates}
    if {"orthanc", "ours"} <= set(runs):
        paired = zip(runs["ours"], runs["orthanc"], strict=True)
        pairs = [ours["instances_per_s"] / theirs["instances_per_s"] for ours, theirs in paired]
        results["ours"]["series"]["paired_ratios"] = pairs


def measure_many_stow(
    client: DicomWeb, studies: synth.SmallStudies, threads: int, per_request: int = 1
) -> dict[str, float]:
    """(b) one STOW-RS request per one-instance study (or per ``per_request`` of them: a sender that
    forwards in batches), from ``threads`` client threads."""
    count = len(studies.instances)
    latencies: list[float] = []
    batches = [studies.instances[first : first + per_request] for first in range(0, count, per_request)]

    def store(batch: list[bytes]) -> None:
        began = time.perf_counter()
        client.stow(batch)
        latencies.append(time.perf_counter() - began)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for result in pool.map(store, batches):
            del result
    elapsed = time.perf_counter() - started
    sample = random.Random(7).sample(studies.study_uids, min(20, count))
    missing = [uid for uid in sample if client.instance_count(uid) != 1]
    if missing:
        raise RuntimeError(f"{client.name}: {len(missing)} of {len(sample)} sampled studies not queryable")
    return {
        "seconds": elapsed,
        "instances_per_s": count / elapsed,
        "mb_per_s": studies.nbytes / MB / elapsed,
        "request_median_ms": statistics.median(latencies) * 1000,
        "request_p95_ms": percentile(latencies, 0.95) * 1000,
    }


def measure_qido(client: DicomWeb, queries: list[dict[str, Any]]) -> dict[str, float]:
    """(c) latency of QIDO-RS study searches (the same list of queries for both servers)."""
    for params in queries[:10]:  # warm-up
        client.qido("studies", params)
    times: list[float] = []
    counts: list[int] = []
    for params in queries:
        began = time.perf_counter()
        results = client.qido("studies", params)
        times.append(time.perf_counter() - began)
        counts.append(len(results))
    return {
        "median_ms": statistics.median(times) * 1000,
        "p95_ms": percentile(times, 0.95) * 1000,
        "mean_results": statistics.mean(counts),
        "queries": len(queries),
    }


def measure_retrieve(client: DicomWeb, series: synth.Series, repeats: int) -> dict[str, float]:
    """(d) WADO-RS of the whole series, streamed and discarded by the client."""
    path = f"studies/{series.study_uid}/series/{series.series_uid}"
    rates, sizes = [], []
    for _ in range(repeats):
        began = time.perf_counter()
        size = client.retrieve(path)
        rates.append(size / MB / (time.perf_counter() - began))
        sizes.append(size)
    if min(sizes) < series.nbytes:
        raise RuntimeError(f"{client.name}: WADO-RS returned {min(sizes)} bytes, the series has {series.nbytes}")
    return {"mb_per_s": statistics.median(rates), "best_mb_per_s": max(rates), "bytes": sizes[0]}


def measure_rendered(client: DicomWeb, series: synth.Series, count: int) -> dict[str, Any]:
    """(e) /rendered of single CT slices (512 x 512), as JPEG."""
    paths = [f"studies/{series.study_uid}/series/{series.series_uid}/instances/{sop}" for sop in series.sop_uids]
    status, size, content_type = client.rendered(paths[0])
    if status != 200:
        return {"status": status, "note": f"answered {status}"}
    times = []
    for index in range(count):
        began = time.perf_counter()
        status, size, content_type = client.rendered(paths[(index * 7) % len(paths)])
        times.append(time.perf_counter() - began)
        if status != 200:
            return {"status": status, "note": f"answered {status} after {index} requests"}
    return {
        "status": 200,
        "median_ms": statistics.median(times) * 1000,
        "p95_ms": percentile(times, 0.95) * 1000,
        "bytes": size,
        "content_type": content_type,
    }


def measure_large(client: DicomWeb, pids: Any, path: Path, worker_pids: Any = None) -> dict[str, Any]:
    """Peak resident memory of the server while it ingests one large object."""
    baseline = sum(proc_status(pid).get("VmRSS", 0) for pid in pids())
    began = time.perf_counter()
    with RssSampler(pids) as sampler:
        try:
            client.stow_file(path)
            error = ""
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            error = str(exc)[:200]
    elapsed = time.perf_counter() - began
    result: dict[str, Any] = {
        "seconds": elapsed,
        "peak_rss_mb": sampler.peak.rss / MiB,
        "peak_anon_mb": sampler.peak.anon / MiB,
        "peak_total_mb": sampler.peak.total / MiB,
        "baseline_mb": baseline / MiB,
        "error": error,
        "mb_per_s": path.stat().st_size / MB / elapsed if not error else 0.0,
    }
    if worker_pids is not None:
        result["worker_vmhwm_mb"] = max((proc_status(p).get("VmHWM", 0) for p in worker_pids()), default=0) / MiB
    return result


# --- profiling ----------------------------------------------------------------------------------


def find_py_spy(explicit: str | None) -> str | None:
    for candidate in (explicit, os.environ.get("PY_SPY"), shutil.which("py-spy")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def profile_ours(py_spy: str, ours: Ours, client: DicomWeb, settings: dict[str, int], workdir: Path) -> dict[str, Any]:
    """Record our gunicorn workers with py-spy while they ingest fresh data (not timed)."""
    studies = synth.small_studies(settings["profile_studies"], seed=11)
    series = synth.ct_series(settings["profile_slices"], seed=12)
    raw = workdir / "pyspy.txt"
    assert ours.process is not None
    recorder = subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(ours.process.pid),
            "--subprocesses",
            "--nonblocking",
            "--idle",
            "--rate",
            "200",
            "--format",
            "raw",
            "--output",
            str(raw),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(1.5)
    waits: Counter[str] = Counter()
    stop = threading.Event()

    def sample_waits() -> None:
        """What our database sessions are doing while the 4 client threads store studies."""
        with psycopg.connect(ADMIN_URL.rsplit("/", 1)[0] + f"/{DB_NAME}", autocommit=True) as admin:
            while not stop.is_set():
                rows = admin.execute(
                    "SELECT coalesce(wait_event_type || ':' || wait_event, 'running'), left(query, 60) "
                    "FROM pg_stat_activity WHERE datname = %s AND state = 'active' AND pid <> pg_backend_pid()",
                    [DB_NAME],
                ).fetchall()
                for wait, query in rows:
                    waits[f"{wait:24} {' '.join(query.split())}"] += 1
                waits["(samples)"] += 1
                time.sleep(0.01)

    sampler = threading.Thread(target=sample_waits, daemon=True)
    try:
        sampler.start()
        measure_many_stow(client, studies, 4)
        stop.set()
        sampler.join()
        for first in range(0, len(series.instances), settings["batch"]):
            client.stow(series.instances[first : first + settings["batch"]])
    finally:
        stop.set()
        recorder.send_signal(2)  # SIGINT: py-spy writes its output and exits
        _out, err = recorder.communicate(timeout=60)
    if not raw.exists():
        return {"error": err.decode(errors="replace")[-500:]}
    summary = summarise_stacks(raw.read_text())
    samples = waits.pop("(samples)", 1)
    summary["db_sessions"] = [(what, n / samples) for what, n in waits.most_common(12)]
    return summary


def _label(frame: str) -> str:
    """``function (path:line)`` -> ``function (short/path)``."""
    name, _sep, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3.12/", str(ROOT) + "/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})"


def summarise_stacks(text: str, top: int = 25) -> dict[str, Any]:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _sep, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_label(f) for f in stack.split(";") if "(" in f]
        if not frames or not any("handle_request" in f or "handle (" in f for f in frames):
            continue  # only time spent serving requests
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return {
        "samples": total,
        "inclusive": [(f, n / total) for f, n in inclusive.most_common(120) if _interesting(f)][:top],
        "self": [(f, n / total) for f, n in own.most_common(top)],
    }


def _interesting(frame: str) -> bool:
    return frame.split(" (", 1)[1].startswith(
        (
            "apps/",
            "django/db/",
            "pydicom/",
            "cryptography/",
            "psycopg/",
            "hashlib",
            "tempfile",
            "mmap",
            "json/",
            "rest_framework/",
        )
    )


# --- the report ---------------------------------------------------------------------------------


def ratio(ours: float, theirs: float) -> float:
    return ours / theirs if theirs else float("nan")


def report(results: dict[str, Any], settings: dict[str, int], quick: bool) -> str:
    o, y = results["orthanc"], results["ours"]
    rows: list[tuple[str, str, str, str, str]] = []

    def add(
        label: str,
        theirs: float | None,
        ours: float | None,
        fmt: str,
        target: str = "",
        better_high: bool = True,
        limit: float | None = None,
    ) -> None:
        text_o = fmt.format(theirs) if theirs is not None else "—"
        text_y = fmt.format(ours) if ours is not None else "—"
        r = ratio(ours, theirs) if ours is not None and theirs else None
        met = ""
        if r is not None and limit is not None:
            met = "yes" if (r >= limit if better_high else r <= limit) else "NO"
        rows.append((label, text_o, text_y, f"{r:.2f}×" if r is not None else "—", f"{target} {met}".strip()))

    n, b = settings["slices"], settings["batch"]
    add(
        f"(a) STOW {n}×512² CT, {b}/request: inst/s, median of {settings['series_runs']} runs",
        o["series"]["instances_per_s"],
        y["series"]["instances_per_s"],
        "{:.1f}",
        "≥ 1.0×",
        True,
        TARGET_INGEST,
    )
    add("(a) same: MB/s (the median run)", o["series"]["mb_per_s"], y["series"]["mb_per_s"], "{:.1f}")
    if pairs := y["series"].get("paired_ratios"):
        rows.append(
            (
                f"(a) {len(pairs)} runs, each pair's ratio",
                "",
                "",
                f"{statistics.median(pairs):.2f}×",
                f"{min(pairs):.2f}-{max(pairs):.2f}×",
            )
        )
    s, t = settings["studies"], settings["threads"]
    add(
        f"(b) STOW {s} one-instance studies, {t} threads: inst/s",
        o["many"]["instances_per_s"],
        y["many"]["instances_per_s"],
        "{:.1f}",
        "≥ 1.0×",
        True,
        TARGET_INGEST,
    )
    add(
        "(b) same: request median ms",
        o["many"]["request_median_ms"],
        y["many"]["request_median_ms"],
        "{:.1f}",
        better_high=False,
    )
    if "many_batched" in o and "many_batched" in y:
        add(
            f"(b') the same, {settings['batch']} studies per request: inst/s",
            o["many_batched"]["instances_per_s"],
            y["many_batched"]["instances_per_s"],
            "{:.1f}",
            "(comparison)",
        )
    for key, label in (("patient", "PatientID"), ("month", "StudyDate one month")):
        add(
            f"(c) QIDO by {label}: median ms",
            o["qido"][key]["median_ms"],
            y["qido"][key]["median_ms"],
            "{:.1f}",
            "≤ 1.5×",
            False,
            TARGET_QIDO,
        )
        add(
            f"(c) QIDO by {label}: p95 ms",
            o["qido"][key]["p95_ms"],
            y["qido"][key]["p95_ms"],
            "{:.1f}",
            "≤ 1.5×",
            False,
            TARGET_QIDO,
        )
    add(
        "(d) WADO-RS whole series: MB/s",
        o["retrieve"]["mb_per_s"],
        y["retrieve"]["mb_per_s"],
        "{:.1f}",
        "≥ 0.5×",
        True,
        TARGET_RETRIEVE,
    )
    ro, ry = o["rendered"], y["rendered"]
    rows.append(
        (
            "(e) rendered JPEG 512²: median ms",
            f"{ro['median_ms']:.1f}" if "median_ms" in ro else ro.get("note", "—"),
            f"{ry['median_ms']:.1f}" if "median_ms" in ry else ry.get("note", "—"),
            f"{ratio(ry['median_ms'], ro['median_ms']):.2f}×" if "median_ms" in ro and "median_ms" in ry else "—",
            "",
        )
    )
    if "median_ms" in ro:
        rows.append(
            (
                "(e) rendered JPEG 512²: p95 ms",
                f"{ro['p95_ms']:.1f}",
                f"{ry['p95_ms']:.1f}" if "p95_ms" in ry else "—",
                "",
                "",
            )
        )
    if "large" in y:
        mb = settings["large_mb"]
        lo, ly = o.get("large", {}), y["large"]
        peak_o = f"{lo['peak_rss_mb']:.0f}" if lo and not lo.get("error") else (lo.get("error", "—")[:40] or "—")
        rows.append(
            (
                f"peak RSS, one {mb} MiB object (MiB)",
                peak_o,
                f"{ly['peak_rss_mb']:.0f} (anon {ly['peak_anon_mb']:.0f})",
                "",
                f"< {TARGET_RSS_MB} {'yes' if ly['peak_rss_mb'] < TARGET_RSS_MB else 'NO'}",
            )
        )
        rows.append(
            (
                f"ingest of the {mb} MiB object: MB/s",
                f"{lo['mb_per_s']:.1f}" if lo.get("mb_per_s") else "—",
                f"{ly['mb_per_s']:.1f}",
                f"{ratio(ly['mb_per_s'], lo['mb_per_s']):.2f}×" if lo.get("mb_per_s") else "—",
                "",
            )
        )
    headers = ("measure", "Orthanc", "影像云", "影像云/Orthanc", "target")
    widths = [max(_width(r[i]) for r in [headers, *rows]) for i in range(5)]
    lines = [
        "| " + " | ".join(_pad(c, w) for c, w in zip(headers, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += ["| " + " | ".join(_pad(c, w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    mode = "QUICK run (smaller data; QIDO with fewer than 5,000 studies)" if quick else "full run"
    return f"{mode}\n" + "\n".join(lines)


def _width(text: str) -> int:
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def source_state() -> str:
    """The commit measured, and whether the work tree differs from it (other work in progress)."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all", "--", "apps", "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split("\n")
    changed = [line for line in dirty if line.strip()]
    return f"{head or '?'}" + (f" + {len(changed)} uncommitted files under apps/ and config/" if changed else "")


def machine() -> dict[str, str]:
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    memory = next((line.split()[1] for line in meminfo if line.startswith("MemTotal")), "0")
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    return {
        "nproc": str(os.cpu_count()),
        "memory_gib": f"{int(memory) / 1024 / 1024:.1f}",
        "cpu": cpu,
        "kernel": platform.release(),
    }


# --- main -----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small data, under 3 minutes")
    parser.add_argument("--large-mb", type=int, help="size of the large object in MiB (0 to skip)")
    parser.add_argument("--no-large-orthanc", action="store_true", help="skip the large object on Orthanc")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="afterwards: SQL per request and cProfile in-process, and py-spy on our workers if found",
    )
    parser.add_argument("--py-spy", help="path of the py-spy binary (else PY_SPY or PATH)")
    parser.add_argument(
        "--conn-max-age", type=int, help="DB_CONN_MAX_AGE for our server (default: the settings' default)"
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers for our server (default 2)")
    parser.add_argument("--no-analyze", action="store_true", help="skip ANALYZE of our database before (c)-(e)")
    parser.add_argument("--json", help="also write every figure to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (not the database)")
    args = parser.parse_args()
    settings = dict(QUICK if args.quick else FULL)
    if args.large_mb is not None:
        settings["large_mb"] = args.large_mb
    py_spy = find_py_spy(args.py_spy) if args.profile else None
    if args.profile and not py_spy:
        log("--profile: py-spy not found (pip install py-spy, or --py-spy PATH); profiling skipped")

    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="yingxiang-bench-"))
    orthanc, ours = Orthanc(workdir), Ours(workdir, workers=args.workers, conn_max_age=args.conn_max_age)
    results: dict[str, Any] = {
        "settings": settings,
        "machine": machine(),
        "orthanc": {},
        "ours": {},
        "source": source_state(),
        "load_before": load_average(),
    }
    log(f"source {results['source']}; load average {results['load_before']}")
    if float(results["load_before"].split()[0]) > 0.5:
        log("  WARNING: the machine is busy; figures will be lower and noisier than on an idle machine")
    try:
        log(f"generating synthetic data in memory ({settings['slices']}-slice CT, {settings['studies']} studies)")
        series = synth.ct_series(settings["slices"])
        studies = synth.small_studies(settings["studies"])
        warmup = synth.small_studies(4, seed=3)
        log(
            f"  CT series {series.nbytes / MB:.1f} MB, small studies {studies.nbytes / MB:.1f} MB "
            f"({len(studies.instances[0])} bytes each)"
        )
        log(f"starting Orthanc and 影像云 (gunicorn, {args.workers} workers) under {workdir}")
        orthanc.start()
        ours.start(synth.INSTITUTION)
        results["versions"] = {**orthanc.versions(), **ours.versions()}
        log(f"  versions: {results['versions']}")
        clients = {
            "orthanc": DicomWeb("Orthanc", orthanc.dicomweb_root, {"Accept-Encoding": "identity"}),
            "ours": DicomWeb("影像云", ours.dicomweb_root, {**ours.headers, "Accept-Encoding": "identity"}),
        }
        for client in clients.values():
            for data in warmup.instances:
                client.stow([data])

        measure_series_runs(clients, series, settings, results)
        for key, client in clients.items():
            log(
                f"(b) {client.name}: STOW-RS of {settings['studies']} one-instance studies, "
                f"{settings['threads']} threads"
            )
            results[key]["many"] = r = measure_many_stow(client, studies, settings["threads"])
            log(
                f"    {r['instances_per_s']:.1f} instances/s ({r['seconds']:.1f} s, "
                f"request median {r['request_median_ms']:.1f} ms)"
            )

        if not args.no_analyze:
            # Right after the bulk load the planner has no statistics yet (autovacuum analyzes a minute or
            # so later); an archive in service has them. Without this, a quick run's QIDO-by-PatientID
            # and WADO-RS are about 1.7x and 1.4x slower on our side.
            log("ANALYZE of our database before the read measurements")
            ours.analyze()
        rng = random.Random(5)
        patient_queries = [
            {"PatientID": rng.choice(studies.patient_ids), "limit": 200} for _ in range(settings["queries"])
        ]
        month_queries = [
            {"StudyDate": rng.choice(synth.month_ranges()), "limit": 200} for _ in range(settings["queries"])
        ]
        for key, client in clients.items():
            results[key]["qido"] = {}
            for name, queries in (("patient", patient_queries), ("month", month_queries)):
                log(f"(c) {client.name}: {len(queries)} QIDO-RS study searches by {name}")
                results[key]["qido"][name] = r = measure_qido(client, queries)
                log(
                    f"    median {r['median_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, "
                    f"{r['mean_results']:.1f} results on average"
                )
        for name in ("patient", "month"):
            counts = {k: results[k]["qido"][name]["mean_results"] for k in clients}
            if len(set(counts.values())) != 1:
                log(f"    WARNING: the servers found different numbers of {name} matches: {counts}")

        for key, client in clients.items():
            log(f"(d) {client.name}: WADO-RS of the whole series, {settings['retrievals']} times")
            results[key]["retrieve"] = r = measure_retrieve(client, series, settings["retrievals"])
            log(f"    {r['mb_per_s']:.1f} MB/s (median), best {r['best_mb_per_s']:.1f} MB/s")

        rendered_module = ROOT / "apps" / "dicomweb" / "rendered.py"
        log(f"(e) Orthanc: {settings['rendered']} rendered JPEGs")
        results["orthanc"]["rendered"] = measure_rendered(clients["orthanc"], series, settings["rendered"])
        if rendered_module.exists():
            log(f"(e) 影像云: apps/dicomweb/rendered.py exists; {settings['rendered']} rendered JPEGs")
            results["ours"]["rendered"] = measure_rendered(clients["ours"], series, settings["rendered"])
        else:
            log("(e) 影像云: apps/dicomweb/rendered.py does not exist: not yet implemented")
            results["ours"]["rendered"] = {"note": "not yet implemented"}
        for key in clients:
            r = results[key]["rendered"]
            if "median_ms" in r:
                log(
                    f"    {clients[key].name}: median {r['median_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, "
                    f"{r['bytes']} bytes {r['content_type']}"
                )
            else:
                log(f"    {clients[key].name}: {r.get('note')}")

        # For comparison only (the target is (b)): other studies, as a sender forwarding in batches would
        # send them; after the reads, so that (c) searches the 5,000 studies of (b) alone.
        batched = synth.small_studies(settings["studies"], seed=5, patient_prefix="BATCH")  # new patients, as (b)
        for key, client in clients.items():
            log(f"(b') {client.name}: the same number of other studies, {settings['batch']} per request")
            results[key]["many_batched"] = r = measure_many_stow(
                client, batched, settings["threads"], per_request=settings["batch"]
            )
            log(f"    {r['instances_per_s']:.1f} instances/s ({r['seconds']:.1f} s)")
        del batched
        if settings["large_mb"] > 0:
            path = workdir / "large.dcm"
            size, *_uids = synth.large_object(path, megabytes=settings["large_mb"])
            log(f"large object: {size / MiB:.0f} MiB single instance; 影像云 first (fresh workers)")
            ours.restart_workers()
            results["ours"]["large"] = r = measure_large(clients["ours"], ours.pids, path, ours.worker_pids)
            log(
                f"    影像云: peak RSS {r['peak_rss_mb']:.0f} MiB (anon {r['peak_anon_mb']:.0f}, all processes "
                f"{r['peak_total_mb']:.0f}, worker VmHWM {r['worker_vmhwm_mb']:.0f}), {r['seconds']:.1f} s {r['error']}"
            )
            if not args.no_large_orthanc:
                results["orthanc"]["large"] = r = measure_large(clients["orthanc"], orthanc.pids, path)
                log(
                    f"    Orthanc: peak RSS {r['peak_rss_mb']:.0f} MiB (anon {r['peak_anon_mb']:.0f}, before "
                    f"{r['baseline_mb']:.0f}), {r['seconds']:.1f} s {r['error']}"
                )
            path.unlink()

        if args.profile:
            log("profiling 影像云 in-process: SQL per request and cProfile (bench/profile_stow.py, not timed)")
            studies_n = str(settings["profile_studies"] // 2)
            done = subprocess.run(
                [str(PYTHON), str(Path(__file__).parent / "profile_stow.py"), "--studies", studies_n],
                cwd=ROOT,
                env={**ours.env, "BENCH_TOKEN": ours.token},
                capture_output=True,
                text=True,
                check=False,
            )
            print(done.stdout)
            if done.returncode:
                log(f"    profile_stow.py failed: {done.stderr[-1500:]}")
            results["profile_inprocess"] = done.stdout
        if py_spy:
            log("profiling 影像云's STOW-RS with py-spy (extra data, not timed)")
            results["profile"] = prof = profile_ours(py_spy, ours, clients["ours"], settings, workdir)
            if "error" in prof:
                log(f"    py-spy failed: {prof['error']}")
            else:
                print(f"\nTop inclusive costs while serving STOW-RS ({prof['samples']} samples):")
                for frame, share in prof["inclusive"]:
                    print(f"  {share * 100:5.1f}%  {frame}")
                print("\nTop self time:")
                for frame, share in prof["self"][:15]:
                    print(f"  {share * 100:5.1f}%  {frame}")
                print("\nOur database sessions during 4-thread one-instance STOW (average number of sessions):")
                for what, average in prof["db_sessions"]:
                    print(f"  {average:5.2f}  {what}")

        results["load_after"] = load_average()
        table = report(results, settings, args.quick)
        results["elapsed_s"] = time.monotonic() - began
        print()
        print(
            f"Machine: {results['machine']['nproc']} CPUs ({results['machine']['cpu']}), "
            f"{results['machine']['memory_gib']} GiB; " + ", ".join(f"{k} {v}" for k, v in results["versions"].items())
        )
        print(
            f"Source: {results['source']}; load average before {results['load_before']}, after {results['load_after']}"
        )
        print(table)
        print(f"\n(total {results['elapsed_s'] / 60:.1f} min)")
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str))
        return 0
    except BaseException:
        log("failed; 影像云's side of it:")
        print(ours.diagnose(), flush=True)
        raise
    finally:
        log("cleaning up: stopping servers, dropping the bench database, removing the temporary directory")
        for step in (orthanc.stop, ours.stop, ours.drop_database):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - keep cleaning
                log(f"  cleanup step {step.__qualname__} failed: {exc}")
        if args.keep:
            log(f"  kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
