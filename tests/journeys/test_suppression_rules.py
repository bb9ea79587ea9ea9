"""SuppressionRule resources in the running server: each rule of the issue's examples refuses exactly the
messages it should, through the real wiring (tracking API, worker passes, a real SMTP server), on SQLite
and PostgreSQL; ``applies_to`` narrows the messages a rule concerns; apply refuses bad rules precisely."""

from __future__ import annotations

import asyncio
import email
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api.support import NOW, ApiClient, admin, apply_yaml, track
from channels.support import Recorder, SmtpServer, serve_smtp

from rapport.api.app import journey_engines, run_journeys, run_segments
from rapport.clock import FrozenClock, to_iso
from rapport.core import NewWorkspace, Rapport
from rapport.resources.builtin.suppression_rule import AppliesTo
from rapport.rules import RuleSyntaxError, parse
from rapport.storage.sql import journeys as journeys_sql
from rapport.types import DAY, HOUR

RULES = """
kind: SuppressionRule
name: recently_bought
description: No promotion of a product bought in the last 14 days
applies_to: {tags: [promotion]}
rule: days_since("Order Completed", where=event.product_id == message.product_id) <= 14
---
kind: SuppressionRule
name: open_ticket
description: No promotion of a product while a support ticket about it is open
applies_to: {tags: [promotion]}
rule: >-
  count("Support Ticket Opened", where=event.product_id == message.product_id)
  > count("Support Ticket Closed", where=event.product_id == message.product_id)
---
kind: SuppressionRule
name: pro_inbox
applies_to: {channels: [inbox], journeys: [product_promo]}
rule: traits.plan == "pro"
"""


def resources(port: int) -> str:
    return f"""
kind: Channel
name: email
type: smtp
host: 127.0.0.1
port: {port}
from: "Shop <hello@shop.example>"
---
kind: Channel
name: inbox
type: inapp
---
kind: Template
name: promo
channel: email
subject: "Still thinking about {{{{ event.product_id }}}}?"
text: "It is waiting for you."
---
kind: Template
name: promo_inbox
channel: inbox
body: "A deal on {{{{ event.product_id }}}}"
---
kind: Template
name: news
channel: email
subject: "News about {{{{ event.product_id }}}}"
text: "Version 2 is out."
---
kind: Journey
name: product_promo
purpose: marketing_email
entry: {{event: Product Viewed}}
reentry: always
steps:
  - send: {{channel: email, template: promo, tags: [promotion]}}
  - send: {{channel: inbox, template: promo_inbox}}
---
kind: Journey
name: product_news
purpose: marketing_email
entry: {{event: Product Updated}}
reentry: always
steps:
  - send: {{channel: email, template: news, tags: [news]}}
---
{RULES}
"""


class World:
    def __init__(self, rapport: Rapport, client: ApiClient, ws: NewWorkspace, smtp: SmtpServer) -> None:
        self.rapport, self.client, self.ws, self.smtp = rapport, client, ws, smtp
        self.engines = journey_engines(rapport)
        assert isinstance(rapport.clock, FrozenClock)
        self.clock: FrozenClock = rapport.clock

    def person(self, user_id: str, **traits: Any) -> None:
        response = track(self.client, self.ws, "/v1/identify", {"userId": user_id, "traits": traits})
        assert response.status_code == 200, response.text
        # In effect since well before the events below, so their properties are kept (not minimized).
        for purpose in ("analytics", "marketing_email"):
            response = admin(self.client, self.ws, "POST", "/api/v1/consent", json={
                "identifiers": {"user_id": user_id}, "purpose": purpose, "state": "granted",
                "source": "signup form", "effective_at": to_iso(NOW - 90 * DAY)})
            assert response.status_code == 201, response.text

    def event(self, user_id: str, name: str, ago: int = 0, **properties: Any) -> None:
        response = track(self.client, self.ws, "/v1/track", {
            "userId": user_id, "event": name, "properties": properties,
            "timestamp": to_iso(self.clock.now_ms() - ago)})
        assert response.status_code == 200, response.text

    def work(self) -> None:
        self.rapport.invalidate(self.ws.workspace_id)
        run_segments(self.rapport)
        asyncio.run(run_journeys(self.rapport, self.engines))

    def outcomes(self, user_id: str) -> list[tuple[str, str, str | None, str]]:
        """(journey/step, status, reason, detail) of the person's messages, by journey and step."""
        pid = admin(self.client, self.ws, "GET", "/api/v1/profiles/lookup", params={"user_id": user_id}).json()["id"]
        rows = self.rapport.db.read(lambda c: journeys_sql.sends_of(c, self.ws.workspace_id, profile_id=pid))
        return sorted((f"{r[3]}/{r[5]}", str(r[11]), r[12], str(r[13])) for r in rows)

    def subjects(self) -> list[str]:
        return [str(email.message_from_bytes(r.content)["Subject"]) for r in self.smtp.handler.received]


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    yield from serve_smtp(Recorder())


