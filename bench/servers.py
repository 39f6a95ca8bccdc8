"""Start, inspect and stop the two servers under test, each in a temporary directory.

- Orthanc: ``Orthanc <tmp>/orthanc.json``, built from bench/orthanc.json with the storage
  directory and a free loopback port filled in. DICOM port off, remote access refused, no
  authentication.
- Ours: a fresh PostgreSQL database (dropped again at the end), ``manage.py migrate``, a hospital
  and a token, then gunicorn with 2 sync workers on a free loopback port, local file storage and
  staging under the temporary directory.
"""

# ruff: noqa: S603, S607 - it starts known local programs

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import requests
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = VENV_BIN / "python" if (VENV_BIN / "python").exists() else Path(sys.executable)

HOSPITAL_CODE = "bench"
HOSPITAL_NAME = "基准医院"
DB_NAME = "yingxiang_bench"
ADMIN_URL = os.environ.get("DATABASE_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
APP_URL = f"postgres://yingxiang_app@127.0.0.1:5432/{DB_NAME}"
OWNER_URL = f"postgres://yingxiang_owner@127.0.0.1:5432/{DB_NAME}"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(
    url: str,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 60,
    process: subprocess.Popen[Any] | None = None,
    log: Path | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log else ""
            raise RuntimeError(f"server exited ({process.returncode}) while starting:\n{tail}")
        try:
            if requests.get(url, headers=headers, timeout=5).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f} s")


def _stop(process: subprocess.Popen[Any] | None, *, grace: float = 30) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def orthanc_plugin_path() -> str:
    if os.path.exists(DICOMWEB_PLUGIN):
        return DICOMWEB_PLUGIN
    listing = subprocess.run(["dpkg", "-L", "orthanc-dicomweb"], capture_output=True, text=True, check=False)
    for line in listing.stdout.splitlines():
        if line.endswith(".so") or ".so." in line:
            return line
    raise RuntimeError("The orthanc-dicomweb plugin is not installed (apt-get install orthanc-dicomweb).")


class Orthanc:
    name = "Orthanc"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir / "orthanc"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.workdir / "orthanc.log"
        self.extra_config: dict[str, Any] = {}  # over bench/orthanc.json (bench/cstore.py: the DICOM port)

    @property
    def dicomweb_root(self) -> str:
        return f"{self.url}/dicom-web"

    def start(self) -> None:
        binary = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
        if not os.path.exists(binary):
            raise RuntimeError("Orthanc is not installed (apt-get install orthanc orthanc-dicomweb).")
        storage = self.workdir / "storage"
        storage.mkdir(parents=True)
        config = json.loads((BENCH / "orthanc.json").read_text())
        config.update(
            StorageDirectory=str(storage),
            IndexDirectory=str(storage),
            HttpPort=self.port,
            Plugins=[orthanc_plugin_path()],
        )
        config.update(self.extra_config)
        path = self.workdir / "orthanc.json"
        path.write_text(json.dumps(config, indent=2))
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [binary, str(path)], stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True
            )
        _wait_http(f"{self.url}/system", process=self.process, log=self.log)
        _wait_http(f"{self.dicomweb_root}/studies?limit=1", process=self.process, log=self.log)

    def versions(self) -> dict[str, str]:
        system = requests.get(f"{self.url}/system", timeout=10).json()
        plugin = requests.get(f"{self.url}/plugins/dicom-web", timeout=10).json()
        return {
            "Orthanc": system.get("Version", "?"),
            "DICOMweb plugin": plugin.get("Version", "?"),
            "Orthanc index": f"SQLite (database v{system.get('DatabaseVersion', '?')})",
        }

    def pids(self) -> list[int]:
        return [self.process.pid] if self.process and self.process.poll() is None else []

    def stop(self) -> None:
        _stop(self.process)


