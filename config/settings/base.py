"""Settings for every environment, read from the environment with embedded defaults.

The defaults run the demo on one machine: SQLite and local files under ``var/``, Celery tasks
executed in-process. ``test.py`` and ``production.py`` change only what they must.
"""

import os
from pathlib import Path
from typing import Any

import dj_database_url
from django.utils.translation import gettext_lazy as _

from config.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")) or BASE_DIR / "var")

# A fixed key is acceptable only for the embedded demo; production.py requires its own.
SECRET_KEY = env_str("SECRET_KEY") or "demo-only-insecure-key-change-me-0123456789abcdefghijklmnopqrstuvwxyz"
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    # Our apps come first so their management commands (migrate, flush) take precedence.
    "apps.core",
    "apps.tenants",
    "apps.accounts",
    "apps.audit",
    "apps.imaging",
    "apps.dicomweb",
    "apps.reports",
    "apps.notify",
    "apps.portal",
    "apps.viewer",
    "apps.core.admin_config.BackOfficeAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "apps.core.middleware.SessionIdleRefreshMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "apps.core.middleware.NoStoreMiddleware",
    "apps.tenants.middleware.TenantContextMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES: list[dict[str, Any]] = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.tenants.context_processors.current_hospital",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# DATABASE_URL is what the application connects as. On PostgreSQL that is a role which does not
# own the tables, so row-level security applies to it; DATABASE_OWNER_URL names the role that
# owns them and runs migrations.
DATABASE_URL = env_str("DATABASE_URL") or ""
if not DATABASE_URL:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASE_URL = f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
# Persistent connections are safe with row-level security: the hospital is set per transaction.
DATABASES = {
    "default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60), conn_health_checks=True)
}
_owner_url = env_str("DATABASE_OWNER_URL")
DATABASE_OWNER: dict[str, Any] | None = None
if _owner_url:
    _owner = dj_database_url.parse(_owner_url)
    DATABASE_OWNER = {"USER": _owner["USER"], "PASSWORD": _owner.get("PASSWORD", "")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache, Celery, broker ------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
# Without a broker the demo runs tasks in-process.
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", REDIS_URL is None)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's Django fixup closes every database connection before and after each task unless this
# is set: a new PostgreSQL session per task. With it, a worker process keeps its connection for
# this many tasks (config/celery.py still drops one past DB_CONN_MAX_AGE or after an error, as
# Django does between requests). Tenant settings are transaction-local, so nothing carries over.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)

# --- Storage --------------------------------------------------------------------------------
STORAGE_BACKEND = env_str("STORAGE_BACKEND", "local")
_object_storage: dict[str, Any]
if STORAGE_BACKEND == "s3":
    _object_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env_str("S3_BUCKET"),
            "endpoint_url": env_str("S3_ENDPOINT_URL"),
            "access_key": env_str("S3_ACCESS_KEY_ID"),
            "secret_key": env_str("S3_SECRET_ACCESS_KEY"),
            "region_name": env_str("S3_REGION", "us-east-1"),
            "default_acl": None,
            "querystring_auth": True,
            "file_overwrite": False,
        },
    }
else:
    _object_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(VAR_DIR / "storage")},
    }
STORAGES = {
    "default": _object_storage,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
# Envelope encryption of stored objects: a data key per object, wrapped by the hospital's key,
# itself wrapped by this master key (32 bytes, base64). The demo derives one from SECRET_KEY;
# production.py requires it.
STORAGE_MASTER_KEY = env_str("STORAGE_MASTER_KEY") or ""
# Previous master keys (base64, comma-separated; a secret, so _FILE works too), which still unwrap
# hospital keys until `manage.py storage_keys_rewrap` has wrapped them under STORAGE_MASTER_KEY.
STORAGE_MASTER_KEY_FALLBACKS = env_list("STORAGE_MASTER_KEY_FALLBACKS", [])
# Objects stored before 30 November 2026 have their data key bound to the storage key alone; they
# are read (and rehashed) while this is on, and `archive_verify` binds each once it passes. Turn it
# off once a full archive_verify run binds none, leaves none unbound and fails none
# (apps.imaging.objectstore).
STORAGE_LEGACY_KEY_WRAPPING = env_bool("STORAGE_LEGACY_KEY_WRAPPING", True)
STORAGE_CIPHER = env_str("STORAGE_CIPHER", "aes-256-gcm")  # or "sm4-gcm" (商用密码)
STORAGE_SEGMENT_SIZE = env_int("STORAGE_SEGMENT_SIZE", 1024 * 1024)
STAGING_DIR = Path(env_str("STAGING_DIR") or VAR_DIR / "staging")
# Archive maintenance (apps.imaging.sweep, apps.imaging.fixity). Orphaned files are removed only
# once older than the grace period (an ingest in flight is never touched), and a sweep that finds
# more orphans than the cap removes none (a wrong database or tenant setting, not a few crashes).
ARCHIVE_ORPHAN_GRACE_HOURS = env_int("ARCHIVE_ORPHAN_GRACE_HOURS", 24)
ARCHIVE_SWEEP_MAX_REMOVALS = env_int("ARCHIVE_SWEEP_MAX_REMOVALS", 1000)
# The daily fixity check reads one slice of every hospital's objects: all of them once per cycle.
ARCHIVE_VERIFY_CYCLE_DAYS = env_int("ARCHIVE_VERIFY_CYCLE_DAYS", 30)
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]

