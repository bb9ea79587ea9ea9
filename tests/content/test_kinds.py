"""ContentBlock and Placement documents: the DESIGN examples, and each field's error at its line."""

from __future__ import annotations

from typing import Any

import pytest

from rapport.errors import ValidationError
from rapport.resources import parse_documents

DESIGN = """\
kind: ContentBlock
name: hero_vip
channel: web
locale: en
tags: [loyalty]
body: "<h1>Welcome back, {{ traits.first_name | default: 'friend' }}</h1>"
---
kind: Placement
name: home_hero
channel: web
purpose: personalization  # without this consent the default is shown
default: hero_default
variants:                 # first matching rule wins
  - {block: hero_vip, when: computed.revenue_total > 100}
  - {block: hero_new, when: count("Order Completed") == 0}
"""


def errors_of(text: str) -> list[tuple[int, str, str]]:
    """(line, field, message) of each error of a text that must not parse."""
    with pytest.raises(ValidationError) as caught:
        parse_documents(text)
    assert caught.value.code == "invalid_resource"
    details: list[dict[str, Any]] = caught.value.details
    return [(d["line"], d["field"], d["message"]) for d in details]


def test_the_design_examples_parse() -> None:
    block, placement = parse_documents(DESIGN)
    assert block.spec["tags"] == ["loyalty"] and block.spec["locale"] == "en"
    assert placement.spec["variants"][1] == {"block": "hero_new", "when": 'count("Order Completed") == 0'}


def test_a_full_block_parses_with_defaults() -> None:
    [block] = parse_documents("""\
kind: ContentBlock
name: sofa_offer
channel: app
locale: en
locales:
  de: {body: "Sofa -20%"}
  de-AT: {title: "Servus", body: "Sofa -20 %"}
valid_from: 2026-03-01T00:00:00Z
valid_until: "2026-04-01T00:00:00Z"
title: "For you"
body: "Sofa 20% off"
value: 120.5
products: [sofa-1, sofa-2]
cap: {count: 3, per: 7d}
when: computed.revenue_total > 10 and context.page == "cart"
""")
    assert block.spec["cap"] == {"count": 3, "per": "7d"} and block.spec["valid_from"] == "2026-03-01T00:00:00Z"


@pytest.mark.parametrize(("line", "expected"), [
    ("channel: billboard", (3, "channel", "unknown channel 'billboard'")),
    ("valid_until: soon", (4, "valid_until", "invalid valid_until 'soon'; expected an ISO-8601 instant")),
    ("value: -3", (4, "value", "invalid value -3; expected a number of at least 0")),
    ("cap: {count: 0, per: 7d}", (4, "cap.count", "invalid cap.count 0; expected a whole number of at least 1")),
    ("cap: {count: 2, per: weekly}", (4, "cap.per", "invalid cap.per 'weekly'; expected a duration")),
    ("when: computed.x >", (4, "when", "invalid rule in when")),
    ("locale: German", (4, "locale", "invalid locale 'German'; expected a BCP 47 language tag")),
    ("products: [a, a]", (4, "products[1]", "duplicate 'a' in products")),
    ("locales: {de: {title: Hallo}}", (4, "locales.de.body", "missing required field 'body'")),
])
def test_block_fields_are_checked(line: str, expected: tuple[int, str, str]) -> None:
    text = "kind: ContentBlock\nname: b\nchannel: web\n" + line + "\nbody: hi\n"
    if line.startswith("channel"):
        text = "kind: ContentBlock\nname: b\n" + line + "\nbody: hi\n"
    [(got_line, field, message)] = errors_of(text)
    assert (got_line, field) == expected[:2] and message.startswith(expected[2]), message


def test_a_window_must_open_before_it_closes() -> None:
    [(_line, field, message)] = errors_of("kind: ContentBlock\nname: b\nchannel: web\nbody: hi\n"
                                          "valid_from: 2026-04-01T00:00:00Z\nvalid_until: 2026-03-01T00:00:00Z\n")
    assert field == "valid_until" and "is not after valid_from" in message


def test_a_liquid_error_names_its_line() -> None:
    [(line, field, message)] = errors_of("kind: ContentBlock\nname: b\nchannel: web\nbody: |\n  ok\n"
                                         "  {% if traits.x %}open\n")
    assert (line, field) == (6, "body") and "'{% if %}' is never closed" in message


def test_a_placement_chooses_by_rules_or_by_rank() -> None:
    text = ("kind: Placement\nname: p\nchannel: web\ndefault: d\nvariants:\n  - {block: a, when: 'traits.x == 1'}\n"
            "rank:\n  - {block: b, model: m}\n")
    [(_line, field, message)] = errors_of(text)
    assert field == "rank" and "not both" in message
    [(_line, field, message)] = errors_of("kind: Placement\nname: p\nchannel: web\ndefault: d\n"
                                          "rank:\n  - {block: b, value: 10}\n")
    assert field == "rank[0].model" and "missing required field 'model'" in message
    [placement] = parse_documents("kind: Placement\nname: p\nchannel: email\ndefault: d\n")
    assert placement.spec["purpose"] == "personalization"
