"""Time-based membership flips exactly at the boundary instant, with no new event (frozen clock).

Durations are exact (``1d`` is 86,400,000 ms): a window that spans a daylight-saving change in the
workspace's time zone, or a leap day, still ends exactly one duration after the event's second.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import pytest

from rapport.api.app import run_backfills, run_segments
from rapport.clock import FrozenClock, parse_iso, to_iso
from rapport.core import Rapport
from rapport.ingestion.parse import parse_message
from rapport.resources import service as resources
from rapport.storage.sql import segments as segments_sql
from rapport.types import DAY, HOUR, MINUTE, Millis

GRANT = {"consent": {"categoryPreferences": {"Analytics": True}}}
WEEK = 7 * DAY


@dataclass(frozen=True)
class Case:
    name: str
    event_at: str
    rule: str
    flip: Millis
    """Milliseconds after the event's second at which the profile's membership flips."""
    timezone: str = "UTC"
    enters: bool = False
    """The profile enters the segment at the boundary (else it leaves it)."""


CASES = [
    Case("window_15m", "2026-05-04T10:00:00.400Z", 'count("Ping", within=15m) >= 1', 15 * MINUTE),
    Case("window_12h", "2026-05-04T10:00:59.999Z", 'count("Ping", within=12h) >= 1', 12 * HOUR),
    Case("window_30d", "2026-05-04T23:59:59.001Z", 'count("Ping", within=30d) >= 1', 30 * DAY),
    Case("window_2w", "2026-05-04T00:00:00.000Z", 'count("Ping", within=2w) >= 1', 2 * WEEK),
    Case("dst_spring_forward_berlin", "2026-03-28T12:00:00.000Z", 'count("Ping", within=1d) >= 1', DAY,
         "Europe/Berlin"),
    Case("dst_fall_back_new_york", "2026-10-31T18:30:00.000Z", 'count("Ping", within=2d) >= 1', 2 * DAY,
         "America/New_York"),
    Case("leap_day_2028", "2028-02-28T12:00:00.000Z", 'count("Ping", within=1d) >= 1', DAY),
    Case("over_leap_day_2028", "2028-02-28T12:00:00.000Z", 'count("Ping", within=2d) >= 1', 2 * DAY),
    Case("sum_window_3h", "2026-05-04T10:00:00.000Z", 'sum("Ping", "n", within=3h) > 4', 3 * HOUR),
    Case("last_seen_window_1w", "2026-05-04T10:00:00.000Z", 'exists(traits.plan) and last_seen("Ping", within=1w) > 0',
         WEEK),
    # days_since is continuous, from the event's millisecond: > 3 holds from one millisecond after 3 days.
    Case("days_since_over_3", "2026-05-04T10:00:00.250Z", 'days_since("Ping") > 3', 3 * DAY + 250 + 1,
         enters=True),
    Case("days_since_at_most_2", "2026-05-04T10:00:00.250Z", 'days_since("Ping") <= 2', 2 * DAY + 250 + 1),
    Case("computed_days_since_whole_days", "2026-05-04T10:00:00.250Z", "computed.days_since_last_order >= 2",
         2 * DAY, enters=True),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_membership_flips_exactly_at_the_boundary(case: Case, rapport: Rapport, clock: FrozenClock) -> None:
    ws = rapport.create_workspace(f"timing-{case.name}").workspace_id
    rapport.db.write(lambda c: c.execute(
        "UPDATE workspaces SET settings = ? WHERE id = ?",
        (orjson.dumps({"timezone": case.timezone}).decode(), ws)))
    event_at = parse_iso(case.event_at)
    second = event_at - event_at % 1000
    clock.set(event_at + 10)
    doc = f"kind: Segment\nname: s\nrule: '{case.rule}'\n"
    rapport.db.write(lambda c: resources.apply(c, ws, doc, "test", clock.now_ms()))
    rapport.runtime(ws, fresh=True)
    run_backfills(rapport)
    run_segments(rapport)
    raw = [{"type": "identify", "userId": "u1", "traits": {"plan": "pro"}, "context": GRANT,
            "timestamp": to_iso(event_at)},
           {"type": "track", "userId": "u1", "event": "Ping", "properties": {"n": 5}, "context": GRANT,
            "timestamp": to_iso(event_at)},
           {"type": "track", "userId": "u1", "event": "Order Completed", "properties": {"revenue": 5},
            "context": GRANT, "timestamp": to_iso(event_at)}]
    messages = [parse_message(m, implied_type=None, received_at=clock.now_ms(), batch_sent_at=None,
                              batch_context=None, new_id=lambda: clock.new_id("msg")) for m in raw]
    rapport.ingest(ws, messages).result()

    def stays() -> list[tuple[int, int | None]]:
        rows = rapport.db.read(lambda c: segments_sql.history(c, ws, segment="s", profile_id=None, before=None,
                                                               limit=10))
        return sorted((int(r[4]), None if r[5] is None else int(r[5])) for r in rows)

    boundary = second + case.flip
    entering = case.enters
    initially = stays()
    assert len(initially) == (0 if entering else 1), initially
    clock.set(boundary - 1)
    run_segments(rapport)
    assert stays() == initially, "nothing flips before the boundary"
    clock.set(boundary + 3 * HOUR)  # the scheduler runs late: the flip still happens at the boundary
    run_segments(rapport)
    after = stays()
    if entering:
        assert after == [(boundary, None)]
    else:
        assert after == [(initially[0][0], boundary)]
