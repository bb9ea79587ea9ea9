"""Subscription groups end to end: the preference center lists and changes them, a group message's one-click
link leaves that group, and the send gate refuses the next message of a group the person left (reason
``unsubscribed``) but not the messages of other groups or of none; on SQLite and PostgreSQL, with email
delivered to a real SMTP server."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from channels.support import SmtpServer
from journeys.support import SmtpWorld, documents, email_channel

from api.support import NOW, ApiClient
from rapport.consent import links, subscriptions
from rapport.consent.model import ConsentState, LedgerEntry
from rapport.core import NewWorkspace, Rapport
from rapport.resources.builtin.subscription_group import SubscriptionGroup
from rapport.storage.sql import consent as consent_sql
from rapport.types import DAY

JSON = {"Accept": "application/json"}
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


OTHERS = """
kind: SubscriptionGroup
name: newsletter
description: The weekly newsletter
channels: [email]
---
kind: SubscriptionGroup
name: beta_news
description: News for beta testers
channels: [email]
default: unsubscribed
---
kind: Template
name: digest
channel: email
subject: "This week"
text: "Seven stories."
---
kind: Template
name: shipped
channel: email
subject: "Your order is on its way"
text: "Soon."
---
kind: Template
name: beta
channel: email
subject: "Beta news"
text: "New build."
---
kind: Journey
name: weekly
purpose: marketing_email
subscription_group: newsletter
reentry: always
entry: {event: Digest Due}
steps:
  - send: {channel: email, template: digest}
---
kind: Journey
name: orders
purpose: marketing_email
reentry: always
entry: {event: Order Shipped}
steps:
  - send: {channel: email, template: shipped}
  - send: {channel: email, template: beta, subscription_group: beta_news}
"""


def resources(port: int) -> str:
    return documents(email_channel(port), OTHERS)


class World(SmtpWorld):
    def ledger(self, pid: str) -> list[LedgerEntry]:
        rows = self.rapport.db.read(lambda c: consent_sql.entries(c, self.ws.workspace_id, [pid]))
        return [consent_sql.ledger_entry(r) for r in rows]

    def page(self, pid: str) -> str:
        """The path of the person's preference center."""
        url = links.make_link("https://prefs.example", self.rapport.runtime(self.id), pid, self.clock.now_ms(),
                              keyring=self.rapport.keyring)
        return url.removeprefix("https://prefs.example")


@pytest.fixture
def world(rapport: Rapport, client: ApiClient, workspace: NewWorkspace, smtp: SmtpServer) -> World:
    world = World(rapport, client, workspace, smtp)
    world.apply(resources(smtp.port))
    return world


def groups(response: Any) -> dict[str, tuple[bool, str]]:
    assert response.status_code == 200, response.text
    return {g["group"]: (g["subscribed"], g["reason"]) for g in response.json()["groups"]}


def form(pairs: list[tuple[str, str]], **headers: str) -> dict[str, Any]:
    return {"content": urlencode(pairs).encode(),
            "headers": {"Content-Type": "application/x-www-form-urlencoded", **headers}}


def test_the_preference_center_lists_groups_and_an_opt_out_stops_only_that_group(world: World) -> None:
    pid = world.person("u1", since=NOW - DAY, email="ada@example.com")
    path = world.page(pid)
    assert groups(world.client.get(path, headers=JSON)) == {"beta_news": (False, "default"),
                                                            "newsletter": (True, "default")}
    page = world.client.get(path)
    assert '<input type="checkbox" name="group" value="newsletter" checked> The weekly newsletter' in page.text
    assert '<input type="checkbox" name="group" value="beta_news"> News for beta testers' in page.text

    # The form as a browser submits it: marketing email stays ticked, the newsletter is unticked.
    saved = world.client.post(path, **form([("shown", "marketing_email"), ("granted", "marketing_email"),
                                            ("group_shown", "newsletter"), ("group_shown", "beta_news")],
                                           Accept="application/json", **{"User-Agent": "Browser/1"}))
    assert saved.status_code == 200, saved.text
    assert saved.json()["changed"] == [] and saved.json()["changed_groups"] == ["newsletter"]
    assert groups(saved)["newsletter"] == (False, "left")
    entry = world.ledger(pid)[-1]
    assert (entry.purpose, entry.state, entry.source) == ("subscription:newsletter", "withdrawn", "preference_center")
    assert entry.proof is not None and entry.proof.startswith("link_issued_at=")
    again = world.client.post(path, **form([("shown", "marketing_email"), ("granted", "marketing_email"),
                                            ("group_shown", "newsletter")], Accept="application/json"))
    assert again.json()["changed_groups"] == [], "a choice already made is not recorded twice"

    world.event("u1", "Digest Due")
    world.event("u1", "Order Shipped")
    world.work()
    assert [m["Subject"] for m in world.mail()] == ["Your order is on its way"]
    log = world.outcomes(pid)
    assert [entry[:3] for entry in log] == [
        ("orders/0", "sent", None),  # in no group: the newsletter choice does not concern it
        ("orders/1", "refused", "unsubscribed"),  # beta news is opt-in and the person has not joined
        ("weekly/0", "refused", "unsubscribed"),
    ]
    assert "subscription group 'beta_news'" in log[1][3] and "subscription group 'newsletter'" in log[2][3]


