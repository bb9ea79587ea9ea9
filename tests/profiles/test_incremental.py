"""Incremental computed traits equal a from-scratch recomputation over stored events.

The oracle below is written independently of ``rapport.profiles.computed``: it reads the
events as sent and applies the documented semantics (time resolved to whole seconds; an event in
second ``b`` counts at ``T`` when ``b <= T`` and, with a window ``w``, ``b > T - w``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rapport.api.app import run_backfills
from rapport.clock import FrozenClock, to_iso
from rapport.core import Rapport
from rapport.ingestion.parse import parse_message
from rapport.profiles.service import ProfileReader
from rapport.resources import service as resources_service
from rapport.settings import Settings
from rapport.types import DAY, HOUR, WorkspaceId

T0 = 1_780_000_000_000
TRAITS_YAML = """
kind: ComputedTrait
name: big_orders_7d
event: Order Completed
aggregate: count
window: 7d
where: event.revenue >= 50
---
kind: ComputedTrait
name: max_revenue_2d
event: Order Completed
aggregate: max
property: revenue
window: 2d
---
kind: ComputedTrait
name: min_revenue
event: Order Completed
aggregate: min
property: revenue
---
kind: ComputedTrait
name: first_revenue
event: Order Completed
aggregate: first
property: revenue
---
kind: ComputedTrait
name: skus
event: Order Completed
aggregate: distinct
property: sku
window: 3d
"""


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[Rapport, FrozenClock]]:
    with tempfile.TemporaryDirectory() as tmp:
        clock = FrozenClock(T0)
        rapport = Rapport(Settings(database_url=f"sqlite:///{Path(tmp) / 'r.db'}", data_dir=Path(tmp)), clock=clock)
        yield rapport, clock
        rapport.close()


def _bucket(ts: int) -> int:
    return ts - ts % 1000


def _in(ts: int, at: int, window: int | None) -> bool:
    b = _bucket(ts)
    return b <= at and (window is None or b > at - window)


def oracle(orders: list[tuple[int, float, str]], views: list[int], at: int) -> dict[str, object]:
    """Expected values from the raw (ts, revenue, sku) orders and page-view times, in arrival order."""
    def sel(window: int | None) -> list[tuple[int, float, str]]:
        return [o for o in orders if _in(o[0], at, window)]

    every = sorted([(o[0], i) for i, o in enumerate(orders)] + [(v, len(orders) + i) for i, v in enumerate(views)])
    everything = [e for e in every if _in(e[0], at, None)]
    all_orders = sel(None)
    revenue = [o[1] for o in all_orders]
    last_order = max(all_orders, key=lambda o: o[0], default=None)
    firsts = sorted(((o[0], i, o[1]) for i, o in enumerate(orders) if _in(o[0], at, None)))

    def num(x: float) -> object:
        return int(x) if float(x).is_integer() else x

    return {
        "order_count": len(all_orders),
        "orders_30d": len(sel(30 * DAY)),
        "revenue_total": num(sum(revenue)),
        "revenue_30d": num(sum(o[1] for o in sel(30 * DAY))),
        "average_order_value": sum(revenue) / len(revenue) if revenue else None,
        "days_since_last_order": None if last_order is None else (at - _bucket(last_order[0])) // DAY,
        "first_seen": to_iso(everything[0][0]) if everything else None,
        "last_seen": to_iso(max(everything)[0]) if everything else None,
        "big_orders_7d": len([o for o in sel(7 * DAY) if o[1] >= 50]),
        "max_revenue_2d": num(max((o[1] for o in sel(2 * DAY)), default=0)) if sel(2 * DAY) else None,
        "min_revenue": num(min(revenue)) if revenue else None,
        "first_revenue": num(firsts[0][2]) if firsts else None,
        "skus": len({o[2] for o in sel(3 * DAY)}),
    }


order = st.tuples(st.integers(0, 40 * DAY), st.sampled_from([5, 19.5, 50, 80, 120.25, 300]),
                  st.sampled_from(["a", "b", "c"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(orders=st.lists(order, max_size=12), views=st.lists(st.integers(0, 40 * DAY), max_size=5),
       instants=st.lists(st.integers(-DAY, 45 * DAY), min_size=1, max_size=6), batch=st.integers(1, 5))
def test_incremental_equals_recomputation(
    env: tuple[Rapport, FrozenClock], orders: list[tuple[int, float, str]], views: list[int],
    instants: list[int], batch: int,
) -> None:
    rapport, clock = env
    ws = rapport.create_workspace(clock.new_id("shop")).workspace_id
    now = clock.now_ms()
    rapport.db.write(lambda c: resources_service.apply(c, ws, TRAITS_YAML, "test", now))
    run_backfills(rapport)
    user = "u1"
    raw = [{"type": "identify", "userId": user, "timestamp": to_iso(T0 - HOUR),
            "context": {"consent": {"categoryPreferences": {"Analytics": True}}}}]
    raw += [{"type": "track", "userId": user, "event": "Order Completed", "timestamp": to_iso(T0 + ts),
             "properties": {"revenue": rev, "sku": sku}} for ts, rev, sku in orders]
    raw += [{"type": "page", "userId": user, "timestamp": to_iso(T0 + ts)} for ts in views]
    messages = [parse_message(m, implied_type=None, received_at=T0, batch_sent_at=None, batch_context=None,
                              new_id=lambda: clock.new_id("msg")) for m in raw]
    for start in range(0, len(messages), batch):
        rapport.ingest(ws, messages[start:start + batch]).result()
    abs_orders = [(T0 + ts, float(rev), sku) for ts, rev, sku in orders]
    abs_views = [T0 - HOUR] + [T0 + ts for ts in views]
    rt = rapport.runtime(WorkspaceId(ws), fresh=True)

    def computed(at: int) -> dict[str, object]:
        def fn(conn: object) -> dict[str, object]:
            reader = ProfileReader(conn, rt, rapport.keyring)  # type: ignore[arg-type]
            return reader.computed(reader.find("user_id", user), at)
        return rapport.db.read(fn)  # type: ignore[arg-type]

    for offset in instants:
        at = T0 + offset
        got = computed(at)
        want = oracle(abs_orders, abs_views, at)
        for name, value in want.items():
            assert got[name] == pytest.approx(value) if isinstance(value, float) else got[name] == value, (
                name, at, got[name], value)
