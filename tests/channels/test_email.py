"""The SMTP channel against a real aiosmtpd server: what arrives, and how refusals are classified."""

from __future__ import annotations

import asyncio
import email
import re
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import default
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from hypothesis import given
from hypothesis import strategies as st

from channels.support import NOW_MS, SMTP_PASSWORD, SMTP_USER, Recorder, SmtpServer, serve_smtp
from rapport.channels.base import Message, Receipt, channel_from_spec
from rapport.channels.email import SmtpChannel, SmtpSettings, build_email, message_id, sender_address
from rapport.clock import FrozenClock
from rapport.errors import Terminal, Transient, ValidationError

SENDER = "Shop <hello@shop.example>"
ALLOW_AUTH_WITHOUT_TLS = pytest.mark.filterwarnings(
    "ignore:Requiring AUTH while not requiring TLS:UserWarning")
"""aiosmtpd warns, in its own thread, on each connection to a server taking AUTH over plain loopback."""


def channel(server: SmtpServer, **settings: object) -> SmtpChannel:
    return SmtpChannel(SmtpSettings(server.host, server.port, SENDER, **settings), FrozenClock(NOW_MS))  # type: ignore[arg-type]


def message(key: str = "enr_1:step_2", **fields: object) -> Message:
    values: dict[str, object] = {"to": "ada@example.com", "subject": "Your cart is waiting",
                                 "text": "Still thinking it over?", **fields}
    return Message(key, **values)  # type: ignore[arg-type]


def parsed(content: bytes) -> EmailMessage:
    mail = email.message_from_bytes(content, policy=default)
    assert isinstance(mail, EmailMessage)
    return mail


def unfolded(header: str) -> str:
    return " ".join(str(header).split())


def test_a_text_email_arrives_with_its_envelope_and_headers(smtp_server: SmtpServer) -> None:
    receipt = asyncio.run(channel(smtp_server).send(message()))
    [received] = smtp_server.handler.received
    assert received.mail_from == "hello@shop.example"
    assert received.rcpt_tos == ["ada@example.com"]
    mail = parsed(received.content)
    assert mail["From"] == SENDER
    assert mail["To"] == "ada@example.com"
    assert mail["Subject"] == "Your cart is waiting"
    assert mail["Date"] == "Mon, 21 Sep 2026 14:13:20 +0000"
    assert mail.get_content_type() == "text/plain"
    assert mail.get_content().strip() == "Still thinking it over?"
    assert "List-Unsubscribe" not in mail
    assert receipt == Receipt(mail["Message-ID"], NOW_MS, "2.0.0 OK queued as Q1")


def test_the_message_id_depends_only_on_the_idempotency_key(smtp_server: SmtpServer) -> None:
    sender = channel(smtp_server)

    async def run() -> list[Receipt]:
        return [await sender.send(message("enr_1:step_2")),
                await sender.send(message("enr_1:step_2", text="a retry renders the same send")),
                await sender.send(message("enr_1:step_3"))]

    first, retry, other = asyncio.run(run())
    ids = [parsed(r.content)["Message-ID"] for r in smtp_server.handler.received]
    assert ids[0] == ids[1] == first.provider_id == retry.provider_id
    assert ids[2] == other.provider_id != ids[0]
    assert re.fullmatch(r"<[0-9a-f]{32}@shop\.example>", ids[0])


