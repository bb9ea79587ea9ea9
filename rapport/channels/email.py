"""Email over SMTP: a MIME message whose ``Message-ID`` comes from the idempotency key, with RFC 8058
one-click unsubscribe headers, handed to the SMTP server with aiosmtplib."""

from __future__ import annotations

import hashlib
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
    """Where and how to hand mail over; ``starttls`` ``None`` upgrades when the server offers it."""

    host: str
    port: int
    sender: str
    username: str | None = None
    password: Secret | None = None
    starttls: bool | None = None
    timeout: float = 30.0

    def __post_init__(self) -> None:
        sender_address(self.sender)


class SmtpChannel:
    """Sends each message in its own SMTP session: simple and robust for a worker pool; a connection
    refused, a timeout or a 4xx reply is ``Transient``, a 5xx reply ``Terminal``."""

    def __init__(self, settings: SmtpSettings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()

    async def send(self, message: Message) -> Receipt:
        """Hand ``message`` to the SMTP server; the receipt's id is the ``Message-ID``."""
        settings = self.settings
        mail = build_email(message, settings.sender, self.clock.now_ms())
        try:
            # Bytes, not the message object: aiosmtplib would serialise it again with its own policy.
            _, reply = await aiosmtplib.send(
                mail.as_bytes(),
                sender=sender_address(settings.sender),
                recipients=[message.to],
                hostname=settings.host,
                port=settings.port,
                username=settings.username,
                password=settings.password,
                start_tls=settings.starttls,
                timeout=settings.timeout,
            )
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
        return Receipt(str(mail["Message-ID"]), self.clock.now_ms(), reply)

