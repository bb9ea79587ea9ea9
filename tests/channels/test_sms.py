"""The SMS channel against a local HTTP server: Twilio's request shape and error classification."""

from __future__ import annotations

import asyncio
import base64
from urllib.parse import parse_qs

import pytest

from channels.support import NOW_MS, HttpServer, Reply
from rapport.channels.base import Message, Receipt
from rapport.channels.sms import SmsChannel, SmsSettings
from rapport.clock import FrozenClock
from rapport.errors import Terminal, Transient
from rapport.settings import Secret

SID = "AC0123456789abcdef0123456789abcdef"
TOKEN = "twilio-auth-token"
MESSAGE = Message("enr_3:step_5", "+14155550123", text="Your cart misses you: shop.example/c/42")
ACCEPTED = (b'{"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued", "to": "+14155550123", '
            b'"from": "+14155550100", "body": "Your cart misses you: shop.example/c/42"}')


def channel(server: HttpServer, account_sid: str | None = SID) -> SmsChannel:
    settings = SmsSettings(server.url + "/2010-04-01", "+14155550100", Secret(TOKEN), account_sid, timeout=2.0)
    return SmsChannel(settings, clock=FrozenClock(NOW_MS))


def test_the_request_has_twilios_shape(http_server: HttpServer) -> None:
    http_server.script(Reply(201, ACCEPTED))
    receipt = asyncio.run(channel(http_server).send(MESSAGE))
    [request] = http_server.requests
    assert request.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(request.body.decode()) == {
        "To": ["+14155550123"], "From": ["+14155550100"], "Body": ["Your cart misses you: shop.example/c/42"]}
    assert request.headers["authorization"] == "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    assert receipt == Receipt("SM0123456789abcdef0123456789abcdef", NOW_MS, "queued")


def test_without_an_account_the_token_is_a_bearer(http_server: HttpServer) -> None:
    http_server.script(Reply(201, b'{"sid": "m1"}'))
    asyncio.run(channel(http_server, account_sid=None).send(MESSAGE))
    [request] = http_server.requests
    assert request.path == "/2010-04-01/Messages.json"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"


def test_an_invalid_number_is_terminal_with_the_providers_code(http_server: HttpServer) -> None:
    http_server.script(Reply(400, b'{"code": 21211, "message": "The \'To\' number +1415 is not a valid phone number.",'
                                  b' "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}'))
    with pytest.raises(Terminal) as caught:
        asyncio.run(channel(http_server).send(MESSAGE))
    assert caught.value.message == (
        "sms permanent failure 400: Bad Request: 21211 The 'To' number +1415 is not a valid phone number.")


def test_bad_credentials_are_terminal(http_server: HttpServer) -> None:
    http_server.script(Reply(401, b'{"code": 20003, "message": "Authenticate", "status": 401}'))
    with pytest.raises(Terminal, match="sms permanent failure 401: Unauthorized: 20003 Authenticate"):
        asyncio.run(channel(http_server).send(MESSAGE))


@pytest.mark.parametrize(("status", "body"), [
    (429, b'{"code": 20429, "message": "Too Many Requests", "status": 429}'),
    (500, b"<html>Internal error</html>"),
    (503, b"unavailable"),
], ids=["rate-limited", "server-error-html", "unavailable"])
def test_rate_limits_and_server_errors_are_transient(http_server: HttpServer, status: int, body: bytes) -> None:
    http_server.script(Reply(status, body))
    with pytest.raises(Transient, match=f"sms transient failure {status}"):
        asyncio.run(channel(http_server).send(MESSAGE))
    assert len(http_server.requests) == 1  # retrying is the caller's decision, not the adapter's


def test_an_acceptance_without_a_sid_is_terminal(http_server: HttpServer) -> None:
    http_server.script(Reply(201, b'{"status": "queued"}'))
    with pytest.raises(Terminal, match="returned no message 'sid'"):
        asyncio.run(channel(http_server).send(MESSAGE))


def test_a_message_without_text_is_not_sent(http_server: HttpServer) -> None:
    with pytest.raises(Terminal, match="sms needs a text body"):
        asyncio.run(channel(http_server).send(Message("k", "+14155550123", subject="only a subject")))
    assert http_server.requests == []


@pytest.mark.parametrize(("body", "problem"), [
    (b"<html>OK</html>", "sms accepted the request but answered with no JSON"),
    (b'["SM1"]', "sms accepted the request but answered with JSON that is not an object"),
], ids=["html", "array"])
def test_an_acceptance_that_is_not_the_providers_json_is_terminal(
    http_server: HttpServer, body: bytes, problem: str
) -> None:
    http_server.script(Reply(200, body))
    with pytest.raises(Terminal, match=problem):
        asyncio.run(channel(http_server).send(MESSAGE))
