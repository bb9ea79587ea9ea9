"""Email feedback coming back: the open pixel, tracked-link redirects, SES and SendGrid webhooks, and the
suppressions they leave.

Opens and clicks (``/t/o/{token}``, ``/t/c/{token}``) are analytics: they touch the person's timeline only
when the person allows the ``analytics`` purpose at that moment, and then they are counted per message
(``email_engagement``). The first open of a message adds one ``Email Opened`` event and the first click on
each link one ``Email Link Clicked``; later ones only raise the count, so a mail client that reloads
images, or a security scanner that follows every link, does not flood the timeline. Without consent nothing
is stored, not even a count. The pixel answers the same GIF whatever happens, so a forged token learns
nothing; a click with a forged token is refused (400), never redirected.

Provider webhooks (``/v1/feedback/ses``, ``/v1/feedback/sendgrid``) authenticate with an admin token as HTTP
Basic user (``feedback_principal``). Each item is matched to the send it is about (the provider's id or the
``Message-ID``), else to the profile holding the address. Hard bounces and complaints become suppressions of
the address on the channel; every item also becomes an event on the person's timeline (``Email Delivered``,
``Email Bounced``, ``Email Complained``, ``Email Unsubscribed``; provider-reported opens and clicks follow the
consent rule above). A provider unsubscribe withdraws the channel's consent purpose. These delivery facts serve
the ``necessary`` purpose (honouring bounces, complaints and unsubscribes, and knowing what reached the
person), so they are stored whatever the person's analytics choice. Event ids derive from the item, so a
notification delivered twice is stored once. Addresses in provider explanations are masked before they are
stored.

A suppression names its address by ``address_hash`` (``rapport.channels.feedback``): a keyed hash, the
workspace's blind index of the normalized address, never the address nor a plain hash of it. Suppressions
outlive the erasure of their person, and without the workspace key their hash cannot be matched to an address.
They are listed at ``GET /api/v1/profiles/{id}/suppressions`` (the hash as ``address_hash``) and lifted,
audited, with ``DELETE /api/v1/profiles/{id}/suppressions/{channel}/{reason}`` (one address with
``?address_hash=`` as listed).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

import httpx
import orjson
from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from rapport.api.admin import admin_principal
from rapport.api.body import parse_json, read_limited
from rapport.api.json import json_response
from rapport.api.tracking import write_key_from
from rapport.channels import tracking
from rapport.channels.feedback import Feedback, address_hash, parse_sendgrid, parse_ses, sns_subscribe_url
from rapport.clock import to_iso
from rapport.consent import service as consent_service
from rapport.consent.decide import latest_entry, may_use
from rapport.core import Rapport
from rapport.errors import ForbiddenError, NotFoundError, Transient, ValidationError
from rapport.journeys.feed import journey_hears
from rapport.profiles.service import ProfileReader
from rapport.storage.base import Conn, Row
from rapport.storage.sql import consent as consent_sql
from rapport.storage.sql import events as events_sql
from rapport.storage.sql import feedback as feedback_sql
from rapport.storage.sql import identity as identity_sql
from rapport.storage.sql import journeys as journeys_sql
from rapport.storage.sql import workspaces as ws_sql
from rapport.types import Json, JsonObject, Millis, WorkspaceId
from rapport.workspaces.model import Principal
from rapport.workspaces.runtime import WorkspaceRuntime

log = logging.getLogger("rapport.feedback")

OPENED: Final = "Email Opened"
CLICKED: Final = "Email Link Clicked"
DELIVERED: Final = "Email Delivered"
BOUNCED: Final = "Email Bounced"
COMPLAINED: Final = "Email Complained"
UNSUBSCRIBED: Final = "Email Unsubscribed"
ANALYTICS: Final = "analytics"
"""The purpose opens and clicks serve."""
DEFAULT_CHANNEL: Final = "email"
"""The channel of feedback that matches no send (it comes from an email provider)."""
SUPPRESSION_REASONS: Final = ("hard_bounce", "complaint")
MAX_FEEDBACK_BYTES: Final = 4 * 1024 * 1024
"""SendGrid posts up to thousands of events at once; an SES notification is a few kilobytes."""
GIF: Final = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
"""A transparent 1x1 GIF."""
NO_STORE: Final = {"Cache-Control": "no-store, no-cache, must-revalidate, max-age=0", "Pragma": "no-cache",
                   "Expires": "0", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"}
"""Every open must reach the server (no caching), and the token must not leak to the link's target."""
SNS_HOST: Final = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
_ADDRESS: Final = re.compile(r"[^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:]+")
_HASH: Final = re.compile(r"[0-9a-f]{64}")

