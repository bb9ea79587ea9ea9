"""What every channel shares: the message it sends, the receipt it returns, and how provider failures
are classified as ``Transient`` (retry later) or ``Terminal`` (give up and record why)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

import httpx

from rapport.clock import Clock
from rapport.durations import parse_duration
from rapport.errors import Terminal, Transient, ValidationError
from rapport.settings import Secret
from rapport.types import Json, Millis

MAX_PROVIDER_TEXT: Final = 300
"""Provider error text kept in an error message; enough for a diagnosis, never a whole HTML error page."""
HEADER_NAME: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""A header field name (an RFC 9110 token): no spaces, colons or line breaks."""


@dataclass(frozen=True, slots=True)
class Message:
    """One rendered message for one recipient, ready for a channel.

    ``idempotency_key`` names the intended send (e.g. enrollment and step): a retried send carries the
    same key, so the peer (SMTP ``Message-ID``, webhook ``Idempotency-Key``) can recognise the repeat.
    ``to`` is what the channel addresses: an email address, a phone number, a device token or a URL.
    ``unsubscribe_url`` is the HTTPS page and RFC 8058 one-click endpoint for ``List-Unsubscribe``;
    ``unsubscribe_post_url`` replaces it in the header when the one-click endpoint lives elsewhere, and
    ``unsubscribe_mailto`` adds a ``mailto:`` alternative for clients that only send mail.
    """

    idempotency_key: str
    to: str
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    data: Mapping[str, Json] = field(default_factory=dict)
    unsubscribe_url: str | None = None
    unsubscribe_post_url: str | None = None
    unsubscribe_mailto: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.idempotency_key.strip():
            raise ValidationError(f"invalid message idempotency_key {self.idempotency_key!r}; expected a non-empty "
                                  "key naming the send")
        if not self.to.strip():
            raise ValidationError(f"invalid message to {self.to!r}; expected an address, number, device token or URL")
        for key in self.headers:
            if not HEADER_NAME.fullmatch(key):
                raise ValidationError(f"invalid message header name {key!r}; expected letters, digits and '-'")
        # A line break in a header value would let template output forge headers (header injection).
        for name, value in (("to", self.to), ("subject", self.subject or ""),
                            *((f"headers.{key}", value) for key, value in self.headers.items())):
            if "\r" in value or "\n" in value:
                raise ValidationError(f"invalid message {name}: it contains a line break; expected a single line")


@dataclass(frozen=True, slots=True)
class Receipt:
    """The peer accepted the message: its id for the message (to match later feedback) and when."""

    provider_id: str
    accepted_at: Millis
    detail: str = ""
    """The peer's acceptance text, e.g. an SMTP ``250 OK queued as ...`` reply."""


class Channel(Protocol):
    """A way to reach a person. ``send`` returns a ``Receipt`` once the peer accepted the message, raises
    ``Transient`` when a later attempt may succeed and ``Terminal`` when none will."""

    async def send(self, message: Message) -> Receipt: ...


def clip(text: str) -> str:
    """Provider text on one line and at most ``MAX_PROVIDER_TEXT`` characters, for an error message."""
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_PROVIDER_TEXT else flat[: MAX_PROVIDER_TEXT - 3] + "..."


def provider_error(retryable: bool, provider: str, code: str | int, text: str) -> Transient | Terminal:
    """The error for a provider failure, its code and text in the message and in ``details``."""
    kind = "transient" if retryable else "permanent"
    message = f"{provider} {kind} failure {code}: {clip(text) or 'no text'}"
    details: list[Json] = [{"provider": provider, "provider_code": str(code), "provider_text": clip(text)}]
    return Transient(message, details=details) if retryable else Terminal(message, details=details)


def smtp_error(code: int, text: str) -> Transient | Terminal:
    """SMTP reply codes: 4xx are temporary (greylisting, mailbox busy), 5xx permanent (unknown user)."""
    return provider_error(400 <= code < 500, "smtp", code, text)


RETRYABLE_HTTP: Final = frozenset({408, 425, 429})
"""Client-side statuses that mean 'not now' rather than 'never': timeout, too early, rate limited."""


