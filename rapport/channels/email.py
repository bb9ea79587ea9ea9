"""Email over SMTP: a MIME message whose ``Message-ID`` comes from the idempotency key, with RFC 8058
one-click unsubscribe headers, handed to the SMTP server with aiosmtplib."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, parseaddr
from typing import Final

import aiosmtplib

from rapport.channels.base import Message, Receipt, smtp_error, transport_error
from rapport.clock import Clock, SystemClock, to_datetime
from rapport.errors import Terminal
from rapport.settings import Secret

RESERVED_HEADERS: Final = frozenset({
    "from", "to", "subject", "date", "message-id", "mime-version", "content-type",
    "content-transfer-encoding", "list-unsubscribe", "list-unsubscribe-post",
})
"""Headers the adapter writes itself; a message's own ``headers`` may not replace them."""


def sender_address(sender: str) -> str:
    """The address of a ``From`` value (``Shop <hello@shop.example>`` → ``hello@shop.example``);
    raises ``ValueError`` when there is none."""
    _, address = parseaddr(sender)
    local, at, domain = address.rpartition("@")
    if not (local and at and domain) or " " in address:
        raise ValueError(f"{sender!r} has no address; expected 'Name <user@domain>' or 'user@domain'")
    return address


def message_id(idempotency_key: str, domain: str) -> str:
    """A ``Message-ID`` that depends only on the idempotency key and the sending domain, so a retried send
    carries the same id and receivers (or a crash-recovery audit) can recognise the repeat."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:32]
    return f"<{digest}@{domain}>"


class _Policy(EmailPolicy):
    """The SMTP policy (CRLF, lines folded at 78), except that ``List-Unsubscribe`` is written unfolded: its
    signed URLs have no spaces to fold at, and the generic folding would turn them into RFC 2047 encoded words,
    which no mailbox provider reads as URLs. RFC 5322 allows such a line up to 998 characters."""

    def fold_binary(self, name: str, value: str) -> bytes:
        text = str(value)
        if name.lower() == "list-unsubscribe" and text.isascii() and len(name) + len(text) < 990:
            return f"{name}: {text}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


POLICY: Final = _Policy(linesep="\r\n")


def build_email(message: Message, sender: str, now_ms: int) -> EmailMessage:
    """The MIME message for ``message``: plain text, HTML, or both as ``multipart/alternative`` (text
    first, so clients that prefer the last part they understand show the HTML).

    Raises ``Terminal`` when the message has no subject or no body: retrying cannot fix it.
    """
    if not message.subject:
        raise Terminal("email needs a subject; the rendered message has none", code="invalid_message")
    if not (message.text or message.html):
        raise Terminal("email needs a text or html body; the rendered message has neither", code="invalid_message")
    domain = sender_address(sender).rpartition("@")[2]
    mail = EmailMessage(policy=POLICY)
    mail["From"] = sender
    mail["To"] = message.to
    mail["Subject"] = message.subject
    mail["Date"] = format_datetime(to_datetime(now_ms))
    mail["Message-ID"] = message_id(message.idempotency_key, domain)
    for name, value in _unsubscribe_headers(message):
        mail[name] = value
    for name, value in message.headers.items():
        if name.lower() in RESERVED_HEADERS:
            raise Terminal(f"header {name!r} is written by the email channel and cannot be set by a message",
                           code="invalid_message")
        mail[name] = value
    if message.text:
        mail.set_content(message.text)
        if message.html:
            mail.add_alternative(message.html, subtype="html")
    else:
        mail.set_content(message.html or "", subtype="html")
    return mail


def _unsubscribe_headers(message: Message) -> list[tuple[str, str]]:
    """``List-Unsubscribe`` (RFC 2369) with the one-click URL first, then ``mailto:``; and
    ``List-Unsubscribe-Post`` (RFC 8058), which tells mailbox providers that a POST to that URL
    unsubscribes without a further page. RFC 8058 requires the URL to be HTTPS in production."""
    https = message.unsubscribe_post_url or message.unsubscribe_url
    targets = [f"<{https}>"] if https else []
    if message.unsubscribe_mailto:
        mailto = message.unsubscribe_mailto
        targets.append(f"<{mailto if mailto.startswith('mailto:') else 'mailto:' + mailto}>")
    headers = [("List-Unsubscribe", ", ".join(targets))] if targets else []
    if https:
        headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    return headers


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """Where and how to hand mail over; ``starttls`` ``None`` upgrades when the server offers it.
    ``sessions`` SMTP sessions at most are kept open; one is closed after ``idle_seconds`` unused or
    ``messages_per_session`` messages, whichever comes first."""

    host: str
    port: int
    sender: str
    username: str | None = None
    password: Secret | None = None
    starttls: bool | None = None
    timeout: float = 30.0
    sessions: int = 8
    idle_seconds: float = 5.0
    messages_per_session: int = 100

    def __post_init__(self) -> None:
        sender_address(self.sender)
        if self.sessions < 1 or self.messages_per_session < 1 or self.idle_seconds < 0:
            raise ValueError(f"invalid SMTP session limits: sessions {self.sessions}, messages_per_session "
                             f"{self.messages_per_session}, idle_seconds {self.idle_seconds}; expected at least 1, "
                             "1 and 0")


QUIT_TIMEOUT_S: Final = 2.0
"""How long closing a session waits for the server's answer to QUIT."""


