"""WeChat official-account OAuth (snsapi_base) behind a small provider interface.

snsapi_base asks the user nothing: WeChat redirects back with a code, exchanged server-side for
the openid. The openid identifies the WeChat user to this hospital's official account only.
"""

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Protocol

from django.conf import settings


class WeChatError(RuntimeError):
    """The exchange failed; the text is safe to log (no openid, no secret)."""


class WeChatOAuthProvider(Protocol):
    def authorize_url(self, *, redirect_uri: str, state: str) -> str: ...

    def openid_for_code(self, code: str) -> str: ...


class OfficialAccountOAuth:
    """The official account's web authorisation, with URLs from settings (fakes in tests)."""

    def __init__(self) -> None:
        self.app_id = settings.WECHAT_APP_ID
        self.app_secret = settings.WECHAT_APP_SECRET
        self.authorize_endpoint = settings.WECHAT_AUTHORIZE_URL
        self.token_endpoint = settings.WECHAT_TOKEN_URL

    def authorize_url(self, *, redirect_uri: str, state: str) -> str:
        query = urllib.parse.urlencode(
            {
                "appid": self.app_id,
                "redirect_uri": redirect_uri,
                "response_type": "code",
                "scope": "snsapi_base",
                "state": state,
            }
        )
        return f"{self.authorize_endpoint}?{query}#wechat_redirect"

    def openid_for_code(self, code: str) -> str:
        query = urllib.parse.urlencode(
            {"appid": self.app_id, "secret": self.app_secret, "code": code, "grant_type": "authorization_code"}
        )
        try:
            with urllib.request.urlopen(f"{self.token_endpoint}?{query}", timeout=10) as response:  # noqa: S310
                document = json.loads(response.read(65536))
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as error:
            raise WeChatError(f"wechat: token exchange failed ({type(error).__name__})") from error
        if not isinstance(document, dict) or (document.get("errcode")):
            code_value = document.get("errcode") if isinstance(document, dict) else "?"
            raise WeChatError(f"wechat: error {code_value}")
        openid = document.get("openid")
        if not isinstance(openid, str) or not openid:
            raise WeChatError("wechat: no openid in the answer")
        return openid


def wechat_enabled() -> bool:
    return bool(settings.WECHAT_APP_ID)


def wechat_provider() -> WeChatOAuthProvider:
    return OfficialAccountOAuth()