@pytest.fixture
def world(rapport: Rapport, client: ApiClient, workspace: NewWorkspace, smtp: SmtpServer) -> World:
    response = apply_yaml(client, workspace, resources(smtp.port))
    assert response.status_code == 200, response.text
    return World(rapport, client, workspace, smtp)


CASES = [
    pytest.param([("Order Completed", 14 * DAY, "p1")], "suppression_rule:recently_bought", id="bought-14-days-ago"),
    pytest.param([("Order Completed", 2 * HOUR, "p1")], "suppression_rule:recently_bought", id="bought-today"),
    pytest.param([("Order Completed", 15 * DAY, "p1")], None, id="bought-15-days-ago"),
    pytest.param([("Order Completed", 1 * DAY, "p2")], None, id="bought-another-product"),
    pytest.param([("Support Ticket Opened", 3 * DAY, "p1")], "suppression_rule:open_ticket", id="open-ticket"),
    pytest.param([("Support Ticket Opened", 3 * DAY, "p1"), ("Support Ticket Closed", 1 * DAY, "p1")], None,
                 id="ticket-closed"),
    pytest.param([("Support Ticket Opened", 3 * DAY, "p2")], None, id="open-ticket-about-another-product"),
    pytest.param([("Support Ticket Opened", 40 * DAY, "p1"), ("Order Completed", 20 * DAY, "p1")],
                 "suppression_rule:open_ticket", id="old-ticket-still-open"),
    pytest.param([], None, id="no-history"),
]


@pytest.mark.parametrize(("history", "refused"), CASES)
def test_each_suppression_rule_refuses_exactly_its_messages(world: World, history: list[tuple[str, int, str]],
                                                             refused: str | None) -> None:
    world.person("u1", email="ada@example.com")
    for name, ago, product in history:
        world.event("u1", name, ago, product_id=product)
    world.event("u1", "Product Viewed", product_id="p1")
    world.work()
    email, inbox = world.outcomes("u1")
    assert email[0] == "product_promo/0"
    if refused is None:
        assert email[1:3] == ("sent", None)
        assert world.subjects() == ["Still thinking about p1?"]
    else:
        assert email[1:3] == ("refused", refused)
        assert world.subjects() == []
        assert "message.product_id = 'p1'" in email[3], "the log says which message the rule matched"
    # The inbox message carries no 'promotion' tag: the product rules do not concern it.
    assert inbox[:3] == ("product_promo/1", "sent", None)


def test_rules_apply_only_to_the_messages_applies_to_selects(world: World) -> None:
    world.person("pro", email="pro@example.com", plan="pro")
    world.event("pro", "Order Completed", DAY, product_id="p1")
    world.event("pro", "Product Updated", product_id="p1")
    world.event("pro", "Product Viewed", product_id="p9")
    world.work()
    assert [o[:3] for o in world.outcomes("pro")] == [
        ("product_news/0", "sent", None),  # tagged 'news', not 'promotion': the purchase does not stop it
        ("product_promo/0", "sent", None),  # a promotion, but of another product
        ("product_promo/1", "refused", "suppression_rule:pro_inbox"),  # the inbox rule: this journey and channel
    ]
    world.person("basic", email="basic@example.com", plan="basic")
    world.event("basic", "Product Viewed", product_id="p9")
    world.work()
    assert [o[:3] for o in world.outcomes("basic")] == [("product_promo/0", "sent", None),
                                                       ("product_promo/1", "sent", None)]


def test_a_purchase_after_scheduling_stops_the_promotion(world: World) -> None:
    text = resources(world.smtp.port).replace(
        "  - send: {channel: email, template: promo, tags: [promotion]}",
        "  - delay: 1h\n  - send: {channel: email, template: promo, tags: [promotion]}", 1)
    response = apply_yaml(world.client, world.ws, text)
    assert response.status_code == 200, response.text
    world.person("u2", email="bo@example.com")
    world.event("u2", "Product Viewed", product_id="p1")
    world.work()
    assert world.outcomes("u2") == []
    world.clock.advance(30 * 60_000)
    world.event("u2", "Order Completed", product_id="p1")
    world.clock.advance(31 * 60_000)
    world.work()
    assert [o[:3] for o in world.outcomes("u2")] == [
        ("product_promo/1", "refused", "suppression_rule:recently_bought"), ("product_promo/2", "sent", None)]


def test_message_paths_parse_only_for_suppression_rules() -> None:
    rule = parse('count("A", where=event.sku == message.sku) > 0', message=True)
    assert rule is not None
    with pytest.raises(RuleSyntaxError, match="only a SuppressionRule's rule can read it"):
        parse('count("A", where=event.sku == message.sku) > 0')
    with pytest.raises(RuleSyntaxError, match="line 1, col 1"):
        parse("message.sku == 'x'")


