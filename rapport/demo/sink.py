"""A local SMTP sink for the demo: accepts every message on loopback and keeps it as an ``.eml`` file, so
what the demo's journeys send can be read without a mail server (``ls .rapport/mail``)."""

from __future__ import annotations

import re
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

DEFAULT_PORT = 2525
"""The port the demo's ``email`` Channel resource points at."""
_UNSAFE = re.compile(r"[^A-Za-z0-9@._-]+")


class MailDir:
    """Writes each accepted message to ``folder`` as ``NNNNNN-<recipient>.eml``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.count = len(list(folder.glob("*.eml")))

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        data = content if isinstance(content, bytes) else content.encode()
        self.count += 1
        who = _UNSAFE.sub("_", ",".join(envelope.rcpt_tos))[:80]
        (self.folder / f"{self.count:06d}-{who}.eml").write_bytes(data)
        return f"250 2.0.0 OK stored as message {self.count}"


def start_sink(folder: Path, port: int = DEFAULT_PORT) -> Controller:
    """Start the sink on 127.0.0.1:``port`` (stop it with ``.stop()``); raises ``OSError`` when the port is
    taken."""
    controller = Controller(MailDir(folder), hostname="127.0.0.1", port=port)
    controller.start()
    return controller
