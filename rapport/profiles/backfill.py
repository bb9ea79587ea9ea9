"""Backfills: a new or changed computed-trait series is filled from stored events, in chunks.

Each chunk is one writer job that reads the series' progress inside its own transaction, so two
processes backfilling the same series never count an event twice; on PostgreSQL it first waits
for the ingestion transactions of other processes that read the series' states
(``profiles_sql.lock_series``), so no event falls between the backfill and the live path. The
chunk that finds no more events marks the series live in the same transaction; from the next
ingestion transaction on, new events feed it directly.
"""

from __future__ import annotations

import orjson

from rapport.clock import Clock
from rapport.profiles.recompute import allowed_purposes, fold_events, write_buckets
from rapport.profiles.sealing import SeriesSealer
from rapport.storage.base import Conn, Row
from rapport.storage.sql import consent as consent_sql
from rapport.storage.sql import events as events_sql
from rapport.storage.sql import identity as identity_sql
from rapport.storage.sql import profiles as profiles_sql
from rapport.storage.sql.consent import ledger_entry
from rapport.types import JsonObject
from rapport.workspaces.keys import Keyring
from rapport.workspaces.runtime import WorkspaceRuntime

CHUNK = 5000


def register_missing(conn: Conn, rt: WorkspaceRuntime, clock: Clock) -> list[str]:
    """Register series the definitions need but storage lacks; returns their ids."""
    known = {row[0] for row in profiles_sql.series_states(conn, rt.id)}
    missing = [sid for sid in rt.series if sid not in known]
    if missing:
        total = events_sql.max_seq(conn, rt.id)
        count = events_sql.count(conn, rt.id)
        now = clock.now_ms()
        for sid in missing:
            key = rt.series[sid].key
            definition = orjson.dumps({"event": key.event, "property": key.prop, "where": key.where}).decode()
            profiles_sql.register_series(conn, rt.id, sid, definition, total, count, now)
            if count == 0:
                profiles_sql.update_series(conn, rt.id, sid, "live", 0, now)
    return missing


def backfill_chunk(conn: Conn, rt: WorkspaceRuntime, keyring: Keyring, clock: Clock) -> bool:
    """Advance every backfilling series by one chunk of events; True when all are live."""
    def backfilling() -> list[Row]:
        return [r for r in profiles_sql.series_states(conn, rt.id) if r[2] == "backfilling" and r[0] in rt.series]

    if not backfilling():
        return True
    profiles_sql.lock_series(conn, rt.id, exclusive=True)
    states = backfilling()  # read again under the lock
    if not states:
        return True
    done_seq = min(int(r[5]) for r in states)
    head = events_sql.max_seq(conn, rt.id)
    rows = events_sql.scan(conn, rt.id, done_seq, head, CHUNK)
    ids = [r[0] for r in states]
    ledgers: dict[str, list] = {}  # type: ignore[type-arg]
    keys = identity_sql.profile_rows(conn, rt.id, sorted({str(r[3]) for r in rows}))
    for pid in {str(r[2]) for r in rows}:
        ledgers[pid] = [ledger_entry(e) for e in consent_sql.entries(conn, rt.id, [pid])]

    def decrypt(origin: str):  # type: ignore[no-untyped-def]
        return keyring.profile_cipher(rt.id, rt.wrapped_key, origin, bytes(keys[origin][3])).decrypt

    by_progress = {r[0]: int(r[5]) for r in states}
    sealer = SeriesSealer(keyring, rt)
    pending = [r for r in rows]
    for sid in ids:
        todo = [r for r in pending if int(r[0]) > by_progress[sid]]
        buckets = fold_events(todo, {sid: rt.series[sid]}, decrypt,
                              lambda p, ts: allowed_purposes(rt, ledgers.get(p, []), ts), sealer)
        write_buckets(conn, rt.id, buckets)
    now = clock.now_ms()
    last = int(rows[-1][0]) if rows else head
    finished = len(rows) < CHUNK
    for sid in ids:
        profiles_sql.update_series(conn, rt.id, sid, "live" if finished else "backfilling", max(last, by_progress[sid]),
                                   now)
    return finished


def status(conn: Conn, rt: WorkspaceRuntime) -> list[JsonObject]:
    """Each computed trait with the state of the series it reads (live or backfilling, with progress)."""
    states = {r[0]: r for r in profiles_sql.series_states(conn, rt.id)}
    head = events_sql.max_seq(conn, rt.id)
    out = []
    for trait in sorted(rt.traits.values(), key=lambda t: t.name):
        rows = [states.get(s.id) for s in trait.all_series() if s.id in rt.series]  # others: no event feeds them
        live = all(r is not None and r[2] == "live" for r in rows)
        progress = min((int(r[5]) / head if head and r is not None and r[2] != "live" else 1.0) for r in rows) \
            if rows else 1.0
        out.append({"name": trait.name, "builtin": trait.builtin, "aggregate": trait.aggregate,
                    "state": "live" if live else "backfilling", "progress": round(progress if not live else 1.0, 4),
                    "purpose": trait.purpose, "description": trait.description})
    return out
