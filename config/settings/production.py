"""Production settings: HTTPS only, second factor enforced, secrets from the environment."""

from config.env import ConfigurationError, env_required
from config.settings.base import *  # noqa: F403

SECRET_KEY = env_required("SECRET_KEY")
AUDIT_CHAIN_KEY = env_required("AUDIT_CHAIN_KEY")
STORAGE_MASTER_KEY = env_required("STORAGE_MASTER_KEY")
# SMS links and printed QR codes carry this origin; a localhost default would reach no patient.
PORTAL_PUBLIC_ORIGIN = env_required("PORTAL_PUBLIC_ORIGIN")
DEBUG = False
STAFF_OTP_REQUIRED = True

SECURE_SSL_REDIRECT = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = 63072000
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SESSION_COOKIE_NAME = "__Host-sessionid"
CSRF_COOKIE_NAME = "__Host-csrftoken"
DEMO_DATA_ALLOWED = False

# The console provider logs codes and links: never in production.
if SMS_PROVIDER == "console":  # noqa: F405
    raise ConfigurationError("SMS_PROVIDER must name a real SMS gateway (aliyun or tencent) in production.")

# The export's DICOMDIR names patients: it is built in memory-backed scratch space, never on a disk.
if not EXPORT_SCRATCH_DIR or not Path(EXPORT_SCRATCH_DIR).is_dir():  # noqa: F405
    raise ConfigurationError(
        "EXPORT_SCRATCH_DIR must name an existing memory-backed directory (such as /dev/shm) in production."
    )
