from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.templatetags.static import static


def favicon(request: HttpRequest) -> HttpResponse:
    """``/favicon.ico``, which browsers ask for on every page: the static icon (its hashed name in
    production, so resolved per request rather than when the URLs are loaded)."""
    return HttpResponsePermanentRedirect(static("favicon.ico"))