# --- Accounts and authentication ------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "core:home"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    {"NAME": "apps.accounts.passwords.CharacterClassValidator", "OPTIONS": {"min_classes": 3}},
]
# Staff sign in with a password and a TOTP code. The demo may switch the second factor off.
STAFF_OTP_REQUIRED = env_bool("STAFF_OTP_REQUIRED", True)
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
LOGIN_LOCKOUT_SECONDS = env_int("LOGIN_LOCKOUT_SECONDS", 15 * 60)
OTP_TOTP_ISSUER = "影像云"

# Idle timeout: a session expires this long after its last use. Its expiry is moved on at most
# once per SESSION_IDLE_REFRESH_SECONDS (apps.core.middleware.SessionIdleRefreshMiddleware), not
# by a save on every request, so an idle session ends up to that much earlier, never later.
SESSION_COOKIE_AGE = env_int("SESSION_IDLE_SECONDS", 30 * 60)
SESSION_IDLE_REFRESH_SECONDS = 60
SESSION_SAVE_EVERY_REQUEST = False
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True

# --- Audit ----------------------------------------------------------------------------------
# Key for the HMAC that chains audit events; without it an attacker who can write the table
# could recompute the whole chain.
AUDIT_CHAIN_KEY = env_str("AUDIT_CHAIN_KEY") or f"audit-chain:{SECRET_KEY}"

# --- Internationalisation -------------------------------------------------------------------
LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", _("Simplified Chinese")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Asia/Shanghai"
USE_I18N = True
USE_TZ = True

# --- Security headers -----------------------------------------------------------------------
from django.utils.csp import CSP  # noqa: E402

SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

# --- REST framework -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "apps.tenants.api.exception_handler",
}

# --- Logging: no patient data in logs; request paths carry only opaque ids. -------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# The role the application itself connects as, when migrations run as another (the table owner).
DATABASE_APP_ROLE: str | None = DATABASES["default"].get("USER") if DATABASE_OWNER else None

# Messages live in the session, never in a cookie: one shows a new API token once.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

# seed_demo writes well-known passwords; production.py switches it off.
DEMO_DATA_ALLOWED = True

# A C-STORE data set up to this size is received in memory; a larger one (whole-slide pathology,
# long cine loops) is spooled sealed to an anonymous temporary file as it arrives.
DICOM_GATEWAY_IN_MEMORY_MAX_SIZE = env_int("DICOM_GATEWAY_IN_MEMORY_MAX_SIZE", 16 * 1024**2)
# The largest single DICOM object accepted (whole-slide pathology can reach several GB).
DICOM_MAX_OBJECT_SIZE = env_int("DICOM_MAX_OBJECT_SIZE", 4 * 1024**3)
# The largest STOW-RS request body.
STOW_MAX_REQUEST_SIZE = env_int("STOW_MAX_REQUEST_SIZE", 8 * 1024**3)
# A STOW-RS request body up to this size is split in memory; a larger one is spooled to a sealed
# temporary file first (apps.imaging.spool). A 25-slice CT request is about 13 MB.
STOW_BODY_IN_MEMORY_MAX_SIZE = env_int("STOW_BODY_IN_MEMORY_MAX_SIZE", 32 * 1024**2)
# STOW-RS objects up to this size are ingested from memory and staged only when they must be kept
# (a conflict for staff, a failure for the retry sweeper); larger ones stream through staging.
# Reading one costs about twice its size in memory for a moment; CT and MR slices are well under 1 MiB.
STOW_IN_MEMORY_MAX_SIZE = env_int("STOW_IN_MEMORY_MAX_SIZE", 16 * 1024**2)
# An ingest task takes, besides the object it was queued for, other received objects of the same
# C-STORE association or upload, up to this many in all and this many bytes, and ingests them in
# one transaction (apps.imaging.together); 1: one object per task.
INGEST_TOGETHER_MAX = env_int("INGEST_TOGETHER_MAX", 25)
INGEST_TOGETHER_MAX_BYTES = env_int("INGEST_TOGETHER_MAX_BYTES", 64 * 1024**2)
# Images one study or series rendered answer holds at most (PS3.18 rendered resources); past it the
# answer is 206 with a Warning, and a client asks series by series or instance by instance.
RENDERED_MAX_INSTANCES = env_int("RENDERED_MAX_INSTANCES", 1000)
# Helper processes per worker that parse and validate the objects of a STOW-RS request, in turn,
# while the request stores the ones before (apps.imaging.parse_pool); 0: none. Other cores are what
# they use: one per core besides the first, two at most (about 60-70 MB each).
STOW_PARSE_PROCESSES = env_int("STOW_PARSE_PROCESSES", min(2, (os.cpu_count() or 1) - 1))