class Ours:
    name = "影像云"

    def __init__(self, workdir: Path, *, workers: int = 2, conn_max_age: int | None = None) -> None:
        self.workdir = workdir / "ours"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.workdir / "gunicorn.log"
        self.token = ""
        self.db_created = False
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "REDIS_", "DATABASE_"))}
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings.base",
            DEBUG="false",
            ALLOWED_HOSTS="127.0.0.1",
            DATABASE_URL=APP_URL,
            DATABASE_OWNER_URL=OWNER_URL,
            VAR_DIR=str(self.workdir / "var"),
            STAGING_DIR=str(self.workdir / "staging"),
            TMPDIR=str(self.workdir / "tmp"),
            LOG_LEVEL="WARNING",
            STAFF_OTP_REQUIRED="false",
            PYTHONDONTWRITEBYTECODE="1",
        )
        if conn_max_age is not None:
            env["DB_CONN_MAX_AGE"] = str(conn_max_age)
        self.env = env

    @property
    def dicomweb_root(self) -> str:
        return f"{self.url}/api/{HOSPITAL_CODE}/dicom-web"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [str(PYTHON), "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def _admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)

    def create_database(self) -> None:
        with self._admin() as admin:
            roles = {r[0] for r in admin.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'yingxiang_%'")}
            if not {"yingxiang_owner", "yingxiang_app"} <= roles:
                subprocess.run([str(PYTHON), "scripts/ensure_db_roles.py"], cwd=ROOT, check=True)
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB_NAME)))
            admin.execute(sql.SQL("CREATE DATABASE {} OWNER yingxiang_owner").format(sql.Identifier(DB_NAME)))
            self.db_created = True

    def drop_database(self) -> None:
        if not self.db_created:
            return
        with self._admin() as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB_NAME)))
        self.db_created = False

    def start(self, institution_name: str) -> None:
        for sub in ("var", "staging", "tmp"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self.create_database()
        self.manage("migrate", "--noinput", "-v0")
        self.manage("create_hospital", HOSPITAL_CODE, "--name", HOSPITAL_NAME, "--institution-name", institution_name)
        self.token = self.manage("issue_api_token", HOSPITAL_CODE, "--name", "bench").strip().splitlines()[-1]
        command = [
            str(VENV_BIN / "gunicorn"),
            "config.wsgi:application",
            "--workers",
            str(self.workers),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--timeout",
            "1800",
            "--graceful-timeout",
            "30",
            "--log-level",
            "warning",
        ]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        _wait_http(f"{self.url}/api/{HOSPITAL_CODE}/", headers=self.headers, process=self.process, log=self.log)
        self._wait_workers()

    def _wait_workers(self, old: set[int] | None = None, timeout: float = 60) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            current = set(children(self.process.pid))
            if len(current) == self.workers and not (old and current & old):
                # Each worker imports the project lazily: touch both before measuring.
                for _ in range(self.workers * 4):
                    requests.get(f"{self.url}/api/{HOSPITAL_CODE}/", headers=self.headers, timeout=30)
                return
            time.sleep(0.2)
        raise RuntimeError("gunicorn workers did not come up")

    def restart_workers(self) -> None:
        """Fresh workers (HUP), so that their peak-RSS counters start from zero."""
        assert self.process is not None
        old = set(children(self.process.pid))
        self.process.send_signal(signal.SIGHUP)
        self._wait_workers(old)

    def pids(self) -> list[int]:
        if self.process is None or self.process.poll() is not None:
            return []
        return [self.process.pid, *children(self.process.pid)]

    def worker_pids(self) -> list[int]:
        return children(self.process.pid) if self.process else []

    def versions(self) -> dict[str, str]:
        with psycopg.connect(APP_URL, connect_timeout=5) as connection:
            row = connection.execute("SHOW server_version").fetchone()
        python = subprocess.run(
            [str(PYTHON), "-c", "import sys, django; print(sys.version.split()[0], django.__version__)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        gunicorn = subprocess.run(
            [str(VENV_BIN / "gunicorn"), "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
        return {
            "PostgreSQL": row[0] if row else "?",
            "Python": python[0],
            "Django": python[1],
            "gunicorn": gunicorn.replace("gunicorn (version ", "").rstrip(")"),
        }

    def analyze(self) -> None:
        """ANALYZE the bench database, as autovacuum does a minute or so after a bulk load."""
        with psycopg.connect(ADMIN_URL.rsplit("/", 1)[0] + f"/{DB_NAME}", autocommit=True) as connection:
            connection.execute("ANALYZE")

    def diagnose(self) -> str:
        """After a failure: staged objects by status and error, and the end of the server log."""
        lines = []
        if self.db_created:
            try:
                with psycopg.connect(ADMIN_URL.rsplit("/", 1)[0] + f"/{DB_NAME}", connect_timeout=5) as connection:
                    rows = connection.execute(
                        "SELECT status, error_code, left(error_message_en, 120), count(*) FROM imaging_stagedobject "
                        "GROUP BY 1, 2, 3 ORDER BY 4 DESC LIMIT 10"
                    ).fetchall()
                lines += [f"  staged objects: {row}" for row in rows]
            except psycopg.Error as error:
                lines.append(f"  (staged objects unreadable: {error})")
        if self.log.exists():
            lines.append("  gunicorn log (end):")
            lines += ["    " + line for line in self.log.read_text(errors="replace").splitlines()[-25:]]
        return "\n".join(lines)

    def stop(self) -> None:
        _stop(self.process)