SubscriptionConfirmer = Callable[[str], Awaitable[None]]
"""Visits an SNS ``SubscribeURL`` (already checked to be an https URL of an SNS host)."""


async def confirm_sns_subscription(url: str) -> None:
    """Confirm an SNS subscription by fetching its ``SubscribeURL``; ``Transient`` when SNS does not answer."""
    try:
        async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as client:
            response = await client.get(url)
    except httpx.HTTPError as exc:
        raise Transient(f"could not reach SNS to confirm the subscription: {type(exc).__name__}",
                        code="sns_unreachable") from exc
    if response.status_code >= 300:
        raise Transient(f"SNS answered {response.status_code} to the subscription confirmation",
                        code="sns_refused")


def mask_addresses(text: str) -> str:
    """``text`` with every email address replaced by ``<address>`` (diagnostic codes often quote it)."""
    return _ADDRESS.sub("<address>", text)[:1000]


@dataclass(frozen=True, slots=True)
class SentMessage:
    """The send-log row a feedback item or a tracking token is about."""

    key: str
    journey: str
    step_id: str
    channel: str
    profile_id: str

    @classmethod
    def from_row(cls, row: Row) -> SentMessage:
        """From a row of ``SEND_COLUMNS`` (``rapport.storage.sql.journeys``)."""
        return cls(str(row[1]), str(row[3]), str(row[5]), str(row[7]), str(row[10]))

    def properties(self) -> dict[str, Json]:
        return {"journey": self.journey, "step": self.step_id, "channel": self.channel}


@dataclass(frozen=True, slots=True)
class FeedbackReport:
    """What one webhook call did."""

    received: int = 0
    matched: int = 0
    """Items matched to a send or to a profile."""
    suppressed: int = 0
    """New suppressions."""
    events: int = 0

    def to_json(self) -> JsonObject:
        return {"success": True, "received": self.received, "matched": self.matched, "suppressed": self.suppressed,
                "events": self.events}


