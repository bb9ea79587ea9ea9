"""The demo shop's people: each one's months of Segment messages, drawn from a seeded generator.

Pure: the generator and the current time come in as arguments, so a seed always gives the same
people, the same message ids and the same story (only shifted in time with ``now``).

A customer may browse anonymously first and then sign up on the same device (one anonymous id),
log in later from a second device, buy, get newsletters and open or click them, open support
tickets, change plans, add a work email (a second identify), withdraw analytics consent in the
preference centre or unsubscribe from email through a link. Visitors browse anonymously only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rapport.clock import to_iso
from rapport.demo.catalog import (
    CAMPAIGNS,
    CATEGORIES,
    CITIES,
    COUPONS,
    EMAIL_DOMAINS,
    FIRST_NAMES,
    LAST_NAMES,
    PAGES,
    PLANS,
    PRODUCTS,
    REFERRERS,
    TICKET_CHANNELS,
    TICKET_TOPICS,
    USER_AGENTS,
    WORK_DOMAINS,
    Product,
)
from rapport.types import DAY, HOUR, MINUTE, SECOND, WEEK, JsonObject, Millis

if TYPE_CHECKING:
    from random import Random

MONTH: Millis = 30 * DAY
POLICY_VERSION = "2025-01"
_SESSIONS_PER_MONTH = ((0.4, 0.7), (0.4, 1.6), (0.2, 3.5))
"""(share of customers, sessions per month): light, regular and heavy shoppers."""
_BANNER = ("Necessary", "Analytics", "Personalization", "Advertising")
"""Cookie-banner categories, chosen before anyone signs up; the rest are asked at sign-up."""


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """A consent withdrawn through an unsubscribe link: recorded through the consent API, not an event."""

    user_id: str
    purpose: str
    at: Millis

    def to_body(self) -> JsonObject:
        """The ``POST /api/v1/consent`` body recording it."""
        return {"identifiers": {"user_id": self.user_id}, "purpose": self.purpose, "state": "withdrawn",
                "source": "unsubscribe_link", "policy_version": POLICY_VERSION, "effective_at": to_iso(self.at)}


@dataclass(frozen=True, slots=True)
class Story:
    """One person's messages in time order, and the withdrawals to record once they are stored."""

    messages: tuple[JsonObject, ...]
    withdrawals: tuple[Withdrawal, ...]
    user_id: str | None
    email: str | None


class _Timeline:
    """Messages of one person, stamped with an id and a time, sorted when done."""

    def __init__(self, new_id: Callable[[], str], end: Millis) -> None:
        self._new_id = new_id
        self._end = end
        self._items: list[tuple[Millis, int, JsonObject]] = []

    def add(self, at: Millis, message: JsonObject) -> bool:
        """Add ``message`` at ``at``; a message that would lie in the future is dropped (False)."""
        if at > self._end:
            return False
        message["messageId"] = self._new_id()
        message["timestamp"] = to_iso(at)
        self._items.append((at, len(self._items), message))
        return True

    def messages(self) -> tuple[JsonObject, ...]:
        return tuple(m for _, _, m in sorted(self._items, key=lambda item: (item[0], item[1])))


@dataclass(slots=True)
class _Person:
    ids: JsonObject
    currency: str
    favourite: str
    orders: list[tuple[Millis, str]]


