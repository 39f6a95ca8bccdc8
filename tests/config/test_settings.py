"""Settings read from the environment; production settings pass Django's deployment checks."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from config.env import ConfigurationError, env_bool, env_str

ROOT = Path(__file__).resolve().parents[2]


def test_secret_can_come_from_a_file(tmp_path, monkeypatch):
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-file\n", encoding="utf-8")
    monkeypatch.setenv("SOME_SECRET", "from-env")
    monkeypatch.setenv("SOME_SECRET_FILE", str(secret_file))
    assert env_str("SOME_SECRET") == "from-file"


def test_booleans_are_strict(monkeypatch):
    monkeypatch.setenv("A_FLAG", "maybe")
    with pytest.raises(ConfigurationError):
        env_bool("A_FLAG", False)
    monkeypatch.setenv("A_FLAG", "off")
    assert env_bool("A_FLAG", True) is False


def _production_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        SECRET_KEY=secrets.token_urlsafe(50),
        AUDIT_CHAIN_KEY=secrets.token_urlsafe(32),
        STORAGE_MASTER_KEY="MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        ALLOWED_HOSTS="imaging.example.cn",
        PORTAL_PUBLIC_ORIGIN="https://imaging.example.cn",
        SMS_PROVIDER="aliyun",
        DATABASE_URL="postgres://yingxiang_app@127.0.0.1:5432/yingxiang",
        **extra,
    )
    return env


def test_production_settings_pass_check_deploy():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=_production_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    env = _production_env()
    del env["SECRET_KEY"]
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_production_refuses_the_console_sms_provider_that_logs_codes():
    env = _production_env()
    env["SMS_PROVIDER"] = "console"
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "SMS_PROVIDER" in result.stderr


def test_production_refuses_to_start_without_the_public_origin_of_patient_links():
    env = _production_env()
    del env["PORTAL_PUBLIC_ORIGIN"]
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "PORTAL_PUBLIC_ORIGIN" in result.stderr


def test_production_enforces_https_and_second_factor():
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SESSION_COOKIE_SECURE, "
        "s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY, s.STAFF_OTP_REQUIRED, s.DEMO_DATA_ALLOWED)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=_production_env(STAFF_OTP_REQUIRED="false"),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.stdout.split() == ["True", "63072000", "True", "True", "True", "True", "False"]


@pytest.mark.parametrize("scratch", ["", "/nonexistent-scratch"])
def test_production_refuses_export_scratch_space_that_is_not_there(scratch):
    """Without memory-backed scratch space the export's DICOMDIR would be written to a disk."""
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=_production_env(EXPORT_SCRATCH_DIR=scratch),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "EXPORT_SCRATCH_DIR" in result.stderr