@dataclass(slots=True)
class _Session:
    client: aiosmtplib.SMTP
    used_at: float
    messages: int = 0


class SmtpChannel:
    """Sends each message as its own SMTP transaction (MAIL, RCPT, DATA) on one of a few sessions kept open
    while messages are being sent, so a batch pays for connecting, EHLO, STARTTLS and login once per session,
    not per message; when the last message in flight is done, the sessions are closed (QUIT). A connection
    refused, a timeout or a 4xx reply is ``Transient``, a 5xx reply ``Terminal``; a session that saw any
    failure is closed, never reused."""

    def __init__(self, settings: SmtpSettings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots = asyncio.Semaphore(settings.sessions)
        self._idle: list[_Session] = []
        self._in_flight = 0

    async def send(self, message: Message) -> Receipt:
        """Hand ``message`` to the SMTP server; the receipt's id is the ``Message-ID``."""
        settings = self.settings
        mail = build_email(message, settings.sender, self.clock.now_ms())
        self._same_loop()
        self._in_flight += 1
        try:
            return await self._send(mail, message.to)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                await self._close_idle()

    async def _send(self, mail: EmailMessage, to: str) -> Receipt:
        settings = self.settings
        async with self._slots:
            session: _Session | None = None
            reply: str | None = None
            try:
                session = self._reusable() or await self._open()
                # Bytes, not the message object: aiosmtplib would serialise it again with its own policy.
                _, reply = await session.client.sendmail(sender_address(settings.sender), [to], mail.as_bytes(),
                                                         timeout=settings.timeout)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                # One recipient per message, so the first refusal is the refusal.
                refused = exc.recipients[0] if exc.recipients else None
                raise (smtp_error(refused.code, refused.message) if refused
                       else Terminal("smtp refused every recipient")) from exc
            except aiosmtplib.SMTPResponseException as exc:
                raise smtp_error(exc.code, exc.message) from exc
            except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError, aiosmtplib.SMTPTimeoutError,
                    OSError) as exc:
                raise transport_error("smtp", exc) from exc
            except aiosmtplib.SMTPException as exc:
                # What is left is local or capability trouble (e.g. STARTTLS required but not offered).
                raise Terminal(f"smtp permanent failure {type(exc).__name__}: {exc.message}") from exc
            finally:
                if session is not None:
                    self._release(session, failed=reply is None)
        return Receipt(str(mail["Message-ID"]), self.clock.now_ms(), reply)

    def _same_loop(self) -> None:
        """Forget sessions opened on another event loop (they cannot be used from this one)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            for stale in self._idle:
                stale.client.close()
            self._loop, self._idle = loop, []
            self._slots = asyncio.Semaphore(self.settings.sessions)

    async def _close_idle(self) -> None:
        idle, self._idle = self._idle, []
        for session in idle:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                await session.client.quit(timeout=min(self.settings.timeout, QUIT_TIMEOUT_S))
            session.client.close()

    def _reusable(self) -> _Session | None:
        now = time.monotonic()
        while self._idle:
            session = self._idle.pop()
            if session.client.is_connected and now - session.used_at <= self.settings.idle_seconds:
                return session
            session.client.close()
        return None

    async def _open(self) -> _Session:
        settings = self.settings
        client = aiosmtplib.SMTP(hostname=settings.host, port=settings.port, username=settings.username,
                                 password=settings.password, start_tls=settings.starttls, timeout=settings.timeout)
        await client.connect()
        return _Session(client, time.monotonic())

    def _release(self, session: _Session, *, failed: bool) -> None:
        session.messages += 1
        session.used_at = time.monotonic()
        if failed or session.messages >= self.settings.messages_per_session or not session.client.is_connected:
            session.client.close()
        else:
            self._idle.append(session)