CELERY_BEAT_SCHEDULE = {
    "ingest-retry-stale": {"task": "apps.imaging.tasks.ingest_retry_stale", "schedule": 300.0},
    "study-completeness-sweep": {"task": "apps.imaging.tasks.study_completeness_sweep", "schedule": 300.0},
    "publication-manifest-sweep": {"task": "apps.reports.tasks.publication_manifest_sweep", "schedule": 120.0},
    "archive-sweep": {"task": "apps.imaging.tasks.archive_sweep_daily", "schedule": 86400.0},
    "archive-verify-rolling": {"task": "apps.imaging.tasks.archive_verify_rolling", "schedule": 86400.0},
}

# Uploaded files past FILE_UPLOAD_MAX_MEMORY_SIZE are spooled sealed, never in plaintext, to
# FILE_UPLOAD_TEMP_DIR (Django's TemporaryFileUploadHandler would write them as they came).
FILE_UPLOAD_HANDLERS = [
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "apps.imaging.spool.SealedFileUploadHandler",
]
# Scratch space for the DICOMDIR pydicom builds on export (it names patients): memory-backed
# where the system has it, so it never reaches a disk. None: the system's temporary directory.
# (The export makes a private directory in it with mkdtemp: mode 0700, an unguessable name.)
_SHM = "/dev/shm"  # noqa: S108 - see above
EXPORT_SCRATCH_DIR = env_str("EXPORT_SCRATCH_DIR", _SHM if Path(_SHM).is_dir() else "") or None
# Zip uploads: caps against zip bombs.
UPLOAD_ZIP_MAX_TOTAL = env_int("UPLOAD_ZIP_MAX_TOTAL", 16 * 1024**3)
UPLOAD_ZIP_MAX_ENTRIES = env_int("UPLOAD_ZIP_MAX_ENTRIES", 100_000)
UPLOAD_ZIP_MAX_RATIO = env_int("UPLOAD_ZIP_MAX_RATIO", 200)

