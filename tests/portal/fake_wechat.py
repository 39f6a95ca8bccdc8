"""A local stand-in for WeChat's OAuth endpoints (outside our walls, so a real local HTTP
server rather than a mock): the tests give the request handler, this serves it on loopback and
points the settings at it."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@contextmanager
def fake_wechat_server(settings: Any, handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on a free loopback port as WeChat (app id wx123, secret wx-secret)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    settings.WECHAT_APP_ID, settings.WECHAT_APP_SECRET = "wx123", "wx-secret"
    settings.WECHAT_AUTHORIZE_URL = f"{base}/connect/oauth2/authorize"
    settings.WECHAT_TOKEN_URL = f"{base}/sns/oauth2/access_token"
    try:
        yield base
    finally:
        server.shutdown()
        server.server_close()