def _error(response: Any) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == "invalid_resource"
    [detail] = body["details"]
    assert isinstance(detail, dict)
    return detail


def test_apply_refuses_bad_rules_with_precise_errors(world: World) -> None:
    broken = "kind: SuppressionRule\nname: broken\nrule: count(\"Order Completed\" >= 1\n"
    detail = _error(apply_yaml(world.client, world.ws, broken))
    assert detail["field"] == "rule" and "line 1, col 25: expected ',' or ')'" in detail["message"]

    context = "kind: SuppressionRule\nname: ctx\nrule: context.page == 'home'\n"
    detail = _error(apply_yaml(world.client, world.ws, context))
    assert "cannot read context.page" in detail["message"] and "'message'" in detail["message"]

    segment = "kind: Segment\nname: buyers\nrule: count(\"Order Completed\", where=event.sku == message.sku) > 0\n"
    detail = _error(apply_yaml(world.client, world.ws, segment))
    assert "only a SuppressionRule's rule can read it" in detail["message"]

    journey = "kind: SuppressionRule\nname: typo\napplies_to: {journeys: [product_promos]}\nrule: traits.vip\n"
    detail = _error(apply_yaml(world.client, world.ws, journey))
    assert detail["field"] == "applies_to.journeys[0]"
    assert "unknown journey 'product_promos' (did you mean 'product_promo'?)" in detail["message"]

    channel = "kind: SuppressionRule\nname: typo\napplies_to: {channels: [sms]}\nrule: traits.vip\n"
    detail = _error(apply_yaml(world.client, world.ws, channel))
    assert detail["field"] == "applies_to.channels[0]" and "expected one of 'email', 'inbox'" in detail["message"]

    trait = "kind: SuppressionRule\nname: typo\nrule: computed.orders_90 > 1\n"
    detail = _error(apply_yaml(world.client, world.ws, trait))
    assert "line 1, col 1: unknown computed trait 'orders_90' (did you mean 'orders_90d'" in detail["message"]

    purpose = "kind: SuppressionRule\nname: typo\nrule: traits.vip and consent.marketing_emial\n"
    detail = _error(apply_yaml(world.client, world.ws, purpose))
    assert "col 16: unknown consent purpose 'marketing_emial' (did you mean 'marketing_email'?)" in detail["message"]

    unknown_field = "kind: SuppressionRule\nname: typo\napplies_to: {tag: [x]}\nrule: traits.vip\n"
    detail = _error(apply_yaml(world.client, world.ws, unknown_field))
    assert "tag" in detail["message"]


def test_the_documented_example_applies_and_behaves_as_described(world: World) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "send-gate.md").read_text(encoding="utf-8")
    [example] = re.findall(r"```yaml\n(.*?)```", doc, re.S)
    response = apply_yaml(world.client, world.ws, example)
    assert response.status_code == 200, response.text
    world.person("buyer", email="buyer@example.com")
    world.person("browser", email="browser@example.com")
    world.event("buyer", "Order Completed", 3 * DAY, product_id="p1")
    for user in ("buyer", "browser"):
        world.event(user, "Product Viewed", product_id="p1")
    world.work()
    world.clock.advance(HOUR)
    world.work()
    assert [o[:3] for o in world.outcomes("buyer")] == [
        ("product_promo/1", "refused", "suppression_rule:recently_bought")]
    assert [o[:3] for o in world.outcomes("browser")] == [("product_promo/1", "sent", None)]


@pytest.mark.parametrize(("applies_to", "journey", "channel", "tags", "expected"), [
    pytest.param(AppliesTo(), "any", "email", frozenset(), True, id="empty-selects-every-message"),
    pytest.param(AppliesTo(tags=frozenset({"promotion"})), "j", "email", frozenset({"promotion", "x"}), True,
                 id="one-of-the-tags"),
    pytest.param(AppliesTo(tags=frozenset({"promotion"})), "j", "email", frozenset({"news"}), False,
                 id="none-of-the-tags"),
    pytest.param(AppliesTo(channels=frozenset({"sms"})), "j", "email", frozenset(), False, id="another-channel"),
    pytest.param(AppliesTo(journeys=frozenset({"j"}), channels=frozenset({"email"})), "j", "email", frozenset(),
                 True, id="journey-and-channel"),
    pytest.param(AppliesTo(journeys=frozenset({"j"}), channels=frozenset({"email"})), "k", "email", frozenset(),
                 False, id="each-list-narrows"),
])
def test_applies_to_narrows_by_each_list_given(applies_to: AppliesTo, journey: str, channel: str,
                                               tags: frozenset[str], expected: bool) -> None:
    assert applies_to.matches(journey, channel, tags) is expected