def test_html_and_text_travel_as_multipart_alternative_text_first(smtp_server: SmtpServer) -> None:
    asyncio.run(channel(smtp_server).send(message(html="<p>Still thinking it <b>over</b>?</p>")))
    mail = parsed(smtp_server.handler.received[0].content)
    assert mail.get_content_type() == "multipart/alternative"
    parts = list(mail.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert parts[1].get_content().strip() == "<p>Still thinking it <b>over</b>?</p>"


def test_html_only_is_a_single_html_part(smtp_server: SmtpServer) -> None:
    asyncio.run(channel(smtp_server).send(message(text=None, html="<p>Hi</p>")))
    mail = parsed(smtp_server.handler.received[0].content)
    assert mail.get_content_type() == "text/html"


def test_one_click_unsubscribe_headers_follow_rfc_8058(smtp_server: SmtpServer) -> None:
    asyncio.run(channel(smtp_server).send(message(
        unsubscribe_url="https://shop.example/u/abc", unsubscribe_mailto="unsubscribe@shop.example")))
    mail = parsed(smtp_server.handler.received[0].content)
    # The header is folded past 78 columns; folding whitespace carries no meaning.
    assert unfolded(mail["List-Unsubscribe"]) == "<https://shop.example/u/abc>, <mailto:unsubscribe@shop.example>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_a_separate_one_click_endpoint_replaces_the_page_in_the_header() -> None:
    mail = build_email(message(unsubscribe_url="https://shop.example/prefs/abc",
                               unsubscribe_post_url="https://shop.example/u/abc/one-click"), SENDER, NOW_MS)
    assert unfolded(mail["List-Unsubscribe"]) == "<https://shop.example/u/abc/one-click>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_mailto_alone_offers_no_one_click_post() -> None:
    mail = build_email(message(unsubscribe_mailto="mailto:unsubscribe@shop.example"), SENDER, NOW_MS)
    assert mail["List-Unsubscribe"] == "<mailto:unsubscribe@shop.example>"
    assert "List-Unsubscribe-Post" not in mail


def test_extra_headers_are_sent_but_cannot_replace_the_channels_own(smtp_server: SmtpServer) -> None:
    asyncio.run(channel(smtp_server).send(message(headers={"X-Campaign": "cart"})))
    assert parsed(smtp_server.handler.received[0].content)["X-Campaign"] == "cart"
    with pytest.raises(Terminal, match="header 'Message-ID' is written by the email channel"):
        build_email(message(headers={"Message-ID": "<forged@x>"}), SENDER, NOW_MS)


@pytest.mark.parametrize(("fields", "problem"), [
    ({"subject": None}, "email needs a subject"),
    ({"text": None}, "email needs a text or html body"),
], ids=["no-subject", "no-body"])
def test_a_message_the_channel_cannot_write_is_terminal(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(Terminal, match=problem):
        build_email(message(**fields), SENDER, NOW_MS)


def test_header_injection_through_the_subject_is_refused() -> None:
    with pytest.raises(ValidationError, match="invalid message subject: it contains a line break"):
        message(subject="Hi\r\nBcc: everyone@example.com")


def test_unknown_user_550_is_terminal_with_the_servers_words(unknown_user_server: SmtpServer) -> None:
    with pytest.raises(Terminal) as caught:
        asyncio.run(channel(unknown_user_server).send(message()))
    assert caught.value.message == (
        "smtp permanent failure 550: 5.1.1 <ada@example.com>: Recipient address rejected: User unknown")
    assert caught.value.details[0]["provider_code"] == "550"
    assert unknown_user_server.handler.received == []


def test_greylisting_451_is_transient(greylist_server: SmtpServer) -> None:
    with pytest.raises(Transient) as caught:
        asyncio.run(channel(greylist_server).send(message()))
    assert caught.value.message == "smtp transient failure 451: 4.7.1 Greylisted, please try again later"


def test_connection_refused_is_transient(closed_port: int) -> None:
    sender = SmtpChannel(SmtpSettings("127.0.0.1", closed_port, SENDER), FrozenClock(NOW_MS))
    with pytest.raises(Transient, match="smtp transient failure"):
        asyncio.run(sender.send(message()))


def test_a_server_that_never_answers_times_out_as_transient(silent_port: int) -> None:
    sender = SmtpChannel(SmtpSettings("127.0.0.1", silent_port, SENDER, timeout=0.2), FrozenClock(NOW_MS))
    with pytest.raises(Transient, match="Timeout"):
        asyncio.run(sender.send(message()))


@ALLOW_AUTH_WITHOUT_TLS
def test_auth_with_the_password_from_the_environment(auth_smtp_server: SmtpServer) -> None:
    spec = {"kind": "Channel", "name": "email", "type": "smtp", "host": auth_smtp_server.host,
            "port": auth_smtp_server.port, "from": SENDER, "password_env": "SMTP_PASSWORD", "timeout": "5s"}
    sender = channel_from_spec(spec, {"SMTP_PASSWORD": SMTP_PASSWORD}, clock=FrozenClock(NOW_MS))
    asyncio.run(sender.send(message()))
    assert len(auth_smtp_server.handler.received) == 1
    assert auth_smtp_server.handler.received[0].mail_from == SMTP_USER


@ALLOW_AUTH_WITHOUT_TLS
def test_a_wrong_password_is_terminal(auth_smtp_server: SmtpServer) -> None:
    sender = channel(auth_smtp_server, username=SMTP_USER, password="wrong")
    with pytest.raises(Terminal, match="smtp permanent failure 535"):
        asyncio.run(sender.send(message()))
    assert auth_smtp_server.handler.received == []


@ALLOW_AUTH_WITHOUT_TLS
def test_a_server_requiring_auth_refuses_an_anonymous_sender(auth_smtp_server: SmtpServer) -> None:
    with pytest.raises(Terminal, match="smtp permanent failure 530"):
        asyncio.run(channel(auth_smtp_server).send(message()))


@pytest.mark.parametrize("sender", ["Shop <hello@shop.example>", "hello@shop.example", '"Shop, Inc" <a@b.example>'])
def test_sender_addresses(sender: str) -> None:
    assert sender_address(sender).endswith(("@shop.example", "@b.example"))


@pytest.mark.parametrize("sender", ["Shop", "<@shop.example>", "hello@", ""])
def test_senders_without_an_address_are_refused(sender: str) -> None:
    with pytest.raises(ValueError, match="has no address"):
        sender_address(sender)


@given(st.text(min_size=1, max_size=80), st.text(min_size=1, max_size=80))
def test_message_ids_are_deterministic_and_collision_free_in_practice(first: str, second: str) -> None:
    assert message_id(first, "shop.example") == message_id(first, "shop.example")
    assert re.fullmatch(r"<[0-9a-f]{32}@shop\.example>", message_id(first, "shop.example"))
    assert (message_id(first, "shop.example") == message_id(second, "shop.example")) == (first == second)


def test_non_ascii_subjects_and_bodies_arrive_intact(smtp_server: SmtpServer) -> None:
    asyncio.run(channel(smtp_server).send(message(subject="Déjà vu ☕, Zoë", text="Grüße aus Köln — 10 % off",
                                                  html="<p>Grüße ✓</p>")))
    mail = parsed(smtp_server.handler.received[0].content)
    assert mail["Subject"] == "Déjà vu ☕, Zoë"
    text, html = mail.iter_parts()
    assert text.get_content().strip() == "Grüße aus Köln — 10 % off"
    assert html.get_content().strip() == "<p>Grüße ✓</p>"
    assert max(len(line) for line in smtp_server.handler.received[0].content.splitlines()) <= 78


def test_requiring_starttls_from_a_server_without_it_is_terminal(smtp_server: SmtpServer) -> None:
    with pytest.raises(Terminal, match=r"smtp permanent failure SMTPException: .*STARTTLS"):
        asyncio.run(channel(smtp_server, starttls=True).send(message()))
    assert smtp_server.handler.received == []


class Sessions(Recorder):
    """Records, besides each message, the connection (client port) it came on; refuses one mailbox."""

    def __init__(self) -> None:
        super().__init__()
        self.peers: list[object] = []

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if address.startswith("gone@"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.peers.append(session.peer)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def sessions_server() -> Iterator[SmtpServer]:
    yield from serve_smtp(Sessions())


def test_a_batch_shares_a_few_sessions_and_closes_them_when_done(sessions_server: SmtpServer) -> None:
    smtp = channel(sessions_server, sessions=3)

    async def batch() -> list[Receipt | BaseException]:
        messages = [message(f"enr_{i}:1", to=f"p{i}@example.com") for i in range(30)]
        messages[7] = message("enr_7:1", to="gone@example.com")
        return await asyncio.gather(*(smtp.send(m) for m in messages), return_exceptions=True)

    results = asyncio.run(batch())
    handler = sessions_server.handler
    assert isinstance(handler, Sessions)
    refused = [r for r in results if not isinstance(r, Receipt)]
    assert len(refused) == 1 and isinstance(refused[0], Terminal) and "User unknown" in str(refused[0])
    assert sorted(r.rcpt_tos[0] for r in handler.received) == sorted(f"p{i}@example.com" for i in range(30) if i != 7)
    # Three sessions at a time; the one that saw the refusal was closed and replaced, so at most four.
    assert 1 < len(set(handler.peers)) <= 4
    assert smtp._idle == [], "no session is left open once nothing is being sent"
    asyncio.run(smtp.send(message("enr_x:1", to="later@example.com")))  # a new event loop opens its own
    assert handler.received[-1].rcpt_tos == ["later@example.com"]


def test_a_session_is_closed_after_its_message_limit(sessions_server: SmtpServer) -> None:
    smtp = channel(sessions_server, sessions=1, messages_per_session=4)

    async def batch() -> None:
        await asyncio.gather(*(smtp.send(message(f"enr_{i}:1", to=f"p{i}@example.com")) for i in range(10)))

    asyncio.run(batch())
    handler = sessions_server.handler
    assert isinstance(handler, Sessions)
    assert [len([p for p in handler.peers if p == peer]) for peer in dict.fromkeys(handler.peers)] == [4, 4, 2]
