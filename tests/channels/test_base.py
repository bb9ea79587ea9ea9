"""The shared channel contract: messages, error classification, and building adapters from resources."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from channels.support import NOW_MS, HttpServer, Reply
from rapport.channels import Channel, Message, channel_from_spec
from rapport.channels.base import http_error, smtp_error
from rapport.channels.email import SmtpChannel
from rapport.channels.push import PushChannel
from rapport.channels.sms import SmsChannel
from rapport.channels.webhook import WebhookChannel, verify_signature
from rapport.clock import FrozenClock
from rapport.errors import Terminal, Transient, ValidationError
from rapport.resources import parse_documents

pytestmark = pytest.mark.usefixtures("channel_kind")


def spec(text: str) -> dict[str, object]:
    [resource] = parse_documents("kind: Channel\nname: c\n" + text)
    return resource.spec


@pytest.mark.parametrize(("code", "retryable"), [
    (421, True), (450, True), (451, True), (452, True), (550, False), (551, False), (552, False), (553, False),
    (554, False),
])
def test_smtp_codes(code: int, retryable: bool) -> None:
    error = smtp_error(code, "5.7.1 text from the server")
    assert isinstance(error, Transient if retryable else Terminal)
    assert error.message == (f"smtp {'transient' if retryable else 'permanent'} failure {code}: "
                             "5.7.1 text from the server")
    assert error.details == [{"provider": "smtp", "provider_code": str(code),
                              "provider_text": "5.7.1 text from the server"}]


@pytest.mark.parametrize(("status", "retryable"), [
    (400, False), (401, False), (403, False), (404, False), (409, False), (422, False), (301, False),
    (408, True), (425, True), (429, True), (500, True), (502, True), (503, True), (504, True),
])
def test_http_statuses(status: int, retryable: bool) -> None:
    error = http_error("webhook", httpx.Response(status, text="provider says no"))
    assert isinstance(error, Transient if retryable else Terminal)
    assert str(status) in error.message and "provider says no" in error.message


def test_provider_text_is_flattened_and_clipped() -> None:
    error = smtp_error(550, "line one\r\n  line two " + "x" * 1000)
    assert error.message.startswith("smtp permanent failure 550: line one line two xxx")
    assert len(error.message) < 340 and error.message.endswith("...")


@pytest.mark.parametrize(("fields", "problem"), [
    ({"idempotency_key": " "}, "invalid message idempotency_key"),
    ({"to": ""}, "invalid message to"),
    ({"to": "ada@example.com\nBcc: x@y"}, "invalid message to: it contains a line break"),
    ({"headers": {"X-Tag": "a\r\nBcc: x@y"}}, "invalid message headers.X-Tag: it contains a line break"),
], ids=["blank-key", "no-recipient", "recipient-injection", "header-injection"])
def test_messages_refuse_what_cannot_be_sent_safely(fields: dict[str, object], problem: str) -> None:
    values: dict[str, object] = {"idempotency_key": "k", "to": "ada@example.com", **fields}
    with pytest.raises(ValidationError, match=problem):
        Message(**values)  # type: ignore[arg-type]


def test_messages_are_frozen() -> None:
    message = Message("k", "ada@example.com")
    with pytest.raises(AttributeError):
        message.to = "eve@example.com"  # type: ignore[misc]


def test_each_network_type_builds_its_adapter_with_secrets_from_the_environment() -> None:
    env = {"P": "smtp-pass", "S": "hook-secret", "T": "sms-token", "F": "fcm-token"}
    built: list[Channel] = [
        channel_from_spec(spec("type: smtp\nhost: h\nfrom: Shop <a@shop.example>\npassword_env: P\n"), env),
        channel_from_spec(spec("type: webhook\nurl: https://x.example\nsecret_env: S\nmax_attempts: 3\n"), env),
        channel_from_spec(spec("type: sms\nurl: https://x.example\nfrom: '+14155550100'\naccount_sid: AC1\n"
                               "token_env: T\n"), env),
        channel_from_spec(spec("type: push\nurl: https://x.example/send\ntoken_env: F\ntimeout: 3s\n"), env),
    ]
    smtp, hook, sms, push = built
    assert isinstance(smtp, SmtpChannel)
    assert (smtp.settings.port, smtp.settings.timeout, smtp.settings.username) == (25, 30.0, "a@shop.example")
    assert smtp.settings.password == "smtp-pass" and "smtp-pass" not in repr(smtp.settings)
    assert isinstance(hook, WebhookChannel)
    assert (hook.settings.secret, hook.settings.max_attempts, hook.settings.timeout) == ("hook-secret", 3, 10.0)
    assert isinstance(sms, SmsChannel)
    assert (sms.settings.endpoint, sms.settings.token) == ("https://x.example/Accounts/AC1/Messages.json", "sms-token")
    assert isinstance(push, PushChannel)
    assert (push.settings.token, push.settings.timeout) == ("fcm-token", 3.0)
    assert "fcm-token" not in repr(push.settings)


def test_smtp_without_a_password_does_not_log_in() -> None:
    smtp = channel_from_spec(spec("type: smtp\nhost: h\nfrom: a@shop.example\n"), {})
    assert isinstance(smtp, SmtpChannel)
    assert (smtp.settings.username, smtp.settings.password) == (None, None)


def test_an_unset_secret_is_named() -> None:
    with pytest.raises(ValidationError) as caught:
        channel_from_spec(spec("type: webhook\nurl: https://x.example\nsecret_env: CRM_SECRET\n"), {"OTHER": "x"})
    assert caught.value.message == ("channel 'c': secret_env names the environment variable 'CRM_SECRET', which is "
                                    "not set; expected it to hold the secret")
    assert caught.value.code == "missing_secret"


@pytest.mark.parametrize("kind", ["inapp", "offline"])
def test_stored_channels_are_not_built_here(kind: str) -> None:
    with pytest.raises(ValidationError, match=f"channel 'c' of type '{kind}' has no network adapter"):
        channel_from_spec(spec(f"type: {kind}\n"), {})


def test_a_resource_built_webhook_delivers_to_a_real_receiver(http_server: HttpServer) -> None:
    http_server.script(Reply(503), Reply(200))
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    resource = spec(f"type: webhook\nurl: {http_server.url}/in\nsecret_env: S\n")

    async def run() -> None:
        async with httpx.AsyncClient() as client:
            channel = channel_from_spec(resource, {"S": "k3y"}, clock=FrozenClock(NOW_MS), client=client, sleep=sleep)
            await channel.send(Message("k", "crm"))

    asyncio.run(run())
    assert len(http_server.requests) == 2 and len(waits) == 1
    last = http_server.requests[-1]
    assert verify_signature("k3y", last.headers["x-rapport-signature"], last.body, NOW_MS // 1000)


def test_header_names_must_be_tokens() -> None:
    with pytest.raises(ValidationError, match="invalid message header name 'Bcc: x'"):
        Message("k", "ada@example.com", headers={"Bcc: x": "y"})
