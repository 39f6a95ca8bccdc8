"""SMS providers: one interface, a console provider for the demo and tests, and HTTP adapters
for Aliyun SMS (RPC signature, HMAC-SHA1) and Tencent Cloud SMS (TC3-HMAC-SHA256).

A provider's ``send`` returns the provider's message id or raises ``SmsError`` with a message
that names the provider and its error code, never the phone number.
"""

import base64
import hashlib
import hmac
import json
import logging
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from django.conf import settings
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)


class SmsError(RuntimeError):
    """A message could not be sent; the text is safe to store and log (no phone number)."""


def mask_phone(phone: str) -> str:
    """``138****5678``: enough for a person to recognise their number, not to read it."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    if len(digits) < 7:
        return "*" * len(digits)
    return f"{digits[:3]}{'*' * (len(digits) - 7)}{digits[-4:]}"


class SmsProvider(Protocol):
    name: str

    def send(self, phone: str, template_code: str, params: dict[str, str]) -> str: ...


@dataclass(frozen=True)
class ConsoleRecord:
    masked_phone: str
    phone_digest: str
    template_code: str
    params: dict[str, str]
    message_id: str


class ConsoleProvider:
    """Logs each message with the phone masked, and keeps the last ones in ``outbox`` (process
    memory) so the demo and the tests can read the code a patient would have received.

    ``phone_digest`` lets a test pick the message of one phone without the number being kept.
    """

    name = "console"
    outbox: list[ConsoleRecord] = []
    _lock = threading.Lock()
    KEEP = 200

    def send(self, phone: str, template_code: str, params: dict[str, str]) -> str:
        message_id = f"console-{uuid.uuid4().hex}"
        record = ConsoleRecord(
            masked_phone=mask_phone(phone),
            phone_digest=console_phone_digest(phone),
            template_code=template_code,
            params=dict(params),
            message_id=message_id,
        )
        with self._lock:
            self.outbox.append(record)
            del self.outbox[: -self.KEEP]
        logger.info("SMS to %s template %s params %s", record.masked_phone, template_code, params)
        return message_id


def console_phone_digest(phone: str) -> str:
    return hashlib.sha256(f"console-outbox:{phone}".encode()).hexdigest()


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _http_url(url: str, provider: str) -> str:
    """Only http(s) endpoints (https in production; http for the local fakes in tests)."""
    if urllib.parse.urlsplit(url).scheme not in {"http", "https"}:
        raise SmsError(f"{provider}: the endpoint must be an http(s) URL")
    return url


def _post_or_get(request: urllib.request.Request, provider: str) -> dict[str, Any]:
    timeout = getattr(settings, "SMS_HTTP_TIMEOUT_SECONDS", 10)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (configured https URL)
            body = response.read(65536)
    except urllib.error.HTTPError as error:
        body = error.read(65536)
        if not body:
            raise SmsError(f"{provider}: HTTP {error.code}") from error
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise SmsError(f"{provider}: endpoint unreachable ({type(error).__name__})") from error
    try:
        document = json.loads(body)
    except ValueError as error:
        raise SmsError(f"{provider}: the answer is not JSON") from error
    if not isinstance(document, dict):
        raise SmsError(f"{provider}: unexpected answer")
    return document


def aliyun_percent_encode(value: str) -> str:
    """Aliyun's POP encoding: RFC 3986 unreserved characters kept, everything else %XX."""
    return urllib.parse.quote(value, safe="~")


def aliyun_signature(params: dict[str, str], secret: str, method: str = "GET") -> str:
    """Signature version 1.0 of Aliyun's RPC APIs (HMAC-SHA1 over the canonicalized query)."""
    canonical = "&".join(f"{aliyun_percent_encode(key)}={aliyun_percent_encode(params[key])}" for key in sorted(params))
    string_to_sign = f"{method}&{aliyun_percent_encode('/')}&{aliyun_percent_encode(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), string_to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class AliyunSmsProvider:
    """Aliyun (阿里云) Short Message Service, ``SendSms`` of API version 2017-05-25."""

    name = "aliyun"

    def __init__(self) -> None:
        self.endpoint = settings.SMS_ALIYUN_ENDPOINT
        self.access_key_id = settings.SMS_ALIYUN_ACCESS_KEY_ID
        self.access_key_secret = settings.SMS_ALIYUN_ACCESS_KEY_SECRET
        self.sign_name = settings.SMS_SIGN_NAME
        self.region = settings.SMS_ALIYUN_REGION
        if not (self.access_key_id and self.access_key_secret and self.sign_name):
            raise SmsError(
                "aliyun: SMS_ALIYUN_ACCESS_KEY_ID, SMS_ALIYUN_ACCESS_KEY_SECRET and SMS_SIGN_NAME are needed"
            )

    def send(self, phone: str, template_code: str, params: dict[str, str]) -> str:
        query = {
            "AccessKeyId": self.access_key_id,
            "Action": "SendSms",
            "Format": "JSON",
            "PhoneNumbers": phone,
            "RegionId": self.region,
            "SignName": self.sign_name,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": uuid.uuid4().hex,
            "SignatureVersion": "1.0",
            "TemplateCode": template_code,
            "TemplateParam": json.dumps(params, ensure_ascii=False, separators=(",", ":")),
            "Timestamp": _utc_now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": "2017-05-25",
        }
        query["Signature"] = aliyun_signature(query, self.access_key_secret)
        url = f"{self.endpoint.rstrip('/')}/?{urllib.parse.urlencode(query, quote_via=urllib.parse.quote)}"
        request = urllib.request.Request(_http_url(url, self.name), method="GET")  # noqa: S310 (scheme checked)
        document = _post_or_get(request, self.name)
        code = str(document.get("Code", ""))
        if code != "OK":
            raise SmsError(f"aliyun: {code or 'error'} {str(document.get('Message', ''))[:120]}")
        return str(document.get("BizId", ""))


