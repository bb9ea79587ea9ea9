"""Push notifications through an HTTP provider with FCM HTTP v1's request shape: a JSON POST of
``{"message": {"token", "notification": {"title", "body"}, "data"}}`` with a Bearer token."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import orjson

from rapport.channels.base import Message, Receipt
from rapport.channels.http import json_object, post
from rapport.clock import Clock, SystemClock
from rapport.errors import Terminal
from rapport.settings import Secret
from rapport.types import Json


@dataclass(frozen=True, slots=True)
class PushSettings:
    """``url`` is the full send endpoint, e.g. ``https://fcm.googleapis.com/v1/projects/<id>/messages:send``."""

    url: str
    token: Secret
    timeout: float = 10.0


def payload(message: Message) -> dict[str, Json]:
    """The FCM v1 request body; ``data`` values become strings, since FCM accepts only string values."""
    notification = {key: value for key, value in (("title", message.subject), ("body", message.text)) if value}
    data = {key: value if isinstance(value, str) else orjson.dumps(value).decode()
            for key, value in message.data.items()}
    body: dict[str, Json] = {"token": message.to}
    if notification:
        body["notification"] = notification
    if data:
        body["data"] = data
    return {"message": body}


def provider_error_text(response: httpx.Response) -> str:
    """FCM's error shape: ``{"error": {"code", "message", "status", "details": [{"errorCode"}]}}``, as
    ``UNREGISTERED NOT_FOUND: Requested entity was not found.``."""
    error = response.json()["error"]
    codes = [detail["errorCode"] for detail in error.get("details", []) if "errorCode" in detail]
    return " ".join([*codes, f"{error['status']}: {error['message']}"])


class PushChannel:
    """Sends to the device token ``message.to``; the receipt's id is the provider's message ``name``.

    FCM answers 404 ``UNREGISTERED`` for a token that is gone: ``Terminal``, so the token can be dropped.
    """

    def __init__(self, settings: PushSettings, *, clock: Clock | None = None,
                 client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.client = client

    async def send(self, message: Message) -> Receipt:
        """Hand ``message`` to the push provider."""
        if not (message.subject or message.text or message.data):
            raise Terminal("push needs a title, a body or data; the rendered message has none",
                           code="invalid_message")
        try:
            content = orjson.dumps(payload(message))
        except TypeError as exc:
            raise Terminal(f"push message data is not JSON: {exc}", code="invalid_message") from exc
        response = await post(
            self.client, "push", self.settings.url, timeout=self.settings.timeout, error_text=provider_error_text,
            content=content,
            headers={"Authorization": f"Bearer {self.settings.token}", "Content-Type": "application/json"},
        )
        name = json_object(response, "push").get("name")
        if not isinstance(name, str) or not name:
            raise Terminal("push provider accepted the request but returned no message 'name'")
        return Receipt(name, self.clock.now_ms())
