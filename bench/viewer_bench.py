"""The viewer in headless Chromium on loopback: time to first image and to the whole stack.

A benchmark, not a test: it prints figures and asserts nothing. It starts our server as bench/run.py
does (gunicorn, 2 sync workers, a fresh PostgreSQL database dropped at the end, static files through
WhiteNoise), stores a 300-slice 512 x 512 CT by STOW-RS, signs a doctor in, and opens the study in
the viewer several times, each in a fresh browser context (nothing cached between runs).

    .venv/bin/python bench/viewer_bench.py [--slices 300] [--runs 3] [--json FILE]

Needs the viewer bundle (`make bundle`), Debian's Chromium and PostgreSQL as bench/README.md says.
Figures are milliseconds from navigation start, as the page measures them (window.viewer.status()).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # for tests.browser's Chromium flags

import psycopg
import servers
from client import DicomWeb
from psycopg import sql
from synth import ct_series

DB_NAME = "yingxiang_viewer_bench"
TARGETS = {"first_image_ms": 1000, "whole_stack_ms": 5000}
SESSION_SCRIPT = """
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from apps.accounts.models import User
from apps.accounts.roles import HospitalRole
from apps.accounts.services import membership_grant
from apps.imaging.models import Study
from apps.tenants.context import hospital_context
from apps.tenants.models import Hospital
from apps.viewer.grants import viewer_url
hospital = Hospital.objects.get(code="bench")
user = User.objects.filter(username="bench-doctor").first() or User.objects.create_user(
    "bench-doctor", None, display_name="bench", home_hospital=hospital)
with hospital_context(hospital):
    membership_grant(actor=None, hospital=hospital, user=user, role=HospitalRole.REPORTING_DOCTOR)
    study = Study.objects.filter(hospital=hospital).get()
    url = viewer_url(study)
session = SessionStore()
session[SESSION_KEY] = str(user.pk)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = user.get_session_auth_hash()
session.create()
print(session.session_key, url)
"""


class ViewerServer(servers.Ours):
    """Our server on a database of its own, so that it never touches bench/run.py's."""

    def __init__(self, workdir: Path, settings_module: str | None = None, workers: int = 2) -> None:
        super().__init__(workdir, workers=workers)
        if settings_module:
            self.env["DJANGO_SETTINGS_MODULE"] = settings_module
        self.env["DATABASE_URL"] = f"postgres://yingxiang_app@127.0.0.1:5432/{DB_NAME}"
        self.env["DATABASE_OWNER_URL"] = f"postgres://yingxiang_owner@127.0.0.1:5432/{DB_NAME}"

    def create_database(self) -> None:
        with psycopg.connect(servers.ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB_NAME)))
            admin.execute(sql.SQL("CREATE DATABASE {} OWNER yingxiang_owner").format(sql.Identifier(DB_NAME)))
        self.db_created = True

    def drop_database(self) -> None:
        if not self.db_created:
            return
        with psycopg.connect(servers.ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB_NAME)))
        self.db_created = False


def open_viewer(browser: Any, url: str, session_key: str, slices: int, timeout: float = 120) -> dict[str, Any]:
    context = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="zh-CN")
    context.add_cookies([{"name": "sessionid", "value": session_key, "url": url}])
    page = context.new_page()
    try:
        page.goto(url)
        deadline = time.monotonic() + timeout
        while True:
            status = page.evaluate("window.viewer ? window.viewer.status() : null")
            if status and (status["stackLoadedMs"] is not None or status["message"]):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the viewer did not finish within {timeout:.0f} s: {status}")
            page.wait_for_timeout(20)
        if status["message"]:
            raise RuntimeError(f"the viewer reported: {status['message']}")
        if status["loaded"] != slices:
            raise RuntimeError(f"loaded {status['loaded']} of {slices} images")
        return status
    finally:
        context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (bench/run.py uses 2)")
    parser.add_argument("--settings", help="another DJANGO_SETTINGS_MODULE (default: config.settings.base)")
    options = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import CHROMIUM_ARGS, chromium_path

    if not (servers.ROOT / "static" / "viewer" / "dist" / "viewer.js").exists():
        sys.exit("The viewer bundle is missing: run `make bundle` first.")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="viewer-bench-") as workdir:
        server = ViewerServer(Path(workdir), options.settings, options.workers)
        try:
            server.manage("collectstatic", "--noinput", "-v0")
            server.start("BENCH HOSPITAL")
            series = ct_series(options.slices)
            client = DicomWeb("ours", server.dicomweb_root, server.headers)
            for start in range(0, len(series.instances), 25):
                client.stow(series.instances[start : start + 25])
            session_key, path = server.manage("shell", "-c", SESSION_SCRIPT).split()[-2:]
            url = f"{server.url}{path}"
            results = []
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
                for run in range(options.runs):
                    status = open_viewer(browser, url, session_key, options.slices)
                    results.append(status)
                    print(
                        f"run {run + 1}: first image {status['firstImageMs']:.0f} ms, whole stack "
                        f"{status['stackLoadedMs']:.0f} ms ({status['rendering']})"
                    )
                browser.close()
        finally:
            server.stop()
            server.drop_database()
    first = statistics.median(r["firstImageMs"] for r in results)
    whole = statistics.median(r["stackLoadedMs"] for r in results)
    print(f"\n{options.slices} slices of 512 x 512, median of {options.runs} runs (fresh browser context each):")
    print(f"  time to first image  {first:7.0f} ms   target < {TARGETS['first_image_ms']} ms")
    print(f"  time to whole stack  {whole:7.0f} ms   target < {TARGETS['whole_stack_ms']} ms")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if options.json:
        figures = {"slices": options.slices, "first_image_ms": first, "whole_stack_ms": whole, "runs": results}
        options.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
