"""SuppressionRule resources in the running server: each rule of the issue's examples refuses exactly the
messages it should, through the real wiring (tracking API, worker passes, a real SMTP server), on SQLite
and PostgreSQL; ``applies_to`` narrows the messages a rule concerns; apply refuses bad rules precisely."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from api.support import NOW, ApiClient
from channels.support import SmtpServer

from journeys.support import SmtpWorld, documents, email_channel
from rapport.core import NewWorkspace, Rapport
from rapport.resources.builtin.suppression_rule import AppliesTo
from rapport.rules import RuleSyntaxError, parse
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


OTHERS = """
kind: Channel
name: inbox
type: inapp
---
kind: Template
name: promo
channel: email
subject: "Still thinking about {{ event.product_id }}?"
text: "It is waiting for you."
---
kind: Template
name: promo_inbox
channel: inbox
body: "A deal on {{ event.product_id }}"
---
kind: Template
name: news
channel: email
subject: "News about {{ event.product_id }}"
text: "Version 2 is out."
---
kind: Journey
name: product_promo
purpose: marketing_email
entry: {event: Product Viewed}
reentry: always
steps:
  - send: {channel: email, template: promo, tags: [promotion]}
  - send: {channel: inbox, template: promo_inbox}
---
kind: Journey
name: product_news
purpose: marketing_email
entry: {event: Product Updated}
reentry: always
steps:
  - send: {channel: email, template: news, tags: [news]}
"""
CONSENTED = NOW - 90 * DAY
"""When the people of these tests granted their consent: well before the events below, so that those keep their
properties (rather than being stored minimized)."""


def resources(port: int) -> str:
    return documents(email_channel(port), OTHERS, RULES)


class World(SmtpWorld):
    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.mail()]


@pytest.fixture
def world(rapport: Rapport, client: ApiClient, workspace: NewWorkspace, smtp: SmtpServer) -> World:
    world = World(rapport, client, workspace, smtp)
    world.apply(resources(smtp.port))
    return world


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
    pid = world.person("u1", since=CONSENTED, email="ada@example.com")
    for name, ago, product in history:
        world.event("u1", name, ago, product_id=product)
    world.event("u1", "Product Viewed", product_id="p1")
    world.work()
    email, inbox = world.outcomes(pid)
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
    pro = world.person("pro", since=CONSENTED, email="pro@example.com", plan="pro")
    world.event("pro", "Order Completed", DAY, product_id="p1")
    world.event("pro", "Product Updated", product_id="p1")
    world.event("pro", "Product Viewed", product_id="p9")
    world.work()
    assert [o[:3] for o in world.outcomes(pro)] == [
        ("product_news/0", "sent", None),  # tagged 'news', not 'promotion': the purchase does not stop it
        ("product_promo/0", "sent", None),  # a promotion, but of another product
        ("product_promo/1", "refused", "suppression_rule:pro_inbox"),  # the inbox rule: this journey and channel
    ]
    basic = world.person("basic", since=CONSENTED, email="basic@example.com", plan="basic")
    world.event("basic", "Product Viewed", product_id="p9")
    world.work()
    assert [o[:3] for o in world.outcomes(basic)] == [("product_promo/0", "sent", None),
                                                       ("product_promo/1", "sent", None)]


def test_a_purchase_after_scheduling_stops_the_promotion(world: World) -> None:
    text = resources(world.smtp.port).replace(
        "  - send: {channel: email, template: promo, tags: [promotion]}",
        "  - delay: 1h\n  - send: {channel: email, template: promo, tags: [promotion]}", 1)
    world.apply(text)
    pid = world.person("u2", since=CONSENTED, email="bo@example.com")
    world.event("u2", "Product Viewed", product_id="p1")
    world.work()
    assert world.outcomes(pid) == []
    world.clock.advance(30 * 60_000)
    world.event("u2", "Order Completed", product_id="p1")
    world.clock.advance(31 * 60_000)
    world.work()
    assert [o[:3] for o in world.outcomes(pid)] == [
        ("product_promo/1", "refused", "suppression_rule:recently_bought"), ("product_promo/2", "sent", None)]


def test_message_paths_parse_only_for_suppression_rules() -> None:
    rule = parse('count("A", where=event.sku == message.sku) > 0', message=True)
    assert rule is not None
    with pytest.raises(RuleSyntaxError, match="only a SuppressionRule's rule can read it"):
        parse('count("A", where=event.sku == message.sku) > 0')
    with pytest.raises(RuleSyntaxError, match="line 1, col 1"):
        parse("message.sku == 'x'")


@pytest.mark.parametrize(("text", "field", "message"), [
    pytest.param('kind: SuppressionRule\nname: broken\nrule: count("Order Completed" >= 1\n', "rule",
                 "line 1, col 25: expected ',' or ')'", id="syntax"),
    pytest.param("kind: SuppressionRule\nname: ctx\nrule: context.page == 'home'\n", "rule",
                 "cannot read context.page (request context exists only when a decision is made); expected a path "
                 "starting with one of 'computed', 'consent', 'event', 'message', 'traits'", id="context-path"),
    pytest.param('kind: Segment\nname: buyers\nrule: count("Order Completed", where=event.sku == message.sku) > 0\n',
                 "rule", "only a SuppressionRule's rule can read it", id="message-path-outside-a-rule"),
    pytest.param("kind: SuppressionRule\nname: typo\napplies_to: {journeys: [product_promos]}\nrule: traits.vip\n",
                 "applies_to.journeys[0]", "unknown journey 'product_promos' (did you mean 'product_promo'?)",
                 id="unknown-journey"),
    pytest.param("kind: SuppressionRule\nname: typo\napplies_to: {channels: [sms]}\nrule: traits.vip\n",
                 "applies_to.channels[0]", "expected one of 'email', 'inbox'", id="unknown-channel"),
    pytest.param("kind: SuppressionRule\nname: typo\nrule: computed.orders_90 > 1\n", "rule",
                 "line 1, col 1: unknown computed trait 'orders_90' (did you mean 'orders_90d'", id="unknown-trait"),
    pytest.param("kind: SuppressionRule\nname: typo\nrule: traits.vip and consent.marketing_emial\n", "rule",
                 "col 16: unknown consent purpose 'marketing_emial' (did you mean 'marketing_email'?)",
                 id="unknown-purpose"),
    pytest.param("kind: SuppressionRule\nname: typo\napplies_to: {tag: [x]}\nrule: traits.vip\n", "applies_to.tag",
                 "unknown field 'tag' (did you mean 'tags'?)", id="unknown-field"),
])
def test_apply_refuses_bad_rules_with_precise_errors(world: World, text: str, field: str, message: str) -> None:
    [detail] = world.refused(text)
    assert detail["field"] == field, detail
    assert message in detail["message"], detail


def test_the_documented_example_applies_and_behaves_as_described(world: World) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "send-gate.md").read_text(encoding="utf-8")
    [example] = re.findall(r"```yaml\n(.*?)```", doc, re.S)
    world.apply(example)
    buyer = world.person("buyer", since=CONSENTED, email="buyer@example.com")
    browser = world.person("browser", since=CONSENTED, email="browser@example.com")
    world.event("buyer", "Order Completed", 3 * DAY, product_id="p1")
    for user in ("buyer", "browser"):
        world.event(user, "Product Viewed", product_id="p1")
    world.work()
    world.clock.advance(HOUR)
    world.work()
    assert [o[:3] for o in world.outcomes(buyer)] == [
        ("product_promo/1", "refused", "suppression_rule:recently_bought")]
    assert [o[:3] for o in world.outcomes(browser)] == [("product_promo/1", "sent", None)]


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
