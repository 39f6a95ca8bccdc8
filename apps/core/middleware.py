import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers, patch_cache_control

# Where the session keeps the time (epoch seconds) its expiry was last pushed forward.
IDLE_REFRESHED_KEY = "_idle_refreshed_at"


class NoStoreMiddleware:
    """Nothing the application renders may be kept by a browser or proxy.

    Static assets are served before this (by WhiteNoise) and keep their own long caching.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        add_never_cache_headers(response)
        patch_cache_control(response, no_store=True, private=True)
        return response


class SessionIdleRefreshMiddleware:
    """The idle timeout: a session in use lives ``SESSION_COOKIE_AGE`` seconds after its last refresh.

    Saving the session on every request (``SESSION_SAVE_EVERY_REQUEST``) would do the same with an
    UPDATE of ``django_session`` per request, hundreds for one opened CT stack, and each save writes
    back the whole session as that request read it, racing with concurrent requests that change it.
    Instead the session is marked changed (so SessionMiddleware saves it and moves its expiry on) at
    most once per ``SESSION_IDLE_REFRESH_SECONDS``. An idle session therefore ends between
    ``SESSION_COOKIE_AGE - SESSION_IDLE_REFRESH_SECONDS`` and ``SESSION_COOKIE_AGE`` after its last
    request: never later than the configured timeout. Empty (anonymous) sessions are left alone,
    so no session row is created for a visitor. Must come right after SessionMiddleware.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = request.session
        # keys() loads the session; an unknown or expired key loads as empty.
        if session.keys():
            now = int(time.time())
            refreshed_at = session.get(IDLE_REFRESHED_KEY)
            interval = settings.SESSION_IDLE_REFRESH_SECONDS
            if not isinstance(refreshed_at, int) or not 0 <= now - refreshed_at < interval:
                session[IDLE_REFRESHED_KEY] = now
        return self.get_response(request)