class FeedbackWriter:
    """Feedback of one request in one write transaction of one workspace."""

    def __init__(self, conn: Conn, rt: WorkspaceRuntime, rapport: Rapport) -> None:
        self.conn, self.rt, self.rapport = conn, rt, rapport
        self.now = rapport.clock.now_ms()
        self._reader = ProfileReader(conn, rt, rapport.keyring)

    def send(self, key: str) -> SentMessage | None:
        row = feedback_sql.send_by_key(self.conn, self.rt.id, key)
        return None if row is None else SentMessage.from_row(row)

    def analytics_allowed(self, profile_id: str, at: Millis) -> bool:
        """Whether the person allows ``analytics`` at ``at`` (a catalog without the purpose allows nothing)."""
        if ANALYTICS not in self.rt.catalog:
            return False
        entries = [consent_sql.ledger_entry(r) for r in consent_sql.entries(self.conn, self.rt.id, [profile_id])]
        return may_use(entries, self.rt.catalog.get(ANALYTICS), at).allowed

    def engagement(self, sent: SentMessage, kind: tracking.TrackingKind, url: str | None, at: Millis) -> bool:
        """Count an open (``url`` ``None``) or a click of ``sent`` if the person allows analytics; whether it
        added an event (only the first of its kind and link does)."""
        pid = identity_sql.live_root(self.conn, self.rt.id, sent.profile_id)
        if pid is None or not self.analytics_allowed(pid, at):
            return False
        target = "" if url is None else tracking.url_hash(url)
        stored = "open" if kind == tracking.OPEN else "click"
        count = feedback_sql.count_engagement(self.conn, self.rt.id, (sent.key, stored, target, url, pid, at))
        if count > 1:
            return False
        name, props = (OPENED, sent.properties()) if url is None else (CLICKED, {"url": url, **sent.properties()})
        message_id = f"{events_sql.INTERNAL_PREFIX}email:{stored}:{sent.key}" + (f":{target[:32]}" if target else "")
        return self.event(pid, sent.profile_id, name, message_id, at, props)

    def event(self, profile_id: str, origin: str, name: str, message_id: str, at: Millis,
              properties: dict[str, Json]) -> bool:
        """Store one track event on the profile's timeline (once per ``message_id``); whether it is new."""
        rt = self.rt
        body = {"type": "track", "event": name, "messageId": message_id, "timestamp": to_iso(at),
                "receivedAt": to_iso(self.now), "properties": properties}
        row = (rt.id, message_id, message_id, profile_id, origin, "track", name, None, None, at, self.now, 0, 0,
               orjson.dumps(body).decode())
        seqs = events_sql.insert_events(self.conn, [row])
        if message_id in seqs and rt.journeys and journey_hears(rt, "track", name):
            journeys_sql.enqueue(self.conn, rt.id, [seqs[message_id]])
        return message_id in seqs

    def match(self, item: Feedback, source: str) -> SentMessage | None:
        """The send ``item`` is about: by the provider's id, by SendGrid's id without its ``.filter...`` suffix
        (the ``X-Message-Id`` its send API returned), or by the ``Message-ID`` (the SMTP channel's receipt id)."""
        candidates: list[str] = []
        if item.provider_message_id:
            candidates.append(item.provider_message_id)
            if source == "sendgrid":
                candidates.append(item.provider_message_id.split(".filter", 1)[0])
        if item.message_id:
            candidates.append(item.message_id)
        for candidate in dict.fromkeys(candidates):
            row = feedback_sql.send_by_provider_id(self.conn, self.rt.id, candidate)
            if row is not None:
                return SentMessage.from_row(row)
        return None

    def person(self, address: str) -> str | None:
        """The live profile holding ``address`` as its email identifier."""
        try:
            return self._reader.find("email", address)
        except (NotFoundError, ValidationError):
            return None

    def apply(self, items: Sequence[Feedback], source: str, actor: str) -> FeedbackReport:
        """Store suppressions and events for ``items`` from provider ``source``."""
        matched = suppressed = events = 0
        for item in items:
            sent = self.match(item, source)
            if item.kind in ("opened", "clicked"):
                url = item.reason.strip() if item.kind == "clicked" else None
                if sent is not None and (url is None or tracking.is_web_url(url)):
                    matched += 1
                    kind = tracking.OPEN if url is None else tracking.CLICK
                    events += self.engagement(sent, kind, url, item.at)
                continue
            pid = identity_sql.live_root(self.conn, self.rt.id, sent.profile_id) if sent else self.person(item.address)
            matched += pid is not None
            channel = sent.channel if sent is not None else DEFAULT_CHANNEL
            hashed = address_hash(self.rapport.keyring, self.rt.id, self.rt.wrapped_key, item.address)
            detail = mask_addresses(item.reason)
            reason = {"bounced_hard": "hard_bounce", "complained": "complaint"}.get(item.kind)
            if reason is not None:
                suppressed += feedback_sql.store_suppression(
                    self.conn, self.rt.id, (pid, channel, hashed, reason, source, detail, item.at))
            if item.kind == "unsubscribed" and pid is not None:
                self.withdraw(pid, channel, source, actor)
            if pid is None:
                continue
            name, props = _feedback_event(item, source, detail)
            if sent is not None:
                props.update(sent.properties())
            digest = hashlib.sha256("\x1f".join((source, item.kind, item.provider_message_id or "",
                                                 item.message_id or "", hashed, str(item.at))).encode()).hexdigest()
            message_id = f"{events_sql.INTERNAL_PREFIX}email:{item.kind}:{digest[:32]}"
            events += self.event(pid, sent.profile_id if sent else pid, name, message_id, item.at, props)
        return FeedbackReport(len(items), matched, suppressed, events)

    def withdraw(self, profile_id: str, channel: str, source: str, actor: str) -> None:
        """Withdraw the consent purposes of ``channel`` the person has not already withdrawn or denied."""
        entries = [consent_sql.ledger_entry(r) for r in consent_sql.entries(self.conn, self.rt.id, [profile_id])]
        for purpose in self.rt.catalog.for_channel(channel):
            latest = latest_entry(entries, purpose.name, self.now)
            if latest is not None and latest.state in ("denied", "withdrawn"):
                continue
            consent_service.record(self.conn, self.rt, self.rapport.keyring, self.rapport.clock, {
                "profile_id": profile_id, "purpose": purpose.name, "state": "withdrawn",
                "source": f"{source}_unsubscribe"}, actor)


