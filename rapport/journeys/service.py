"""Journeys in a running workspace: the engine built from the workspace's resources, its hooks into
profiles, consent and the send log, and the worker pass that drives it.

``Engines`` keeps one ``JourneyEngine`` per workspace, rebuilt when the workspace's definitions change;
``run_pass`` feeds queued events to it (``feed.consume``), steps due timers and dispatches due sends.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import partial

import httpx
import orjson

from rapport.channels import tracking
from rapport.channels.base import Channel, Message, Receipt, channel_from_spec
from rapport.channels.inapp import InAppChannel
from rapport.channels.offline import OfflineChannel
from rapport.clock import Clock
from rapport.consent import links, subscriptions
from rapport.consent.decide import may_use
from rapport.errors import Transient, ValidationError
from rapport.experiments.service import split_hook
from rapport.journeys import feed, gate, schedule, suppression, versions
from rapport.journeys.engine import SEND_LEASE_MS, DispatchResult, JourneyEngine, PendingSend, Recipient
from rapport.profiles.service import ProfileReader
from rapport.resources.builtin.channel import MEDIUM
from rapport.segments.service import MembershipWriter, Touched
from rapport.storage.base import Conn, Database
from rapport.storage.sql import consent as consent_sql
from rapport.storage.sql import feedback as feedback_sql
from rapport.storage.sql import identity as identity_sql
from rapport.storage.sql import journeys as journeys_sql
from rapport.storage.sql import profiles as profiles_sql
from rapport.storage.sql import segments as segments_sql
from rapport.storage.sql.events import INTERNAL_PREFIX
from rapport.types import DAY, Json, Millis
from rapport.workspaces.keys import Keyring
from rapport.workspaces.runtime import WorkspaceRuntime

log = logging.getLogger("rapport.journeys")

ADDRESS_TRAITS: Mapping[str, tuple[str, ...]] = {
    "smtp": ("email",),
    "sms": ("phone",),
    "push": ("push_token", "device_token"),
}
"""Per channel type, the identifier (email, phone) or traits that hold a person's address there; the other
types address the profile itself (webhook, in-app inbox, offline lists)."""


class Misconfigured:
    """A channel that cannot be built (a secret's variable is not set): every send is a transient failure
    naming the problem, so messages wait for the fix instead of being lost."""

    def __init__(self, problem: str) -> None:
        self.problem = problem

    async def send(self, message: Message) -> Receipt:
        raise Transient(self.problem)


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where a workspace's messages go: the public base URL of preference and unsubscribe links, the
    environment channel secrets are read from, and channels that replace the configured ones by name (a
    local SMTP sink in the demo, memory channels in tests)."""

    public_url: str
    environ: Mapping[str, str]
    overrides: Mapping[str, Channel] | None = None
    send_lease_ms: Millis = SEND_LEASE_MS


def channel_purposes(rt: WorkspaceRuntime) -> dict[str, str]:
    """Each channel's consent purpose: its own ``purpose:``, else the catalog purpose of its medium."""
    out: dict[str, str] = {}
    for name, spec in rt.channels.items():
        own = spec.get("purpose")
        medium = MEDIUM.get(str(spec.get("type")))
        found = str(own) if own else next((p.name for p in rt.catalog if p.channel == medium), None)
        if found is not None:
            out[name] = found
    return out


def frequency_caps(rt: WorkspaceRuntime) -> tuple[gate.FrequencyCap, ...]:
    """The workspace's ``frequency_caps`` setting as the gate reads it."""
    return tuple(gate.FrequencyCap(c["scope"], int(c["limit"]), int(c.get("period_days", 1)),
                                   c.get("channel"), c.get("tag"))
                 for c in rt.settings.frequency_caps)


def build_channels(db: Database, rt: WorkspaceRuntime, clock: Clock, delivery: Delivery,
                   client: httpx.AsyncClient | None, keyring: Keyring | None) -> dict[str, Channel]:
    """The adapters of the workspace's Channel resources (``delivery.overrides`` win by name); in-app and
    offline channels deliver into ``db``, sealed under each person's data key with ``keyring``."""
    out: dict[str, Channel] = {}
    for name, spec in rt.channels.items():
        override = (delivery.overrides or {}).get(name)
        if override is not None:
            out[name] = override
            continue
        kind = spec.get("type")
        if kind == "inapp":
            out[name] = InAppChannel(db, rt.id, name, clock, keyring)
            continue
        if kind == "offline":
            out[name] = OfflineChannel(db, rt.id, name, clock, keyring)
            continue
        try:
            out[name] = channel_from_spec(spec, delivery.environ, clock=clock, client=client)
        except ValidationError as exc:
            if exc.code != "unsupported_channel":
                log.error("channel %r of workspace %s cannot be built: %s", name, rt.id, exc)
            out[name] = Misconfigured(str(exc))
    for name, channel in (delivery.overrides or {}).items():
        out.setdefault(name, channel)
    return out


def build_engine(db: Database, rt: WorkspaceRuntime, keyring: Keyring, clock: Clock, delivery: Delivery,
                 versions: feed.Versions, client: httpx.AsyncClient | None = None) -> JourneyEngine:
    """The engine of workspace ``rt`` with its hooks: recipients from decrypted profiles, facts from stored
    data, ``update_trait`` into the profile (re-evaluating segments), and the gate's frequency caps and
    arbitration from the send log, its subscription groups from the consent ledger and its suppression rules
    (``rapport.journeys.suppression``)."""
    kinds = {name: str(spec.get("type")) for name, spec in rt.channels.items()}
    purposes = channel_purposes(rt)
    caps = frequency_caps(rt)
    longest = max((c.period_days for c in caps), default=1) + 1

    def recipient(conn: Conn, ws: str, profile_id: str, channel: str, group: str | None) -> Recipient | None:
        kind = kinds.get(channel, channel)
        reader = ProfileReader(conn, rt, keyring)
        traits = reader.traits(profile_id)
        to: str | None = profile_id
        wanted = ADDRESS_TRAITS.get(kind)
        if wanted is not None:
            identifiers = reader.identifiers(profile_id)
            to = next((v for name in wanted for v in [*identifiers.get(name, ()), traits.get(name)]
                       if isinstance(v, str) and v.strip()), None)
        if to is None:
            return None
        now = clock.now_ms()
        segments = tuple(sorted(str(r[1]) for r in segments_sql.current(conn, rt.id, [profile_id])))
        unsubscribe = None
        instrument = None
        purpose = purposes.get(channel)
        if kind == "smtp" and group is not None:  # one click leaves the message's group, not the whole channel
            unsubscribe = subscriptions.unsubscribe_link(delivery.public_url, rt, profile_id, group, now,
                                                         keyring=keyring)
        elif kind == "smtp" and purpose is not None and rt.catalog.get(purpose).needs_consent:
            unsubscribe = links.make_link(delivery.public_url, rt, profile_id, now, keyring=keyring, purpose=purpose)
        if kind == "smtp" and analytics is not None:
            entries = [consent_sql.ledger_entry(r) for r in consent_sql.entries(conn, rt.id, [profile_id])]
            if may_use(entries, analytics, now).allowed:  # no pixel at all for people who did not allow it
                instrument = partial(_instrument, keep=[unsubscribe] if unsubscribe else [])
        return Recipient(to, traits, reader.computed(profile_id, now), segments, unsubscribe, instrument)

    def _instrument(html: str, key: str, *, keep: list[str]) -> str:
        urls = tracking.tracking_urls(delivery.public_url, rt, key, keyring=keyring)
        return tracking.instrument_html(html, urls.open_url, urls.click_url_for, keep=keep)

    analytics = rt.catalog.purposes.get("analytics")

    def update_trait(conn: Conn, ws: str, profile_id: str, name: str, value: Json, at: Millis) -> None:
        if name.lower() in rt.pii_fields:
            log.error("journey update of trait %r skipped: it is personal data, which journeys do not write", name)
            return
        profiles_sql.upsert_traits(conn, [(ws, profile_id, name, orjson.dumps(value).decode(), profile_id,
                                           "journey", at, f"{INTERNAL_PREFIX}journey:{profile_id}:{name}:{at}")])
        profiles_sql.refresh_trait_values(conn, ws, [profile_id])
        if rt.segments:
            MembershipWriter(conn, rt, clock).update({profile_id: Touched(traits={name})}, at)

    holdout = rt.settings.holdout()

    def gate_input(conn: Conn, send: PendingSend, base: gate.GateInput) -> gate.GateInput:
        rows = journeys_sql.recent_sends(conn, rt.id, send.profile_id, base.at - longest * DAY)
        past = [gate.PastSend(int(r[4]), str(r[1]), frozenset(orjson.loads(r[2]))) for r in rows if r[3] == "sent"]
        claims = []
        for journey, _channel, _tags, status, sent_at, due_at in rows:
            if journey == send.journey:
                continue
            rival = rt.journeys.get(str(journey))
            priority = rival.priority if rival is not None else 0
            if status == "sent":
                claims.append(gate.Claim(str(journey), priority, int(sent_at), "sent"))
            else:
                claims.append(gate.Claim(str(journey), priority, int(due_at), "held"))
        suppressions = feedback_sql.suppressions_of(conn, rt.id, [send.profile_id]).get(send.profile_id, ())
        group, left = _subscription(send, base)
        rules = suppression.concerned(rt, send.journey, send.channel, send.tags)
        message = suppression.entry_properties(conn, rt.id, send.enrollment_id) if rules else {}
        checks = suppression.checks(conn, rt, keyring, send.profile_id, rules, message, base.at)
        held = holdout is not None and holdout.holds(identity_sql.live_root(conn, rt.id, send.profile_id)
                                                      or send.profile_id)
        return replace(base, caps=caps, recent_sends=past, claims=claims, suppressions=suppressions,
                       subscription_group=group, unsubscribed=base.unsubscribed | left, rules=checks,
                       held_out=held)

    def _subscription(send: PendingSend, base: gate.GateInput) -> tuple[str | None, frozenset[str]]:
        """The message's subscription group (``None`` when its group does not cover its channel) and, when
        the person is not subscribed to it, that group's name."""
        name = suppression.message_group(versions(rt.id, send.journey, send.version), send.step_id)
        if name is None:
            return None, frozenset()
        group = rt.subscription_groups.get(name)
        if group is None:  # deny by default: apply refuses this, but a definition can vanish under a worker
            log.error("journey %r sends in subscription group %r, which workspace %s does not define; refused",
                      send.journey, name, rt.id)
            return name, frozenset({name})
        if not group.covers(send.channel):
            return None, frozenset()
        return name, subscriptions.left(base.consent, [group], base.at)

    return JourneyEngine(db, clock, build_channels(db, rt, clock, delivery, client, keyring), journeys=versions,
                         templates=rt.templates, recipient=recipient, catalog=rt.catalog,
                         facts=feed.facts_for(rt), gate_input=gate_input, update_trait=update_trait,
                         channel_purposes=purposes, send_lease_ms=delivery.send_lease_ms,
                         split_exposure=split_hook(rt))


class Engines:
    """One engine per workspace, rebuilt when the workspace's definitions or settings change."""

    def __init__(self, db: Database, keyring: Keyring, clock: Clock, delivery: Delivery) -> None:
        self.db, self.keyring, self.clock, self.delivery = db, keyring, clock, delivery
        self.versions = feed.Versions(db)
        self._engines: dict[str, tuple[WorkspaceRuntime, JourneyEngine]] = {}
        self.client: httpx.AsyncClient | None = None

    def of(self, rt: WorkspaceRuntime) -> JourneyEngine:
        hit = self._engines.get(rt.id)
        if hit is not None and hit[0] is rt:
            return hit[1]
        engine = build_engine(self.db, rt, self.keyring, self.clock, self.delivery, self.versions, self.client)
        self._engines[rt.id] = (rt, engine)
        return engine


def step_pass(engines: Engines, rt: WorkspaceRuntime, limit: int = 500) -> tuple[int, int]:
    """Migrate enrollments to newly published versions that ask for it, feed the workspace's queued events,
    enroll the audiences of schedules that came round and step its due timers until none are left (or
    ``limit`` per round keeps coming); returns (events fed, enrollments stepped by timers)."""
    engine = engines.of(rt)
    events = stepped = 0
    try:  # a migration that cannot run now (a lock conflict) must not hold up the rest of the pass
        versions.migrate_published(engines.db, rt, engines.versions, engines.clock, limit)
    except Exception:
        log.exception("migrating journey enrollments of workspace %s failed; retried next pass", rt.id)
    while True:
        done = engines.db.write(lambda conn: feed.consume(conn, rt, engine, limit))
        events += done.events
        if done.events < limit:
            break
    try:
        schedule.run_schedules(engines.db, rt, engine, engines.clock, limit)
    except Exception:
        log.exception("scheduled journey entries of workspace %s failed; retried next pass", rt.id)
    while True:
        ticked = engine.run_due(limit, ws=rt.id)
        stepped += len(ticked)
        if len(ticked) < limit:
            break
    return events, stepped


async def dispatch_pass(engines: Engines, rt: WorkspaceRuntime, limit: int = 200) -> DispatchResult:
    """Dispatch the workspace's due sends until none are left."""
    engine = engines.of(rt)
    total: dict[str, int] = {}
    while True:
        result = await engine.dispatch(limit, ws=rt.id)
        for status, n in result.counts.items():
            total[status] = total.get(status, 0) + n
        if sum(result.counts.values()) < limit:
            return DispatchResult(total)
