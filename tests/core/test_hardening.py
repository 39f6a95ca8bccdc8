"""Processes that hold patient data or keys: no core dumps, no new privileges."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from apps.imaging import parse_pool
from tests.dicomweb.test_stow_parse_helper import _ready_helper

ROOT = Path(__file__).resolve().parents[2]
# Prints this process's state as JSON: dumpable (PR_GET_DUMPABLE), the core size limit, NoNewPrivs.
_REPORT = """
import ctypes, json, resource
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
print(json.dumps({
    "dumpable": ctypes.CDLL(None).prctl(3, 0, 0, 0, 0),
    "core": list(resource.getrlimit(resource.RLIMIT_CORE)),
    "no_new_privs": status["NoNewPrivs"].strip(),
}))
"""
HARDENED = {"dumpable": 0, "core": [0, 0], "no_new_privs": "1"}

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="prctl and /proc are Linux's")


def _state_after(setup: str) -> dict:
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "STOW_PARSE_PROCESSES": "0"}
    done = subprocess.run(
        [sys.executable, "-c", setup + "\n" + _REPORT], cwd=ROOT, env=environment, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_plain_process_is_not_hardened():
    """The check itself can tell: without the call, a process may dump core."""
    assert _state_after("pass")["dumpable"] == 1


def test_harden_process():
    assert _state_after("from apps.core.hardening import harden_process; harden_process()") == HARDENED


def test_a_web_worker_is_hardened_by_loading_the_wsgi_application():
    assert _state_after("import config.wsgi") == HARDENED


def test_a_celery_worker_is_hardened_as_it_starts():
    setup = "import django; django.setup(); from celery.signals import worker_init; worker_init.send(sender=None)"
    assert _state_after(setup) == HARDENED


def test_a_parse_helper_is_hardened(db, monkeypatch, settings):
    settings.STOW_PARSE_PROCESSES = 1
    monkeypatch.setattr(parse_pool, "_helpers", {})
    helper = _ready_helper()
    try:
        pid = helper.process.pid
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        limits = Path(f"/proc/{pid}/limits").read_text()
    finally:
        parse_pool._forget(helper)
    assert status["NoNewPrivs"].strip() == "1"
    [core] = [line.split() for line in limits.splitlines() if line.startswith("Max core file size")]
    assert core[4:6] == ["0", "0"]
