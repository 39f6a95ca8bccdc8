import os

from django.core.wsgi import get_wsgi_application

from apps.core.hardening import harden_process

# Before anything is decrypted in this process: no core dumps, no new privileges.
harden_process()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
application = get_wsgi_application()

# A web worker starts its STOW-RS parse helpers now rather than on its first request, which would
# otherwise go without them while they import (apps.imaging.parse_pool).
from apps.imaging.parse_pool import start_helper  # noqa: E402

start_helper()
