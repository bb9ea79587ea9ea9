"""SMS through an HTTP provider with Twilio's request shape: a form-encoded POST of ``To``, ``From`` and
``Body`` to ``{url}/Accounts/{sid}/Messages.json`` with HTTP basic auth ``sid:token``."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from rapport.channels.base import Message, Receipt
from rapport.channels.http import json_object, post
from rapport.clock import Clock, SystemClock
from rapport.errors import Terminal
from rapport.settings import Secret


@dataclass(frozen=True, slots=True)
class SmsSettings:
    """``account_sid`` absent: the provider has no accounts in its path and takes the token as a Bearer."""

    url: str
    sender: str
    token: Secret
    account_sid: str | None = None
    timeout: float = 10.0

    @property
    def endpoint(self) -> str:
        base = self.url.rstrip("/")
        return f"{base}/Accounts/{self.account_sid}/Messages.json" if self.account_sid else f"{base}/Messages.json"


def provider_error_text(response: httpx.Response) -> str:
    """Twilio's error shape ``{"code": 21211, "message": "...", "more_info": ...}`` as ``21211 ...``."""
    body = response.json()
    return f"{body['code']} {body['message']}"


class SmsChannel:
    """Sends ``message.text`` to the phone number ``message.to``; the receipt's id is the provider's ``sid``."""

    def __init__(self, settings: SmsSettings, *, clock: Clock | None = None,
                 client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.client = client

    async def send(self, message: Message) -> Receipt:
        """Hand ``message`` to the provider; it queues the SMS and answers with its id."""
        if not message.text:
            raise Terminal("sms needs a text body; the rendered message has none", code="invalid_message")
        settings = self.settings
        auth: dict[str, object] = (
            {"auth": (settings.account_sid, settings.token)} if settings.account_sid
            else {"headers": {"Authorization": f"Bearer {settings.token}"}}
        )
        response = await post(
            self.client, "sms", settings.endpoint, timeout=settings.timeout, error_text=provider_error_text,
            data={"To": message.to, "From": settings.sender, "Body": message.text}, **auth,
        )
        body = json_object(response, "sms")
        sid = body.get("sid")
        if not isinstance(sid, str) or not sid:
            raise Terminal("sms provider accepted the request but returned no message 'sid'")
        return Receipt(sid, self.clock.now_ms(), str(body.get("status", "")))
