"""Journeys driven end to end in the running server, for the tests that need a whole workspace: resource text
they share and a harness that identifies people, records their consent, sends their events through the
tracking API, runs the worker's passes and reads what went out; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import email
from collections.abc import Sequence
from email.message import Message as MimeMessage
from typing import Any

import httpx
from api.support import ApiClient, admin, apply_yaml, profile_of, track
from channels.support import HttpServer, SmtpServer

from rapport.api.app import journey_engines, run_journeys, run_segments
from rapport.channels.memory import MemoryChannel
from rapport.clock import FrozenClock, to_iso
from rapport.core import NewWorkspace, Rapport
from rapport.demo.run import resource_text
from rapport.journeys import service as journeys_service
from rapport.storage.sql import inbox as inbox_sql
from rapport.storage.sql import journeys as journeys_sql
from rapport.types import DAY, HOUR, MINUTE, WorkspaceId

MARKETING = ("analytics", "marketing_email")
"""The purposes a person grants in these tests unless told otherwise: analytics (so their events keep their
properties rather than being stored minimized) and marketing email (what the journeys' messages need)."""
ANALYTICS_ONLY = ("analytics",)
"""A person who allows analytics but no marketing: enrolled in no marketing journey."""
EVERY_PURPOSE = ("analytics", "personalization", "marketing_email", "marketing_push", "marketing_sms",
                 "marketing_offline")
"""Every purpose of the demo's catalog: a person who lets each touch of the timing matrix reach them."""
MATRIX_OFFSETS = {"inbox": 0, "email": 15 * MINUTE, "push": HOUR, "sms": DAY, "store_follow_up": 3 * DAY}
"""The demo's timing matrix: each channel's touch, counted from the entry event."""
PROVIDER_TOKENS = {"RAPPORT_PUSH_TOKEN": "push-secret", "RAPPORT_SMS_TOKEN": "sms-secret"}
"""The environment naming the push and SMS providers' credentials, as the demo's channels read them."""
PUSH_PATH = "/v1/projects/demo-shop/messages:send"
"""Where the demo's push channel posts, below its provider's URL."""


def documents(*texts: str) -> str:
    """One YAML stream of the resource documents ``texts``."""
    return "\n---\n".join(text.strip("\n") for text in texts) + "\n"


def email_channel(port: int = 2525) -> str:
    """The SMTP channel ``email`` of the workspace, to a server on loopback at ``port``."""
    return f"""
kind: Channel
name: email
type: smtp
host: 127.0.0.1
port: {port}
from: "Shop <hello@shop.example>"
"""


ONBOARDING = """
kind: Template
name: tips
channel: email
subject: "Three tips"
text: "Tip one."
---
kind: Journey
name: onboarding
purpose: marketing_email
entry: {event: Signed Up}
steps:
  - send: {channel: email, template: welcome}
  - delay: 1d
  - send: {channel: email, template: tips}
"""
"""A welcome on signing up and the tips a day later (the workspace defines the template ``welcome``)."""


class World:
    """One workspace of the running server, driven as its users and its worker would drive it."""

    def __init__(self, rapport: Rapport, client: ApiClient, ws: NewWorkspace,
                 engines: journeys_service.Engines | None = None) -> None:
        self.rapport, self.client, self.ws = rapport, client, ws
        self.id = WorkspaceId(ws.workspace_id)
        assert isinstance(rapport.clock, FrozenClock)
        self.clock: FrozenClock = rapport.clock
        self.engines = engines if engines is not None else journey_engines(rapport)

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """An admin route, with the workspace's admin token (or ``token=``)."""
        return admin(self.client, self.ws, method, path, **kwargs)

    def apply(self, text: str) -> None:
        response = apply_yaml(self.client, self.ws, text)
        assert response.status_code == 200, response.text
        self.rapport.invalidate(self.id)

    def refused(self, text: str) -> list[dict[str, Any]]:
        """The details of apply's refusal of ``text``, which must be refused as invalid resources."""
        response = apply_yaml(self.client, self.ws, text)
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["code"] == "invalid_resource", body
        return list(body["details"])

    def identify(self, user_id: str, **traits: Any) -> None:
        response = track(self.client, self.ws, "/v1/identify", {"userId": user_id, "traits": traits})
        assert response.status_code == 200, response.text

    def consent(self, user_id: str, purposes: Sequence[str], state: str = "granted", since: int | None = None) -> None:
        """Record the person's choice for each of ``purposes``, in effect from ``since`` (default: now)."""
        for purpose in purposes:
            body: dict[str, Any] = {"identifiers": {"user_id": user_id}, "purpose": purpose, "state": state,
                                    "source": "signup"}
            if since is not None:
                body["effective_at"] = to_iso(since)
            response = self.call("POST", "/api/v1/consent", json=body)
            assert response.status_code in (200, 201), response.text

    def person(self, user_id: str, purposes: Sequence[str] = MARKETING, since: int | None = None,
               **traits: Any) -> str:
        """Identify a person with ``traits`` who grants ``purposes``; returns their profile id."""
        self.identify(user_id, **traits)
        self.consent(user_id, purposes, since=since)
        return self.profile_id(user_id)

    def profile_id(self, user_id: str) -> str:
        pid: str = profile_of(self.client, self.ws, user_id=user_id)["id"]
        return pid

    def event(self, user_id: str, name: str, ago: int | None = None, **properties: Any) -> None:
        """A track event of the person, happened ``ago`` ms before now (default: sent now, stamped on arrival)."""
        body: dict[str, Any] = {"userId": user_id, "event": name, "properties": properties}
        if ago is not None:
            body["timestamp"] = to_iso(self.clock.now_ms() - ago)
        response = track(self.client, self.ws, "/v1/track", body)
        assert response.status_code == 200, response.text

    def work(self) -> None:
        """One background pass as the worker runs it: segments first (their changes queue events), then journeys."""
        self.rapport.invalidate(self.id)
        run_segments(self.rapport)
        asyncio.run(run_journeys(self.rapport, self.engines))

    def sends(self, profile_id: str | None = None) -> list[tuple[Any, ...]]:
        """The send log of the workspace (of one person with ``profile_id``)."""
        return self.rapport.db.read(lambda c: journeys_sql.sends_of(c, self.ws.workspace_id, profile_id=profile_id))

    def outcomes(self, profile_id: str) -> list[tuple[str, str, str | None, str]]:
        """(journey/step, status, reason, detail) of the person's messages, by journey and step."""
        return sorted((f"{r[3]}/{r[5]}", str(r[11]), r[12], str(r[13])) for r in self.sends(profile_id))


class SmtpWorld(World):
    """A workspace whose email goes to a real SMTP server on loopback."""

    def __init__(self, rapport: Rapport, client: ApiClient, ws: NewWorkspace, smtp: SmtpServer,
                 engines: journeys_service.Engines | None = None) -> None:
        super().__init__(rapport, client, ws, engines)
        self.smtp = smtp

    def mail(self) -> list[MimeMessage]:
        """Every message the SMTP server received, in order."""
        return [email.message_from_bytes(r.content) for r in self.smtp.handler.received]


def demo_resources(smtp: SmtpServer, push: HttpServer, sms: HttpServer) -> str:
    """The packaged demo resources (their timing matrix journey) with their peers moved to the test's loopback
    servers (the ``smtp``, ``push`` and ``sms`` fixtures)."""
    text = resource_text()
    for old, new in (("port: 2525", f"port: {smtp.port}"),
                     ("url: https://fcm.googleapis.com/v1/projects/demo-shop/messages:send",
                      f"url: {push.url}{PUSH_PATH}"),
                     ("url: https://api.twilio.com/2010-04-01", f"url: {sms.url}/2010-04-01")):
        assert old in text, old
        text = text.replace(old, new)
    return text


class TimingMatrixWorld(SmtpWorld):
    """A workspace running the demo's timing matrix (apply ``demo_resources``): email to a real SMTP server,
    push and SMS to recording providers, with the provider credentials of ``environ``."""

    def __init__(self, rapport: Rapport, client: ApiClient, ws: NewWorkspace, smtp: SmtpServer, push: HttpServer,
                 sms: HttpServer, environ: dict[str, str]) -> None:
        delivery = journeys_service.Delivery(rapport.settings.base_url, environ)
        engines = journeys_service.Engines(rapport.db, rapport.keyring, rapport.clock, delivery)
        super().__init__(rapport, client, ws, smtp, engines)
        self.push, self.sms = push, sms

    def view(self, user_id: str, product_name: str = "Linen shirt", **properties: Any) -> None:
        """The person views a product: the matrix's entry event."""
        self.event(user_id, "Product Viewed", product_id="p-42", product_name=product_name, price=49.0,
                   currency="EUR", **properties)

    def log(self, profile_id: str) -> dict[str, tuple[str, str | None, str | None, int | None]]:
        """Per channel of the timing matrix: (status, reason, detail, sent_at) of the person's send."""
        return {str(r[7]): (str(r[11]), r[12], r[13], None if r[17] is None else int(r[17]))
                for r in self.sends(profile_id) if r[3] == "timing_matrix"}

    def delivered(self, profile_id: str) -> dict[str, int]:
        """How many messages each channel's peer (or store) holds: the person's in-app messages and offline
        tasks; every email, push and SMS the servers received."""
        ws = self.ws.workspace_id
        inbox = self.rapport.db.read(lambda c: inbox_sql.messages(c, ws, [profile_id], 100))
        tasks = self.rapport.db.read(lambda c: inbox_sql.tasks(c, ws, "store_follow_up", open_only=False,
                                                                  limit=100))
        return {"inbox": len(inbox), "email": len(self.smtp.handler.received), "push": len(self.push.requests),
                "sms": len(self.sms.requests), "store_follow_up": sum(1 for t in tasks if t[2] == profile_id)}


class MemoryWorld(World):
    """A workspace whose channel ``email`` is an in-memory one, worked on alone: the module's database holds
    other tests' workspaces."""

    def __init__(self, rapport: Rapport, client: ApiClient, ws: NewWorkspace) -> None:
        self.email = MemoryChannel(rapport.clock, "email")
        super().__init__(rapport, client, ws, journey_engines(rapport, {"email": self.email}))

    def worker(self) -> journeys_service.Engines:
        """The engines of a second worker, sending through the same in-memory channel."""
        return journey_engines(self.rapport, {"email": self.email})

    def work(self, engines: journeys_service.Engines | None = None) -> None:
        """One background pass over this workspace (of ``engines``, by default the harness's own)."""
        self.rapport.invalidate(self.id)
        run_segments(self.rapport)
        rt = self.rapport.runtime(self.id)
        journeys_service.step_pass(engines or self.engines, rt)
        asyncio.run(journeys_service.dispatch_pass(engines or self.engines, rt))
