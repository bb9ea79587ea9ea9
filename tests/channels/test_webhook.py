"""The webhook channel against a real HTTP server: signed JSON, idempotency, retries with backoff."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels.support import NOW_MS, HttpServer, Reply
from rapport.channels.base import Message
from rapport.channels.webhook import (
    WebhookChannel,
    WebhookSettings,
    backoff_delay,
    sign,
    verify_signature,
)
from rapport.clock import FrozenClock
from rapport.errors import Terminal, Transient
from rapport.settings import Secret

SECRET = "whsec_test_1234"
MESSAGE = Message("enr_9:step_1", "https://crm.example/hooks/rapport", subject="Cart reminder",
                  text="Your cart is waiting", data={"cart_id": "c42", "total": 59.9})


class Sleeps:
    """Records the waits between attempts instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def channel(server: HttpServer, sleeps: Sleeps, max_attempts: int = 5, jitter: float = 0.0) -> WebhookChannel:
    settings = WebhookSettings(server.url + "/hooks", Secret(SECRET), timeout=2.0, max_attempts=max_attempts)
    return WebhookChannel(settings, clock=FrozenClock(NOW_MS), sleep=sleeps, jitter=lambda: jitter)


def test_the_body_is_json_signed_with_hmac_over_timestamp_and_body(http_server: HttpServer) -> None:
    receipt = asyncio.run(channel(http_server, Sleeps()).send(MESSAGE))
    [request] = http_server.requests
    assert request.path == "/hooks"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.body) == {
        "id": "enr_9:step_1", "to": "https://crm.example/hooks/rapport", "subject": "Cart reminder",
        "text": "Your cart is waiting", "html": None, "data": {"cart_id": "c42", "total": 59.9},
        "unsubscribe_url": None,
    }
    # Recomputed here from the documented scheme, not with the module's own helper.
    timestamp = NOW_MS // 1000
    digest = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-rapport-signature"] == f"t={timestamp},v1={digest}"
    assert request.headers["idempotency-key"] == "enr_9:step_1"
    assert request.headers["x-rapport-idempotency-key"] == "enr_9:step_1"
    assert receipt.provider_id == "enr_9:step_1"
    assert receipt.accepted_at == NOW_MS


def test_the_receivers_request_id_becomes_the_receipt_id(http_server: HttpServer) -> None:
    http_server.script(Reply(202, b"", (("X-Request-Id", "req_77"),)))
    assert asyncio.run(channel(http_server, Sleeps()).send(MESSAGE)).provider_id == "req_77"