# --- Patient portal and notifications (apps.portal, apps.notify) ----------------------------
# SMS_PROVIDER: console (logs the message with the phone masked; the demo and tests), aliyun,
# tencent, or a dotted path to a class with send(phone, template_code, params).
SMS_PROVIDER = env_str("SMS_PROVIDER", "console") or "console"
SMS_SIGN_NAME = env_str("SMS_SIGN_NAME", "") or ""
SMS_HTTP_TIMEOUT_SECONDS = env_int("SMS_HTTP_TIMEOUT_SECONDS", 10)
SMS_ALIYUN_ENDPOINT = env_str("SMS_ALIYUN_ENDPOINT", "https://dysmsapi.aliyuncs.com") or ""
SMS_ALIYUN_REGION = env_str("SMS_ALIYUN_REGION", "cn-hangzhou") or "cn-hangzhou"
SMS_ALIYUN_ACCESS_KEY_ID = env_str("SMS_ALIYUN_ACCESS_KEY_ID", "") or ""
SMS_ALIYUN_ACCESS_KEY_SECRET = env_str("SMS_ALIYUN_ACCESS_KEY_SECRET", "") or ""
SMS_TENCENT_ENDPOINT = env_str("SMS_TENCENT_ENDPOINT", "https://sms.tencentcloudapi.com") or ""
SMS_TENCENT_REGION = env_str("SMS_TENCENT_REGION", "ap-guangzhou") or "ap-guangzhou"
SMS_TENCENT_SECRET_ID = env_str("SMS_TENCENT_SECRET_ID", "") or ""
SMS_TENCENT_SECRET_KEY = env_str("SMS_TENCENT_SECRET_KEY", "") or ""
SMS_TENCENT_APP_ID = env_str("SMS_TENCENT_APP_ID", "") or ""
# Our template names -> the provider's template ids (set per provider account).
SMS_TEMPLATES = {
    "verification_code": env_str("SMS_TEMPLATE_VERIFICATION_CODE", "verification_code") or "verification_code",
    "study_published": env_str("SMS_TEMPLATE_STUDY_PUBLISHED", "study_published") or "study_published",
    "report_amended": env_str("SMS_TEMPLATE_REPORT_AMENDED", "report_amended") or "report_amended",
}
# The public origin patients' links point at (SMS short links, QR codes), e.g. https://yx.example.cn
PORTAL_PUBLIC_ORIGIN = env_str("PORTAL_PUBLIC_ORIGIN", "http://127.0.0.1:8000") or ""
# Patient sessions are short: absolute lifetime after verification.
PORTAL_SESSION_SECONDS = env_int("PORTAL_SESSION_SECONDS", 20 * 60)
# Rate limits (count per window) and the lockout that follows.
PORTAL_CODES_PER_PHONE_PER_HOUR = env_int("PORTAL_CODES_PER_PHONE_PER_HOUR", 5)
PORTAL_CODES_PER_TOKEN_PER_HOUR = env_int("PORTAL_CODES_PER_TOKEN_PER_HOUR", 5)
PORTAL_CODES_PER_PHONE_PER_DAY = env_int("PORTAL_CODES_PER_PHONE_PER_DAY", 10)
PORTAL_FAILURES_BEFORE_LOCK = env_int("PORTAL_FAILURES_BEFORE_LOCK", 10)
PORTAL_LOCKOUT_SECONDS = env_int("PORTAL_LOCKOUT_SECONDS", 30 * 60)
# Per client address: a hospital's Wi-Fi or a carrier's NAT puts hundreds of patients behind one
# address, so these are generous (each patient's phone is guarded by the limits above); past
# them the address is locked for PORTAL_LOCKOUT_SECONDS, for everyone behind it.
PORTAL_CODES_PER_IP_PER_HOUR = env_int("PORTAL_CODES_PER_IP_PER_HOUR", 300)
PORTAL_FAILURES_PER_IP_BEFORE_LOCK = env_int("PORTAL_FAILURES_PER_IP_BEFORE_LOCK", 100)
# An SMS short link (/s/<token>) expires this many days after it was sent (0: never before the
# service period ends); a QR token on the exam slip lives as long as the study's service period.
PORTAL_SMS_LINK_TTL_DAYS = env_int("PORTAL_SMS_LINK_TTL_DAYS", 30)
# Download links are valid this long after they are issued.
PORTAL_DOWNLOAD_LINK_SECONDS = env_int("PORTAL_DOWNLOAD_LINK_SECONDS", 5 * 60)
# WeChat official account (snsapi_base OAuth); empty app id switches the entry off.
WECHAT_APP_ID = env_str("WECHAT_APP_ID", "") or ""
WECHAT_APP_SECRET = env_str("WECHAT_APP_SECRET", "") or ""
WECHAT_AUTHORIZE_URL = env_str("WECHAT_AUTHORIZE_URL", "https://open.weixin.qq.com/connect/oauth2/authorize") or ""
WECHAT_TOKEN_URL = env_str("WECHAT_TOKEN_URL", "https://api.weixin.qq.com/sns/oauth2/access_token") or ""
CELERY_BEAT_SCHEDULE["portal-throttles-prune"] = {
    "task": "apps.portal.tasks.portal_throttles_prune",
    "schedule": 3600.0,
}
# --- end of portal and notifications ---------------------------------------------------------

# Doctors' report signing keys: "ed25519" (default) or "sm2" (商用密码, GB/T 32918). Existing keys
# keep their algorithm.
REPORT_SIGNING_ALGORITHM = env_str("REPORT_SIGNING_ALGORITHM", "ed25519") or "ed25519"
