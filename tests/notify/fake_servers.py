"""Local fake SMS endpoints that check the real signing schemes, written from the providers'
documentation independently of the adapters under test."""

import base64
import hashlib
import hmac
import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeState:
    secret: str
    received: list[dict[str, Any]] = field(default_factory=list)
    fail_with: str = ""


def _aliyun_expected(query: dict[str, str], secret: str) -> str:
    def enc(value: str) -> str:
        return urllib.parse.quote(value, safe="~")

    pairs = sorted((k, v) for k, v in query.items() if k != "Signature")
    canonical = "&".join(f"{enc(k)}={enc(v)}" for k, v in pairs)
    to_sign = "GET&%2F&" + enc(canonical)
    return base64.b64encode(hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()).decode()


def _tencent_expected(headers: Any, body: bytes, secret: str) -> str:
    timestamp = int(headers["X-TC-Timestamp"])
    day = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    canonical = (
        f"POST\n/\n\ncontent-type:{headers['Content-Type']}\nhost:{headers['Host']}\n\n"
        f"content-type;host\n{hashlib.sha256(body).hexdigest()}"
    )
    to_sign = f"TC3-HMAC-SHA256\n{timestamp}\n{day}/sms/tc3_request\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = hmac.new(f"TC3{secret}".encode(), day.encode(), hashlib.sha256).digest()
    key = hmac.new(key, b"sms", hashlib.sha256).digest()
    key = hmac.new(key, b"tc3_request", hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def _handler(kind: str, state: FakeState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, document: dict[str, Any], status: int = 200) -> None:
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # Aliyun RPC
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query, keep_blank_values=True))
            state.received.append(query)
            if query.get("Signature") != _aliyun_expected(query, state.secret):
                self._answer({"Code": "SignatureDoesNotMatch", "Message": "bad signature"}, 400)
            elif state.fail_with:
                self._answer({"Code": state.fail_with, "Message": "refused"})
            else:
                self._answer({"Code": "OK", "Message": "OK", "BizId": "biz-123", "RequestId": "r1"})

        def do_POST(self) -> None:  # Tencent TC3
            body = self.rfile.read(int(self.headers["Content-Length"]))
            authorization = self.headers.get("Authorization", "")
            signature = authorization.rsplit("Signature=", 1)[-1]
            document = json.loads(body)
            state.received.append({"headers": {k.lower(): v for k, v in self.headers.items()}, "body": document})
            if signature != _tencent_expected(self.headers, body, state.secret):
                self._answer({"Response": {"Error": {"Code": "AuthFailure.SignatureFailure", "Message": "bad"}}})
            elif state.fail_with:
                self._answer({"Response": {"SendStatusSet": [{"Code": state.fail_with, "Message": "refused"}]}})
            else:
                self._answer(
                    {"Response": {"SendStatusSet": [{"Code": "Ok", "SerialNo": "serial-9"}], "RequestId": "r"}}
                )

    return Handler


@contextmanager
def fake_sms_server(kind: str, secret: str) -> Iterator[tuple[str, FakeState]]:
    state = FakeState(secret=secret)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(kind, state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", state
    finally:
        server.shutdown()
        server.server_close()
