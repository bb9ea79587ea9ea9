"""The ``Unsubscribed`` event: an opt-out made through a link or the preference center, on the person's timeline.

A person who clicks an unsubscribe link (RFC 8058 one-click included) or leaves a purpose or a subscription group in
the preference center changes the consent ledger, and no client tracks anything. Rapport then writes an
``Unsubscribed`` track event itself, as it writes ``Segment Entered``, so that what reads events sees those opt-outs
too: an experiment's unsubscribe guardrail (a ``conversion`` metric on ``Unsubscribed``), journeys triggered or
exited by it, and the timeline. It carries no personal data: the purpose or group left and the source.
"""

from __future__ import annotations

import orjson

from rapport.clock import to_iso
from rapport.journeys.feed import journey_hears
from rapport.storage.base import Conn
from rapport.storage.sql import events as events_sql
from rapport.storage.sql import journeys as journeys_sql
from rapport.types import JsonObject, Millis
from rapport.workspaces.runtime import WorkspaceRuntime

UNSUBSCRIBED = "Unsubscribed"


def record(conn: Conn, rt: WorkspaceRuntime, profile_id: str, *, source: str, at: Millis, purpose: str | None = None,
           group: str | None = None) -> None:
    """Write the event for ``profile_id`` leaving ``purpose`` or ``group`` through ``source`` at ``at`` (once per
    opt-out: the message id is derived from them)."""
    left = f"purpose:{purpose}" if purpose is not None else f"group:{group}"
    message_id = f"{events_sql.INTERNAL_PREFIX}unsubscribed:{profile_id}:{left}:{at}"
    properties: JsonObject = {"source": source}
    if purpose is not None:
        properties["purpose"] = purpose
    if group is not None:
        properties["group"] = group
    body = {"type": "track", "event": UNSUBSCRIBED, "messageId": message_id, "timestamp": to_iso(at),
            "receivedAt": to_iso(at), "properties": properties}
    seqs = events_sql.insert_events(conn, [(rt.id, message_id, message_id, profile_id, profile_id, "track",
                                            UNSUBSCRIBED, None, None, at, at, 0, 0, orjson.dumps(body).decode())])
    if rt.journeys and journey_hears(rt, "track", UNSUBSCRIBED):
        journeys_sql.enqueue(conn, rt.id, list(seqs.values()))
