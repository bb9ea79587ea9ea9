"""Webhook: the message as signed JSON POSTed to the receiver's URL, retried with backoff while it fails
in a retryable way.

What a receiver sees, and how it checks it:

- ``Content-Type: application/json``; the body is ``{"id", "to", "subject", "text", "html", "data",
  "unsubscribe_url"}`` with ``id`` the idempotency key.
- ``Idempotency-Key: <key>`` (also ``X-Rapport-Idempotency-Key``): the same on every attempt of one
  send, so a receiver that saw it already can answer 2xx and do nothing.
- ``X-Rapport-Signature: t=<unix seconds>,v1=<hex>`` where ``hex`` is
  ``HMAC-SHA256(secret, "<t>." + raw body)``. The receiver recomputes it over the raw bytes, compares in
  constant time and rejects timestamps too far from its clock, which stops replays of an old request.
  ``verify_signature`` does exactly this.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import httpx
import orjson

from rapport.channels.base import Message, Receipt
from rapport.channels.http import post
from rapport.clock import Clock, SystemClock
from rapport.errors import Terminal, Transient
from rapport.settings import Secret
from rapport.types import Json

SIGNATURE_HEADER: Final = "X-Rapport-Signature"
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
RAPPORT_IDEMPOTENCY_HEADER: Final = "X-Rapport-Idempotency-Key"
SIGNATURE_TOLERANCE_S: Final = 300
"""How far a signature's timestamp may be from the receiver's clock before it counts as a replay."""

Sleep = Callable[[float], Awaitable[None]]
Jitter = Callable[[], float]
"""A number in [0, 1); injected so tests pin it (the default reads the system's random source)."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Rapport-Signature`` value for ``body`` sent at ``timestamp`` (unix seconds)."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(secret: str, header: str, body: bytes, now_s: int,
                     tolerance_s: int = SIGNATURE_TOLERANCE_S) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` at a time within ``tolerance_s`` of ``now_s``."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    timestamp = parts.get("t", "")
    if not timestamp.isdigit() or abs(now_s - int(timestamp)) > tolerance_s:
        return False
    expected = sign(secret, int(timestamp), body).rpartition("v1=")[2]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def backoff_delay(attempt: int, base_s: float, cap_s: float, jitter: float) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): exponential, capped, and spread
    between half and all of it ("equal jitter") so many failed sends do not retry in lockstep."""
    ceiling: float = min(cap_s, base_s * 2.0 ** (attempt - 1))
    return ceiling / 2 + ceiling / 2 * jitter


def retry_after(error: Transient) -> float | None:
    """The seconds a 429/503 reply asked us to wait, when it said so in ``Retry-After``."""
    for detail in error.details:
        value = detail.get("retry_after") if isinstance(detail, dict) else None
        if isinstance(value, (int, float)):
            return float(value)
    return None


def body_of(message: Message) -> bytes:
    """The JSON body for ``message``; keys sorted so the same message always signs the same."""
    payload: dict[str, Json] = {
        "id": message.idempotency_key,
        "to": message.to,
        "subject": message.subject,
        "text": message.text,
        "html": message.html,
        "data": dict(message.data),
        "unsubscribe_url": message.unsubscribe_url,
    }
    try:
        return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:
        raise Terminal(f"webhook message data is not JSON: {exc}", code="invalid_message") from exc


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """Where to POST, the signing secret, and the retry budget of one send: ``max_attempts`` tries with
    waits growing from ``backoff_base`` seconds, doubling, never above ``backoff_cap``."""

    url: str
    secret: Secret
    timeout: float = 10.0
    max_attempts: int = 5
    backoff_base: float = 1.0
    backoff_cap: float = 60.0


class WebhookChannel:
    """POSTs signed JSON and retries ``Transient`` failures up to ``max_attempts`` with backoff (honouring
    ``Retry-After``); a ``Terminal`` failure (e.g. 400) is raised at once.

    Receivers are often small services that blink during a deploy, so short outages are ridden out here;
    a ``Transient`` that escapes has used the whole budget, and a later retry by the caller (from a
    durable timer) starts a new series with the same idempotency key."""

    def __init__(self, settings: WebhookSettings, *, clock: Clock | None = None,
                 client: httpx.AsyncClient | None = None, sleep: Sleep | None = None,
                 jitter: Jitter | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.client = client
        self.sleep: Sleep = sleep or asyncio.sleep
        self.jitter: Jitter = jitter or secrets.SystemRandom().random

    async def send(self, message: Message) -> Receipt:
        """Deliver ``message``; the receipt's id is the receiver's ``X-Request-Id`` or the idempotency key."""
        settings = self.settings
        body = body_of(message)
        attempt = 1
        while True:
            try:
                response = await self._attempt(message, body)
            except Transient as exc:
                if attempt >= settings.max_attempts:
                    raise Transient(f"{exc.message} (gave up after {attempt} attempt(s))",
                                    details=exc.details) from exc
                wait = backoff_delay(attempt, settings.backoff_base, settings.backoff_cap, self.jitter())
                asked = retry_after(exc)
                await self.sleep(min(settings.backoff_cap, asked) if asked is not None else wait)
                attempt += 1
                continue
            provider_id = response.headers.get("x-request-id") or message.idempotency_key
            return Receipt(provider_id, self.clock.now_ms(), f"{response.status_code} after {attempt} attempt(s)")

    async def _attempt(self, message: Message, body: bytes) -> httpx.Response:
        headers = {
            **message.headers,
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: message.idempotency_key,
            RAPPORT_IDEMPOTENCY_HEADER: message.idempotency_key,
            SIGNATURE_HEADER: sign(self.settings.secret, self.clock.now_ms() // 1000, body),
        }
        return await post(self.client, "webhook", self.settings.url, timeout=self.settings.timeout,
                          content=body, headers=headers)
