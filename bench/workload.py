"""Realistic Segment ``/v1/batch`` traffic for the ingestion benchmarks.

A shop with ``users`` people. Every person has a stable anonymous id (one browser), a user id,
an email and a consent choice: a share sends Segment's ``context.consent.categoryPreferences``
granting analytics on every event, a smaller share denies it, the rest sends none (those events
are stored minimized, as the design requires). The mix per 100 messages is roughly 10 identify,
30 page and 60 track, of which 5 are ``Order Completed`` with revenue. Timestamps are the last
300 ms before ``sentAt`` (2% up to a day late, from offline queues), in time order within a batch,
as analytics.js sends them. Message ids are unique per
run, so nothing is a duplicate unless a test resends a batch.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

import orjson

TRACK_EVENTS = (
    ("Product Viewed", 30),
    ("Product Clicked", 10),
    ("Products Searched", 8),
    ("Cart Added", 6),
    ("Checkout Started", 3),
    ("Order Completed", 5),
)
PAGES = ("Home", "Category", "Product", "Cart", "Search", "Account")
CATEGORIES = ("shoes", "shirts", "bags", "hats", "socks", "jackets")
FIRST = ("Ada", "Grace", "Alan", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Frances", "John")
LAST = ("Lovelace", "Hopper", "Turing", "Torvalds", "Liskov", "Thompson", "Hamilton", "Ritchie", "Allen")
AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4"
    " Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
)
GRANT = {"Analytics": True, "Functional": True, "Advertising": False, "Email": True}
DENY = {"Analytics": False, "Functional": False, "Advertising": False}
DAY_MS = 86_400_000


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


class Shop:
    """Deterministic generator of batches (bytes of a ``/v1/batch`` body)."""

    def __init__(self, *, users: int = 10_000, seed: int = 1, run: str = "r", now_ms: int,
                 consent_share: float = 0.6, deny_share: float = 0.1) -> None:
        self.users = users
        self.rng = random.Random(seed)
        self.run = run
        self.now_ms = now_ms
        self.seq = 0
        people = random.Random(7)  # the same people in every generator of a run
        self.consent: list[dict[str, bool] | None] = []
        for _ in range(users):
            r = people.random()
            self.consent.append(GRANT if r < consent_share else DENY if r < consent_share + deny_share else None)
        self.agent = [AGENTS[people.randrange(len(AGENTS))] for _ in range(users)]
        self.ip = [f"10.{people.randrange(256)}.{people.randrange(256)}.{people.randrange(1, 255)}"
                   for _ in range(users)]
        names = list(zip(FIRST, LAST, strict=False))
        self.names = [names[people.randrange(len(names))] for _ in range(users)]
        weights = [w for _, w in TRACK_EVENTS]
        self._track_names = [n for n, _ in TRACK_EVENTS]
        self._track_weights = weights

    def message(self, ts: int) -> dict[str, object]:
        rng = self.rng
        u = rng.randrange(self.users)
        self.seq += 1
        context: dict[str, object] = {
            "ip": self.ip[u],
            "userAgent": self.agent[u],
            "library": {"name": "analytics.js", "version": "5.2.0"},
            "locale": "en-US",
            "page": {"path": "/", "url": "https://shop.example/", "referrer": "https://www.google.com/"},
        }
        consent = self.consent[u]
        if consent is not None:
            context["consent"] = {"categoryPreferences": consent}
        msg: dict[str, object] = {
            "messageId": f"{self.run}-{self.seq}-{rng.getrandbits(40):x}",
            "anonymousId": f"anon-{u:06d}-4f3c-9a1e",
            "timestamp": iso(ts),
            "context": context,
        }
        # Logged in for most traffic; anonymous browsing for the rest (same browser id).
        if rng.random() < 0.75:
            msg["userId"] = f"user-{u:06d}"
        r = rng.random()
        if r < 0.10:
            first, last = self.names[u]
            msg["type"] = "identify"
            msg["userId"] = f"user-{u:06d}"
            msg["traits"] = {
                "email": f"{first.lower()}.{last.lower()}.{u}@mail.example",
                "first_name": first, "last_name": last,
                "plan": rng.choice(("free", "plus", "pro")),
                "newsletter": rng.random() < 0.5,
                "created_at": iso(ts - rng.randrange(365) * DAY_MS),
            }
        elif r < 0.40:
            page = rng.choice(PAGES)
            msg["type"] = "page"
            msg["name"] = page
            msg["properties"] = {"path": f"/{page.lower()}", "title": f"{page} | Shop",
                                 "url": f"https://shop.example/{page.lower()}"}
        else:
            event = rng.choices(self._track_names, self._track_weights)[0]
            msg["type"] = "track"
            msg["event"] = event
            sku = rng.randrange(5000)
            props: dict[str, object] = {"product_id": f"sku-{sku}", "category": rng.choice(CATEGORIES),
                                        "price": round(5 + sku % 200 + 0.99, 2)}
            if event == "Order Completed":
                props = {"order_id": f"o-{self.run}-{self.seq}", "revenue": round(rng.uniform(10, 400), 2),
                         "currency": "EUR", "products": [{"product_id": f"sku-{sku}", "quantity": 1}]}
            elif event == "Products Searched":
                props = {"query": rng.choice(CATEGORIES)}
            elif event == "Cart Added":
                props["cart_id"] = f"cart-{u}"
            msg["properties"] = props
        return msg

    def event_time(self) -> int:
        """Up to 300 ms before ``sentAt`` (a browser flushing its queue); 2% from offline queues up to a day old."""
        rng = self.rng
        if rng.random() < 0.02:
            return self.now_ms - rng.randrange(DAY_MS)
        return self.now_ms - rng.randrange(300)

    def batch(self, size: int = 100) -> bytes:
        """One batch in time order (as an SDK sends its queue); the clock advances 5 ms per batch."""
        self.now_ms += 5
        items = sorted((self.message(self.event_time()) for _ in range(size)), key=lambda m: str(m["timestamp"]))
        return orjson.dumps({"batch": items, "sentAt": iso(self.now_ms)})


def make_batches(count: int, *, seed: int, run: str, now_ms: int, users: int = 10_000,
                 size: int = 100) -> list[bytes]:
    shop = Shop(users=users, seed=seed, run=run, now_ms=now_ms)
    return [shop.batch(size) for _ in range(count)]
