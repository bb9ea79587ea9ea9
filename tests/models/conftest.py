"""A synthetic shop per backend, built once per module through the real ingestion pipeline.

People are identified (with analytics consent) 120 days before ``NOW``; each places ``k`` orders
(0 to 4) between 100 and 31 days before ``NOW``; whether they order again in the last 30 days
follows ``sigmoid(-3 + 1.5 k)``, so a model trained with a 30-day horizon on ``orders_90d`` must find
the dependence. Two people must be left out of training: one created after the cutoff and one who
never gave analytics consent.
"""

from __future__ import annotations

import math
import random
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from api.support import NOW
from conftest import Backend

from rapport.clock import FrozenClock, to_iso
from rapport.core import Rapport
from rapport.ingestion.parse import parse_message
from rapport.resources import service as resources
from rapport.types import DAY, HOUR, Millis, WorkspaceId

GRANT = {"consent": {"categoryPreferences": {"Analytics": True}}}
PEOPLE = 1000
HORIZON = 30 * DAY
CUTOFF = NOW - HORIZON


@dataclass(frozen=True, slots=True)
class Shop:
    rapport: Rapport
    clock: FrozenClock
    ws: WorkspaceId
    orders_before: dict[str, int]
    """user id -> orders placed before the cutoff."""
    ordered_after: dict[str, bool]
    """user id -> ordered in (cutoff, NOW]."""
    order_times: dict[str, list[Millis]]
    """user id -> event times of their orders before the cutoff."""


def ingest(rapport: Rapport, clock: FrozenClock, ws: WorkspaceId, at: Millis, raws: list[dict[str, Any]]) -> None:
    """Ingest ``raws`` with the clock at ``at`` (profiles created then), in batches."""
    clock.set(at)
    messages = [parse_message(raw, implied_type=None, received_at=at, batch_sent_at=None, batch_context=None,
                              new_id=lambda: clock.new_id("msg")) for raw in raws]
    for start in range(0, len(messages), 250):
        rapport.ingest(ws, messages[start:start + 250]).result()


def identify(user: str, at: Millis, consent: bool = True) -> dict[str, Any]:
    return {"type": "identify", "userId": user, "timestamp": to_iso(at), "traits": {"plan": "basic"},
            **({"context": GRANT} if consent else {})}


def order(user: str, at: Millis, revenue: float = 40.0, consent: bool = True) -> dict[str, Any]:
    return {"type": "track", "event": "Order Completed", "userId": user, "timestamp": to_iso(at),
            "properties": {"revenue": revenue}, **({"context": GRANT} if consent else {})}


def apply(rapport: Rapport, ws: WorkspaceId, text: str) -> None:
    rapport.db.write(lambda c: resources.apply(c, ws, text, "test", rapport.clock.now_ms(), keyring=rapport.keyring))
    rapport.invalidate(ws)


def build_shop(rapport: Rapport, clock: FrozenClock, people: int = PEOPLE, seed: int = 7,
               label: Any = None) -> Shop:
    """The shop of the module docstring (``label(k, rng)`` overrides how the outcome follows ``k``)."""
    rng = random.Random(seed)
    start = NOW - 120 * DAY
    clock.set(start)
    ws = rapport.create_workspace(f"models-{secrets.token_hex(4)}").workspace_id
    users = [f"u{i:04d}" for i in range(people)]
    ingest(rapport, clock, ws, start, [identify(u, start) for u in users] + [identify("no-consent", start, False)])
    before: dict[str, int] = {}
    times: dict[str, list[Millis]] = {}
    raws = []
    for u in users:
        k = rng.randrange(5)
        before[u] = k
        times[u] = [start + 20 * DAY + rng.randrange(68 * DAY) for _ in range(k)]
        raws += [order(u, t) for t in times[u]]
    raws += [order("no-consent", start + 30 * DAY, consent=False) for _ in range(3)]
    ingest(rapport, clock, ws, CUTOFF - HOUR, raws)
    ingest(rapport, clock, ws, CUTOFF + DAY, [identify("late", CUTOFF + DAY), order("late", CUTOFF + DAY)])
    after: dict[str, bool] = {}
    raws = []
    for u in users:
        p = 1 / (1 + math.exp(3 - 1.5 * before[u])) if label is None else label(before[u], rng)
        after[u] = rng.random() < p
        if after[u]:
            raws.append(order(u, CUTOFF + HOUR + rng.randrange(HORIZON - 2 * HOUR)))
    ingest(rapport, clock, ws, NOW, raws)
    return Shop(rapport, clock, ws, before, after, times)


@pytest.fixture(scope="module")
def store(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rapport]:
    clock = FrozenClock(NOW, seed=secrets.randbits(64))
    instance = Rapport(backend.settings(tmp_path_factory.mktemp("models")), clock=clock)
    try:
        yield instance
    finally:
        instance.close()


@pytest.fixture(scope="module")
def shop(store: Rapport) -> Shop:
    clock = store.clock
    assert isinstance(clock, FrozenClock)
    return build_shop(store, clock)
