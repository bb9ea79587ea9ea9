"""The ingestion shell: one writer job stores a batch of messages durably, in order.

For each new message: resolve identity (creating, attaching, merging), record consent carried in
its context, decide whether its purposes are consented (else keep it minimized), encrypt personal
fields under the profile's data key, insert it (deduplicated on the workspace's dedupe key), fold
identify traits (newest event time wins) and feed computed-trait buckets. All of it commits
together or not at all, before the caller is told anything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import orjson

from rapport.clock import Clock
from rapport.consent.decide import ConsentRow, allowed_purposes
from rapport.consent.model import ConsentState
from rapport.identity.service import IdentityWriter
from rapport.ingestion.model import IngestResult, Message, Quarantined
from rapport.journeys.feed import journey_hears
from rapport.privacy import pii
from rapport.profiles.computed import Bucket, bucket_of, property_value
from rapport.profiles.sealing import SeriesSealer
from rapport.rules import evaluate_where
from rapport.segments.service import MembershipWriter, Touched
from rapport.storage.base import Conn
from rapport.storage.sql import consent as consent_sql
from rapport.storage.sql import events as events_sql
from rapport.storage.sql import journeys as journeys_sql
from rapport.storage.sql import profiles as profiles_sql
from rapport.storage.sql import quarantine as quarantine_sql
from rapport.workspaces.keys import Keyring
from rapport.workspaces.runtime import WorkspaceRuntime

_MINIMAL_CONTEXT = ("consent", "consentManagement", "library")


_PROVISIONAL = 2**62
"""Provisional ``seq`` of consent entries recorded in the batch (above every stored one)."""


@dataclass(slots=True)
class _Pending:
    traits: dict[tuple[str, str], tuple[object, ...]]
    buckets: dict[tuple[str, str, int], Bucket]


@dataclass(slots=True)
class _Writes:
    """What the job buffers until it flushes (before a merge, and at its end)."""

    consent: list[tuple[object, ...]]
    events: list[tuple[object, ...]]
    derive: list[tuple[Message, str, str, dict[str, object], frozenset[str], bool]]
    """Per buffered event: what traits and buckets need once it is stored (and has its ``seq``)."""
    pending: _Pending
    touched: dict[str, Touched]
    """Per profile, what the job changed that segment rules may read."""
    accepted: int
    duplicates: int
    restricted: int


def proof_of(context: object) -> str | None:
    """A one-way hash of the IP and user agent that made a consent choice (never the raw values)."""
    if not isinstance(context, dict):
        return None
    ip, agent = context.get("ip"), context.get("userAgent")
    if not ip and not agent:
        return None
    return hashlib.sha256(f"{ip}\x00{agent}".encode()).hexdigest()


class BatchJob:
    """Stores one batch inside the writer's transaction (``run`` is the job)."""

    def __init__(
        self, rt: WorkspaceRuntime, keyring: Keyring, clock: Clock,
        messages: Sequence[Message], quarantined: Sequence[Quarantined] = (),
    ) -> None:
        self.rt = rt
        self.keyring = keyring
        self.clock = clock
        self.messages = messages
        self.quarantined = quarantined
        asked = set(rt.settings.event_purposes).union(*(series.purposes for series in rt.series.values()))
        self._asked = [p for p in rt.catalog if p.name in asked]
        self._intents: dict[bytes, list[tuple[str, ConsentState]]] = {}
        self._settled: dict[str, tuple[list[tuple[str, ConsentState]], int]] = {}
        """Profile -> (id of its consent intents, horizon): the ledger already says what those intents
        say for any instant from the horizon (its latest ``effective_at``) on, so nothing to record."""

    def run(self, conn: Conn) -> IngestResult:
        rt, ws = self.rt, self.rt.id
        now = self.clock.now_ms()
        self._store_quarantined(conn, now)
        keys = [self._dedupe_key(m) for m in self.messages]
        known = events_sql.existing_keys(conn, ws, keys)
        live = profiles_sql.live_series(conn, ws)
        fresh: list[tuple[Message, str]] = []
        seen: set[str] = set()
        duplicates = 0
        for message, key in zip(self.messages, keys, strict=True):
            if key in known or key in seen:
                duplicates += 1
                continue
            seen.add(key)
            fresh.append((message, key))
        identity = IdentityWriter(conn, rt, self.keyring, self.clock)
        identity.prefetch([m for m, _ in fresh])
        ledgers: dict[str, list[ConsentRow]] = {p: [] for p in identity.holders}
        for row in consent_sql.states(conn, ws, identity.holders):
            ledgers[str(row[0])].append(consent_sql.state_row(row))
        writes = _Writes([], [], [], _Pending({}, {}), {}, 0, 0, 0)

        def flush() -> None:
            identity.flush()
            self._flush_writes(conn, writes, live)

        merged_any = False
        for message, key in fresh:
            # Everything buffered is written before a merge, which then moves it to the winner.
            profile_id, merged = identity.resolve(message, before_merge=flush)
            if merged:
                _touch(writes.touched, profile_id).structural = True
                # The merge moved stored entries (everything buffered was written first): re-read.
                ledgers.clear()
                self._settled.clear()
                merged_any = True
            ledger = ledgers.get(profile_id)
            if ledger is None:
                # A profile created in this batch has no stored entries until something is flushed.
                ledger = [] if profile_id in identity.created and not merged_any else [
                    consent_sql.state_row(r) for r in consent_sql.states(conn, ws, [profile_id])]
                ledgers[profile_id] = ledger
            self._record_context_consent(writes, message, profile_id, ledger, now)
            allowed = self._allowed_purposes(ledger, message.ts)
            is_restricted = not all(p in allowed for p in rt.settings.event_purposes)
            body = message.body if not is_restricted else self._minimized(message.body)
            cipher = identity.cipher(profile_id)
            sealed = pii.encrypt_event(body, rt.pii_fields, cipher.encrypt)
            writes.events.append((
                ws, key, message.message_id, profile_id, profile_id, message.type, message.name,
                message.user_id, message.anonymous_id, message.ts, message.received_at,
                int(is_restricted), int(message.flagged), orjson.dumps(sealed).decode(),
            ))
            writes.derive.append((message, key, profile_id, sealed, allowed, is_restricted))
        flush()
        if rt.segments:
            members = MembershipWriter(conn, rt, self.clock)
            losers = set(identity.losers)
            if losers:
                members.exit_merged(sorted(losers), now)
            for profile_id in identity.created - losers:
                _touch(writes.touched, profile_id).created = True
            members.update({p: t for p, t in writes.touched.items() if p not in losers}, now)
        return IngestResult(writes.accepted, duplicates + writes.duplicates, len(self.quarantined), writes.restricted)

    def _flush_writes(self, conn: Conn, writes: _Writes, live: set[str]) -> None:
        """Write buffered consent entries and events, then the traits and buckets the stored events feed."""
        if writes.consent:
            consent_sql.append_many(conn, self.rt.id, writes.consent)
            for row in writes.consent:
                _touch(writes.touched, str(row[1])).consent.add(str(row[3]))
            writes.consent.clear()
        if writes.events:
            seqs = events_sql.insert_events(conn, writes.events)
            if self.rt.journeys:
                journeys_sql.enqueue(conn, self.rt.id, [
                    seqs[key] for message, key, *_ in writes.derive
                    if key in seqs and journey_hears(self.rt, message.type, message.name)])
            for message, key, profile_id, sealed, allowed, is_restricted in writes.derive:
                seq = seqs.get(key)
                if seq is None:
                    writes.duplicates += 1
                    continue
                writes.accepted += 1
                writes.restricted += is_restricted
                if message.type == "identify":
                    self._fold_traits(writes.pending, message, profile_id, sealed)
                self._feed_series(writes.pending, message, profile_id, seq, live, allowed)
            writes.events.clear()
            writes.derive.clear()
        self._flush(conn, writes.pending, writes.touched)

    @cached_property
    def sealer(self) -> SeriesSealer:
        return SeriesSealer(self.keyring, self.rt)

    def _dedupe_key(self, message: Message) -> str:
        if self.rt.settings.dedupe:
            return message.message_id
        return f"{message.message_id}#{self.clock.new_id('d')}"

    def _allowed_purposes(self, ledger: list[ConsentRow], at: int) -> frozenset[str]:
        """The purposes the job asks about (the workspace's event purposes and the series' purposes)
        that ``ledger`` allows at ``at``: the only members of the set anything tests."""
        return allowed_purposes(ledger, self._asked, at)

    @staticmethod
    def _minimized(body: dict[str, object]) -> dict[str, object]:
        """What ``necessary`` keeps of an event without consent: who, what, when, and the consent itself."""
        kept = {k: v for k, v in body.items() if k not in ("properties", "context", "integrations")}
        context = body.get("context")
        if isinstance(context, dict):
            kept["context"] = {k: context[k] for k in _MINIMAL_CONTEXT if k in context}
        return kept

    def _record_context_consent(
        self, writes: _Writes, message: Message, profile_id: str, ledger: list[ConsentRow], now: int
    ) -> None:
        context = message.body.get("context")
        if not isinstance(context, dict):
            return
        intents = self._consent_intents(context)
        if not intents:
            return
        settled = self._settled.get(profile_id)
        if settled is not None and settled[0] is intents and message.ts >= settled[1]:
            return
        for purpose_name, state in intents:
            if purpose_name not in self.rt.catalog:
                continue
            latest = max((e for e in ledger if e[0] == purpose_name and e[2] <= message.ts),
                         key=lambda e: (e[2], e[3]), default=None)
            if latest is not None and latest[1] == state:
                continue
            purpose = self.rt.catalog.get(purpose_name)
            expires = None
            if state == "granted" and purpose.default_expiry_ms is not None:
                expires = message.ts + purpose.default_expiry_ms
            source = "sdk:rudderstack" if "consentManagement" in context else "sdk:segment"
            entry_id = self.clock.new_id("cns")
            proof = proof_of(context)
            writes.consent.append((
                entry_id, profile_id, profile_id, purpose_name, state, purpose.legal_basis, source, None,
                proof, now, message.ts, expires, message.message_id,
            ))
            # Written in this order when the job flushes, after every stored entry: a provisional
            # sequence number above all of them orders the entry as its stored one will.
            ledger.append((purpose_name, state, message.ts, _PROVISIONAL + len(writes.consent), expires))
        horizon = max((e[2] for e in ledger), default=message.ts)
        if message.ts >= horizon:
            # From ``horizon`` on, the latest entry of each purpose is its latest overall: the one just
            # checked or written. The same intents later than that need no look at the ledger.
            self._settled[profile_id] = (intents, horizon)

    def _consent_intents(self, context: dict[str, object]) -> list[tuple[str, ConsentState]]:
        """``mapping.extract(context).intents``, remembered for the job: batches repeat a few consent choices."""
        try:
            key = orjson.dumps([context.get("consent"), context.get("consentManagement")])
        except TypeError:
            return self.rt.mapping.extract(context).intents
        hit = self._intents.get(key)
        if hit is None:
            hit = self._intents[key] = self.rt.mapping.extract(context).intents
        return hit

    def _fold_traits(self, pending: _Pending, message: Message, profile_id: str, sealed: dict[str, object]) -> None:
        traits = sealed.get("traits")
        if not isinstance(traits, dict):
            return
        for name, value in traits.items():
            row = (self.rt.id, profile_id, name, orjson.dumps(value).decode(), profile_id, "identify",
                   message.ts, message.message_id)
            prior = pending.traits.get((profile_id, name))
            if prior is None or int(prior[6]) <= message.ts:  # type: ignore[call-overload]
                pending.traits[(profile_id, name)] = row

    def _feed_series(
        self, pending: _Pending, message: Message, profile_id: str, seq: int, live: set[str], allowed: frozenset[str]
    ) -> None:
        props = message.body.get("properties")
        properties = props if isinstance(props, dict) else {}
        for series_id, series in self.rt.series.items():
            key = series.key
            if series_id not in live:
                continue
            if key.event != "*" and (message.type != "track" or key.event != message.name):
                continue
            if not series.purposes <= allowed and "necessary" not in series.purposes:
                continue
            if series.where is not None and not evaluate_where(series.where, properties, message.ts):
                continue
            found, value = property_value(properties, key.prop) if key.prop else (False, None)
            slot = (profile_id, series_id, bucket_of(message.ts))
            bucket = pending.buckets.get(slot)
            if bucket is None:
                bucket = pending.buckets[slot] = Bucket(slot[2])
            sealed = self.sealer.seal(series, value) if found and series.personal else None
            bucket.add(message.ts, seq, value if found else None, key.prop is not None, sealed)

    def _flush(self, conn: Conn, pending: _Pending, touched: dict[str, Touched]) -> None:
        ws = self.rt.id
        for profile_id, name in pending.traits:
            _touch(touched, profile_id).traits.add(name)
        for profile_id, series_id, _bucket in pending.buckets:
            _touch(touched, profile_id).series.add(series_id)
        if pending.traits:
            profiles_sql.upsert_traits(conn, pending.traits.values())
            profiles_sql.refresh_trait_values(conn, ws, {p for p, _ in pending.traits})
            pending.traits.clear()
        if pending.buckets:
            profiles_sql.upsert_buckets(conn, [bucket_row(ws, p, s, b) for (p, s, _), b in pending.buckets.items()])
            profiles_sql.insert_bucket_values(conn, [
                (ws, p, s, b.bucket, v) for (p, s, _), b in pending.buckets.items() for v in b.values])
            pending.buckets.clear()

    def _store_quarantined(self, conn: Conn, now: int) -> None:
        if not self.quarantined:
            return
        cipher = self.keyring.workspace_cipher(self.rt.id, self.rt.wrapped_key)
        quarantine_sql.insert_many(conn, self.rt.id, [
            (self.clock.new_id("qtn"), q.message.message_id, q.message.name, q.plan,
             orjson.dumps(list(q.violations)).decode(),
             cipher.encrypt(orjson.dumps(q.message.body), self.rt.id.encode()), now)
            for q in self.quarantined])


def _touch(touched: dict[str, Touched], profile_id: str) -> Touched:
    hit = touched.get(profile_id)
    if hit is None:
        hit = touched[profile_id] = Touched()
    return hit


def bucket_row(ws: str, profile_id: str, series_id: str, b: Bucket) -> tuple[object, ...]:
    return (ws, profile_id, series_id, b.bucket, b.n, b.nn, b.total, b.vmin, b.vmax, b.first_ts, b.first_seq,
            b.first_val, b.last_ts, b.last_seq, b.last_val)