def test_joining_an_opt_in_group_lets_its_messages_through(world: World) -> None:
    pid = world.person("u2", since=NOW - DAY, email="bo@example.com")
    path = world.page(pid)
    joined = world.client.post(path, **form([("group_shown", "beta_news"), ("group", "beta_news")],
                                            Accept="application/json"))
    assert joined.json()["changed_groups"] == ["beta_news"] and groups(joined)["beta_news"] == (True, "joined")
    world.event("u2", "Order Shipped")
    world.work()
    assert sorted(m["Subject"] for m in world.mail()) == ["Beta news", "Your order is on its way"]
    bad = world.client.post(path, **form([("group", "newsletter")], Accept="application/json"))
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_preferences"
    unknown = world.client.post(path, **form([("group_shown", "nope")], Accept="application/json"))
    assert unknown.status_code == 410 and unknown.json()["code"] == "subscription_group_gone"


def test_one_click_from_a_group_message_leaves_that_group_only(world: World) -> None:
    pid = world.person("u3", since=NOW - DAY, email="cy@example.com")
    world.event("u3", "Digest Due")
    world.work()
    [digest] = world.mail()
    header = digest["List-Unsubscribe"].strip("<>")
    assert "group=newsletter" in header and "purpose=" not in header
    assert digest["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    target = urlsplit(header)
    path = f"{target.path}?{target.query}"

    before = world.ledger(pid)
    confirm = world.client.get(path)
    assert confirm.status_code == 200 and "The weekly newsletter" in confirm.text
    assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in confirm.text
    assert world.ledger(pid) == before, "GET changes nothing"

    done = world.client.post(path, data=ONE_CLICK, headers=JSON)
    assert done.json() == {"group": "newsletter", "state": "withdrawn", "recorded": True}
    assert world.client.post(path, data=ONE_CLICK, headers=JSON).json()["recorded"] is False
    entry = world.ledger(pid)[-1]
    assert (entry.purpose, entry.state, entry.source) == ("subscription:newsletter", "withdrawn", "unsubscribe_link")
    preferences = world.client.get(world.page(pid), headers=JSON).json()
    assert {p["purpose"]: p["allowed"] for p in preferences["purposes"]}["marketing_email"] is True

    # The link's token covers the group only: it cannot act on the channel's purpose.
    token = target.path.rsplit("/", 1)[1]
    other = world.client.post(f"/unsubscribe/{token}?purpose=marketing_email", data=ONE_CLICK, headers=JSON)
    assert other.status_code == 403 and other.json()["code"] == "link_scope"

    world.clock.advance(DAY)
    world.event("u3", "Digest Due")
    world.event("u3", "Order Shipped")
    world.work()
    assert sorted(m["Subject"] for m in world.mail()) == ["This week", "Your order is on its way"]
    assert [e[:3] for e in world.outcomes(pid)] == [("orders/0", "sent", None),
                                               ("orders/1", "refused", "unsubscribed"),
                                               ("weekly/0", "refused", "unsubscribed"),
                                               ("weekly/0", "sent", None)]
    ungrouped = next(m for m in world.mail() if m["Subject"] == "Your order is on its way")
    assert "purpose=marketing_email" in ungrouped["List-Unsubscribe"], "a message in no group leaves the channel"


def test_apply_checks_the_groups_journeys_name(world: World) -> None:
    text = resources(world.smtp.port)
    [detail] = world.refused(text.replace("subscription_group: newsletter", "subscription_group: newsleter"))
    assert detail["field"] == "subscription_group" and detail["name"] == "weekly"
    assert "unknown subscription group 'newsleter' (did you mean 'newsletter'?)" in detail["message"]
    narrow = text.replace("channels: [email]\ndefault: unsubscribed", "channels: [email]\ndefault: unsubscribed") \
        + "---\nkind: Channel\nname: inbox\ntype: inapp\n---\nkind: SubscriptionGroup\nname: inbox_only\n" \
          "channels: [inbox]\n"
    narrow = narrow.replace("subscription_group: beta_news}", "subscription_group: inbox_only}")
    [detail] = world.refused(narrow)
    assert detail["field"] == "steps[1].send.subscription_group"
    assert "whose messages go on 'inbox', but the step sends on 'email'" in detail["message"]
    bad_channel = "kind: SubscriptionGroup\nname: sms_news\nchannels: [sms]\n"
    [detail] = world.refused(bad_channel)
    assert detail["field"] == "channels[0]" and "unknown channel 'sms'" in detail["message"]
    bad_default = "kind: SubscriptionGroup\nname: x\ndefault: maybe\n"
    [detail] = world.refused(bad_default)
    assert "'subscribed', 'unsubscribed'" in detail["message"]


def _entry(seq: int, state: ConsentState, at: int) -> LedgerEntry:
    return LedgerEntry(f"cns_{seq}", seq, "prf_1", "subscription:newsletter", state, "consent", "preference_center",
                       None, None, at, at, None)


@pytest.mark.parametrize(("default", "entries", "expected"), [
    pytest.param(True, [], (True, "default"), id="opt-out-group-without-a-choice"),
    pytest.param(False, [], (False, "default"), id="opt-in-group-without-a-choice"),
    pytest.param(True, [_entry(1, "withdrawn", NOW - DAY)], (False, "left"), id="left"),
    pytest.param(False, [_entry(1, "granted", NOW - DAY)], (True, "joined"), id="joined"),
    pytest.param(True, [_entry(1, "withdrawn", NOW - DAY), _entry(2, "granted", NOW - 1)], (True, "joined"),
                 id="left-then-joined-again"),
    pytest.param(True, [_entry(1, "withdrawn", NOW + DAY)], (True, "default"), id="a-choice-not-yet-in-effect"),
])
def test_membership_follows_the_latest_choice_in_effect(default: bool, entries: list[LedgerEntry],
                                                        expected: tuple[bool, str]) -> None:
    group = SubscriptionGroup("newsletter", subscribed_by_default=default)
    found = subscriptions.membership(entries, group, NOW)
    assert (found.subscribed, found.reason) == expected
    assert subscriptions.left(entries, [group], NOW) == (frozenset() if expected[0] else {"newsletter"})
