"""The Aliyun and Tencent adapters against local fake endpoints that check their signatures."""

import pytest

from apps.notify.providers import AliyunSmsProvider, ConsoleProvider, SmsError, TencentSmsProvider, mask_phone
from tests.notify.fake_servers import fake_sms_server


@pytest.fixture
def aliyun(settings):
    with fake_sms_server("aliyun", "ali-secret") as (url, state):
        settings.SMS_ALIYUN_ENDPOINT = url
        settings.SMS_ALIYUN_ACCESS_KEY_ID = "ali-id"
        settings.SMS_ALIYUN_ACCESS_KEY_SECRET = "ali-secret"
        settings.SMS_SIGN_NAME = "影像云"
        yield state


@pytest.fixture
def tencent(settings):
    with fake_sms_server("tencent", "tc-secret") as (url, state):
        settings.SMS_TENCENT_ENDPOINT = url
        settings.SMS_TENCENT_SECRET_ID = "tc-id"
        settings.SMS_TENCENT_SECRET_KEY = "tc-secret"
        settings.SMS_TENCENT_APP_ID = "1400000000"
        settings.SMS_SIGN_NAME = "影像云"
        yield state


def test_aliyun_request_is_signed_and_carries_the_template(aliyun):
    message_id = AliyunSmsProvider().send("13800138000", "SMS_1", {"code": "123456"})
    assert message_id == "biz-123"
    query = aliyun.received[0]
    assert query["Action"] == "SendSms" and query["TemplateCode"] == "SMS_1" and query["SignName"] == "影像云"
    assert query["TemplateParam"] == '{"code":"123456"}'
    assert query["SignatureMethod"] == "HMAC-SHA1" and query["Version"] == "2017-05-25"


def test_aliyun_wrong_secret_is_a_clear_error(aliyun, settings):
    settings.SMS_ALIYUN_ACCESS_KEY_SECRET = "not-the-secret"
    with pytest.raises(SmsError, match="aliyun: SignatureDoesNotMatch"):
        AliyunSmsProvider().send("13800138000", "SMS_1", {"code": "123456"})


def test_aliyun_refusal_names_the_code_but_not_the_phone(aliyun):
    aliyun.fail_with = "isv.BUSINESS_LIMIT_CONTROL"
    with pytest.raises(SmsError) as error:
        AliyunSmsProvider().send("13800138000", "SMS_1", {"code": "123456"})
    assert "isv.BUSINESS_LIMIT_CONTROL" in str(error.value) and "13800138000" not in str(error.value)


def test_tencent_request_is_signed_tc3(tencent):
    message_id = TencentSmsProvider().send("13800138000", "1234567", {"code": "654321", "minutes": "5"})
    assert message_id == "serial-9"
    request = tencent.received[0]
    assert request["body"]["PhoneNumberSet"] == ["+8613800138000"]
    assert request["body"]["TemplateParamSet"] == ["654321", "5"]
    assert request["headers"]["x-tc-action"] == "SendSms"
    assert request["headers"]["authorization"].startswith("TC3-HMAC-SHA256 Credential=tc-id/")


def test_tencent_wrong_secret_is_a_clear_error(tencent, settings):
    settings.SMS_TENCENT_SECRET_KEY = "wrong"
    with pytest.raises(SmsError, match=r"tencent: AuthFailure\.SignatureFailure"):
        TencentSmsProvider().send("13800138000", "1", {"code": "1"})


def test_unreachable_endpoint_is_a_clear_error(settings):
    settings.SMS_TENCENT_ENDPOINT = "http://127.0.0.1:9/"
    settings.SMS_TENCENT_SECRET_ID, settings.SMS_TENCENT_SECRET_KEY = "a", "b"
    settings.SMS_TENCENT_APP_ID, settings.SMS_SIGN_NAME = "1", "x"
    with pytest.raises(SmsError, match="unreachable"):
        TencentSmsProvider().send("13800138000", "1", {"code": "1"})


def test_missing_credentials_are_named(settings):
    settings.SMS_ALIYUN_ACCESS_KEY_ID = ""
    with pytest.raises(SmsError, match="SMS_ALIYUN_ACCESS_KEY_ID"):
        AliyunSmsProvider()


def test_console_provider_masks_the_phone_in_its_log(caplog):
    ConsoleProvider.outbox.clear()
    with caplog.at_level("INFO", logger="apps.notify.providers"):
        ConsoleProvider().send("13800138000", "verification_code", {"code": "246810"})
    assert "138****8000" in caplog.text and "13800138000" not in caplog.text
    assert "246810" in caplog.text
    assert ConsoleProvider.outbox[-1].masked_phone == mask_phone("13800138000") == "138****8000"


@pytest.mark.parametrize(
    "answer",
    [
        {"Response": {"Error": "AuthFailure"}},
        {"Response": {"SendStatusSet": ["Ok"]}},
        {"Response": {"SendStatusSet": None}},
    ],
)
def test_tencent_answer_of_an_odd_shape_is_a_clear_error(monkeypatch, settings, answer):
    """A malformed answer is an SmsError (recorded, retried), not an exception that would leave
    the message queued forever with no trace."""
    import apps.notify.providers as providers

    settings.SMS_TENCENT_ENDPOINT = "http://127.0.0.1:9/"
    settings.SMS_TENCENT_SECRET_ID, settings.SMS_TENCENT_SECRET_KEY = "a", "b"
    settings.SMS_TENCENT_APP_ID, settings.SMS_SIGN_NAME = "1", "x"
    monkeypatch.setattr(providers, "_post_or_get", lambda request, provider: answer)
    with pytest.raises(SmsError, match=r"^tencent: "):
        TencentSmsProvider().send("13800138000", "1", {"code": "1"})
