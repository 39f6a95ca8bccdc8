# The two commands of the README: `make run` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
# pip's notes about this machine's optional local package mirrors are noise here.
QUIET_PIP := { grep -v '^WARNING: Location' || [ $$? -eq 1 ]; }
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test venv bundle

$(PY):
	@python=$$(scripts/find_python.sh) && "$$python" -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip 2>&1 | $(QUIET_PIP)

$(STAMP): requirements/base.txt requirements/test.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements/test.txt 2>&1 | $(QUIET_PIP)
	touch $(STAMP)

venv: $(STAMP)

# The viewer's bundle (Cornerstone3D, pinned by frontend/package-lock.json) into static/viewer/dist/,
# rebuilt only when its sources or the lockfile change. Node and npm come from Debian if missing.
BUNDLE := static/viewer/dist/.built
NODE_MODULES := frontend/node_modules/.package-lock.json

$(NODE_MODULES): frontend/package-lock.json
	command -v npm >/dev/null || scripts/ensure_tools.sh
	cd frontend && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_MODULES)

$(BUNDLE): $(NODE_MODULES) frontend/package.json frontend/vite.config.js $(wildcard frontend/src/*)
	cd frontend && npm run --silent build
	touch $(BUNDLE)

bundle: $(BUNDLE)

# Demo on embedded defaults: SQLite and files under var/, Celery tasks in-process, no second factor.
run: venv bundle
	$(PY) manage.py compilemessages --ignore=.venv -v0
	$(PY) manage.py collectstatic --noinput -v0
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py seed_demo
	@echo "Serving on http://127.0.0.1:8000 (staff sign-in at /accounts/login/)"
	STAFF_OTP_REQUIRED=false $(PY) manage.py runserver 127.0.0.1:8000 --noreload

# The whole suite against PostgreSQL and Redis (DATABASE_URL, REDIS_URL to choose others).
test: venv bundle
	scripts/ensure_tools.sh
	$(PY) scripts/check_services.py
	$(PY) scripts/ensure_db_roles.py
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DJANGO_SETTINGS_MODULE=config.settings.test $(PY) manage.py makemigrations --check --dry-run -v1
	$(VENV)/bin/mypy .
	DJANGO_SETTINGS_MODULE=config.settings.test $(PY) manage.py compilemessages --ignore=.venv -v0
	$(VENV)/bin/pytest