def tencent_signature(*, secret_key: str, date: str, service: str, string_to_sign: str) -> str:
    """TC3-HMAC-SHA256: derive the signing key from the date and service, sign the string."""

    def _hmac(key: bytes, message: str) -> bytes:
        return hmac.new(key, message.encode(), hashlib.sha256).digest()

    secret_date = _hmac(f"TC3{secret_key}".encode(), date)
    secret_service = _hmac(secret_date, service)
    secret_signing = _hmac(secret_service, "tc3_request")
    return hmac.new(secret_signing, string_to_sign.encode(), hashlib.sha256).hexdigest()


def tencent_string_to_sign(*, host: str, payload: bytes, timestamp: int, service: str, content_type: str) -> str:
    canonical_request = "\n".join(
        [
            "POST",
            "/",
            "",
            f"content-type:{content_type}\nhost:{host}\n",
            "content-type;host",
            hashlib.sha256(payload).hexdigest(),
        ]
    )
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    scope = f"{date}/{service}/tc3_request"
    return "\n".join(["TC3-HMAC-SHA256", str(timestamp), scope, hashlib.sha256(canonical_request.encode()).hexdigest()])


class TencentSmsProvider:
    """Tencent Cloud (腾讯云) SMS, ``SendSms`` of API version 2021-01-11, signed TC3-HMAC-SHA256."""

    name = "tencent"
    service = "sms"
    content_type = "application/json; charset=utf-8"

    def __init__(self) -> None:
        self.endpoint = settings.SMS_TENCENT_ENDPOINT
        self.secret_id = settings.SMS_TENCENT_SECRET_ID
        self.secret_key = settings.SMS_TENCENT_SECRET_KEY
        self.app_id = settings.SMS_TENCENT_APP_ID
        self.region = settings.SMS_TENCENT_REGION
        self.sign_name = settings.SMS_SIGN_NAME
        if not (self.secret_id and self.secret_key and self.app_id and self.sign_name):
            raise SmsError(
                "tencent: SMS_TENCENT_SECRET_ID, SMS_TENCENT_SECRET_KEY, SMS_TENCENT_APP_ID and SMS_SIGN_NAME"
                " are needed"
            )

    def send(self, phone: str, template_code: str, params: dict[str, str]) -> str:
        number = phone if phone.startswith("+") else f"+86{phone}"
        payload = json.dumps(
            {
                "PhoneNumberSet": [number],
                "SmsSdkAppId": self.app_id,
                "SignName": self.sign_name,
                "TemplateId": template_code,
                # Tencent templates take positional parameters, in the order the keys were given.
                "TemplateParamSet": [str(value) for value in params.values()],
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
        host = urllib.parse.urlsplit(self.endpoint).netloc
        timestamp = int(_utc_now().timestamp())
        date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
        string_to_sign = tencent_string_to_sign(
            host=host, payload=payload, timestamp=timestamp, service=self.service, content_type=self.content_type
        )
        signature = tencent_signature(
            secret_key=self.secret_key, date=date, service=self.service, string_to_sign=string_to_sign
        )
        authorization = (
            f"TC3-HMAC-SHA256 Credential={self.secret_id}/{date}/{self.service}/tc3_request, "
            f"SignedHeaders=content-type;host, Signature={signature}"
        )
        request = urllib.request.Request(  # noqa: S310 (scheme checked)
            _http_url(self.endpoint, self.name),
            data=payload,
            method="POST",
            headers={
                "Authorization": authorization,
                "Content-Type": self.content_type,
                "Host": host,
                "X-TC-Action": "SendSms",
                "X-TC-Timestamp": str(timestamp),
                "X-TC-Version": "2021-01-11",
                "X-TC-Region": self.region,
            },
        )
        document = _post_or_get(request, self.name).get("Response")
        if not isinstance(document, dict):
            raise SmsError("tencent: unexpected answer")
        if document.get("Error"):
            error = document["Error"] if isinstance(document["Error"], dict) else {}
            raise SmsError(f"tencent: {error.get('Code', 'error')} {str(error.get('Message', ''))[:120]}")
        statuses = document.get("SendStatusSet")
        status = statuses[0] if isinstance(statuses, list) and statuses and isinstance(statuses[0], dict) else {}
        if str(status.get("Code", "")) != "Ok":
            raise SmsError(f"tencent: {status.get('Code', 'error')} {str(status.get('Message', ''))[:120]}")
        return str(status.get("SerialNo", ""))


PROVIDERS = {
    "console": "apps.notify.providers.ConsoleProvider",
    "aliyun": "apps.notify.providers.AliyunSmsProvider",
    "tencent": "apps.notify.providers.TencentSmsProvider",
}


def sms_provider() -> SmsProvider:
    """The provider chosen by ``SMS_PROVIDER`` (console, aliyun, tencent or a dotted path)."""
    name = settings.SMS_PROVIDER
    provider_class = import_string(PROVIDERS.get(name, name))
    provider: SmsProvider = provider_class()
    return provider


def template_id(template: str) -> str:
    """The provider's template id for one of our templates (``SMS_TEMPLATE_<NAME>``)."""
    templates: dict[str, str] = settings.SMS_TEMPLATES
    return templates.get(template, template)