def _feedback_event(item: Feedback, source: str, detail: str) -> tuple[str, dict[str, Json]]:
    props: dict[str, Json] = {"provider": source}
    if detail:
        props["reason"] = detail
    if item.kind in ("bounced_hard", "bounced_soft"):
        props["bounce_type"] = "hard" if item.kind == "bounced_hard" else "soft"
        return BOUNCED, props
    name = {"delivered": DELIVERED, "complained": COMPLAINED, "unsubscribed": UNSUBSCRIBED}[item.kind]
    return name, props


def _suppression_json(row: Row) -> JsonObject:
    _root, _pid, channel, hashed, reason, source, detail, recorded_at = row
    return {"channel": channel, "reason": reason, "address_hash": hashed, "source": source, "detail": detail,
            "recorded_at": to_iso(int(recorded_at))}


def feedback_principal(rapport: Rapport, secret: str) -> Principal:
    """Who posts provider feedback: an admin token allowed to change consent, given as the HTTP Basic user name
    (providers put it in the webhook URL, ``https://TOKEN@host/v1/feedback/ses``). A write key is refused: it
    ships inside web pages and apps, and feedback suppresses addresses and withdraws consent."""
    principal = rapport.authenticate(secret)
    if principal.kind != "admin_token":
        raise ForbiddenError("feedback webhooks need an admin token with the 'consent:write' permission as the Basic "
                             "user name; a write key is public and cannot suppress or unsubscribe people",
                             code="wrong_credential_kind")
    if not principal.can("consent:write"):
        raise ForbiddenError(f"role {principal.role!r} lacks the 'consent:write' permission", code="forbidden",
                             details=[{"required": "consent:write", "role": principal.role}])
    return principal


