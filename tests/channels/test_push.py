"""The push channel against a local HTTP server: FCM HTTP v1's request shape and error classification."""

from __future__ import annotations

import asyncio
import json

import pytest

from channels.support import NOW_MS, HttpServer, Reply
from rapport.channels.base import Message, Receipt
from rapport.channels.push import PushChannel, PushSettings, payload
from rapport.clock import FrozenClock
from rapport.errors import Terminal, Transient
from rapport.settings import Secret

TOKEN = "ya29.access-token"
DEVICE = "fcm-device-token-abc123"
MESSAGE = Message("enr_3:step_3", DEVICE, subject="Still there?", text="Your cart is waiting",
                  data={"cart_id": "c42", "items": 2, "deep_link": "shop://cart"})
UNREGISTERED = json.dumps({"error": {
    "code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND",
    "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}],
}}).encode()


def channel(server: HttpServer) -> PushChannel:
    settings = PushSettings(server.url + "/v1/projects/shop-app/messages:send", Secret(TOKEN), timeout=2.0)
    return PushChannel(settings, clock=FrozenClock(NOW_MS))


def test_the_request_has_fcm_v1s_shape(http_server: HttpServer) -> None:
    http_server.script(Reply(200, b'{"name": "projects/shop-app/messages/0:1500415314455276%31bd1c96f9fd7ecd"}'))
    receipt = asyncio.run(channel(http_server).send(MESSAGE))
    [request] = http_server.requests
    assert request.path == "/v1/projects/shop-app/messages:send"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.body) == {"message": {
        "token": DEVICE,
        "notification": {"title": "Still there?", "body": "Your cart is waiting"},
        "data": {"cart_id": "c42", "items": "2", "deep_link": "shop://cart"},  # FCM takes string values only
    }}
    assert receipt == Receipt("projects/shop-app/messages/0:1500415314455276%31bd1c96f9fd7ecd", NOW_MS)


def test_a_data_only_message_has_no_notification() -> None:
    expected = {"message": {"token": DEVICE, "data": {"sync": "true"}}}
    assert payload(Message("k", DEVICE, data={"sync": True})) == expected


def test_an_unregistered_token_is_terminal_and_says_so(http_server: HttpServer) -> None:
    http_server.script(Reply(404, UNREGISTERED))
    with pytest.raises(Terminal) as caught:
        asyncio.run(channel(http_server).send(MESSAGE))
    assert caught.value.message == (
        "push permanent failure 404: Not Found: UNREGISTERED NOT_FOUND: Requested entity was not found.")


def test_an_invalid_argument_is_terminal(http_server: HttpServer) -> None:
    body = b'{"error": {"code": 400, "message": "Invalid value at message.data", "status": "INVALID_ARGUMENT"}}'
    http_server.script(Reply(400, body))
    with pytest.raises(Terminal, match=r"400: Bad Request: INVALID_ARGUMENT: Invalid value at message\.data"):
        asyncio.run(channel(http_server).send(MESSAGE))


@pytest.mark.parametrize(("status", "code"), [(429, "QUOTA_EXCEEDED"), (503, "UNAVAILABLE"), (500, "INTERNAL")])
def test_quota_and_outages_are_transient(http_server: HttpServer, status: int, code: str) -> None:
    body = json.dumps({"error": {"code": status, "message": "try later", "status": code}}).encode()
    http_server.script(Reply(status, body))
    with pytest.raises(Transient, match=f"push transient failure {status}: .*{code}: try later"):
        asyncio.run(channel(http_server).send(MESSAGE))


def test_an_empty_message_is_not_sent(http_server: HttpServer) -> None:
    with pytest.raises(Terminal, match="push needs a title, a body or data"):
        asyncio.run(channel(http_server).send(Message("k", DEVICE)))
    assert http_server.requests == []
