"""The official Segment and RudderStack Python clients, unmodified, against a real ``rapport serve``.

Each client sends one person's story with gzip on: anonymous browsing, an identify with traits
(email included) and analytics consent, two orders, a page, a group and an alias of the anonymous
id to the user id. The admin API must then show one unified profile, found by user id, email and
anonymous id, holding every event, the traits, the consent and the order count.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from rudderstack.analytics.client import Client as RudderClient
from segment.analytics.client import Client as SegmentClient

from .harness import Stack

CLIENT_TIMEOUT = 10


@dataclass(slots=True)
class Person:
    tag: str
    anonymous_id: str = ""
    user_id: str = ""
    email: str = ""
    group_id: str = ""
    revenues: tuple[float, ...] = (42.5, 10.0)
    messages: list[tuple[str, str]] = field(default_factory=list)
    """(type, messageId) of every message the client accepted."""

    def __post_init__(self) -> None:
        self.anonymous_id = f"anon-{self.tag}"
        self.user_id = f"user-{self.tag}"
        self.email = f"Ann.{self.tag}@Example.COM"
        self.group_id = f"acme-{self.tag}"


def send_story(client: Any, person: Person, consent: Callable[[], dict[str, Any]]) -> None:
    """The same calls, with the same keyword arguments, work on both clients."""
    calls: list[tuple[str, dict[str, Any]]] = [
        ("page", {"anonymous_id": person.anonymous_id, "category": "Shop", "name": "Home",
                  "properties": {"path": "/"}}),
        ("track", {"anonymous_id": person.anonymous_id, "event": "Product Viewed",
                   "properties": {"sku": "tea-01", "price": 9.5}}),
        ("identify", {"user_id": person.user_id, "context": consent(),
                      "traits": {"email": person.email, "first_name": "Ann", "plan": "pro"}}),
        ("track", {"user_id": person.user_id, "event": "Order Completed",
                   "properties": {"order_id": f"{person.tag}-1", "revenue": person.revenues[0], "currency": "EUR"}}),
        ("track", {"user_id": person.user_id, "event": "Order Completed",
                   "properties": {"order_id": f"{person.tag}-2", "revenue": person.revenues[1], "currency": "EUR"}}),
        ("page", {"user_id": person.user_id, "category": "Shop", "name": "Thank You",
                  "properties": {"path": "/thanks"}}),
        ("group", {"user_id": person.user_id, "group_id": person.group_id,
                   "traits": {"name": "Acme", "employees": 42}}),
        ("alias", {"previous_id": person.anonymous_id, "user_id": person.user_id}),
    ]
    for method, kwargs in calls:
        ok, msg = getattr(client, method)(**kwargs)
        assert ok, f"{method} was not queued"
        person.messages.append((msg["type"], msg["messageId"]))
        time.sleep(0.002)  # distinct client timestamps, so the timeline order is the story's order


def segment_consent() -> dict[str, Any]:
    return {"consent": {"categoryPreferences": {"Analytics": True, "Advertising": False}}}


def rudderstack_consent() -> dict[str, Any]:
    return {"consentManagement": {"allowedConsentIds": ["C0002"], "deniedConsentIds": ["C0004"]}}


class Admin:
    def __init__(self, stack: Stack, client: httpx.Client) -> None:
        self.stack, self.client = stack, client

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.client.get(f"{self.stack.url}/api/v1{path}", params=params,
                               headers={"Authorization": f"Bearer {self.stack.admin_token}"})

    def lookup(self, **identifier: str) -> dict[str, Any]:
        res = self.get("/profiles/lookup", **identifier)
        assert res.status_code == 200, f"lookup {identifier}: {res.status_code} {res.text}"
        body: dict[str, Any] = res.json()
        return body

    def events(self, profile_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(20):
            params: dict[str, Any] = {"limit": 500}
            if cursor:
                params["cursor"] = cursor
            res = self.get(f"/profiles/{profile_id}/events", **params)
            assert res.status_code == 200, res.text
            page = res.json()
            out.extend(page["events"])
            cursor = page["next"]
            if not cursor:
                return out
        raise AssertionError("the timeline did not end within 20 pages")


def check_story(stack: Stack, person: Person) -> None:
    with httpx.Client(timeout=10) as http:
        admin = Admin(stack, http)
        profile = admin.lookup(user_id=person.user_id)
        pid = profile["id"]

        # One unified profile, whichever identifier finds it (email is trimmed and lower-cased).
        assert admin.lookup(email=person.email.lower())["id"] == pid
        assert admin.lookup(email=f"  {person.email.upper()} ")["id"] == pid
        assert admin.lookup(anonymous_id=person.anonymous_id)["id"] == pid, "alias did not merge the anonymous profile"
        ids = profile["identifiers"]
        assert ids["user_id"] == [person.user_id]
        assert ids["email"] == [person.email.lower()]
        assert person.anonymous_id in ids["anonymous_id"]

        traits = profile["traits"]
        assert traits.get("email") == person.email, f"identify traits missing: {traits}"
        assert traits.get("first_name") == "Ann"
        assert traits.get("plan") == "pro"

        assert profile["consent"]["analytics"]["allowed"] is True, profile["consent"]
        assert profile["consent"]["advertising"]["allowed"] is False, profile["consent"]
        computed = profile["computed"]
        assert computed["order_count"] == 2, computed
        assert computed["revenue_total"] == pytest.approx(sum(person.revenues)), computed

        # Every message the client sent is on the profile, exactly once.
        events = admin.events(pid)
        stored = Counter(e["message_id"] for e in events)
        sent = {mid for _, mid in person.messages}
        assert set(stored) == sent, f"missing {sent - set(stored)}, unexpected {set(stored) - sent}"
        assert all(n == 1 for n in stored.values()), stored
        assert Counter(e["type"] for e in events) == Counter(t for t, _ in person.messages) == Counter(
            {"track": 3, "page": 2, "identify": 1, "group": 1, "alias": 1})
        orders = [e for e in events if e["type"] == "track" and e["name"] == "Order Completed"]
        assert sorted(e["message"]["properties"]["revenue"] for e in orders) == sorted(person.revenues)
        assert all(not e["restricted"] for e in orders), "consented orders must be kept in full"
        group = next(e for e in events if e["type"] == "group")
        assert group["name"] == person.group_id
        assert all(e["profile_id"] == pid for e in events)


def test_segment_client(stack: Stack) -> None:
    """segment-analytics-python, batching in its consumer thread, flushed, gzip on."""
    errors: list[str] = []
    client = SegmentClient(stack.write_key, host=stack.url, gzip=True, sync_mode=False, max_retries=2,
                           timeout=CLIENT_TIMEOUT, upload_interval=0.1,
                           on_error=lambda exc, batch: errors.append(f"{exc} ({len(batch)} messages)"))
    person = Person(f"seg-{secrets.token_hex(4)}")
    send_story(client, person, segment_consent)
    flushed = threading.Thread(target=client.shutdown, daemon=True)
    flushed.start()
    flushed.join(timeout=30)
    assert not flushed.is_alive(), "the Segment client did not flush within 30 s"
    assert errors == []
    check_story(stack, person)


def test_rudderstack_client(stack: Stack) -> None:
    """rudder-sdk-python in sync mode (each call is one gzip request), then the same in batches."""
    synced = RudderClient(stack.write_key, host=stack.url, gzip=True, sync_mode=True, timeout=CLIENT_TIMEOUT)
    person = Person(f"rs-sync-{secrets.token_hex(4)}")
    send_story(synced, person, rudderstack_consent)  # a refused request raises APIError here
    check_story(stack, person)

    errors: list[str] = []
    batched = RudderClient(stack.write_key, host=stack.url, gzip=True, max_retries=2, timeout=CLIENT_TIMEOUT,
                           upload_interval=0.1, on_error=lambda exc, batch: errors.append(f"{exc}"))
    person = Person(f"rs-batch-{secrets.token_hex(4)}")
    send_story(batched, person, rudderstack_consent)
    flushed = threading.Thread(target=batched.shutdown, daemon=True)
    flushed.start()
    flushed.join(timeout=30)
    assert not flushed.is_alive(), "the RudderStack client did not flush within 30 s"
    assert errors == []
    check_story(stack, person)


def test_sigterm_exits_cleanly(stack: Stack) -> None:
    """SIGTERM: the server finishes in-flight work and exits with status 0 (runs last for each backend)."""
    assert stack.server.running
    assert stack.server.proc is not None
    code = stack.server.stop(timeout=30)
    assert code == 0, f"rapport serve exited with {code} after SIGTERM:\n{stack.server.log_tail()}"
    log = stack.server.log_tail(200)
    assert "Traceback" not in log, log