class Shop:
    """Generates customers and visitors active between ``now - months`` and ``now``."""

    def __init__(self, rng: Random, now: Millis, months: int) -> None:
        self.rng = rng
        self.end = now - HOUR
        self.start = now - months * MONTH
        self.popular = list(PRODUCTS)
        rng.shuffle(self.popular)
        self.by_category = {c: [p for p in self.popular if p.category == c] for c in CATEGORIES}
        first = self.start + 2 * DAY + 9 * HOUR
        self.campaigns = [(first + k * WEEK, k) for k in range(max(0, (self.end - first) // WEEK + 1))
                          if first + k * WEEK < self.end]

    def _uuid(self) -> str:
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def _between(self, lo: Millis, hi: Millis) -> Millis:
        return lo if hi <= lo else lo + int(self.rng.random() * (hi - lo))

    def customer(self, n: int) -> Story:
        """The ``n``-th customer: signs up (or logs in) in the window and shops from then on."""
        r = self.rng
        t = _Timeline(self._uuid, self.end)
        first, last = r.choice(FIRST_NAMES), r.choice(LAST_NAMES)
        user_id = f"usr_{r.getrandbits(48):012x}"
        email = f"{first}.{last}{n}@{r.choice(EMAIL_DOMAINS)}".lower()
        city = r.choice(CITIES)
        phone = None
        if r.random() < 0.7:
            phone = r.choice(city.phone_prefixes) + "".join(str(r.randrange(10)) for _ in range(city.phone_digits))
        plan = PLANS[0] if r.random() < 0.7 else PLANS[1] if r.random() < 0.7 else PLANS[2]
        existing = r.random() < 0.35
        span = self.end - self.start
        joined = self._between(self.start, self.start + MONTH) if existing \
            else self.start + int(span * 0.95 * r.random() ** 1.2)
        created = joined - int(r.random() * 400 * DAY) if existing else joined
        prefs: JsonObject = {
            "Necessary": True, "Analytics": r.random() < 0.92, "Personalization": r.random() < 0.75,
            "Advertising": r.random() < 0.45, "Email": r.random() < 0.62,
            "SMS": phone is not None and r.random() < 0.25, "Push": r.random() < 0.3,
        }
        no_analytics_from = self._between(joined + DAY, self.end) if prefs["Analytics"] and r.random() < 0.03 else None
        devices = [self._uuid()] + ([self._uuid()] if r.random() < 0.35 else [])
        person = _Person({"userId": user_id, "anonymousId": devices[0]}, city.currency, r.choice(CATEGORIES), [])

        def prefs_at(at: Millis, unsubscribed: Millis | None) -> JsonObject:
            current = dict(prefs)
            if no_analytics_from is not None and at >= no_analytics_from:
                current["Analytics"] = False
            if unsubscribed is not None and at >= unsubscribed:
                current["Email"] = False
            return current

        unsubscribed = self._emails(t, user_id, first, joined, prefs["Email"])
        withdrawals = (Withdrawal(user_id, "marketing_email", unsubscribed),) if unsubscribed is not None else ()

        def consent(at: Millis) -> JsonObject:
            return {"consent": {"categoryPreferences": prefs_at(at, unsubscribed)},
                    "ip": f"198.51.100.{n % 250 + 1}", "userAgent": r.choice(USER_AGENTS)}

        if not existing and r.random() < 0.55:
            anon = _Person({"anonymousId": devices[0]}, city.currency, person.favourite, [])
            times = sorted(self._between(max(self.start, joined - 21 * DAY), joined - HOUR)
                           for _ in range(1 + int(r.random() * 3)))
            for i, at in enumerate(times):
                self._session(t, at, anon, context=self._banner(prefs) if i == 0 else None, may_buy=False)
        traits: JsonObject = {"first_name": first, "last_name": last, "email": email, "city": city.name,
                              "country": city.country, "plan": plan, "created_at": to_iso(created)}
        if phone is not None:
            traits["phone"] = phone
        t.add(joined, {"type": "identify", **person.ids, "traits": traits, "context": consent(joined)})
        if not existing:
            t.add(joined + 2 * SECOND, {"type": "track", "event": "Signed Up", **person.ids,
                                        "properties": {"method": r.choice(("email", "google", "apple"))}})
        self._session(t, joined + 5 * SECOND, person)
        rate = _weighted(r, _SESSIONS_PER_MONTH)
        months_active = (self.end - joined) / MONTH
        times = sorted(self._between(joined + HOUR, self.end - HOUR)
                       for _ in range(int(months_active * rate * (0.5 + r.random()))))
        logged_out_first = r.random() < 0.6
        for at in times:
            device = devices[1] if len(devices) > 1 and r.random() < 0.4 else devices[0]
            if device is not devices[0] and logged_out_first:
                # A first visit on a new device before logging in: an anonymous profile that merges
                # into the customer's when they log in on it.
                logged_out_first = False
                self._session(t, at, _Person({"anonymousId": device}, person.currency, person.favourite, []),
                              context=self._banner(prefs_at(at, unsubscribed)), may_buy=False)
                continue
            self._session(t, at, _Person({"userId": user_id, "anonymousId": device}, person.currency,
                                         person.favourite, person.orders))
        if no_analytics_from is not None:
            t.add(no_analytics_from, {"type": "identify", "userId": user_id, "traits": {},
                                      "context": consent(no_analytics_from)})
        if r.random() < 0.08 and plan != PLANS[2]:
            at = self._between(joined + DAY, self.end)
            t.add(at, {"type": "identify", "userId": user_id, "traits": {"plan": PLANS[PLANS.index(plan) + 1]},
                       "context": consent(at)})
        if r.random() < 0.03:
            at = self._between(joined + DAY, self.end)
            work = f"{first[0]}.{last}{n}@{r.choice(WORK_DOMAINS)}".lower()
            t.add(at, {"type": "identify", "userId": user_id, "traits": {"email": work}, "context": consent(at)})
        self._tickets(t, user_id, person.orders)
        return Story(t.messages(), withdrawals, user_id, email)

    def visitor(self, n: int) -> Story:
        """The ``n``-th visitor: browses anonymously and never signs up."""
        r = self.rng
        t = _Timeline(self._uuid, self.end)
        person = _Person({"anonymousId": self._uuid()}, r.choice(CITIES).currency, r.choice(CATEGORIES), [])
        choice = {"Necessary": True, "Analytics": r.random() < 0.7, "Personalization": r.random() < 0.5,
                  "Advertising": r.random() < 0.3}
        first = self._between(self.start, self.end - DAY)
        later = sorted(self._between(first + HOUR, self.end - HOUR) for _ in range(int(r.random() * 3)))
        self._session(t, first, person, context=self._banner(choice), may_buy=False)
        for at in later:
            self._session(t, at, person, may_buy=False)
        return Story(t.messages(), (), None, None)

    def _banner(self, prefs: JsonObject) -> JsonObject:
        """The context of the page view on which a visitor answered the cookie banner."""
        return {"consent": {"categoryPreferences": {k: prefs[k] for k in _BANNER}},
                "userAgent": self.rng.choice(USER_AGENTS)}

    def _product(self, favourite: str) -> Product:
        r = self.rng
        pool = self.by_category[favourite] if r.random() < 0.45 else self.popular
        return pool[int(len(pool) * r.random() ** 1.7)]

    def _session(self, t: _Timeline, at: Millis, who: _Person, *, context: JsonObject | None = None,
                 may_buy: bool = True) -> None:
        r = self.rng
        name, path = r.choice(PAGES)
        if name == "Category":
            path += who.favourite.lower()
        page: JsonObject = {"type": "page", **who.ids, "name": name,
                            "properties": {"path": path, "url": f"https://shop.example{path}",
                                           "referrer": r.choice(REFERRERS), "title": f"{name} | Shop"}}
        if context is not None:
            page["context"] = context
        t.add(at, page)
        viewed: list[Product] = []
        for _ in range(1 + int(r.random() ** 2 * 5)):
            at += 15 * SECOND + int(r.random() * 90 * SECOND)
            product = self._product(who.favourite)
            viewed.append(product)
            t.add(at, {"type": "track", "event": "Product Viewed", **who.ids,
                       "properties": _product_props(product, who.currency)})
        if r.random() >= 0.3:
            return
        cart_id = f"crt_{r.getrandbits(40):010x}"
        lines: list[tuple[Product, int]] = []
        for product in dict.fromkeys(viewed[: 1 + int(r.random() * 2)]):
            at += 20 * SECOND + int(r.random() * 60 * SECOND)
            quantity = 1 if r.random() < 0.85 else 2
            lines.append((product, quantity))
            t.add(at, {"type": "track", "event": "Cart Added", **who.ids,
                       "properties": {"cart_id": cart_id, "quantity": quantity,
                                      **_product_props(product, who.currency)}})
        if not may_buy or r.random() >= 0.5:
            return
        at += 2 * MINUTE + int(r.random() * 8 * MINUTE)
        order_id = f"ord_{r.getrandbits(40):010x}"
        subtotal = sum(p.price * q for p, q in lines)
        properties: JsonObject = {"order_id": order_id, "cart_id": cart_id, "currency": who.currency}
        if r.random() < 0.15:
            coupon = r.choice(COUPONS)
            properties["coupon"] = coupon
            properties["discount"] = round(subtotal * int(coupon[-2:] if coupon[-2:].isdigit() else 0) / 100, 2)
        revenue = round(subtotal - properties.get("discount", 0.0), 2)
        properties.update(revenue=revenue, shipping=0.0 if revenue >= 60 else 4.95,
                          tax=round(revenue * 0.19 / 1.19, 2),
                          products=[{"product_id": p.id, "sku": p.sku, "product_name": p.name, "category": p.category,
                                     "price": p.price, "quantity": q} for p, q in lines])
        if r.random() < 0.01:
            del properties["currency"]  # an old app version: stored, and flagged by the tracking plan
        t.add(at, {"type": "track", "event": "Order Completed", **who.ids, "properties": properties})
        who.orders.append((at, order_id))

    def _emails(self, t: _Timeline, user_id: str, first_name: str, joined: Millis, subscribed: bool) -> Millis | None:
        """Newsletters while subscribed; returns when the person unsubscribed, if they did."""
        if not subscribed:
            return None
        r = self.rng
        opens = 0.15 + 0.45 * r.random()
        for at, k in self.campaigns:
            if at <= joined:
                continue
            name, subject = CAMPAIGNS[k % len(CAMPAIGNS)]
            props = {"campaign_id": f"cmp_{k:03d}", "campaign_name": name,
                     "email_subject": subject.format(first_name=first_name)}
            at += int(r.random() * 20 * MINUTE)
            t.add(at, {"type": "track", "event": "Email Delivered", "userId": user_id, "properties": props})
            if r.random() < opens:
                at += 5 * MINUTE + int(r.random() ** 2 * 36 * HOUR)
                t.add(at, {"type": "track", "event": "Email Opened", "userId": user_id, "properties": props})
                if r.random() < 0.25:
                    at += 5 * SECOND + int(r.random() * 5 * MINUTE)
                    t.add(at, {"type": "track", "event": "Email Link Clicked", "userId": user_id,
                               "properties": {**props, "link_url": "https://shop.example/sale"}})
                elif r.random() < 0.04:
                    at += 10 * SECOND
                    if t.add(at, {"type": "track", "event": "Unsubscribed", "userId": user_id,
                                  "properties": {**props, "list": "newsletter"}}):
                        return at
        return None

    def _tickets(self, t: _Timeline, user_id: str, orders: list[tuple[Millis, str]]) -> None:
        r = self.rng
        if not orders or r.random() >= 0.15:
            return
        for _ in range(1 + int(r.random() < 0.25)):
            ordered, order_id = r.choice(orders)
            opened = ordered + DAY + int(r.random() * 6 * DAY)
            if opened >= self.end:
                continue
            ticket_id = f"tkt_{r.getrandbits(32):08x}"
            t.add(opened, {"type": "track", "event": "Ticket Created", "userId": user_id,
                           "properties": {"ticket_id": ticket_id, "order_id": order_id,
                                          "subject": r.choice(TICKET_TOPICS), "channel": r.choice(TICKET_CHANNELS),
                                          "priority": "high" if r.random() < 0.2 else "normal"}})
            hours = 1 + int(r.random() ** 2 * 72)
            if opened + hours * HOUR < self.end:
                t.add(opened + hours * HOUR, {"type": "track", "event": "Ticket Resolved", "userId": user_id,
                                              "properties": {"ticket_id": ticket_id, "resolution_hours": hours,
                                                             "satisfaction": r.choice((2, 3, 4, 4, 5, 5, 5))}})


def _product_props(product: Product, currency: str) -> JsonObject:
    return {"product_id": product.id, "sku": product.sku, "product_name": product.name,
            "category": product.category, "price": product.price, "currency": currency}


def _weighted(rng: Random, options: tuple[tuple[float, float], ...]) -> float:
    pick = rng.random()
    for share, value in options:
        if pick < share:
            return value
        pick -= share
    return options[-1][1]
