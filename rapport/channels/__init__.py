"""Channels: the adapters that hand a rendered message to an SMTP server, a webhook receiver, or an SMS
or push provider, behind one ``Channel`` protocol; and the parsers for the feedback providers send back."""

from __future__ import annotations

from rapport.channels.base import Channel, Message, Receipt, channel_from_spec
from rapport.channels.feedback import Feedback, parse_sendgrid, parse_ses
from rapport.channels.memory import MemoryChannel

__all__ = ["Channel", "Feedback", "MemoryChannel", "Message", "Receipt", "channel_from_spec", "parse_sendgrid",
           "parse_ses"]