def http_error(provider: str, response: httpx.Response, text: str | None = None) -> Transient | Terminal:
    """The error for a non-2xx HTTP response: 429, 408 and 5xx are retryable, other statuses are not
    (400/422 bad request, 401/403 credentials, 404 unknown endpoint or recipient, 3xx unexpected)."""
    status = response.status_code
    retryable = status in RETRYABLE_HTTP or status >= 500
    body = text if text is not None else response.text
    error = provider_error(retryable, provider, status, f"{response.reason_phrase}: {body}".strip(": "))
    wait = response.headers.get("retry-after", "").strip()
    if retryable and wait.isdigit():
        error.details[0]["retry_after"] = int(wait)
    return error


def transport_error(provider: str, exc: Exception) -> Transient:
    """A connection refused, reset or timed out before a reply: the peer may be back soon."""
    name = type(exc).__name__
    text = str(exc) or name
    return Transient(f"{provider} transient failure {name}: {clip(text)}",
                     details=[{"provider": provider, "provider_code": name, "provider_text": clip(text)}])


def _secret(spec: Mapping[str, Json], key: str, env: Mapping[str, str]) -> Secret | None:
    """The secret named by ``spec[key]`` (an environment variable name), or ``None`` when not referenced."""
    variable = spec.get(key)
    if variable is None:
        return None
    value = env.get(str(variable))
    if not value:
        raise ValidationError(
            f"channel {spec.get('name')!r}: {key} names the environment variable {variable!r}, which is not set; "
            f"expected it to hold the {key.removesuffix('_env')}", code="missing_secret")
    return Secret(value)


def channel_from_spec(
    spec: Mapping[str, Json],
    env: Mapping[str, str],
    *,
    clock: Clock | None = None,
    client: httpx.AsyncClient | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> Channel:
    """The adapter for a checked ``Channel`` resource spec, its secrets read from ``env``.

    ``client`` is the pooled HTTP client the HTTP adapters share; ``sleep`` paces webhook retries.
    Raises ``ValidationError`` when a referenced secret is not set, and for ``inapp`` and ``offline``,
    which deliver into Rapport's own storage and are built by the service that owns it.
    """
    # Imported on use: each adapter module imports this one for Message and Receipt.
    from rapport.channels.email import SmtpChannel, SmtpSettings, sender_address
    from rapport.channels.push import PushChannel, PushSettings
    from rapport.channels.sms import SmsChannel, SmsSettings
    from rapport.channels.webhook import WebhookChannel, WebhookSettings

    kind = spec.get("type")
    timeout = parse_duration(str(spec.get("timeout", "30s"))) / 1000
    if kind == "smtp":
        sender = str(spec["from"])
        password = _secret(spec, "password_env", env)
        username = spec.get("username") or (sender_address(sender) if password else None)
        return SmtpChannel(SmtpSettings(str(spec["host"]), int(spec.get("port", 25)), sender,
                                        None if username is None else str(username), password,
                                        spec.get("starttls"), timeout), clock)
    if kind == "webhook":
        secret = _secret(spec, "secret_env", env)
        assert secret is not None, "a checked webhook spec has secret_env"
        settings = WebhookSettings(str(spec["url"]), secret, timeout, int(spec.get("max_attempts", 5)))
        return WebhookChannel(settings, clock=clock, client=client, sleep=sleep)
    if kind in ("sms", "push"):
        token = _secret(spec, "token_env", env)
        assert token is not None, f"a checked {kind} spec has token_env"
        if kind == "sms":
            sid = spec.get("account_sid")
            sms = SmsSettings(str(spec["url"]), str(spec["from"]), token, None if sid is None else str(sid), timeout)
            return SmsChannel(sms, clock=clock, client=client)
        return PushChannel(PushSettings(str(spec["url"]), token, timeout), clock=clock, client=client)
    raise ValidationError(
        f"channel {spec.get('name')!r} of type {kind!r} has no network adapter; expected one of "
        "'smtp', 'webhook', 'sms', 'push' ('inapp' and 'offline' are delivered by the service that stores them)",
        code="unsupported_channel")