def test_a_503_is_retried_with_backoff_then_succeeds(http_server: HttpServer) -> None:
    http_server.script(Reply(503, b"busy"), Reply(503, b"busy"))
    sleeps = Sleeps()
    receipt = asyncio.run(channel(http_server, sleeps).send(MESSAGE))
    assert len(http_server.requests) == 3
    assert sleeps.waits == [0.5, 1.0]  # base 1 s doubling, jitter 0 keeps the lower half
    assert {r.headers["idempotency-key"] for r in http_server.requests} == {"enr_9:step_1"}
    assert {r.body for r in http_server.requests} == {http_server.requests[0].body}
    for request in http_server.requests:
        assert verify_signature(SECRET, request.headers["x-rapport-signature"], request.body, NOW_MS // 1000)
    assert receipt.detail == "200 after 3 attempt(s)"


def test_a_400_is_terminal_and_not_retried(http_server: HttpServer) -> None:
    http_server.script(Reply(400, b'{"error": "unknown field total"}'))
    sleeps = Sleeps()
    with pytest.raises(Terminal) as caught:
        asyncio.run(channel(http_server, sleeps).send(MESSAGE))
    assert caught.value.message == 'webhook permanent failure 400: Bad Request: {"error": "unknown field total"}'
    assert len(http_server.requests) == 1
    assert sleeps.waits == []


@pytest.mark.parametrize("status", [401, 403, 404, 422])
def test_other_client_errors_are_terminal(http_server: HttpServer, status: int) -> None:
    http_server.script(Reply(status, b"no"))
    with pytest.raises(Terminal, match=f"webhook permanent failure {status}"):
        asyncio.run(channel(http_server, Sleeps()).send(MESSAGE))
    assert len(http_server.requests) == 1


def test_it_gives_up_after_max_attempts_with_a_transient_error(http_server: HttpServer) -> None:
    http_server.default = Reply(500, b"boom")
    sleeps = Sleeps()
    with pytest.raises(Transient) as caught:
        asyncio.run(channel(http_server, sleeps, max_attempts=4, jitter=1.0).send(MESSAGE))
    assert caught.value.message == (
        "webhook transient failure 500: Internal Server Error: boom (gave up after 4 attempt(s))")
    assert len(http_server.requests) == 4
    assert sleeps.waits == [1.0, 2.0, 4.0]  # jitter 1 takes the whole exponential step


def test_a_429_waits_as_long_as_retry_after_asks(http_server: HttpServer) -> None:
    http_server.script(Reply(429, b"slow down", (("Retry-After", "7"),)))
    sleeps = Sleeps()
    asyncio.run(channel(http_server, sleeps).send(MESSAGE))
    assert sleeps.waits == [7.0]
    assert len(http_server.requests) == 2


def test_connection_refused_is_retried_then_transient(closed_port: int) -> None:
    sleeps = Sleeps()
    settings = WebhookSettings(f"http://127.0.0.1:{closed_port}/", Secret(SECRET), timeout=1.0, max_attempts=2)
    sender = WebhookChannel(settings, clock=FrozenClock(NOW_MS), sleep=sleeps, jitter=lambda: 0.0)
    with pytest.raises(Transient, match=r"webhook transient failure ConnectError: .*\(gave up after 2 attempt\(s\)\)"):
        asyncio.run(sender.send(MESSAGE))
    assert sleeps.waits == [0.5]


def test_a_receiver_that_never_answers_times_out_as_transient(silent_port: int) -> None:
    settings = WebhookSettings(f"http://127.0.0.1:{silent_port}/", Secret(SECRET), timeout=0.2, max_attempts=1)
    sender = WebhookChannel(settings, clock=FrozenClock(NOW_MS), sleep=Sleeps(), jitter=lambda: 0.0)
    with pytest.raises(Transient, match="ReadTimeout"):
        asyncio.run(sender.send(MESSAGE))


def test_data_that_is_not_json_is_terminal(http_server: HttpServer) -> None:
    message = Message("k", "https://x.example", data={"when": object()})
    with pytest.raises(Terminal, match="webhook message data is not JSON"):
        asyncio.run(channel(http_server, Sleeps()).send(message))
    assert http_server.requests == []


def test_verification_rejects_tampering_wrong_secrets_and_replays() -> None:
    body = b'{"id":"k"}'
    header = sign(SECRET, 1000, body)
    assert verify_signature(SECRET, header, body, 1000)
    assert verify_signature(SECRET, header, body, 1300)
    assert not verify_signature(SECRET, header, body, 1301)  # older than the 5 minute tolerance
    assert not verify_signature(SECRET, header, b'{"id":"j"}', 1000)
    assert not verify_signature("other", header, body, 1000)
    assert not verify_signature(SECRET, header.replace("t=1000", "t=1001"), body, 1000)
    assert not verify_signature(SECRET, "v1=abc", body, 1000)


@given(st.integers(1, 30), st.floats(0.01, 10), st.floats(1, 600), st.floats(0, 1, exclude_max=True))
def test_backoff_grows_stays_under_the_cap_and_keeps_half_its_step(
    attempt: int, base: float, cap: float, jitter: float
) -> None:
    delay = backoff_delay(attempt, base, cap, jitter)
    step = min(cap, base * 2 ** (attempt - 1))
    assert step / 2 <= delay <= step <= cap
    assert backoff_delay(attempt + 1, base, cap, jitter) >= delay


@given(st.text(min_size=1), st.binary(), st.integers(0, 2**33))
def test_signatures_verify_for_their_own_body_and_secret(secret: str, body: bytes, timestamp: int) -> None:
    assert verify_signature(secret, sign(secret, timestamp, body), body, timestamp)
    assert not verify_signature(secret, sign(secret, timestamp, body), body + b"x", timestamp)