def router(rapport: Rapport, *, confirm_subscription: SubscriptionConfirmer | None = None) -> APIRouter:
    """The tracking-pixel, click-redirect, feedback-webhook and suppression routes.

    ``confirm_subscription`` visits an SNS ``SubscribeURL``; tests pass one that records the URL instead.
    """
    api = APIRouter(tags=["feedback"])

    def key_for(ws: WorkspaceId) -> bytes | None:
        try:
            return tracking.tracking_key(rapport.keyring, rapport.runtime(ws))
        except NotFoundError:
            return None

    def record(claims: tracking.TrackingClaims) -> bool:
        rt = rapport.runtime(claims.workspace_id)

        def job(conn: Conn) -> bool:
            writer = FeedbackWriter(conn, rt, rapport)
            sent = writer.send(claims.send_key)
            return sent is not None and writer.engagement(sent, claims.kind, claims.url, writer.now)
        return rapport.db.write(job)

    @api.get("/t/o/{token}", tags=["feedback"])
    async def opened(token: str) -> Response:
        """The open pixel: a transparent 1x1 GIF, always; counts the open when the token is authentic."""
        try:
            claims = tracking.verify(token, tracking.OPEN, key_for)
        except tracking.TrackingError:
            return Response(GIF, media_type="image/gif", headers=NO_STORE)
        try:
            await run_in_threadpool(record, claims)
        except Exception:
            # The image must load whatever happens; the failure is logged for the operator.
            log.exception("recording an email open failed")
        return Response(GIF, media_type="image/gif", headers=NO_STORE)

    @api.get("/t/c/{token}", tags=["feedback"])
    async def clicked(token: str) -> Response:
        """A tracked link: 302 to the URL the token signs; counts the click. A forged token is a 400."""
        claims = tracking.verify(token, tracking.CLICK, key_for)
        if claims.url is None:
            raise tracking.TrackingError("the tracking token carries no link")
        try:
            await run_in_threadpool(record, claims)
        except Exception:
            # The person still reaches the page; the failure is logged for the operator.
            log.exception("recording an email click failed")
        return RedirectResponse(claims.url, status_code=302, headers=NO_STORE)

    async def webhook(request: Request, source: str, parse: Callable[[Json], list[Feedback]]) -> Response:
        payload = parse_json(await read_limited(request, MAX_FEEDBACK_BYTES))
        principal = feedback_principal(rapport, write_key_from(request, payload))
        if source == "ses" and isinstance(payload, dict) and payload.get("Type") == "SubscriptionConfirmation":
            url = sns_subscribe_url(payload)
            host = httpx.URL(url).host if url else ""
            if url is None or not SNS_HOST.match(host):
                raise ValidationError("the SNS SubscriptionConfirmation has no https SubscribeURL on an SNS host "
                                      "(sns.<region>.amazonaws.com)", code="invalid_subscribe_url")
            await (confirm_subscription or confirm_sns_subscription)(url)
            return json_response({"success": True, "subscription": "confirmed"})
        items = parse(payload)
        rt = rapport.runtime(principal.workspace_id)

        def job(conn: Conn) -> FeedbackReport:
            return FeedbackWriter(conn, rt, rapport).apply(items, source, principal.actor)
        report = await run_in_threadpool(rapport.db.write, job) if items else FeedbackReport()
        return json_response(report.to_json())

    @api.post("/v1/feedback/ses")
    async def ses(request: Request) -> Response:
        """Amazon SES notifications through an SNS HTTPS subscription (or unwrapped); confirms subscriptions."""
        return await webhook(request, "ses", parse_ses)

    @api.post("/v1/feedback/sendgrid")
    async def sendgrid(request: Request) -> Response:
        """SendGrid's event webhook: a JSON array of events."""
        return await webhook(request, "sendgrid", parse_sendgrid)

    def live(conn: Conn, ws: str, profile_id: str) -> str:
        root = identity_sql.live_root(conn, ws, profile_id)
        if root is None:
            raise NotFoundError(f"no profile {profile_id!r}", code="profile_not_found")
        return root

    @api.get("/api/v1/profiles/{profile_id}/suppressions", tags=["admin"])
    def suppressions(profile_id: str, request: Request) -> Response:
        """The profile's hard-bounce and complaint suppressions (those of profiles merged into it included), each
        naming its address by ``address_hash``: a keyed hash (the workspace's blind index of the normalized
        address), not the address nor its plain SHA-256."""
        who = admin_principal(rapport, request, "profiles:read")

        def fn(conn: Conn) -> JsonObject:
            pid = live(conn, who.workspace_id, profile_id)
            rows = feedback_sql.suppression_rows(conn, who.workspace_id, [pid])
            return {"profile_id": pid, "suppressions": [_suppression_json(r) for r in rows]}
        return json_response(rapport.db.read(fn))

    @api.delete("/api/v1/profiles/{profile_id}/suppressions/{channel}/{reason}", tags=["admin"])
    async def lift(profile_id: str, channel: str, reason: str, request: Request,
                   hashed: str | None = Query(None, alias="address_hash", description=(
                       "Lift only the suppression of this address: its keyed hash (the workspace's blind index of "
                       "the normalized address) as the suppression list shows it"))) -> Response:
        """Lift the profile's ``reason`` suppression on ``channel`` (of one address with ``?address_hash=``, the
        keyed hash the suppression list shows), e.g. after the person fixed their mailbox; audited. Needs the
        ``consent:write`` permission (roles admin and marketer): lifting one lets messages reach the person
        again."""
        who = admin_principal(rapport, request, "consent:write")
        if reason not in SUPPRESSION_REASONS:
            raise ValidationError(f"unknown suppression reason {reason!r}; expected one of "
                                  f"{', '.join(map(repr, SUPPRESSION_REASONS))}", code="invalid_suppression")
        if hashed is not None and not _HASH.fullmatch(hashed):
            raise ValidationError(f"invalid address_hash {hashed[:80]!r}: expected the 64 lower-case hex digits "
                                  "of a suppression's address_hash, as the suppression list shows it",
                                  code="invalid_address_hash")
        ws = who.workspace_id

        def job(conn: Conn) -> JsonObject:
            pid = live(conn, ws, profile_id)
            held = sorted({str(r[1]) for r in feedback_sql.suppression_rows(conn, ws, [pid]) if r[1] is not None})
            removed = feedback_sql.delete_suppressions(conn, ws, held, channel, reason, hashed)
            if not removed:
                raise NotFoundError(f"profile {pid!r} has no {reason!r} suppression on channel {channel!r}"
                                    + (f" for address hash {hashed!r}" if hashed else ""),
                                    code="suppression_not_found")
            hashes = sorted({str(r[2]) for r in removed})
            now = rapport.clock.now_ms()
            ws_sql.audit(conn, ws, who.actor, "suppression.delete", pid,
                         {"channel": channel, "reason": reason, "address_hashes": hashes}, now)
            return {"profile_id": pid, "channel": channel, "reason": reason, "deleted": len(removed),
                    "address_hashes": hashes}
        return json_response(await run_in_threadpool(rapport.db.write, job))

    return api

